"""The launch plan: everything the child needs between fork and exec, already resolved.

The parent builds it (:mod:`runtime.planner`), sends it to the fork server as JSON
(:meth:`LaunchPlan.to_dict`), and the server and the child decode it
(:meth:`LaunchPlan.from_dict`), which refuses missing and unknown keys with a
:class:`PlanError` naming them. Imports stay light: the ``python -S`` fork server loads this.
The classes are plain dataclasses, not frozen ones (a frozen one's ``__init__`` sets every field
through ``object.__setattr__``, slower on the launch path); nothing changes a plan once built.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import Any, TypeVar

_T = TypeVar("_T")


class PlanError(ValueError):
    """A launch plan that does not decode: the message names the key and what was wrong."""


@dataclass
class Mount:
    """One mount onto the container's root: ``kind`` is a filesystem type or ``bind``."""

    destination: str
    kind: str
    source: str
    flags: int  # MS_* flags
    data: str  # filesystem options, comma-separated


@dataclass
class Rlimit:
    resource: int  # resource.RLIMIT_* number
    soft: int
    hard: int


@dataclass
class CapSets:
    """Capability bit masks to keep (bit n is capability number n)."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int


@dataclass
class Rootfs:
    """The container's root: an overlay on ``merged``, mounts, masks, read-only parts."""

    merged: str  # the overlay's mount point (mounted over in the container's own mount ns)
    overlay: str  # overlay mount options (lowerdir=...,upperdir=...,workdir=...)
    mounts: tuple[Mount, ...]
    masked: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    readonly_root: bool
    # True: pivot_root(2) into ``merged`` (it walks every thread on the host: O(host tasks));
    # False: move the assembled root onto the fork server's empty skeleton root and chroot
    # (see :mod:`runtime.rootfs`): the same detached host tree, without the walk.
    pivot_root: bool
    # A directory bind-mounted (recursively) on ``merged`` as the root instead of the overlay
    # (``overlay`` is then ""): an OCI bundle's ``root.path``, which an engine has already
    # made writable for the container (:mod:`runtime.oci`), as crun and runc bind it.
    bind: str = ""

    @classmethod
    def from_dict(cls, data: object) -> Rootfs:
        rootfs = _check(cls, data, "plan.rootfs")
        return cls(
            **{
                **rootfs,
                "mounts": _items(Mount, rootfs["mounts"], "plan.rootfs.mounts"),
                "masked": _strings(rootfs["masked"], "plan.rootfs.masked"),
                "readonly_paths": _strings(rootfs["readonly_paths"], "plan.rootfs.readonly_paths"),
            }
        )


