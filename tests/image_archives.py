"""A small writer of image archives for tests: OCI image layouts and docker-archives.

Layers are lists of :class:`Entry` (what ``tar`` would hold, whiteouts included), written with
tarfile; the writer then lays them out as either format, with the digests each format
carries, so a test can import exactly what it made (and break one thing of it).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Entry:
    """One tar member: ``kind`` is file, dir, symlink, hardlink, fifo or chardev."""

    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""  # a link's target
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


TYPES = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
         "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "chardev": tarfile.CHRTYPE}


def layer_tar(entries: list[Entry]) -> bytes:
    """The bytes of a layer tar holding ``entries`` in order (fixed mtimes: reproducible)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = TYPES[entry.kind]
            info.mode, info.uid, info.gid = entry.mode, entry.uid, entry.gid
            info.mtime = 1_700_000_000
            info.linkname = entry.target
            if entry.kind == "chardev":
                info.devmajor, info.devminor = 1, 3
            if entry.kind == "file":
                info.size = len(entry.data)
                archive.addfile(info, io.BytesIO(entry.data))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ImageSpec:
    """An image to write: its layers (tar bytes) and its config's ``config`` section."""

    layers: list[bytes]
    config: dict[str, Any] = field(default_factory=lambda: {"Entrypoint": ["/bin/sh", "-c"],
                                                             "Cmd": ["echo READY"]})
    tag: str | None = "example.org/team/demo:1.0"

    def config_document(self) -> bytes:
        return json.dumps({
            "architecture": "amd64", "os": "linux", "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{sha256(layer)}"
                                                      for layer in self.layers]},
        }, sort_keys=True).encode()


def write_oci(spec: ImageSpec, directory: Path, *, compress: bool = True) -> Path:
    """``spec`` as an OCI image layout in ``directory`` (layers gzip-compressed by default)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes, media_type: str) -> dict[str, Any]:
        (blobs / sha256(data)).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{sha256(data)}", "size": len(data)}

    kind = "tar+gzip" if compress else "tar"
    layers = [put(gzip.compress(layer, mtime=0) if compress else layer,
                  f"application/vnd.oci.image.layer.v1.{kind}") for layer in spec.layers]
    config = put(spec.config_document(), "application/vnd.oci.image.config.v1+json")
    manifest = put(json.dumps({"schemaVersion": 2, "config": config, "layers": layers}).encode(),
                   "application/vnd.oci.image.manifest.v1+json")
    if spec.tag:
        manifest["annotations"] = {"org.opencontainers.image.ref.name": spec.tag}
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                      "manifests": [manifest]}))
    return directory


def write_docker(spec: ImageSpec, path: Path) -> Path:
    """``spec`` as a docker-archive tarball at ``path`` (podman's layout: <diff_id>.tar)."""
    config = spec.config_document()
    files = {f"{sha256(config)}.json": config}
    names = []
    for layer in spec.layers:
        names.append(f"{sha256(layer)}.tar")
        files[names[-1]] = layer
    entry = {"Config": f"{sha256(config)}.json", "Layers": names,
             "RepoTags": [spec.tag] if spec.tag else None}
    files["manifest.json"] = json.dumps([entry]).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
