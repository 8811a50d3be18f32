"""The floor launcher's plan file: the shared container spec's isolation steps, resolved, in a
fixed layout the C launcher (``launcher.c``) reads with one read(2) and no parsing.

The plan is made from the same :class:`runtime.plan.LaunchPlan` ours runs
(:func:`runtime.planner.launch_plan` of :func:`harness.backends.containers.container_spec`),
so the floor performs exactly ours' steps; what differs per container (its directory, its
overlay options, its name, its cgroup join files) goes on the launcher's command line.

Layout (all integers little-endian u64, so every part is 8-byte aligned):

====================  ==========================================================================
offset 0              the magic ``CVFLOOR2`` (8 bytes)
offset 8              :data:`FIELDS`, one u64 each, in that order
then                  ``rlimits`` triples (resource, soft, hard)
then                  ``mounts`` mount flags (MS_*), one per mount
then                  ``groups`` supplementary gids
then                  ``seccomp_bytes`` bytes of classic BPF (``struct sock_filter`` array)
then                  NUL-terminated strings: cwd; per mount its destination, type (``bind`` for
                      a bind mount), source and data; the masked paths; the read-only paths; the
                      executable's path; the argv; the environment
====================  ==========================================================================

A step switched off (:data:`STEPS`) is left out of the plan: no namespace flags, no
mounts, no join files, no capability or no_new_privs change, no filter. Without the
``rootfs`` step the workload runs from the image's directory on the host, as ``process``
runs it (``busybox sh <rootfs>/init``); without ``namespaces`` but with ``rootfs``, the
launcher still gets a mount namespace (an overlay root needs one).

The process is the spec's: its argv, environment, working directory, uid and gid (an imported
image's, :mod:`harness.backends.launch`, for which the container spec already holds them).
The executable's path is resolved before the clock (``execve`` takes it as it is, with no
``PATH`` search in the launcher): for a program named without a slash, the backend looks it
up in the image as ``execvpe`` would in the container (:func:`harness.backends.launch.
executable`); ``/init`` is its own path. The magic names the layout: a launcher built from
another ``launcher.c`` refuses the plan rather than misread it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hostkit import syscalls as sc
from hostkit import validate
from runtime.plan import LaunchPlan

MAGIC = b"CVFLOOR2"
FIELDS = (
    "clone", "cgroupns", "loopback", "keyring", "hostname", "rootfs", "caps", "last_cap",
    "bounding", "effective", "permitted", "inheritable", "no_new_privs", "readonly_root",
    "umask", "rlimits", "mounts", "masked", "readonly", "args", "env", "groups", "uid", "gid",
    "seccomp_bytes",
)
ID_NONE = (1 << 32) - 1  # (uid_t) -1: "leave it as it is" to setresuid, never a user
HEADER = struct.Struct("<8s" + "Q" * len(FIELDS))

NAMESPACES = "namespaces"  # clone with the spec's namespaces, cgroup ns, loopback, hostname,
# session keyring
ROOTFS = "rootfs"  # overlay root, /proc, /dev and devpts, pivot_root, masked/read-only paths
CGROUPS = "cgroups"  # the container's cgroup, made by the harness, joined by the init
CAPS = "caps"  # capability bounding and effective/permitted/inheritable sets, no_new_privs
SECCOMP = "seccomp"  # the shared profile's filter, compiled before the clock
STEPS = (NAMESPACES, ROOTFS, CGROUPS, CAPS, SECCOMP)
STEP = validate.Names(STEPS, what="floor step")
STEP_LIST = validate.Names(STEPS, what="floor step", separator=",")


def check_steps(value: object) -> frozenset[str]:
    """The ``steps`` option as a set: a list of :data:`STEPS` names, or the same names
    comma-separated in one string (a scenario file's ``[backend_options]`` values are
    scalars), ``""`` for none; :class:`validate.Invalid` in one line naming what is wrong."""
    if isinstance(value, str):
        return frozenset(STEP_LIST.split(value)) if value.strip() else frozenset()
    if not isinstance(value, Sequence):
        raise validate.Invalid(f"expected a list of steps ({', '.join(STEPS)}), got {value!r}")
    return frozenset(STEP.check(item) for item in value)


@dataclass(frozen=True)
class HostWorkload:
    """How the workload runs without the ``rootfs`` step: the image's files on the host."""

    args: tuple[str, ...]
    env: tuple[str, ...]