@dataclass
class LaunchPlan:
    """What the fork server and the child do for one container (see :func:`runtime.child.run`)."""

    new_pid: bool  # fork as PID 1 of a new pid namespace
    unshare: int  # CLONE_NEW* flags of the other namespaces
    loopback: bool  # bring ``lo`` up (a network namespace of its own)
    cgroup_procs: tuple[str, ...]  # files to write a pid into to join (Driver.join_files)
    rootfs: Rootfs
    hostname: str  # "" leaves it as it is
    rlimits: tuple[Rlimit, ...]
    caps: CapSets
    no_new_privs: bool
    seccomp: str  # base64 of the classic-BPF seccomp program ("" for none)
    cwd: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    # The session keyring the init joins before exec (KEYCTL_JOIN_SESSION_KEYRING): named
    # after the container, as crun names it after the container id; "" joins a new anonymous
    # one. Never the inherited keyring of the fork server and its owner.
    keyring: str
    groups: tuple[int, ...]  # supplementary gids: the spec's process.user.additionalGids
    umask: int  # the spec's process.user.umask, else 0022 (what crun and runc set then)
    uid: int  # the spec's process.user.uid and gid: set after the bounding set is dropped
    gid: int
    cgroup_dir: str = ""  # cgroup v2 directory to clone the init into ("": join cgroup_procs)
    # The host channel (the launch's second descriptor) carries what the host does or makes
    # while the child sets itself up: ``wire_network``: the host attaches a veth once the
    # child's network namespace exists; ``seccomp_follows``: ``seccomp`` is empty and the host
    # compiles the program for this container and sends it (see :func:`runtime.child.run`).
    # ``wait_for_start``: a warm container's init stops once set up, before the capabilities,
    # the seccomp filter and exec, until the host says start.
    wire_network: bool = False
    seccomp_follows: bool = False
    wait_for_start: bool = False
    # ``stdio``: the launch's descriptors are the process's stdin, stdout and stderr (then the
    # host channel), not one for stdout and stderr: an OCI runtime's ``create`` hands its own
    # on (:mod:`runtime.oci`); a failure before exec is also reported on the host channel.
    stdio: bool = False
    # With ``wait_for_start``: a FIFO on the host the init opens before it switches root and
    # reads one :data:`runtime.handshake.START` byte from, after saying PREPARED on the host
    # channel, so that the host may hang up in between (an OCI ``create`` exits, ``start``
    # writes the byte): crun's exec fifo. "": the START byte comes on the host channel.
    start_fifo: str = ""
    # ``key=value`` kernel parameters of the container's own namespaces (an OCI config's
    # ``linux.sysctl``, checked by :mod:`runtime.oci.config`), written under /proc/sys once
    # the namespaces exist, before the root switch
    sysctl: tuple[str, ...] = ()
    # A network namespace to join (setns) instead of a new one: an OCI config's
    # ``linux.namespaces`` network entry with a ``path`` (an engine made and wired it, as
    # Podman does for a bridge network); "": the init's own, new one
    netns: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (tuples become lists in ``json.dumps``).

        Shallow copies by hand (``dataclasses.asdict`` deep-copies: slow on the launch path).
        """
        rootfs = self.rootfs
        return {
            **vars(self),
            "rootfs": {**vars(rootfs), "mounts": [vars(m) for m in rootfs.mounts]},
            "rlimits": [vars(r) for r in self.rlimits],
            "caps": vars(self.caps),
        }

    @classmethod
    def from_dict(cls, data: object) -> LaunchPlan:
        """Decode :meth:`to_dict`'s output (after a JSON round trip); raise PlanError."""
        plan = _check(cls, data, "plan")
        return cls(
            **{
                **plan,
                "cgroup_procs": _strings(plan["cgroup_procs"], "plan.cgroup_procs"),
                "rootfs": Rootfs.from_dict(plan["rootfs"]),
                "rlimits": _items(Rlimit, plan["rlimits"], "plan.rlimits"),
                "caps": _leaf(CapSets, plan["caps"], "plan.caps"),
                "args": _strings(plan["args"], "plan.args"),
                "env": _strings(plan["env"], "plan.env"),
                "groups": _ints(plan["groups"], "plan.groups"),
                "sysctl": _strings(plan["sysctl"], "plan.sysctl"),
            }
        )


def _check(cls: type, data: object, where: str) -> dict[str, Any]:
    """``data`` as a dict with exactly the fields of dataclass ``cls``, else PlanError."""
    if not isinstance(data, dict):
        raise PlanError(f"{where}: expected an object, got {type(data).__name__}")
    if data.keys() != _field_names(cls):
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise PlanError(f"{where}: missing key(s) {', '.join(missing)}")
        raise PlanError(f"{where}: unknown key(s) {', '.join(sorted(set(data) - set(names)))}")
    return data


@cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def _leaf(cls: type[_T], data: object, where: str) -> _T:
    """A dataclass of plain fields from its dict."""
    return cls(**_check(cls, data, where))


def _items(cls: type[_T], data: object, where: str) -> tuple[_T, ...]:
    return tuple(_leaf(cls, item, f"{where}[{i}]") for i, item in enumerate(_tuple(data, where)))


def _tuple(data: object, where: str) -> tuple[Any, ...]:
    if not isinstance(data, (list, tuple)):
        raise PlanError(f"{where}: expected a list, got {type(data).__name__}")
    return tuple(data)


def _ints(data: object, where: str) -> tuple[int, ...]:
    items = _tuple(data, where)
    for item in items:
        if not isinstance(item, int) or isinstance(item, bool):
            raise PlanError(f"{where}: expected a list of integers")
    return items


def _strings(data: object, where: str) -> tuple[str, ...]:
    items = _tuple(data, where)
    for item in items:
        if not isinstance(item, str):
            raise PlanError(f"{where}: expected a list of strings")
    return items
