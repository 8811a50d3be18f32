"""A container's LXC config, written from the reference spec (:func:`lxc_config`): an overlay
rootfs (``overlay:<image rootfs>:<upper>``, LXC's own overlay driver), the same namespaces
(mount, pid, uts, ipc, net, cgroup), limits, kept capabilities, no_new_privs, the seccomp
profile converted to LXC's format (:func:`lxc_seccomp`), and the reference's masked and
read-only paths as mount entries. The container has no console (``lxc.console.path = none``):
its init inherits the monitor's stdout, the backend's READY pipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.backends.base import BackendError, InstanceSpec
from harness.backends.engines import common
from hostkit.paths import PREFIX, state_dir
from runtime import spec as runtime_spec

BRIDGE = f"{PREFIX}lxc0"
SUBNET_PREFIX = "10.216"  # 10.216.0.0/16; ours uses 10.213.0.0/16
CGROUP_PARENT = f"{PREFIX}lxc"
# Masked paths that are directories get a read-only tmpfs, files /dev/null (as runc does).
MASKED_DIRECTORIES = ("/proc/acpi", "/proc/scsi", "/sys/firmware")


def lxcpath() -> Path:
    return state_dir() / "lxc"


def import_lxc() -> Any:
    try:
        import lxc
    except ImportError as error:
        raise BackendError(f"lxc: Python binding missing ({error}): {common.SETUP} "
                           "(python3-lxc, linked into the virtualenv)") from None
    return lxc


# -- the container's config (pure) -----------------------------------------------------------


def lxc_config(spec: InstanceSpec, reference: runtime_spec.Spec, directory: Path,
               seccomp_file: Path | None, cgroup_mode: str, index: int) -> str:
    """LXC's config for ``spec``: the reference spec's namespaces, limits and profile."""
    items: list[tuple[str, str]] = [
        ("lxc.uts.name", spec.name),
        ("lxc.rootfs.path", f"overlay:{spec.image.rootfs}:{directory / 'upper'}"),
        # an imported image's argv goes to start() whole (start_argv): none here
        *((("lxc.init.cmd", " ".join(spec.command) if spec.command else spec.image.init),)
          if spec.launch is None else ()),
        ("lxc.init.cwd", reference.process.cwd),
        *((("lxc.init.uid", str(reference.process.uid)),
           ("lxc.init.gid", str(reference.process.gid)))
          if reference.process.uid or reference.process.gid else ()),
        *(("lxc.environment", item) for item in reference.process.env),
        ("lxc.console.path", "none"),  # the init's stdout is the monitor's: our pipe
        ("lxc.tty.max", "0"),
        ("lxc.pty.max", "1024"),
        ("lxc.autodev", "1"),
        ("lxc.mount.auto", "proc:mixed"),  # /proc, with /proc/sys and sysrq-trigger read-only
        ("lxc.apparmor.profile", "unconfined"),
        ("lxc.cap.keep", " ".join(c.lower() for c in common.capability_names(reference))),
        ("lxc.no_new_privs", "1" if reference.process.no_new_privileges else "0"),
        ("lxc.signal.halt", "SIGTERM"),
        ("lxc.signal.stop", "SIGKILL"),
        ("lxc.cgroup.dir.container", f"{CGROUP_PARENT}/{spec.name}"),
        ("lxc.cgroup.dir.monitor", f"{CGROUP_PARENT}/{spec.name}.monitor"),
        ("lxc.cgroup.dir.monitor.pivot", f"{CGROUP_PARENT}/pivot"),
        ("lxc.log.file", str(directory / "lxc.log")),
        ("lxc.log.level", "ERROR"),
    ]
    if seccomp_file is not None:
        items.append(("lxc.seccomp.profile", str(seccomp_file)))
    for path in reference.linux.masked_paths:
        if path.startswith("/sys/") and not any(m.destination == "/sys" for m in reference.mounts):
            continue  # no /sys in the container
        target = path.lstrip("/")
        if path in MASKED_DIRECTORIES:
            items.append(("lxc.mount.entry", f"tmpfs {target} tmpfs ro,nosuid,nodev,noexec,"
                                             "size=0,optional 0 0"))
        else:
            items.append(("lxc.mount.entry", f"/dev/null {target} none bind,optional 0 0"))
    for path in reference.linux.readonly_paths:
        if path in ("/proc/sys", "/proc/sysrq-trigger"):
            continue  # proc:mixed made them read-only
        items.append(("lxc.mount.entry", f"{path} {path.lstrip('/')} none bind,ro,optional 0 0"))
    res = reference.linux.resources
    if cgroup_mode == "v2":
        if res.memory_limit is not None:
            items += [("lxc.cgroup2.memory.max", str(res.memory_limit)),
                      ("lxc.cgroup2.memory.swap.max", "0")]
        if res.pids_limit is not None:
            items.append(("lxc.cgroup2.pids.max", str(res.pids_limit)))
        if res.cpu_quota is not None:
            items.append(("lxc.cgroup2.cpu.max", f"{res.cpu_quota} {res.cpu_period or 100000}"))
    else:
        if res.memory_limit is not None:
            items += [("lxc.cgroup.memory.limit_in_bytes", str(res.memory_limit)),
                      ("lxc.cgroup.memory.memsw.limit_in_bytes", str(res.memory_limit))]
        if res.pids_limit is not None:
            items.append(("lxc.cgroup.pids.max", str(res.pids_limit)))
        if res.cpu_quota is not None:
            items += [("lxc.cgroup.cpu.cfs_period_us", str(res.cpu_period or 100000)),
                      ("lxc.cgroup.cpu.cfs_quota_us", str(res.cpu_quota))]
    if spec.network == "bridge":
        items += [("lxc.net.0.type", "veth"), ("lxc.net.0.link", BRIDGE),
                  ("lxc.net.0.flags", "up"), ("lxc.net.0.name", "eth0"),
                  ("lxc.net.0.veth.pair", f"{PREFIX}l{index:06x}"[:15]),
                  ("lxc.net.0.ipv4.address", f"{address(index)}/16")]
    elif spec.network == "host":
        items.append(("lxc.net.0.type", "none"))
    else:
        items.append(("lxc.net.0.type", "empty"))
    return "".join(f"{key} = {value}\n" for key, value in items)


def address(index: int) -> str:
    """The container's address on the bridge: 10.216.0.2 ... 10.216.255.254, then again."""
    host = 2 + index % 65532
    return f"{SUBNET_PREFIX}.{host >> 8}.{host & 0xFF}"


