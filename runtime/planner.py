"""From a container spec to its :class:`runtime.plan.LaunchPlan` (parent side).

Everything the child would otherwise have to work out is resolved here: namespace flags,
capability masks, rlimit numbers, mount flags, the overlay options and the seccomp program.
The program is compiled with libseccomp for every container, as crun and runc compile it for
every container (crun 1.8 writes it to each container's state directory; nothing is kept
between containers): in the plan (a warm start, before the clock, as crun's ``create``), or
by the host during the launch and sent to the child (``seccomp_follows``: a cold start, see
:meth:`runtime.container.Runtime.start`).
"""

from __future__ import annotations

import base64
import resource
from pathlib import Path

from hostkit import syscalls as sc
from runtime import caps, cgroups, devices, seccomp
from runtime.plan import CapSets, LaunchPlan, Mount, Rlimit, Rootfs
from runtime.spec import Mount as SpecMount
from runtime.spec import Seccomp, Spec

# The workload's umask when the spec gives none: crun 1.8 and runc 1.1 set 0022 then (runc's
# libcontainer/init_linux.go; crun's container.c), whatever umask the runtime had.
DEFAULT_UMASK = 0o022
RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}

# mount option -> (flags to set, flags to clear)
MOUNT_FLAGS = {
    "ro": (sc.MS_RDONLY, 0),
    "rw": (0, sc.MS_RDONLY),
    "nosuid": (sc.MS_NOSUID, 0),
    "suid": (0, sc.MS_NOSUID),
    "nodev": (sc.MS_NODEV, 0),
    "dev": (0, sc.MS_NODEV),
    "noexec": (sc.MS_NOEXEC, 0),
    "exec": (0, sc.MS_NOEXEC),
    "bind": (sc.MS_BIND, 0),
    "rbind": (sc.MS_BIND | sc.MS_REC, 0),
    "strictatime": (1 << 24, 0),
    "relatime": (1 << 21, 0),
    "noatime": (1 << 10, 0),
    "private": (0, 0),
    "rprivate": (0, 0),
}


def launch_plan(spec: Spec, directory: Path, cgroup_procs: list[str], *,
                pivot_root: bool = False, cgroup_dir: str = "",
                keyring: str | None = None, seccomp_follows: bool = False,
                wait_for_start: bool = False, bind_root: bool = False, stdio: bool = False,
                start_fifo: str = "", sysctl: dict[str, str] | None = None) -> LaunchPlan:
    """The plan for ``spec`` in container directory ``directory`` (its overlay's upper and
    work directories are inside), joining the cgroups through ``cgroup_procs`` (or born in
    ``cgroup_dir``, a cgroup v2 directory, where the kernel has clone3 with
    CLONE_INTO_CGROUP: :func:`runtime.forkserver.clone_into`); ``pivot_root``: switch root
    with pivot_root(2) rather than a move onto the skeleton root (:mod:`runtime.rootfs`);
    ``keyring``: the name of the session keyring the init joins (default: the container's
    name, ``directory``'s last part, as crun names it after the container id);
    ``seccomp_follows``: leave the seccomp program out, the host compiles and sends it during
    the launch (else it is compiled here); ``wait_for_start``: the init stops once set up
    until the host starts it (warm, see :func:`runtime.child.wait_for_start`), on the host
    channel or, given ``start_fifo``, on that FIFO; ``bind_root``: bind ``spec.root.path`` as
    the root (an OCI bundle's) instead of an overlay with it as the lower layer; ``stdio``:
    the launch hands the process's stdin, stdout and stderr (see :class:`LaunchPlan`);
    ``sysctl``: kernel parameters of the container's namespaces to set (checked by the caller).

    Raises ValueError on an unknown capability or an overlay path it cannot express, and
    SeccompError (a ValueError too) if the seccomp section cannot be compiled.
    """
    flags = 0
    netns = ""
    for ns in spec.linux.namespaces:
        if ns.type == "network" and ns.path:
            netns = ns.path  # joined, not made: no CLONE_NEWNET, its loopback as it is
        elif ns.type != "pid":
            flags |= sc.NAMESPACE_FLAGS[ns.type]
    process = spec.process
    return LaunchPlan(
        new_pid=spec.linux.has_namespace("pid"),
        unshare=flags,
        loopback=spec.linux.has_namespace("network") and not netns,
        cgroup_procs=tuple(cgroup_procs),
        cgroup_dir=cgroup_dir,
        rootfs=Rootfs(
            merged=str(directory),
            overlay="" if bind_root else overlay_options(
                spec.root.path, str(directory / "upper"), str(directory / "work")
            ),
            mounts=tuple(mount(m) for m in spec.mounts),
            masked=tuple(spec.linux.masked_paths),
            readonly_paths=tuple(spec.linux.readonly_paths),
            readonly_root=spec.root.readonly,
            pivot_root=pivot_root,
            bind=spec.root.path if bind_root else "",
        ),
        hostname=spec.hostname if spec.linux.has_namespace("uts") else "",
        rlimits=tuple(
            Rlimit(RLIMITS[r.type], r.soft, r.hard) for r in process.rlimits if r.type in RLIMITS
        ),
        caps=cap_sets(spec),
        no_new_privs=process.no_new_privileges,
        seccomp="" if seccomp_follows else seccomp_program(spec.linux.seccomp),
        cwd=process.cwd,
        args=tuple(process.args),
        env=tuple(process.env),
        keyring=directory.name if keyring is None else keyring,
        groups=tuple(process.additional_gids),
        umask=DEFAULT_UMASK if process.umask is None else process.umask,
        uid=process.uid,
        gid=process.gid,
        wire_network=spec.network == "bridge",
        seccomp_follows=seccomp_follows and spec.linux.seccomp is not None,
        wait_for_start=wait_for_start,
        stdio=stdio,
        start_fifo=start_fifo,
        sysctl=tuple(f"{key}={value}" for key, value in (sysctl or {}).items()),
        netns=netns,
    )


