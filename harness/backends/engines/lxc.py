"""The ``lxc`` backend: Debian's LXC 5 through liblxc's Python binding (Debian's python3-lxc,
linked into the virtualenv by ``scripts/setup.sh``).

Each container is a config file under ``<state dir>/lxc/<name>/`` written from the reference
spec (:func:`lxc_config`): an overlay rootfs (``overlay:<image rootfs>:<upper>``, LXC's own
overlay driver), the same namespaces (mount, pid, uts, ipc, net, cgroup), limits, kept
capabilities, no_new_privs, the seccomp profile converted to LXC's format
(:func:`lxc_seccomp`), and the reference's masked and read-only paths as mount entries.

Starts go through a small helper process (``lxc_helper.py``): for each, it forks a worker
that becomes the container's monitor (``start(daemonize=False)``), so monitors are copies of
a small process, not of the harness. The container has no console (``lxc.console.path =
none``) and its init inherits the monitor's stdout: a pipe whose read end the backend holds
until READY. LXC has no create/start split of its own below the config: warm means the config,
directories and pipe are made before the clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import (
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
    NotReady,
)
from harness.backends.engines import common
from hostkit.paths import PREFIX, state_dir
from hostkit.procs import parent_pid, signal_and_wait, wait_pidfd
from imagestore.image import Image
from runtime import cgroups
from runtime import spec as runtime_spec

BRIDGE = f"{PREFIX}lxc0"
SUBNET_PREFIX = "10.216"  # 10.216.0.0/16; ours uses 10.213.0.0/16
CGROUP_PARENT = f"{PREFIX}lxc"
GRACE_S = 10.0
HELPER_TAG = f"{PREFIX}lxc-helper"
HELPER_START_S = 30.0
REQUEST_TIMEOUT_S = 120.0
STOPPED_TIMEOUT_S = 30.0
PACKAGE_ROOT = Path(__file__).resolve().parents[3]
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
        ("lxc.init.cmd", " ".join(spec.command) if spec.command else spec.image.init),
        ("lxc.init.cwd", reference.process.cwd),
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


# -- the helper process's client -------------------------------------------------------------


class HelperClient:
    """Starts containers through the helper process (``lxc_helper.py``); thread-safe."""

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self._receiving = False
        self._dead = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r})\n"
                "from harness.backends.engines.lxc_helper import main\n"
                f"main({theirs.fileno()})\n")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", code, HELPER_TAG], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)  # holds none of the harness's pipes
        finally:
            theirs.close()
        self.sock: socket.socket | None = ours
        lxcpath().mkdir(parents=True, exist_ok=True)
        self.record = lxcpath() / f".helper-{self.process.pid}.json"
        self.record.write_text(json.dumps({"pid": self.process.pid}))
        try:
            self._await(-1, HELPER_START_S)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, name: str, stdout: int, timeout: float = REQUEST_TIMEOUT_S) -> int:
        """Have the helper fork the container's monitor with ``stdout``; its pid."""
        request_id = next(self._ids)
        with self._cond:
            if self.sock is None or self._dead:
                raise BackendError("lxc: helper process is not running")
            try:
                socket.send_fds(self.sock, [json.dumps({
                    "id": request_id, "name": name, "lxcpath": str(lxcpath())}).encode()],
                    [stdout])
            except OSError as error:
                raise BackendError(f"lxc: helper: {error.strerror}") from None
        answer = self._await(request_id, timeout)
        if not answer.get("ok"):
            raise BackendError(f"{name}: lxc start failed: {answer.get('error')}")
        return int(answer["pid"])

    def close(self) -> None:
        with self._cond:
            if self.sock is not None:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)
                self.sock.close()
                self.sock = None
            self._dead = True
            self._cond.notify_all()
        # It exits once its last monitor is gone; it is recorded for `cvbench clean` until then.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(0.5)
        if self.process.poll() is not None:
            self.record.unlink(missing_ok=True)

    def _await(self, request_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                while True:
                    if request_id in self._replies:
                        return self._replies.pop(request_id)
                    remaining = deadline - time.monotonic()
                    if self._dead or remaining <= 0:
                        raise BackendError("lxc: helper died" if self._dead
                                           else "lxc: helper: no answer in time")
                    if not self._receiving:
                        self._receiving = True
                        break
                    self._cond.wait(remaining)
            data, hung_up = b"", False
            try:
                import select

                sock = self.sock
                if sock is not None and select.select([sock], [], [], remaining)[0]:
                    data = sock.recv(1 << 16)
                    hung_up = not data
            except (OSError, ValueError):
                hung_up = True
            finally:
                with self._cond:
                    self._receiving = False
                    self._dead = self._dead or hung_up
                    if data:
                        answer = json.loads(data)
                        self._replies[answer["id"]] = answer
                    self._cond.notify_all()


# -- the backend ------------------------------------------------------------------------------


@dataclass
class LxcHandle:
    container: Any  # lxc.Container
    directory: Path
    ready_fd: int | None  # the read end of the workload's stdout, until READY was read
    stdout: int | None  # its write end, until handed to the monitor
    monitor: int | None = None
    init: int | None = None


class LxcBackend(common.SplitStart):
    """LXC containers: config, start through the helper, READY on the console pty."""

    name = "lxc"

    def __init__(self, *, grace_s: float = GRACE_S) -> None:
        self.grace_s = grace_s
        self.helper: HelperClient | None = None
        self.lxc: Any = None
        self.cgroup_mode = "v1"
        self.cgroups = cgroups.every_hierarchy("v1")
        self.seccomp_file: Path | None = None
        self.bridge_made = False
        self.live: dict[str, Instance] = {}
        self._index = itertools.count()
        self.gauge = common.EngineGauge(lambda: [self.helper.pid] if self.helper else [])

    # -- Backend protocol ---------------------------------------------------------------------

    def prepare(self, image: Image) -> None:
        self.lxc = import_lxc()
        if os.geteuid() != 0:
            raise BackendError("lxc: the backend needs root")
        try:
            self.cgroup_mode = "v2" if cgroups.detect_mode() == "v2" else "v1"
        except cgroups.CgroupError as error:
            raise BackendError(f"lxc: {error}") from None
        self.cgroups = cgroups.every_hierarchy(self.cgroup_mode)
        lxcpath().mkdir(parents=True, exist_ok=True)
        self.seccomp_file = self._write_seccomp()
        self._bridge()
        self.helper = HelperClient()

    def resume(self, instance: Instance) -> None:
        if self.helper is None:
            raise BackendError("lxc: backend not prepared")
        handle: LxcHandle = instance.handle
        if handle.stdout is None:
            raise BackendError(f"{instance.name}: already started")
        begin = _now()
        try:
            handle.monitor = self.helper.start(instance.name, handle.stdout)
        finally:
            os.close(handle.stdout)
            handle.stdout = None
        instance.phases["engine_start_s"] = _now() - begin

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        handle: LxcHandle = instance.handle
        if handle.ready_fd is None:
            return
        try:
            common.wait_ready_fd(handle.ready_fd, timeout, instance.name)
        except NotReady as error:
            raise NotReady(f"{error}; lxc.log: {_last_line(handle.directory / 'lxc.log')}"
                           ) from None
        finally:
            _close_pipe(handle)

    def stop(self, instance: Instance) -> None:
        handle: LxcHandle = instance.handle
        _close_pipe(handle)
        init = self._init(handle)
        if init is None:  # not started, or not yet: the monitor takes it down with it
            if handle.monitor:
                signal_and_wait(handle.monitor, signal.SIGKILL, self.grace_s)
            return
        try:
            pidfd = os.pidfd_open(init)
        except ProcessLookupError:
            return
        try:
            handle.container.shutdown(0)  # lxc.signal.halt (SIGTERM) to the init, no waiting
            if wait_pidfd(pidfd, self.grace_s):
                return
            handle.container.stop()  # SIGKILL through the monitor
            if wait_pidfd(pidfd, self.grace_s):
                return
            with contextlib.suppress(ProcessLookupError):  # the monitor did not answer
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            if not wait_pidfd(pidfd, self.grace_s):
                raise BackendError(f"{instance.name}: init {init} survived SIGKILL")
        finally:
            os.close(pidfd)

    def remove(self, instance: Instance) -> None:
        handle: LxcHandle = instance.handle
        try:
            if handle.container.running:
                handle.container.wait("STOPPED", STOPPED_TIMEOUT_S)  # the monitor's clean-up
            if handle.container.running:
                raise BackendError(f"{instance.name}: lxc container still running")
            if handle.container.defined:
                handle.container.destroy()
            shutil.rmtree(handle.directory, ignore_errors=True)
        finally:
            self.live.pop(instance.name, None)

    def memory(self, instance: Instance) -> MemorySample:
        handle: LxcHandle = instance.handle
        init = self._init(handle)
        monitor = handle.monitor or (parent_pid(init) if init else None)
        usage = self.cgroups.memory_usage(
            _memory_cgroup(init) or f"{CGROUP_PARENT}/{instance.name}")
        return common.instance_memory(init, monitor, usage, self.gauge)

    def cleanup(self) -> None:
        for instance in list(self.live.values()):
            with contextlib.suppress(Exception):
                self.stop(instance)
                self.remove(instance)
        if self.helper is not None:
            self.helper.close()
            self.helper = None
        if self.bridge_made:
            with contextlib.suppress(Exception):
                remove_bridge()
            self.bridge_made = False
        if self.seccomp_file is not None:
            self.seccomp_file.unlink(missing_ok=True)
        with contextlib.suppress(cgroups.CgroupError):
            # LXC's monitors leave through pivot/lxc.pivot, a directory of LXC's own making
            self.cgroups.remove_parent(f"{CGROUP_PARENT}/pivot/lxc.pivot")
            self.cgroups.remove_parent(f"{CGROUP_PARENT}/pivot")
            self.cgroups.remove_parent(CGROUP_PARENT)

    def describe(self) -> dict[str, Any]:
        method = Method(
            cold=("nothing of the container (the helper process runs)",
                  "config file, upper directory and stdout pipe; lxc start through the helper "
                  "(it forks the monitor, which makes the namespaces, cgroups, overlay, mounts "
                  "and execs /init)"),
            warm=("config file, upper directory and stdout pipe (LXC has no create/start "
                  "split below that: no namespace exists before the clock)",
                  "lxc start through the helper"),
            stop="shutdown(0): lxc.signal.halt (SIGTERM) to the init; until it exited (pidfd "
                 "on its host pid); stop() (SIGKILL) after the grace time",
            remove="wait for STOPPED (the monitor's clean-up), destroy(): config, overlay "
                   "upper directory",
        )
        facts: dict[str, Any] = {
            "engine": "lxc",
            "api": "liblxc through Debian's python3-lxc binding; starts in a helper process",
            "oci_runtime": None,
            "runtime_note": "liblxc is its own runtime: no OCI runtime underneath",
            "lxcpath": str(lxcpath()),
            "cgroup_mode": self.cgroup_mode,
            "method": method.as_dict(),
            "image": {"rootfs": "cvbench's image store rootfs as the overlay's lower layer "
                                "(no import)"},
            "network_bridge": f"{BRIDGE} ({SUBNET_PREFIX}.0.0/16, static addresses, no "
                              "default route)",
            "memory": common.memory_facts("LXC monitor", "the helper process"),
            "security": common.security_facts([
                "/dev: lxc.autodev's tmpfs also has /dev/full; ours has null, zero, random, "
                "urandom, tty",
                "/proc/sys/net stays writable (LXC's proc:mixed); /proc/bus, /proc/fs, "
                "/proc/irq are the host's, bound read-only (global files, same content)",
                "no devices cgroup rules are set (LXC's default allows all); the OCI "
                "backends' config.json denies all",
                "seccomp: the same profile converted to LXC's v2 policy text",
                "the init's environment also has container=lxc",
            ], same="namespaces, kept capabilities, masked paths, no_new_privs, "
                    "memory/pids/cpu limits"),
        }
        with contextlib.suppress(Exception):
            facts["version"] = import_lxc().version
        return facts

    # -- internals ----------------------------------------------------------------------------

    def _write_seccomp(self) -> Path:
        from runtime import seccomp

        profile_path = common.seccomp_profile_path()
        try:
            section = seccomp.to_oci(seccomp.load_profile(profile_path),
                                     list(runtime_spec.DEFAULT_CAPABILITIES))
        except seccomp.SeccompError as error:
            raise BackendError(f"lxc: {error}") from None
        text = lxc_seccomp(section)
        path = lxcpath() / f".seccomp-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        path.write_text(text)
        return path

    def _bridge(self) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            if ipr.link_lookup(ifname=BRIDGE):
                self.bridge_made = True
                return
            try:
                ipr.link("add", ifname=BRIDGE, kind="bridge")
                index = ipr.link_lookup(ifname=BRIDGE)[0]
                ipr.addr("add", index=index, address=f"{SUBNET_PREFIX}.0.1", prefixlen=16)
                ipr.link("set", index=index, state="up")
            except Exception as error:
                raise BackendError(f"lxc: cannot make bridge {BRIDGE}: {error}") from None
        self.bridge_made = True

    def _create(self, spec: InstanceSpec) -> Instance:
        common.check_name(spec.name)
        if self.lxc is None:
            raise BackendError("lxc: backend not prepared")
        begin = _now()
        reference = common.reference_spec(spec)
        directory = lxcpath() / spec.name
        try:
            directory.mkdir()
        except FileExistsError:
            raise BackendError(f"{spec.name}: {directory} already exists") from None
        pipe: tuple[int, int] | None = None
        try:
            (directory / "upper").mkdir()
            (directory / "config").write_text(lxc_config(
                spec, reference, directory, self.seccomp_file, self.cgroup_mode,
                next(self._index)))
            container = self.lxc.Container(spec.name, str(lxcpath()))
            pipe = os.pipe2(os.O_CLOEXEC)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        instance = Instance(spec.name, self.name, LxcHandle(container, directory, *pipe))
        instance.phases["engine_create_s"] = _now() - begin
        self.live[spec.name] = instance
        return instance

    def _discard(self, instance: Instance) -> None:
        with contextlib.suppress(Exception):
            self.stop(instance)
        with contextlib.suppress(Exception):
            self.remove(instance)

    def _init(self, handle: LxcHandle) -> int | None:
        if handle.init is None or not os.path.exists(f"/proc/{handle.init}"):
            pid = handle.container.init_pid
            handle.init = pid if pid and pid > 0 else None
        return handle.init


def _close_pipe(handle: LxcHandle) -> None:
    for attribute in ("ready_fd", "stdout"):
        fd = getattr(handle, attribute)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
            setattr(handle, attribute, None)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "none"
    return lines[-1] if lines else "empty"


def _now() -> float:
    from harness import metrics

    return metrics.now_ns() / 1e9


def remove_bridge() -> bool:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=BRIDGE)
        if found:
            ipr.link("del", index=found[0])
        return bool(found)


