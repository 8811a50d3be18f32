"""What an instance runs: the one place that turns an imported image's config into a process.

An image cvbench built runs its ``/init`` (or an :attr:`InstanceSpec.command`). An imported
image (``cvbench image import``) carries an OCI config (:mod:`imagestore.imageconfig`); the
runner resolves it once per run into a :class:`Launch` kept in :attr:`InstanceSpec.launch`,
and every backend asks this module for the same four things, so that all of them run the same
process:

- :func:`argv`: Docker's rule: the image's entrypoint is kept, a spec's ``command`` replaces
  the image's cmd (``entrypoint + (command or cmd)``);
- :func:`environment`: the backend's own base (e.g. ``PATH``), then the image's env, then the
  spec's env, a later ``NAME=`` replacing an earlier one of the same name in its place;
- the working directory (:attr:`Launch.workdir`, ``/`` when the image gives none; it must be a
  directory of the image);
- the user (:attr:`Launch.uid`, :attr:`Launch.gid`): ``""`` is root; ``uid`` or ``uid:gid``
  numeric; a user or group name is looked up in the image's ``/etc/passwd`` and
  ``/etc/group`` (an unknown name is a one-line :class:`LaunchError`); a user without a group
  gets its passwd group (0 if it has no passwd line, as Docker does).

A backend that runs imported images says so with ``launch_fields``: the subset of
:data:`FIELDS` it honours (``()``: argv and env only, as root in ``/``); a backend without it
runs no imported image; one with a ``launch_refusal(launch)`` refuses what else it cannot say
(the floor without its ``rootfs`` step). :func:`refusal` gives the one line the runner
refuses the rest with before anything starts, never a silent default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from imagestore.image import Image
from imagestore.imageconfig import ImageConfig

WORKDIR = "workdir"
USER = "user"
FIELDS = (WORKDIR, USER)


class LaunchError(Exception):
    """An image's config names a directory or user its rootfs lacks; the message is one line."""


@dataclass(frozen=True)
class Launch:
    """An imported image's process, resolved against its rootfs."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workdir: str = "/"
    uid: int = 0
    gid: int = 0

    def fields(self) -> tuple[str, ...]:
        """The :data:`FIELDS` this launch sets away from the default (``/``, root)."""
        return tuple(name for name, default in ((WORKDIR, self.workdir == "/"),
                                                 (USER, self.uid == 0 and self.gid == 0))
                     if not default)


class InstanceSpec(Protocol):
    """What this module reads of :class:`harness.backends.base.InstanceSpec` (which holds a
    :class:`Launch`: named here, not imported, so the two modules do not lean on each other)."""

    @property
    def image(self) -> Image: ...
    @property
    def command(self) -> tuple[str, ...]: ...
    @property
    def env(self) -> tuple[str, ...]: ...
    @property
    def launch(self) -> Launch | None: ...


def resolve(config: ImageConfig, rootfs: Path) -> Launch:
    """The :class:`Launch` of ``config`` for the image whose root is ``rootfs``; LaunchError
    (one line) if its workdir is no directory of the image or its user is unknown."""
    workdir = str(PurePosixPath("/", config.workdir or "/"))
    if workdir != "/" and not _inside(rootfs, workdir).is_dir():
        raise LaunchError(f"image workdir {workdir!r} is no directory of the image")
    uid, gid = parse_user(config.user, rootfs)
    return Launch(entrypoint=config.entrypoint, cmd=config.cmd, env=config.env,
                  workdir=workdir, uid=uid, gid=gid)


def parse_user(user: str, rootfs: Path) -> tuple[int, int]:
    """``(uid, gid)`` of an OCI ``User`` value (``""``, ``uid``, ``uid:gid``, ``name``,
    ``name:group``) in the image at ``rootfs``; LaunchError (one line) for an unknown name."""
    if not user:
        return 0, 0
    name, colon, group = user.partition(":")
    if colon and not group:
        raise LaunchError(f"image user {user!r}: empty group")
    passwd = _table(rootfs, "passwd")
    if name.isdigit():
        uid = int(name)
        by_uid = [entry for entry in passwd.values() if entry[0] == uid]
        default_gid = by_uid[0][1] if by_uid else 0
    elif name in passwd:
        uid, default_gid = passwd[name]
    else:
        raise LaunchError(f"image user {name!r} is not in the image's /etc/passwd")
    if not colon:
        return uid, default_gid
    if group.isdigit():
        return uid, int(group)
    groups = _table(rootfs, "group")
    if group not in groups:
        raise LaunchError(f"image group {group!r} is not in the image's /etc/group")
    return uid, groups[group][0]


def argv(spec: InstanceSpec) -> tuple[str, ...]:
    """The process ``spec`` runs: its image's entrypoint and (``spec.command`` or the image's
    cmd) for an imported image; else ``spec.command`` or the image's /init."""
    if spec.launch is not None:
        return spec.launch.entrypoint + (spec.command or spec.launch.cmd)
    return spec.command or (spec.image.init,)


