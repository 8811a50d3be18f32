"""Workload images: read-only rootfs directories identified by a sha256 digest.

The digest is the sha256 of a manifest that lists, for every path in the rootfs, its type,
mode and content hash (or link target). Any changed byte, mode or path changes the digest,
which is how :func:`verify` detects a tampered image.

The default image holds Debian's busybox-static and an ``/init`` that prints ``READY`` on its
standard output (the console in a VM), then idles until it is told to stop.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hostkit import validate
from hostkit.files import atomic_write, sha256_of
from hostkit.paths import images_dir
from imagestore import scratch

BUSYBOX = Path("/bin/busybox")
DEFAULT_NAME = "default"
# What an image reference may be (a name such as ``default``, or a digest or its prefix),
# checked before it is looked up: it becomes a path under the images directory.
REFERENCE = validate.Names(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}",
                           meaning="an image name or digest (letters, digits, '.', '_', '-')")

# PID 1 of a container (and of a VM's initramfs). It traps SIGTERM so a stop is graceful,
# starts its idle child, prints READY once, then waits on the child so a signal interrupts it.
# The trap kills "$!" (set the moment the child is forked), so a SIGTERM that arrives at any
# point never leaves the child behind. In a VM it first mounts /proc and /sys so the guest is
# usable, and never exits on its own (PID 1 exiting panics the guest kernel).
INIT_SCRIPT = """#!/bin/sh
# cvbench workload: announce readiness, then idle until stopped.
if [ "$$" = 1 ] && [ ! -e /proc/self ]; then
    mount -t proc proc /proc 2>/dev/null
    mount -t sysfs sys /sys 2>/dev/null
fi
trap 'kill $! 2>/dev/null; exit 0' TERM INT
sleep 2147483647 &
echo READY
wait
"""

# An imported image's start-up fields (:mod:`imagestore.imageconfig`), beside its rootfs and
# covered by its digest: one more manifest line, CONFIG_LINE and the file's sha256.
CONFIG = "config.json"
CONFIG_LINE = ":config config -"

DIRECTORIES = ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var", "mnt")


class ImageError(Exception):
    """An image is missing, unbuildable or does not match its digest."""


@dataclass(frozen=True)
class Image:
    """A verified-on-demand rootfs directory."""

    name: str
    digest: str
    rootfs: Path

    @property
    def short_digest(self) -> str:
        return self.digest[:12]

    @property
    def init(self) -> str:
        return "/init"


def manifest(rootfs: Path, hashes: Mapping[str, str] | None = None) -> list[str]:
    """One line per path: ``path type mode content`` (sorted, reproducible).

    ``hashes`` (``/path`` → sha256) are regular files' content hashes already known, taken
    instead of reading the file again (the importer hashes each file as it writes it).
    """
    known = hashes or {}
    lines: list[str] = []
    root = len(str(rootfs))  # paths as strings: pathlib costs more than the lstat per path
    for directory, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(directory, name)
            relative = path[root:]
            info = os.lstat(path)
            mode = f"{stat.S_IMODE(info.st_mode):04o}"
            if stat.S_ISLNK(info.st_mode):
                lines.append(f"{relative} link {mode} {os.readlink(path)}")
            elif stat.S_ISDIR(info.st_mode):
                lines.append(f"{relative} dir {mode} -")
            elif stat.S_ISREG(info.st_mode):
                content = known.get(relative) or sha256_of(Path(path))
                lines.append(f"{relative} file {mode} {content}")
            else:
                lines.append(f"{relative} special {mode} {info.st_rdev}")
    return lines


def image_lines(directory: Path, hashes: Mapping[str, str] | None = None) -> list[str]:
    """The manifest of the image stored in ``directory``: its rootfs's, and its config's line
    when it has one (an imported image)."""
    lines = manifest(directory / "rootfs", hashes)
    config = directory / CONFIG
    if config.exists():
        lines.append(f"{CONFIG_LINE} {sha256_of(config)}")
    return lines


def digest_of(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _populate(rootfs: Path) -> None:
    for name in DIRECTORIES:
        (rootfs / name).mkdir(mode=0o755)
    (rootfs / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "busybox").chmod(0o755)
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in sorted(set(applets)):
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    (rootfs / "sbin").symlink_to("bin")
    (rootfs / "etc" / "hostname").write_text("cvbench\n")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    (rootfs / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    init = rootfs / "init"
    init.write_text(INIT_SCRIPT)
    init.chmod(0o755)


def build(name: str = DEFAULT_NAME) -> Image:
    """Build the default busybox image; return the existing one if it is already there."""
    if not BUSYBOX.exists():
        raise ImageError(f"{BUSYBOX} not found: install Debian's busybox-static (scripts/setup.sh)")
    root = images_dir()
    staging = scratch.make("image")
    try:
        rootfs = staging / "rootfs"
        rootfs.mkdir()
        _populate(rootfs)
        lines = manifest(rootfs)
        digest = digest_of(lines)
        (staging / "manifest.txt").write_text("\n".join(lines) + "\n")
        target = root / digest
        if not target.exists():
            os.rename(staging, target)
        write_ref(name, digest)
        return Image(name=name, digest=digest, rootfs=target / "rootfs")
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def write_ref(name: str, digest: str) -> None:
    """Point the name ``name`` at the stored image ``digest`` (replacing what it named)."""
    refs = images_dir() / "refs.json"
    data = json.loads(refs.read_text()) if refs.exists() else {}
    data[name] = digest
    atomic_write(refs, json.dumps(data, indent=2, sort_keys=True) + "\n")


def refs() -> dict[str, str]:
    path = images_dir() / "refs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def resolve(reference: str = DEFAULT_NAME) -> Image:
    """Find an image by name (``default``) or by digest (full or a unique prefix)."""
    try:
        REFERENCE.check(reference)
    except validate.Invalid as error:
        raise ImageError(f"image reference: {error}") from None
    known = refs()
    digest = known.get(reference)
    if digest is None:
        root = images_dir()
        candidates = (
            [p.name for p in root.iterdir() if p.name.startswith(reference) and len(reference) >= 8]
            if root.exists()
            else []
        )
        if len(candidates) != 1:
            raise ImageError(f"unknown image {reference!r}: run 'cvbench image build' first")
        digest = candidates[0]
    rootfs = images_dir() / digest / "rootfs"
    if not rootfs.is_dir():
        raise ImageError(f"image {reference!r} ({digest[:12]}) is missing its rootfs: rebuild it")
    return Image(name=reference, digest=digest, rootfs=rootfs)


def verify(image: Image) -> None:
    """Raise :class:`ImageError` naming the first difference if the rootfs was changed."""
    stored = (image.rootfs.parent / "manifest.txt").read_text().splitlines()
    current = image_lines(image.rootfs.parent)
    if digest_of(current) == image.digest and digest_of(stored) == image.digest:
        return
    changed = sorted(set(current).symmetric_difference(stored))
    first = changed[0].split(" ", 1)[0] if changed else "(manifest)"
    raise ImageError(
        f"image {image.short_digest} does not match its digest (first change at {first}): "
        "it was tampered with; rebuild it with 'cvbench image build'"
    )


def load_verified(reference: str = DEFAULT_NAME) -> Image:
    image = resolve(reference)
    verify(image)
    return image
