"""The container's root filesystem, built inside its own (private) mount namespace.

Carries out a plan's :class:`runtime.plan.Rootfs`: an overlay (image as read-only lower
layer, a private upper/work directory), the spec's mounts (/proc, a minimal /dev with
/dev/shm, /dev/pts), device nodes, the switch into the new root with the host's tree
detached, masked and read-only paths, and optionally a read-only root.
Everything here runs in the launched child before exec; the host's mount table is never
touched, so the overlay disappears with the namespace. Imports stay light (fork server).

**The skeleton root.** The fork server lives in a private mount namespace of its own whose
top mount is an empty, read-only tmpfs (the *skeleton*, :func:`enter_skeleton`, done once
when the server starts); the host's tree is mounted at ``/host`` in it and the server is
chrooted back into its own root there, its working directory left at the skeleton's root.
A server started chrooted gets the same: the skeleton goes on top of the whole namespace,
not of the chroot. A container's mount
namespace is a copy of that one. Two ways to switch into the container's root, the same
isolation at the end (the host's tree detached from the container's namespace, nothing
left above the root but the empty skeleton):

- ``pivot_root`` (what crun and runc do): pivot_root(2) from the skeleton then detach it
  (with the host's tree under it). The
  kernel's pivot_root walks *every thread on the host* (``chroot_fs_refs``, under the
  tasklist lock) to move the roots of processes that sit on the old root, so its cost grows
  with the number of live containers (profile: ``cvbench profile``).
- move (the default): move the assembled root (with its submounts) onto the skeleton's root
  (move_mount(2)), detach the host's tree, and chroot into the moved root. No walk. Unlike
  runc's ``--no-pivot`` (a move onto the host's ``/`` and chroot), a chroot escape finds no
  host tree: only the empty, read-only skeleton (``tests/integration/runtime/test_rootfs.py``
  checks it).
"""

from __future__ import annotations

import errno
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
    if mount.kind == "bind" and not os.path.isdir(mount.source):
        _file_at(target)  # a file bound onto a file (an engine's /etc/hosts, resolv.conf)
    elif not os.path.isdir(target):
        os.makedirs(target, exist_ok=True)
    if mount.kind == "bind":
        sc.mount(mount.source, target, None, sc.MS_BIND | (mount.flags & sc.MS_REC))
        if mount.flags & ~(sc.MS_BIND | sc.MS_REC):
            sc.mount(None, target, None, sc.MS_REMOUNT | mount.flags | sc.MS_BIND)
        return
    sc.mount(mount.source, target, mount.kind, mount.flags, mount.data or None)
    if mount.kind == "tmpfs" and mount.destination == "/dev":
        make_devices(target)


def _file_at(target: str) -> None:
    """An empty file at ``target`` (its directories too) unless something is there."""
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


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


def make_private() -> None:
    """Make every mount of this (new) namespace private: from the skeleton's root, the
    working directory every child inherits and the top of the namespace (the caller's root
    may be a chroot's plain directory, not a mount, which mount(2) refuses)."""
    sc.mount(None, ".", None, sc.MS_REC | sc.MS_PRIVATE)


def mount_overlay(plan: Rootfs, detached: int | None = None) -> None:
    """Make every mount private, then mount the container's overlay root (we are in a new
    mount namespace): attach ``detached`` (:func:`detached_overlay`, built by the fork server)
    on the mount point, or mount the overlay here with mount(2); or, for a plan with a
    ``bind`` root (an OCI bundle's), bind that directory there (with its submounts)."""
    make_private()
    if plan.bind:
        sc.mount(plan.bind, plan.merged, None, sc.MS_BIND | sc.MS_REC)
    elif detached is not None:
        sc.attach_mount(detached, plan.merged)
    else:
        sc.mount("overlay", plan.merged, "overlay", 0, plan.overlay)