_OPS = {"SCMP_CMP_NE": "!=", "SCMP_CMP_LT": "<", "SCMP_CMP_LE": "<=", "SCMP_CMP_EQ": "==",
        "SCMP_CMP_GE": ">=", "SCMP_CMP_GT": ">", "SCMP_CMP_MASKED_EQ": "&="}


def _action(name: str, errno_ret: int | None) -> str:
    if name == "SCMP_ACT_ALLOW":
        return "allow"
    if name == "SCMP_ACT_ERRNO":
        return f"errno {1 if errno_ret is None else errno_ret}"
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS"):
        return "kill"
    if name == "SCMP_ACT_LOG":
        return "log"
    if name == "SCMP_ACT_TRAP":
        return "trap"
    raise BackendError(f"lxc: seccomp action {name} has no LXC equivalent")


def lxc_seccomp(section: dict[str, Any]) -> str:
    """An OCI ``linux.seccomp`` section in LXC's version-2 policy format."""
    default = _action(section["defaultAction"], section.get("defaultErrnoRet"))
    lines = ["2", f"allowlist {default}" if default != "allow" else "denylist", "[all]"]
    for rule in section.get("syscalls", []):
        action = _action(rule["action"], rule.get("errnoRet"))
        if action == default:
            continue
        args = " ".join(f"[{arg['index']},{arg.get('value', 0)},{_OPS[arg['op']]}"
                        + (f",{arg['valueTwo']}" if arg["op"] == "SCMP_CMP_MASKED_EQ" else "")
                        + "]" for arg in rule.get("args") or [])
        lines += [f"{name} {action}{' ' + args if args else ''}" for name in rule["names"]]
    return "\n".join(lines) + "\n"


def start_argv(spec: InstanceSpec, reference: runtime_spec.Spec) -> tuple[str, ...] | None:
    """The argv the container's start passes to liblxc, or None to run ``lxc.init.cmd``.

    An imported image's process or a spec's ``command`` (the reference spec's args) is handed
    to ``lxc_container.start(argv)`` as an array, which liblxc execs (execvp, after the
    ``lxc.environment`` and ``lxc.init.*`` settings) in place of ``lxc.init.cmd``: that key is
    split at spaces with no quoting, so ``sh -c 'a script'`` cannot be said in it. An image
    cvbench built, with no command, keeps ``lxc.init.cmd`` (``/init``)."""
    if spec.launch is None and not spec.command:
        return None
    return tuple(reference.process.args)