def environment(spec: InstanceSpec, base: tuple[str, ...] | list[str] = ()) -> list[str]:
    """``base``, then the image's env, then ``spec.env``: a later ``NAME=`` replaces an
    earlier one in its place (an item without ``=`` is kept as it is)."""
    merged: dict[str, str] = {}
    image_env = spec.launch.env if spec.launch is not None else ()
    for item in (*base, *image_env, *spec.env):
        merged[item.split("=", 1)[0] if "=" in item else item] = item
    return list(merged.values())


def executable(rootfs: Path, program: str, env: tuple[str, ...] | list[str],
               cwd: str = "/") -> str:
    """The path in the image at ``rootfs`` that ``execvpe(program, ..., env)`` runs in the
    container, found before the clock for a launcher that execs a path as it is (the floor's):
    a ``program`` with a slash is its own path; a name is looked up in ``env``'s ``PATH``
    (:data:`os.defpath` without one; a relative directory from ``cwd``), the first regular
    file with an execute bit, symlinks followed inside the image. None found: ``program``
    itself, whose exec then fails as ``execvpe``'s would (no such file)."""
    if "/" in program:
        return program
    search = os.defpath
    for item in env:
        if item.startswith("PATH="):
            search = item.removeprefix("PATH=")
    for directory in search.split(":"):
        candidate = str(PurePosixPath(cwd, directory or ".", program))
        found = _resolve(rootfs, candidate)
        if found is not None and found.is_file() and os.stat(found).st_mode & 0o111:
            return candidate
    return program


def refusal(name: str, backend: Any, launch: Launch | None) -> str | None:
    """The line refusing ``launch`` on backend ``name`` if it sets a field the backend cannot
    honour (its ``launch_fields``); else None."""
    if launch is None:
        return None
    honoured = getattr(backend, "launch_fields", None)
    if honoured is None:
        return f"backend {name!r} cannot run an imported image: it runs only /init"
    if (own := getattr(backend, "launch_refusal", None)) and (line := own(launch)):
        return str(line)
    missing = [field for field in launch.fields() if field not in honoured]
    if not missing:
        return None
    values = {WORKDIR: launch.workdir, USER: f"{launch.uid}:{launch.gid}"}
    asked = ", ".join(f"{field} {values[field]!r}" for field in missing)
    return f"backend {name!r} cannot run the imported image's {asked}: it runs as root in /"


def _inside(rootfs: Path, path: str) -> Path:
    return rootfs / path.lstrip("/")


def _resolve(rootfs: Path, path: str, hops: int = 40) -> Path | None:
    """Where the absolute ``path`` of the image at ``rootfs`` is on the host, its symlinks
    followed as the container would (an absolute target from the image's root, ``..`` stopping
    there); None after ``hops`` symlinks (the kernel's ELOOP)."""
    parts = [part for part in path.split("/") if part]
    current = PurePosixPath("/")
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = current.parent
            continue
        host = _inside(rootfs, str(current / part))
        if not host.is_symlink():
            current = current / part
            continue
        hops -= 1
        if hops < 0:
            return None
        target = os.readlink(host)
        if target.startswith("/"):
            current = PurePosixPath("/")
        parts[:0] = [piece for piece in target.split("/") if piece]
    return _inside(rootfs, str(current))


def _table(rootfs: Path, name: str) -> dict[str, tuple[int, int]]:
    """``name → (id, gid)`` from the image's ``/etc/passwd`` (uid, gid) or ``/etc/group``
    (gid, gid); empty if the image has no such file. A symlink is not followed: it could
    point out of the image."""
    path = rootfs / "etc" / name
    if path.is_symlink() or not path.is_file():
        return {}
    table: dict[str, tuple[int, int]] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(":")
        if len(parts) < 3 or line.startswith("#") or not parts[2].isdigit():
            continue
        if name == "passwd" and (len(parts) < 4 or not parts[3].isdigit()):
            continue
        ident = int(parts[2])
        table.setdefault(parts[0], (ident, int(parts[3]) if name == "passwd" else ident))
    return table

