"""Applying an image's layer tars, in order, to one rootfs directory, checking every member.

Debian's Python 3.11.2 has no tarfile extraction filters, and an image layer is not a plain
archive anyway: whiteouts (``.wh.NAME``) delete what a lower layer made, an opaque marker
(``.wh..wh..opq``) hides a directory's lower contents, and a later layer replaces paths. So
:class:`Rootfs` writes every member itself, and refuses (:class:`UnsafeLayer`, one line):

- a member name that is absolute or has a ``..`` component;
- a symlink whose target leaves the root: relative targets are read from the link's
  directory, absolute ones from the image's root (as a container sees them: Alpine's
  ``/bin/ls -> /bin/busybox``, Debian's ``/etc/localtime``), and any ``..`` that climbs above
  the root is refused (``-> ../../../etc/shadow``, ``-> /../../etc``);
- a hard link whose target is absolute, climbs out with ``..``, or is not already there;
- a member whose parent path passes through a symlink (a lower layer's ``x -> /etc`` then
  ``x/passwd``): nothing is ever written through a link, so nothing lands outside the root;
- any member type tar does not make (an unknown type flag).

Device nodes are skipped, each named in :attr:`Rootfs.skipped`: the runtimes make ``/dev``
themselves, and a device node in the image store would be a door to a host device for anyone
who can read the store. Ownership, modes (set-id bits included), file mtimes and two kinds of
extended attribute (``security.capability``, ``user.*``) are kept; other extended attributes
are dropped (``trusted.overlay.*`` would steer the overlay a container's rootfs is mounted
through).

Each regular file's sha256 is taken as it is written (:attr:`Rootfs.hashes`), so the image's
manifest (:func:`imagestore.image.manifest`) does not read the files a second time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from imagestore.image import ImageError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
KEPT_XATTRS = ("security.capability", "user.")
CHUNK = 1 << 20
T = TypeVar("T")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeLayer(ImageError):
    """A layer member that would escape the root, or that cvbench cannot make."""


def member_path(name: str) -> str:
    """A member's name as a path relative to the root (``a/b``; ``""`` for the root itself);
    UnsafeLayer if it is absolute or has a ``..`` component."""
    if name.startswith("/"):
        raise UnsafeLayer(f"member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"member {name!r} has a '..' component")
    return "/".join(parts)


def link_stays_inside(path: str, target: str) -> bool:
    """Whether the symlink at ``path`` (relative to the root) pointing at ``target`` stays
    inside the root, reading an absolute target from the root, a relative one from the link's
    directory, and refusing any ``..`` above the root."""
    depth = 0 if target.startswith("/") else path.count("/")
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


@dataclass
class Rootfs:
    """A rootfs directory being built layer by layer (the directory exists and is empty).

    Paths are strings relative to the root (``a/b``), joined to it as strings: pathlib's
    parsing costs more than the system calls of a small file.
    """

    root: Path
    hashes: dict[str, str] = field(default_factory=dict)  # "/a/b" → sha256 of its content
    skipped: list[str] = field(default_factory=list)  # device nodes left out, as "/a/b"
    _dirs: set[str] = field(default_factory=lambda: {""})  # real directories made or seen
    _ids: tuple[int, int] | None = field(  # who we are when we may set owners (root), or None
        default_factory=lambda: (os.geteuid(), os.getegid()) if os.geteuid() == 0 else None)

    def apply(self, archive: tarfile.TarFile) -> None:
        """Apply one layer, member by member, in archive order (UnsafeLayer on a bad one).
        Files are made with their modes as they are (umask 0 meanwhile)."""
        added: set[str] = set()  # paths this layer made, and their parents
        umask = os.umask(0)
        try:
            for member in archive:
                path = member_path(member.name)
                parent, _, base = path.rpartition("/")
                if base.startswith(WHITEOUT):
                    self._whiteout(parent, base, added)
                    continue
                if not path:  # the root's own entry ("./")
                    continue
                if member.ischr() or member.isblk():
                    self.skipped.append(f"/{path}")
                    continue
                self._directory(parent, create=True, member=member.name)
                self._mark(path, added)
                self._make(path, member, archive)
        finally:
            os.umask(umask)

    def _at(self, path: str) -> str:
        return f"{self.root}/{path}" if path else str(self.root)

    # ---------------------------------------------------------------- whiteouts

    def _whiteout(self, parent: str, base: str, added: set[str]) -> None:
        if not self._directory(parent, create=False, member=f"{parent}/{base}"):
            return  # nothing below to hide
        if base == OPAQUE:
            self._hide_lower(parent, added)
            return
        name = base[len(WHITEOUT):]
        if name in ("", ".", ".."):
            raise UnsafeLayer(f"whiteout {parent}/{base!r} names no file")
        path = f"{parent}/{name}" if parent else name
        if path not in added:  # a whiteout hides lower layers' files, never its own layer's
            self._remove(path)

    def _hide_lower(self, directory: str, added: set[str]) -> None:
        """An opaque directory: remove everything under it that this layer did not make."""
        prefix = f"{directory}/" if directory else ""
        with os.scandir(self._at(directory)) as entries:
            children = [(prefix + entry.name, entry.is_dir(follow_symlinks=False))
                        for entry in entries]
        for path, is_dir in children:
            if path not in added:
                self._remove(path)
            elif is_dir:
                self._hide_lower(path, added)

    @staticmethod
    def _mark(path: str, added: set[str]) -> None:
        while path and path not in added:
            added.add(path)
            path = path.rpartition("/")[0]

    # ---------------------------------------------------------------- paths

    def _directory(self, path: str, *, create: bool, member: str) -> bool:
        """Whether ``path`` is a real directory under the root (made, with its parents, when
        ``create``); UnsafeLayer if it passes through a symlink or a file."""
        if path in self._dirs:
            return True
        current = ""
        for part in path.split("/"):
            current = f"{current}/{part}" if current else part
            if current in self._dirs:
                continue
            try:
                mode = os.lstat(self._at(current)).st_mode
            except FileNotFoundError:
                if not create:
                    return False
                os.mkdir(self._at(current), 0o755)
                mode = stat.S_IFDIR
            if stat.S_ISLNK(mode):
                raise UnsafeLayer(f"member {member!r} passes through the symlink /{current}")
            if not stat.S_ISDIR(mode):
                if not create:
                    return False
                raise UnsafeLayer(f"member {member!r} is under /{current}, not a directory")
            self._dirs.add(current)
        return True

    def _remove(self, path: str) -> None:
        """Remove whatever ``path`` is (a directory with its contents), and forget it."""
        target = self._at(path)
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISDIR(mode):
            shutil.rmtree(target)
            below = f"{path}/"
            self._dirs = {known for known in self._dirs
                          if known != path and not known.startswith(below)}
            for key in [key for key in self.hashes if key.startswith(f"/{below}")]:
                del self.hashes[key]
        else:
            os.unlink(target)
            self.hashes.pop(f"/{path}", None)

    def _replacing(self, path: str, make: Callable[[], T]) -> T:
        """``make()`` the new ``path``; if something is there (a lower layer's), remove it
        first. Trying first saves a system call on every path that is new."""
        try:
            return make()
        except FileExistsError:
            self._remove(path)
            return make()

    # ---------------------------------------------------------------- members

    def _make(self, path: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        target = self._at(path)
        mode = stat.S_IMODE(member.mode)
        if member.isdir():
            if path in self._dirs:
                os.chmod(target, mode)
            else:
                self._replacing(path, lambda: os.mkdir(target, mode))
                self._dirs.add(path)
            self._own(target, member, mode)
        elif member.isreg():
            self._file(path, member, archive)
        elif member.issym():
            if not link_stays_inside(path, member.linkname):
                raise UnsafeLayer(f"symlink /{path} -> {member.linkname} leaves the root")
            self._replacing(path, lambda: os.symlink(member.linkname, target))
            self._own(target, member, None)
        elif member.islnk():
            self._hardlink(path, member)
        elif member.isfifo():
            self._replacing(path, lambda: os.mkfifo(target, mode))
            self._own(target, member, mode)
        else:
            raise UnsafeLayer(f"member {member.name!r} has a type cvbench does not make "
                              f"({member.type!r})")

    def _file(self, path: str, member: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        source = archive.extractfile(member)
        assert source is not None  # a regular member always has content
        digest = hashlib.sha256()
        mode = stat.S_IMODE(member.mode)
        target = self._at(path)
        fd = self._replacing(path, lambda: os.open(target, _CREATE, mode & 0o777))
        try:
            while block := source.read(CHUNK):
                digest.update(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view):]
            self._own(fd, member, mode)
            self._xattrs(fd, member)
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        self.hashes[f"/{path}"] = digest.hexdigest()

    def _hardlink(self, path: str, member: tarfile.TarInfo) -> None:
        if member.linkname.startswith("/"):
            raise UnsafeLayer(f"hard link /{path} -> {member.linkname}: an absolute target")
        try:
            source = member_path(member.linkname)
        except UnsafeLayer:
            raise UnsafeLayer(f"hard link /{path} -> {member.linkname} leaves the root") from None
        parent = source.rpartition("/")[0]
        try:
            mode = os.lstat(self._at(source)).st_mode if source and self._directory(
                parent, create=False, member=member.name) else stat.S_IFDIR
        except FileNotFoundError:
            mode = stat.S_IFDIR
        if stat.S_ISDIR(mode):
            raise UnsafeLayer(f"hard link /{path} -> {member.linkname}: no such file before it")
        self._replacing(path, lambda: os.link(self._at(source), self._at(path),
                                              follow_symlinks=False))
        if f"/{source}" in self.hashes:
            self.hashes[f"/{path}"] = self.hashes[f"/{source}"]

    def _own(self, target: str | int, member: tarfile.TarInfo, mode: int | None) -> None:
        """The member's owner (as root, where it is not ours already), then the set-id and
        sticky bits, which a chown clears and a create under umask 0 may not set (``mode``:
        None for a symlink, which has no mode of its own)."""
        if self._ids is not None and (member.uid, member.gid) != self._ids:
            if isinstance(target, int):
                os.fchown(target, member.uid, member.gid)
            else:
                os.lchown(target, member.uid, member.gid)
        if mode is not None and mode & 0o7000:
            os.chmod(target, mode)

    @staticmethod
    def _xattrs(fd: int, member: tarfile.TarInfo) -> None:
        for key, value in member.pax_headers.items():
            name = key.removeprefix("SCHILY.xattr.")
            if name != key and name.startswith(KEPT_XATTRS):
                os.setxattr(fd, name, value.encode("utf-8", "surrogateescape"))