def encode(plan: LaunchPlan, steps: Iterable[str], program: bytes, last_cap: int,
           host: HostWorkload, executable: str = "") -> bytes:
    """The plan file of ``plan`` with ``steps`` on: ``program`` the compiled seccomp filter
    (classic BPF), ``last_cap`` the host's last capability, ``host`` the workload's command
    without a root switch, ``executable`` the path the launcher execs with the root switch
    (``""``: ``plan.args[0]``). ValueError on a program that is not whole BPF instructions,
    a string holding a NUL, or no argv."""
    on = frozenset(steps)
    if len(program) % 8:
        raise ValueError(f"a seccomp program of {len(program)} bytes is not BPF")
    namespaces, rootfs = NAMESPACES in on, ROOTFS in on
    clone = (plan.unshare & ~sc.CLONE_NEWCGROUP) | (sc.CLONE_NEWPID if plan.new_pid else 0)
    if not namespaces:
        clone = sc.CLONE_NEWNS if rootfs else 0
    root = plan.rootfs
    mounts = root.mounts if rootfs else ()
    masked = root.masked if rootfs else ()
    readonly = root.readonly_paths if rootfs else ()
    args, env = (plan.args, plan.env) if rootfs else (host.args, host.env)
    if not args:
        raise ValueError("no program to run (an empty argv)")
    path = (executable or args[0]) if rootfs else args[0]
    for what, ident in (("uid", plan.uid), ("gid", plan.gid)):
        if not 0 <= ident < ID_NONE:
            raise ValueError(f"{what} {ident} is not one (0 to {ID_NONE - 1})")
    caps = plan.caps
    filtered = program if SECCOMP in on else b""
    values = {
        "clone": clone,
        "cgroupns": int(namespaces and bool(plan.unshare & sc.CLONE_NEWCGROUP)),
        "loopback": int(namespaces and plan.loopback),
        "keyring": int(namespaces),
        "hostname": int(namespaces and bool(plan.hostname)),
        "rootfs": int(rootfs),
        "caps": int(CAPS in on),
        "last_cap": last_cap,
        "bounding": caps.bounding,
        "effective": caps.effective,
        "permitted": caps.permitted,
        "inheritable": caps.inheritable,
        "no_new_privs": int(CAPS in on and plan.no_new_privs),
        "readonly_root": int(rootfs and root.readonly_root),
        "umask": plan.umask,
        "rlimits": len(plan.rlimits),
        "mounts": len(mounts),
        "masked": len(masked),
        "readonly": len(readonly),
        "args": len(args),
        "env": len(env),
        "groups": len(plan.groups),
        "uid": plan.uid,
        "gid": plan.gid,
        "seccomp_bytes": len(filtered),
    }
    numbers = [value for limit in plan.rlimits
               for value in (limit.resource, _u64(limit.soft), _u64(limit.hard))]
    numbers += [mount.flags for mount in mounts] + list(plan.groups)
    strings = [plan.cwd]
    for mount in mounts:
        strings += [mount.destination, mount.kind, mount.source, mount.data]
    strings += [*masked, *readonly, path, *args, *env]
    for text in strings:
        if "\0" in text:
            raise ValueError(f"{text!r}: a plan string holds a NUL")
    return b"".join((
        HEADER.pack(MAGIC, *(values[name] for name in FIELDS)),
        struct.pack(f"<{len(numbers)}Q", *numbers),
        filtered,
        b"".join(text.encode() + b"\0" for text in strings),
    ))


def _u64(value: int) -> int:
    """An rlimit as the kernel takes it (RLIM_INFINITY is -1 in Python's resource module)."""
    return value & (1 << 64) - 1


def decode_header(data: bytes) -> dict[str, int]:
    """The header's fields by name (for tests and ``describe``); ValueError on a bad magic."""
    magic, *values = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a floor plan (magic {magic!r})")
    return dict(zip(FIELDS, values, strict=True))