def detached_overlay(plan: Rootfs) -> int:
    """The container's overlay root as a detached mount, in no mount namespace: a descriptor
    (close-on-exec) for :func:`mount_overlay` to attach in the container's namespace
    (:func:`overlay_mount` of ``plan.overlay``)."""
    return overlay_mount(plan.overlay)


def overlay_mount(options: str) -> int:
    """An overlay with mount ``options`` as a detached mount, in no mount namespace: a
    descriptor (close-on-exec) to attach (:func:`hostkit.syscalls.attach_mount`). Also how the
    OCI backends' launcher mounts a bundle's overlay.

    What mount(2) of ``overlay`` with ``options`` would mount, through the new mount API:
    fsopen("overlay"), one FSCONFIG_SET_STRING per ``key=value`` option (a bare key is a
    FSCONFIG_SET_FLAG; the planner refuses commas inside paths), ``source`` "overlay" as
    mount(2)'s first argument gives, FSCONFIG_CMD_CREATE (the superblock: upper and work
    directories checked, ``work/work`` made), fsmount with no attributes (read-write,
    relatime, as mount(2) without flags). The kernel objects of the superblock and of the
    upper filesystem's ``work/work`` are charged to the caller's memory cgroup. Closing the
    last descriptor of a mount never attached unmounts it. Raises OSError, with the
    filesystem's own message when it logged one.
    """
    context = sc.fsopen("overlay")
    try:
        try:
            sc.fsconfig(context, sc.FSCONFIG_SET_STRING, "source", "overlay")
            for option in options.split(","):
                key, has_value, value = option.partition("=")
                if has_value:
                    sc.fsconfig(context, sc.FSCONFIG_SET_STRING, key, value)
                else:
                    sc.fsconfig(context, sc.FSCONFIG_SET_FLAG, key)
            sc.fsconfig(context, sc.FSCONFIG_CMD_CREATE)
        except OSError as error:
            raise OSError(error.errno, f"{error.strerror}{_context_log(context)}") from None
        return sc.fsmount(context)
    finally:
        os.close(context)


_new_mount_api = True  # False once the kernel said it has no fsopen(2) (ENOSYS: before 5.2)


def overlay_mount_if_supported(options: str) -> int | None:
    """:func:`overlay_mount`, or None on a kernel without the new mount API (remembered, so
    later calls do not try again): the caller then mounts with mount(2). Other errors are
    raised."""
    global _new_mount_api
    if not _new_mount_api:
        return None
    try:
        return overlay_mount(options)
    except OSError as error:
        if error.errno != errno.ENOSYS:
            raise
        _new_mount_api = False
        return None


def _context_log(context: int) -> str:
    """The messages a filesystem context logged (read(2) of its descriptor), as ``: ...``."""
    messages = []
    for _ in range(8):
        try:
            messages.append(os.read(context, 1024).decode(errors="replace"))
        except OSError:  # ENODATA: no more
            break
    return (": " + "; ".join(messages)) if messages else ""


SKELETON = "/run/cvbench-runtime/skeleton"  # mount point of the skeleton (server's ns only)
HOST = "host"  # where the host's tree is in the skeleton