def seccomp_program(section: Seccomp | None) -> str:
    """The base64 BPF program of ``section`` ("" for None), compiled now (every time: see the
    module's docstring).

    Raises :class:`runtime.seccomp.SeccompError` if it cannot be compiled.
    """
    if section is None:
        return ""
    return base64.b64encode(seccomp.compile_bpf(section.to_oci())).decode()


def cap_sets(spec: Spec) -> CapSets:
    """The spec's capability sets as masks; ValueError on an unknown capability name."""
    wanted = spec.process.capabilities
    return CapSets(
        bounding=caps.mask(wanted.bounding),
        effective=caps.mask(wanted.effective),
        permitted=caps.mask(wanted.permitted),
        inheritable=caps.mask(wanted.inheritable),
    )


def parse_options(options: list[str]) -> tuple[int, str]:
    """OCI mount options -> (mount flags, filesystem data string)."""
    flags = 0
    data = []
    for option in options:
        if option in MOUNT_FLAGS:
            on, off = MOUNT_FLAGS[option]
            flags = (flags | on) & ~off
        else:
            data.append(option)
    return flags, ",".join(data)


def mount(spec_mount: SpecMount) -> Mount:
    """A spec mount as the child performs it (``bind`` for every kind of bind mount)."""
    flags, data = parse_options(spec_mount.options)
    kind = "bind" if spec_mount.type == "bind" or flags & sc.MS_BIND else spec_mount.type
    return Mount(spec_mount.destination, kind, spec_mount.source, flags, data)


def overlay_options(lower: str, upper: str, work: str) -> str:
    for path in (lower, upper, work):
        if "," in path or ":" in path:
            raise ValueError(f"overlay path {path!r} must not contain ',' or ':'")
    return f"lowerdir={lower},upperdir={upper},workdir={work}"


def cgroup_limits(spec: Spec) -> cgroups.Limits:
    """The cgroup limits of ``spec``'s resources, as every launcher of the runtime's plans
    applies them (ours, cvbench-runtime, the floor): memory, pids, CPU quota (period 100 ms
    unless given) and the container's device rules."""
    res = spec.linux.resources
    return cgroups.Limits(
        memory_bytes=res.memory_limit,
        pids=res.pids_limit,
        cpu_quota_us=res.cpu_quota,
        cpu_period_us=res.cpu_period or 100000,
        devices=devices.container_rules(res.devices),
    )
