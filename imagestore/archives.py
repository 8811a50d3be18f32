"""Reading an image someone else built: an OCI image layout or a docker-archive.

Two formats, as they come:

- an **OCI image layout** (``oci-layout``, ``index.json``, ``blobs/sha256/...``), as a
  directory or as a tar of one (``skopeo copy ... oci-archive:``, ``podman save --format
  oci-archive``): the index names a manifest (one per platform: the host's is taken), the
  manifest names the config and the layers, each by digest and size;
- a **docker-archive** (``docker save``, ``podman save``): ``manifest.json`` lists the config
  file, the layer tars and the repo tags; the config's ``rootfs.diff_ids`` are the sha256 of
  the uncompressed layers, and its file name is its own digest.

:func:`read` checks what it reads (manifest and config JSON against their digests) and returns
an :class:`Archive`: the config document and the layers, each a :class:`Blob` (a byte range of
a file: a blob of the layout, or a member of an uncompressed tar, read in place) with the
digests it must have. The layers themselves are checked while they are applied
(:mod:`imagestore.oci_import`). A compressed tarball (``docker save | gzip``) is first
decompressed into the caller's scratch directory.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import platform
import re
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from imagestore.image import ImageError
from imagestore.layers import CHUNK, member_path

DOCKER = "docker-archive"
OCI = "oci"
MAX_JSON = 16 << 20  # a manifest or config larger than this is not one
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
NAMED_BY_DIGEST = re.compile(r"(?:^|/)([0-9a-f]{64})(?:\.json)?$")  # docker-archive configs
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}
DECOMPRESSORS: dict[bytes, Callable[[Path], Any]] = {
    b"\x1f\x8b": gzip.open, b"\xfd7zXZ": lzma.open, b"BZh": bz2.open}


@dataclass(frozen=True)
class Blob:
    """``size`` bytes of the file ``path`` from ``offset``: what the format calls ``name``."""

    name: str
    path: Path
    offset: int
    size: int

    def open(self) -> io.BufferedReader:
        return io.BufferedReader(_Window(self), buffer_size=CHUNK)

    def read(self) -> bytes:
        with self.open() as handle:
            return handle.read()

    def read_head(self, count: int) -> bytes:
        with _Window(self) as window:
            return window.read(count) or b""

    def sha256(self) -> str:
        """The hex sha256 of the bytes (read with pread: safe beside another reader)."""
        digest = hashlib.sha256()
        with _Window(self) as window:
            buffer = bytearray(CHUNK)
            while count := window.readinto(buffer):
                digest.update(memoryview(buffer)[:count])
        return digest.hexdigest()


class _Window(io.RawIOBase):
    """A blob as a seekable raw file of its own (positional reads of the file under it)."""

    def __init__(self, blob: Blob) -> None:
        super().__init__()
        self._blob = blob
        self._fd = os.open(blob.path, os.O_RDONLY | os.O_CLOEXEC)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._blob.size - self._position)
        if count <= 0:
            return 0
        read = os.preadv(self._fd, [memoryview(buffer)[:count]],
                         self._blob.offset + self._position)
        self._position += read
        return read

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._blob.size}
        self._position = max(0, base[whence] + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


@dataclass(frozen=True)
class Layer:
    """A layer to apply, with the digests it must match."""

    blob: Blob
    digest: str | None  # sha256 of the blob as stored (OCI descriptors); None in docker-archive
    diff_id: str  # sha256 of the uncompressed tar (the config's rootfs.diff_ids)


@dataclass(frozen=True)
class Archive:
    """An image read from an archive, its JSON checked, its layers not yet."""

    format: str
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    reference: str | None  # the repository and tag it carries (``nginx:1.25``), if any


class _Files(Protocol):
    def has(self, name: str) -> bool: ...

    def blob(self, name: str) -> Blob: ...


def read(path: Path, scratch: Path) -> Archive:
    """The image at ``path`` (either format, a directory or a tarball); ImageError (one line)
    if it is neither or malformed. ``scratch`` takes a decompressed copy of a compressed
    tarball."""
    if path.is_dir():
        files: _Files = _Directory(path)
    elif path.is_file():
        files = _Tarball.open(path, scratch)
    else:
        raise ImageError(f"{path}: no such file or directory")
    try:
        if files.has("manifest.json"):
            return _docker(files)
        if files.has("index.json") and files.has("oci-layout"):
            return _oci(files)
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        raise ImageError(f"{path}: malformed image metadata ({type(error).__name__}: {error})"
                         ) from None
    raise ImageError(f"{path}: neither an OCI image layout (oci-layout, index.json) nor a "
                     "docker-archive (manifest.json)")


# ---------------------------------------------------------------- where the files are


@dataclass(frozen=True)
class _Directory:
    root: Path

    def has(self, name: str) -> bool:
        return (self.root / member_path(name)).is_file()

    def blob(self, name: str) -> Blob:
        path = self.root / member_path(name)
        if not path.is_file():
            raise ImageError(f"{self.root}: no file {name}")
        return Blob(name, path, 0, path.stat().st_size)


@dataclass(frozen=True)
class _Tarball:
    path: Path
    members: dict[str, tarfile.TarInfo]

    @classmethod
    def open(cls, path: Path, scratch: Path) -> _Tarball:
        with open(path, "rb") as handle:
            magic = handle.read(6)
        for prefix, opener in DECOMPRESSORS.items():
            if magic.startswith(prefix):
                plain = scratch / "archive.tar"
                with opener(path) as source, open(plain, "wb") as target:
                    shutil.copyfileobj(source, target, CHUNK)
                path = plain
        try:
            with tarfile.open(path, "r:") as archive:
                members = {member_path(member.name): member for member in archive}
        except (tarfile.TarError, OSError, EOFError) as error:
            raise ImageError(f"{path}: not a readable tar archive ({error})") from None
        return cls(path, members)

    def has(self, name: str) -> bool:
        return member_path(name) in self.members

    def blob(self, name: str) -> Blob:
        member = self.members.get(member_path(name))
        if member is None or not member.isreg() or member.sparse is not None:
            raise ImageError(f"{self.path}: no file {name} in it")
        return Blob(name, self.path, member.offset_data, member.size)


def _json(blob: Blob, digest: str | None = None) -> Any:
    """The JSON document in ``blob``, checked against ``digest`` (hex) when there is one."""
    if blob.size > MAX_JSON:
        raise ImageError(f"{blob.name}: {blob.size} bytes, too large for image metadata")
    data = blob.read()
    if digest is not None and hashlib.sha256(data).hexdigest() != digest:
        raise ImageError(f"{blob.name}: its sha256 differs from the digest naming it: the "
                         "archive is corrupt or was changed")
    try:
        return json.loads(data)
    except ValueError:
        raise ImageError(f"{blob.name}: not valid JSON") from None


def _hex(digest: object, what: str) -> str:
    match = DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise ImageError(f"{what}: digest {str(digest)[:80]!r} is not sha256:<64 hex digits>")
    return match.group(1)


def _diff_ids(config: dict[str, Any], layers: list[Any]) -> list[str]:
    diff_ids = [_hex(diff_id, "config rootfs.diff_ids") for diff_id in config["rootfs"]["diff_ids"]]
    if len(diff_ids) != len(layers):
        raise ImageError(f"the manifest lists {len(layers)} layers, the config's "
                         f"rootfs.diff_ids {len(diff_ids)}")
    return diff_ids


# ---------------------------------------------------------------- docker-archive


def _docker(files: _Files) -> Archive:
    entries = _json(files.blob("manifest.json"))
    if not isinstance(entries, list) or len(entries) != 1:
        count = len(entries) if isinstance(entries, list) else 0
        raise ImageError(f"manifest.json lists {count} images: cvbench imports an archive of "
                         "exactly one (save just that one)")
    entry = entries[0]
    named = NAMED_BY_DIGEST.search(entry["Config"])
    config = _json(files.blob(entry["Config"]), named.group(1) if named else None)
    diff_ids = _diff_ids(config, entry["Layers"])
    layers = tuple(Layer(files.blob(name), None, diff_id)
                   for name, diff_id in zip(entry["Layers"], diff_ids, strict=True))
    tags = entry.get("RepoTags") or [None]
    return Archive(DOCKER, config, layers, tags[0])


# ---------------------------------------------------------------- OCI image layout


def _oci(files: _Files) -> Archive:
    index = _json(files.blob("index.json"))
    top = _platform_manifest(index["manifests"])
    descriptor, document = top, _json(_described(files, top), _hex(top["digest"], "index.json"))
    while descriptor.get("mediaType") in INDEX_TYPES or "manifests" in document:
        descriptor = _platform_manifest(document["manifests"])
        document = _json(_described(files, descriptor), _hex(descriptor["digest"], "index"))
    config = _json(_described(files, document["config"]),
                   _hex(document["config"]["digest"], "manifest config"))
    diff_ids = _diff_ids(config, document["layers"])
    layers = tuple(Layer(_described(files, layer), _hex(layer["digest"], "manifest layer"), diff_id)
                   for layer, diff_id in zip(document["layers"], diff_ids, strict=True))
    annotations = top.get("annotations") or {}
    reference = annotations.get("io.containerd.image.name")
    tag = annotations.get("org.opencontainers.image.ref.name")
    if reference is None and isinstance(tag, str) and ("/" in tag or ":" in tag):
        reference = tag  # a full reference; a bare tag ("latest") names no repository
    return Archive(OCI, config, layers, reference)


def _described(files: _Files, descriptor: dict[str, Any]) -> Blob:
    """The blob a descriptor names, its size checked."""
    blob = files.blob(f"blobs/sha256/{_hex(descriptor['digest'], 'descriptor')}")
    if blob.size != descriptor["size"]:
        raise ImageError(f"{blob.name}: {blob.size} bytes, the descriptor says "
                         f"{descriptor['size']}")
    return blob


def _platform_manifest(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The one manifest of an index, or the one for this host's platform."""
    if len(manifests) == 1:
        return manifests[0]
    architecture = ARCHITECTURES.get(platform.machine(), platform.machine())
    for descriptor in manifests:
        wanted = descriptor.get("platform") or {}
        if wanted.get("os") == "linux" and wanted.get("architecture") == architecture:
            return descriptor
    raise ImageError(f"the index lists {len(manifests)} manifests, none for linux/"
                     f"{architecture}")

