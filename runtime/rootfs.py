"""The container's root filesystem, built inside its own (private) mount namespace.

Carries out a plan's :class:`runtime.plan.Rootfs`: an overlay (image as read-only lower
layer, a private upper/work directory), the spec's mounts (/proc, a minimal /dev with
/dev/shm, /dev/pts), device nodes, pivot_root with the old root detached, masked and
read-only paths, and optionally a read-only root.
Everything here runs in the launched child before exec; the host's mount table is never
touched, so the overlay disappears with the namespace. Imports stay light (fork server).
"""

from __future__ import annotations

import os
import stat

from hostkit import syscalls as sc
from runtime.plan import Mount, Rootfs

# (name, major, minor): the minimal /dev of the OCI runtime-spec
DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)


def make_devices(dev: str) -> None:
    """Device nodes and the usual symlinks in a fresh tmpfs ``dev``."""
    old = os.umask(0)
    try:
        for name, major, minor in DEVICES:
            os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
    finally:
        os.umask(old)
    for name, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm")  # a directory of this tmpfs: one superblock less per container
    os.chmod(f"{dev}/shm", 0o1777)


def _mount_one(root: str, mount: Mount) -> None:
    target = root + mount.destination
    if not os.path.isdir(target):
        os.makedirs(target, exist_ok=True)
    if mount.kind == "bind":
        sc.mount(mount.source, target, None, sc.MS_BIND | (mount.flags & sc.MS_REC))
        if mount.flags & ~(sc.MS_BIND | sc.MS_REC):
            sc.mount(None, target, None, sc.MS_REMOUNT | mount.flags | sc.MS_BIND)
        return
    sc.mount(mount.source, target, mount.kind, mount.flags, mount.data or None)
    if mount.kind == "tmpfs" and mount.destination == "/dev":
        make_devices(target)


EMPTY = "/dev/.cvbench-empty"  # removed again once the masks are in place


def _empty_dir() -> str | None:
    """An empty directory on the /dev tmpfs to bind over masked directories (None: no /dev).

    Binding it costs no superblock, unlike a tmpfs per masked directory: every superblock
    adds a memcg-aware shrinker, and the kernel keeps per-memcg state for each of them.
    """
    try:
        os.mkdir(EMPTY, 0o555)
    except OSError:
        return None
    return EMPTY


def _mask(path: str, empty: str | None) -> str | None:
    """Hide ``path``: /dev/null over a file, an empty read-only directory over a directory.

    Returns the directory to bind over the next masked directories.
    """
    try:
        info = os.stat(path)
    except OSError:
        return empty
    if not stat.S_ISDIR(info.st_mode):
        sc.mount("/dev/null", path, None, sc.MS_BIND)
        return empty
    if empty is None:
        empty = _empty_dir()
    if empty is None:  # no writable /dev: a tmpfs of its own, shared by the next ones
        sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY | sc.MS_NOSUID | sc.MS_NODEV, "size=0")
        return path
    sc.mount(empty, path, None, sc.MS_BIND)
    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_NOSUID)
    return empty


def _readonly(path: str) -> None:
    if not os.path.exists(path):
        return
    sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC)


def mount_overlay(plan: Rootfs, private: bool = True) -> None:
    """Mount the container's overlay root (we are in a new mount namespace).

    ``private``: first make every mount private (skip when that was done already).
    """
    if private:
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    sc.mount("overlay", plan.merged, "overlay", 0, plan.overlay)


def prepare(plan: Rootfs) -> None:
    """Mount the rest onto the overlay root and pivot into it."""
    root = plan.merged
    for mount in plan.mounts:
        _mount_one(root, mount)
    os.chdir(root)
    sc.pivot_root(".", ".")
    sc.umount2(".", sc.MNT_DETACH)
    os.chdir("/")
    empty: str | None = None
    for path in plan.masked:
        empty = _mask(path, empty)
    if empty == EMPTY:
        os.rmdir(EMPTY)  # the binds keep the (now unlinked) directory
    for path in plan.readonly_paths:
        _readonly(path)
    if plan.readonly_root:
        sc.mount(None, "/", None, sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY)