def enter_skeleton(mount_point: str = SKELETON) -> None:
    """In the fork server, once: a private mount namespace whose root is an empty read-only
    tmpfs with the host's tree at ``/host``; chroot back into the server's own root (inside
    ``/host``) and leave the working directory at the skeleton's root (a container's child
    finds its copy there).

    A server started from a chrooted process (``make test`` in a debootstrap root entered
    with chroot(1)) has a root that is not its mount namespace's root: above it is the outer
    machine's tree, which pivot_root(2) of the chroot would leave in place and a chroot
    escape from a container would reach. So the skeleton is pivoted in at the top of the
    namespace, whatever the server's root: first :func:`climb_to_namespace_root` (the
    detection and the move in one: it walks ".." from the root as an escaping process
    would, and counts the steps; none when the server is not chrooted), then the usual
    pivot. The outer tree then sits under ``/host`` with the chroot's, and every container
    detaches it (:func:`prepare`). The mount point is made in the server's own root, never
    in the outer machine's.
    """
    os.makedirs(mount_point, exist_ok=True)  # in our own root (the chroot's, if any)
    sc.unshare(sc.CLONE_NEWNS)
    own_root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # in the new ns
    try:
        climb_to_namespace_root(mount_point)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)  # "/" is a mount root now
        os.fchdir(own_root)
        relative = mount_point.lstrip("/")
        flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
        sc.mount("cvbench-skeleton", relative, "tmpfs", flags, "size=4k,nr_inodes=4,mode=0555")
        os.mkdir(f"{relative}/{HOST}", 0o555)
        sc.mount(None, relative, None, sc.MS_REMOUNT | sc.MS_RDONLY | flags)
        os.chdir(relative)
        skeleton = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sc.pivot_root(".", HOST)  # once per server: the namespace's tree is now /host
            os.fchdir(own_root)
            os.chroot(".")  # the server's own root again (the host's, or the chroot's)
            os.fchdir(skeleton)  # the working directory: the skeleton's root
        finally:
            os.close(skeleton)
    finally:
        os.close(own_root)


MAX_CLIMB = 4096  # ".." steps: far beyond any real mount or directory depth


def climb_to_namespace_root(below: str) -> int:
    """Make the caller's root and working directory the top of its mount namespace (the
    mount stacked on the namespace's root), leaving any chroot; return how many ".." steps
    that took (0: the root already was the namespace's root, i.e. not chrooted).

    The way a chroot escape does it, which is what must find nothing: chroot into
    ``below`` (a directory under the root) with the working directory left at the old root,
    so ".." is no longer stopped there, then ".." until it leads nowhere ("." and ".." are
    the same directory: the namespace's root, where the kernel also steps onto the mount
    stacked there). Robust where comparing mountinfo is not: a chroot's mountinfo lists
    only what lies below it, and /proc/1/root is another namespace's root once the caller
    has unshared. Needs CAP_SYS_CHROOT; called in a fresh mount namespace only."""
    os.chdir("/")
    os.chroot(below)
    for steps in range(MAX_CLIMB):
        here, up = os.stat("."), os.stat("..")
        if (here.st_dev, here.st_ino) == (up.st_dev, up.st_ino):
            os.chroot(".")
            return steps
        os.chdir("..")
    raise RuntimeError(f"no top of the mount namespace after {MAX_CLIMB} '..' steps")


def skeleton_fd() -> int:
    """The skeleton's root in this (freshly copied) mount namespace: the working directory
    every child inherits from the fork server (an O_PATH descriptor)."""
    fd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    if os.path.samestat(os.fstat(fd), os.stat("/")):
        os.close(fd)
        raise RuntimeError("no skeleton root: the fork server did not set one up")
    return fd


def prepare(plan: Rootfs, skeleton: int) -> None:
    """Mount the rest onto the overlay root and switch into it (the plan says how;
    ``skeleton``: :func:`skeleton_fd`)."""
    root = plan.merged
    for mount in plan.mounts:
        _mount_one(root, mount)
    if plan.pivot_root:
        new_root = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # pivot from the skeleton, the namespace's top mount: the server's own root may
            # be a chroot's plain directory, which pivot_root(2) refuses, or a mount with the
            # outer machine's tree above it, which it would leave there
            os.fchdir(skeleton)
            os.chroot(".")
            os.fchdir(new_root)
            sc.pivot_root(".", ".")
            sc.umount2(".", sc.MNT_DETACH)  # the skeleton, the host's tree with it
        finally:
            os.close(new_root)
        os.chdir("/")
    else:
        new_root = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sc.move_mount(root, skeleton)  # the root and its submounts onto the skeleton
            os.fchdir(skeleton)  # the skeleton's own root, now under the moved root
            sc.umount2(HOST, sc.MNT_DETACH)  # the host's tree leaves this namespace
            os.fchdir(new_root)
            os.chroot(".")
        finally:
            os.close(new_root)
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
