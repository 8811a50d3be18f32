"""``cvbench image import``: an OCI image layout or a docker-archive into the image store.

The archive is read (:mod:`imagestore.archives`), its config's start-up fields kept
(:class:`imagestore.imageconfig.ImageConfig`), and its layers applied in order to a fresh rootfs
(:mod:`imagestore.layers`: whiteouts, opaque directories, every member checked). Every layer is
checked against the digests the format gives: an OCI layer's blob against its descriptor, and
every layer's uncompressed tar against the config's ``rootfs.diff_ids``. The result is an
image like the ones cvbench builds: a rootfs with a manifest, identified by the sha256 of it
(:func:`imagestore.image.image_lines`, which adds the config's line), so ``cvbench image
verify`` and ``image ls`` treat it the same way.

All of it happens in a ``cvbench-import-*`` directory under the state directory; the image
appears in the store by one rename once everything checked out, then its name. On any error
(or Ctrl-C) the temporary directory is removed and the store is as it was.

Each layer's blob is hashed on a thread beside the one unpacking it (hashlib lets go of the
GIL), and each file is hashed as it is written: an import reads the archive from disk once
for each check, never the unpacked files again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import shutil
import tarfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hostkit import validate
from hostkit.paths import PREFIX, images_dir
from imagestore import archives
from imagestore import scratch as scratchdirs
from imagestore.builders import BUILDERS
from imagestore.image import (
    CONFIG,
    REFERENCE,
    Image,
    ImageError,
    digest_of,
    image_lines,
    write_ref,
)
from imagestore.imageconfig import ImageConfig
from imagestore.layers import CHUNK, Rootfs

ZSTD = b"\x28\xb5\x2f\xfd"
GZIP = b"\x1f\x8b"
HASHING_THREADS = 2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Imported:
    """An image now in the store, with what it runs and what was left out of it."""

    image: Image
    config: ImageConfig
    format: str
    skipped: tuple[str, ...]  # device nodes not made (paths in the image)


def import_image(path: Path, name: str | None = None) -> Imported:
    """Import the image archive at ``path`` as ``name`` (default: from its repo tag)."""
    if name is not None:
        _check_name(name, "--name")
    scratch = scratchdirs.make("import")
    try:
        return _import(Path(path), name, scratch)
    except OSError as error:
        raise ImageError(f"{path}: {error}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def default_name(reference: str | None) -> str:
    """A store name from a repo tag: its repository's last part, and its tag unless that is
    ``latest`` (``docker.io/library/nginx:1.25`` → ``nginx-1.25``); ImageError if none."""
    if not reference:
        raise ImageError("the archive carries no repo tag to name the image after: give it "
                         "one with --name NAME")
    repository = reference.partition("@")[0]
    last = repository.rpartition("/")[2]
    base, _, tag = last.partition(":")
    name = base if tag in ("", "latest") else f"{base}-{tag}"
    _check_name(name, f"the name made of the repo tag {reference!r}")
    return name


def _check_name(name: str, what: str) -> None:
    try:
        REFERENCE.check(name)
    except validate.Invalid as error:
        raise ImageError(f"{what}: {error}; give another with --name NAME") from None
    if name in BUILDERS:
        raise ImageError(f"{what}: {name!r} is the name of an image cvbench builds; give "
                         "another with --name NAME")


def _import(path: Path, name: str | None, scratch: Path) -> Imported:
    archive = archives.read(path, scratch)
    name = name or default_name(archive.reference)
    config = ImageConfig.from_oci(archive.config)
    staged = scratch / "image"
    rootfs = staged / "rootfs"
    rootfs.mkdir(parents=True)
    rootfs.chmod(0o755)
    tree = Rootfs(rootfs)
    _apply_all(archive.layers, tree)
    (staged / CONFIG).write_text(config.to_json())
    lines = image_lines(staged, tree.hashes)
    digest = digest_of(lines)
    (staged / "manifest.txt").write_text("\n".join(lines) + "\n")
    store = images_dir()
    store.mkdir(parents=True, exist_ok=True)
    target = store / digest
    if not target.exists():
        try:
            os.rename(staged, target)
        except OSError:
            if not target.exists():  # not another import of the same image that won
                raise
    write_ref(name, digest)
    log.info("imported %s (%s, %d layers) as %s: %s", path, archive.format,
             len(archive.layers), name, digest)
    return Imported(Image(name, digest, target / "rootfs"), config, archive.format,
                    tuple(tree.skipped))


def _apply_all(layers: tuple[archives.Layer, ...], tree: Rootfs) -> None:
    """Apply every layer in order, each checked against its digests."""
    with ThreadPoolExecutor(HASHING_THREADS, thread_name_prefix=f"{PREFIX}hash") as pool:
        hashes = [pool.submit(layer.blob.sha256) for layer in layers]
        try:
            for number, (layer, blob_hash) in enumerate(zip(layers, hashes, strict=True), 1):
                label = f"layer {number} of {len(layers)} ({layer.blob.name})"
                try:
                    uncompressed = _apply(layer.blob, tree)
                except (tarfile.TarError, ImageError, OSError, EOFError, zlib.error) as error:
                    # a changed blob explains a broken one better than its first bad member
                    plain = not layer.blob.read_head(2).startswith(GZIP)
                    _check(label, layer, blob_hash, blob_hash.result() if plain else None)
                    raise ImageError(f"{label}: {error}") from None
                _check(label, layer, blob_hash, uncompressed or blob_hash.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _apply(blob: archives.Blob, tree: Rootfs) -> str | None:
    """Apply one layer blob; the sha256 of its uncompressed tar if it was compressed (None:
    the blob's own digest is that of the tar)."""
    with blob.open() as raw:
        magic = raw.peek(len(ZSTD))[:len(ZSTD)]
        if magic.startswith(ZSTD):
            raise ImageError("a zstd-compressed layer: cvbench reads plain and gzip layers")
        if not magic.startswith(GZIP):
            with tarfile.open(fileobj=raw, mode="r:") as archive:
                tree.apply(archive)
            return None
        with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
            stream = _Hashing(unzipped)
            with tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK) as archive:
                tree.apply(archive)
            while stream.read(CHUNK):  # the end-of-archive padding tarfile does not read
                pass
        return stream.hexdigest()


class _Hashing(io.RawIOBase):
    """A reader that hashes what is read through it."""

    def __init__(self, source: gzip.GzipFile) -> None:
        super().__init__()
        self._source = source
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._source.readinto(buffer)
        self._digest.update(memoryview(buffer)[:count])
        return count

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def _check(label: str, layer: archives.Layer, blob_hash: Future[str], tar_hash: str | None
           ) -> None:
    """The blob's digest against the manifest's, the tar's (None: unknown) against the
    config's diff_id."""
    actual = blob_hash.result()
    if layer.digest is not None and actual != layer.digest:
        raise ImageError(f"{label}: its sha256 is {actual[:12]}, the manifest says "
                         f"{layer.digest[:12]}: the layer is corrupt or was changed")
    if tar_hash is not None and tar_hash != layer.diff_id:
        raise ImageError(f"{label}: the sha256 of its tar is {tar_hash[:12]}, the config's "
                         f"diff_id says {layer.diff_id[:12]}: the layer is corrupt or was "
                         "changed")
