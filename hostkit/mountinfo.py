"""``/proc/<pid>/mountinfo``, parsed: mount points unescaped (``\\040`` is a space)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    root: str  # the mounted subtree of the filesystem
    point: str  # where it is mounted
    fstype: str
    source: str
    super_options: str


def unescape(field: str) -> str:
    """A mountinfo field with its octal escapes (space, tab, newline, backslash) decoded."""
    return _ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse(text: str) -> list[Mount]:
    """Every line of a mountinfo text (optional fields end at the `` - `` separator)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, rest = left.split(), right.split()
        if len(fields) >= 5 and len(rest) >= 3:
            mounts.append(Mount(unescape(fields[3]), unescape(fields[4]), rest[0],
                                unescape(rest[1]), rest[2]))
    return mounts


def read(pid: str | int = "self") -> list[Mount]:
    return parse(Path(f"/proc/{pid}/mountinfo").read_text())


def points_under(root: Path | str, mounts: list[Mount] | None = None) -> list[str]:
    """Mount points at or below ``root``, deepest first (the order to unmount them in)."""
    prefix = str(root).rstrip("/")
    found = [m.point for m in (read() if mounts is None else mounts)
             if m.point == prefix or m.point.startswith(prefix + "/")]
    return sorted(found, key=len, reverse=True)


def cgroup2_points(mounts: list[Mount]) -> list[str]:
    """Where the cgroup2 (unified) hierarchy is mounted, in mount order: ``/sys/fs/cgroup``
    on a v2 host, ``/sys/fs/cgroup/unified`` on a hybrid one (tests and probes look it up
    rather than assume either)."""
    return [m.point for m in mounts if m.fstype == "cgroup2"]


def cgroup_v1_controllers(mounts: list[Mount]) -> dict[str, str]:
    """Each v1 controller (and named hierarchy, ``name=systemd``) mounted, and where: read from
    the super options (``rw,cpu,cpuacct``), so co-mounted controllers are all found."""
    found: dict[str, str] = {}
    for mount in mounts:
        if mount.fstype != "cgroup":
            continue
        for option in mount.super_options.split(","):
            if option.startswith("name=") or ("=" not in option
                                              and option not in _V1_MOUNT_FLAGS):
                found.setdefault(option, mount.point)
    return found


# super options of a v1 cgroup mount that are not controllers (cgroup(7), cgroup-v1.rst)
_V1_MOUNT_FLAGS = frozenset({"rw", "ro", "all", "none", "noprefix", "clone_children", "xattr",
                             "cpuset_v2_mode", ""})
