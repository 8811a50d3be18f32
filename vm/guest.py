"""Guest artifacts: the kernel, an initramfs per image digest, optional qcow2 disks.

The kernel is Debian's cloud kernel, extracted by ``scripts/setup.sh`` into
``cache_dir()/guest/vmlinuz``. The initramfs is an uncompressed ``newc`` cpio archive of the
same image rootfs the containers run (busybox + ``/init``) plus ``/dev/console``, written in
Python (no ``cpio`` binary, no ``mknod``), reproducible, and cached by the image digest.

Disks: one read-only ext4 base image per digest (``mkfs.ext4 -d rootfs``, converted to
qcow2) in the cache, and a thin qcow2 overlay per VM on top of it: the VM analogue of the
containers' overlayfs. The disk is attached as virtio-blk (host-side cost: the overlay and
QEMU's block layer); the initramfs-only guest does not mount it, as virtio-blk is a module in
Debian's cloud kernel and the initramfs holds no modules. Everything is left readable by
QEMU's ``libvirt-qemu`` user.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from hostkit.files import atomic_write_with
from hostkit.paths import cache_dir
from imagestore.image import Image

FORMAT = "v1"  # bump when the initramfs layout changes, so stale caches are not reused
BASE_DISK_MIB = 64


class GuestError(Exception):
    """A guest artifact is missing or could not be built."""



def guest_dir() -> Path:
    return cache_dir() / "guest"


def kernel_path() -> Path:
    """The guest kernel; raise :class:`GuestError` if set-up has not extracted it."""
    path = Path(os.environ.get("CVBENCH_GUEST_KERNEL", guest_dir() / "vmlinuz"))
    if not path.is_file() or path.stat().st_size == 0:
        raise GuestError(f"guest kernel {path} missing: run scripts/setup.sh")
    return path


def _public_dirs(path: Path) -> None:
    """Make ``path`` and its parents up to the cache root searchable by libvirt-qemu."""
    path.mkdir(parents=True, exist_ok=True)
    root = cache_dir()
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o005 != 0o005:
            directory.chmod(stat.S_IMODE(mode) | 0o755)
        if directory == root or directory == Path("/"):
            break


# --- cpio (newc) ---------------------------------------------------------------------------


def _cpio_entry(out: BinaryIO, ino: int, name: str, mode: int, data: bytes = b"",
                rdev: tuple[int, int] = (0, 0)) -> None:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    out.write(header + encoded)
    out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def _walk(rootfs: Path) -> Iterator[tuple[str, Path]]:
    for directory, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(directory) / name
            yield str(path.relative_to(rootfs)), path


def write_cpio(rootfs: Path, out: BinaryIO) -> None:
    """Write ``rootfs`` as a newc archive, plus ``/dev/console`` (char 5,1) and ``/dev/null``."""
    ino = 1
    names: set[str] = set()
    for relative, path in _walk(rootfs):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(info.st_mode):
            data = path.read_bytes()
        elif stat.S_ISDIR(info.st_mode):
            data = b""
        else:
            continue  # no device nodes or sockets from the image itself
        _cpio_entry(out, ino, relative, info.st_mode, data)
        names.add(relative)
        ino += 1
    if "dev" not in names:
        _cpio_entry(out, ino, "dev", stat.S_IFDIR | 0o755)
        ino += 1
    for name, rdev in (("dev/console", (5, 1)), ("dev/null", (1, 3))):
        if name not in names:
            _cpio_entry(out, ino, name, stat.S_IFCHR | 0o600, rdev=rdev)
            ino += 1
    _cpio_entry(out, 0, "TRAILER!!!", 0)


def initramfs_for(image: Image) -> Path:
    """The initramfs of ``image``, built on first use and cached by the image digest."""
    target = guest_dir() / "initramfs" / f"{image.digest}-{FORMAT}.cpio"
    if target.is_file():
        return target
    if not image.rootfs.is_dir():
        raise GuestError(f"image rootfs {image.rootfs} missing")
    _public_dirs(target.parent)  # libvirt-qemu reads it
    atomic_write_with(target, lambda handle: write_cpio(image.rootfs, handle), fsync=False)
    return target


# --- disks ---------------------------------------------------------------------------------


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise GuestError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def base_disk_for(image: Image) -> Path:
    """A read-only qcow2 holding an ext4 filesystem of the image rootfs, cached by digest."""
    target = guest_dir() / "disks" / f"{image.digest}-{FORMAT}.qcow2"
    if target.is_file():
        return target
    _public_dirs(target.parent)
    with tempfile.TemporaryDirectory(prefix="cvbench-disk-", dir=target.parent) as work:
        raw = Path(work) / "rootfs.raw"
        qcow = Path(work) / "rootfs.qcow2"
        _run(["mkfs.ext4", "-q", "-F", "-L", "cvbench", "-E", "root_owner=0:0",
              "-d", str(image.rootfs), str(raw), f"{BASE_DISK_MIB}M"])
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)])
        qcow.chmod(0o644)
        os.replace(qcow, target)
    return target


def create_overlay(base: Path, overlay: Path) -> Path:
    """A thin qcow2 overlay on ``base`` (the VM's private writable layer)."""
    overlay.parent.mkdir(parents=True, exist_ok=True)
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
          str(overlay)])
    overlay.chmod(0o644)
    return overlay