# -- cvbench clean ---------------------------------------------------------------------------


def sweep() -> list[str]:
    """Stop and destroy every container under the state dir's lxcpath (while their helper,
    if a killed run left one, still reaps their monitors), then end such helpers, remove the
    bridge and the ``cvbench-lxc`` cgroups."""
    removed: list[str] = []
    directory = lxcpath()
    if directory.is_dir():
        try:
            lxc = import_lxc()
        except BackendError as error:
            lxc = None
            removed.append(str(error))
        for entry in sorted(directory.iterdir()):
            if entry.name.startswith(".seccomp-"):
                entry.unlink(missing_ok=True)
            if not entry.is_dir() or not entry.name.startswith(PREFIX):
                continue
            if lxc is not None:
                container = lxc.Container(entry.name, str(directory))
                with contextlib.suppress(Exception):
                    if container.running:
                        container.stop()
                        container.wait("STOPPED", STOPPED_TIMEOUT_S)
                with contextlib.suppress(Exception):
                    if container.defined:
                        container.destroy()
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(f"lxc container {entry.name}")
        for record in sorted(directory.glob(".helper-*.json")):
            try:
                pid = int(json.loads(record.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                pid = 0
            if pid and _is_helper(pid):
                signal_and_wait(pid, signal.SIGKILL, 5.0)
                removed.append(f"lxc helper (pid {pid})")
            record.unlink(missing_ok=True)
    with contextlib.suppress(Exception):
        if remove_bridge():
            removed.append(f"bridge {BRIDGE}")
    return [*removed, *common.sweep_cgroups([CGROUP_PARENT])]


def _is_helper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return HELPER_TAG.encode() in handle.read()
    except OSError:
        return False


def _memory_cgroup(pid: int | None) -> str | None:
    """The memory cgroup of ``pid`` relative to the hierarchy's root, as the kernel lists it
    (LXC may place a container below the caller's own cgroup rather than at the root)."""
    if pid is None:
        return None
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") or (controllers == "" and len(lines) == 1):
            return path.lstrip("/")
    return None
