"""The ``lxc`` backend: LXC containers, each a config file under ``<state dir>/lxc/<name>/``
(:mod:`harness.backends.engines.lxc.config`).

Starts go through a small helper process (:mod:`harness.backends.engines.lxc.helper`): for
each, it forks a worker that becomes the container's monitor (``start(daemonize=False)``), so
monitors are copies of a small process, not of the harness. The container's init inherits the
monitor's stdout: a pipe whose read end the backend holds until READY. LXC has no create/start
split of its own below the config: warm means the config, directories and pipe are made before
the clock.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends import launch as launches
from harness.backends.base import (
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
    NotReady,
)
from harness.backends.chores import SplitStart
from harness.backends.engines import common
from harness.backends.engines.lxc.config import (
    BRIDGE,
    CGROUP_PARENT,
    SUBNET_PREFIX,
    address,
    import_lxc,
    lxc_config,
    lxc_seccomp,
    lxcpath,
    start_argv,
)
from harness.backends.engines.lxc.helper import HelperClient
from harness.backends.engines.lxc.helper_process import NOT_RUN
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit.procs import parent_pid, signal_and_wait, wait_pidfd
from imagestore.image import Image
from runtime import cgroups, network
from runtime import spec as runtime_spec

GRACE_S = 10.0
STOPPED_TIMEOUT_S = 30.0


@dataclass
class LxcHandle:
    container: Any  # lxc.Container
    directory: Path
    ready_fd: int | None  # the read end of the workload's stdout, until READY was read
    stdout: int | None  # its write end, until handed to the monitor
    monitor: int | None = None
    init: int | None = None
    address: str | None = None  # network = "bridge": its static address on the bridge
    argv: tuple[str, ...] | None = None  # start()'s argv (None: lxc.init.cmd)


class LxcBackend(SplitStart):
    """LXC containers: config, start through the helper, READY on the console pty."""

    name = "lxc"
    # a line of the rule's own on the workload's stdout pipe; tcp: a connection to its
    # static address on the backend's bridge; exit: the pipe's end (the monitor holds it
    # too, so once liblxc stopped the container), then the monitor's exit code, which is
    # its init's (helper_process.end_as), from the helper that reaped it
    ready_kinds = (LINE, EXIT, TCP)
    # an imported image's workdir and user: lxc.init.cwd, lxc.init.uid and gid; its argv as
    # start()'s argv, whole (config.start_argv)
    launch_fields = launches.FIELDS

    def __init__(self, *, grace_s: float = GRACE_S) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.helper: HelperClient | None = None
        self.lxc: Any = None
        self.cgroup_mode = "v1"
        self.cgroups = cgroups.every_hierarchy("v1")
        self.seccomp_file: Path | None = None
        self.bridge_made = False
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
        begin = common.now()
        try:
            handle.monitor = self.helper.start(instance.name, handle.stdout, handle.argv)
        finally:
            os.close(handle.stdout)
            handle.stdout = None
        instance.phases["engine_start_s"] = common.now() - begin

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        handle: LxcHandle = instance.handle
        if handle.ready_fd is None:
            return
        try:
            common.wait_rule_fd(instance, handle.ready_fd, timeout,
                                exit_code=lambda timeout: self._exit_code(instance, timeout),
                                address=lambda: handle.address,
                                init=lambda: self._init(handle))
        except NotReady as error:
            raise NotReady(f"{error}; lxc.log: {_last_line(handle.directory / 'lxc.log')}"
                           ) from None
        finally:
            _close_pipe(handle)

    def _exit_code(self, instance: Instance, timeout: float) -> int | None:
        """The exit code of the instance's init (negative: its signal), once its monitor
        exited within ``timeout`` (None: it still runs); NotReady if liblxc did not run it."""
        monitor = instance.handle.monitor
        if self.helper is None or monitor is None:
            return None
        code = self.helper.exit_code(monitor, timeout)
        if code == NOT_RUN:
            raise NotReady(f"{instance.name}: liblxc did not run the container (its monitor "
                           f"exited {NOT_RUN})")
        return code

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

    def _remove(self, instance: Instance) -> None:
        handle: LxcHandle = instance.handle
        if handle.container.running:
            handle.container.wait("STOPPED", STOPPED_TIMEOUT_S)  # the monitor's clean-up
        if handle.container.running:
            raise BackendError(f"{instance.name}: lxc container still running")
        if handle.container.defined:
            handle.container.destroy()
        shutil.rmtree(handle.directory, ignore_errors=True)

    def memory(self, instance: Instance) -> MemorySample:
        handle: LxcHandle = instance.handle
        init = self._init(handle)
        monitor = handle.monitor or (parent_pid(init) if init else None)
        usage = self.cgroups.memory_usage(
            _memory_cgroup(init) or f"{CGROUP_PARENT}/{instance.name}")
        return common.instance_memory(init, monitor, usage, self.gauge)

    def _close(self) -> None:
        if self.helper is not None:
            self.helper.close()
            self.helper = None
        if self.bridge_made:
            with contextlib.suppress(Exception):
                network.delete_link(BRIDGE)
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
                  "and execs /init, or an imported image's argv handed to start() whole)"),
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
            "ready_exit": "the stdout pipe's end (the monitor holds it until liblxc stopped "
                          "the container), then the init's exit code: liblxc's error_num, "
                          "read by the monitor, which exits with it; asked of the helper "
                          "that reaped the monitor",
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

        try:
            with IPRoute() as ipr:
                network.ensure_bridge(ipr, BRIDGE, f"{SUBNET_PREFIX}.0.1", 16)
        except Exception as error:
            raise BackendError(f"lxc: cannot make bridge {BRIDGE}: {error}") from None
        self.bridge_made = True

    def _create(self, spec: InstanceSpec) -> Instance:
        common.check_name(spec.name)
        if self.lxc is None:
            raise BackendError("lxc: backend not prepared")
        begin = common.now()
        reference = common.reference_spec(spec)
        index = next(self._index)
        directory = lxcpath() / spec.name
        try:
            directory.mkdir()
        except FileExistsError:
            raise BackendError(f"{spec.name}: {directory} already exists") from None
        pipe: tuple[int, int] | None = None
        try:
            (directory / "upper").mkdir()
            (directory / "config").write_text(lxc_config(
                spec, reference, directory, self.seccomp_file, self.cgroup_mode, index))
            container = self.lxc.Container(spec.name, str(lxcpath()))
            pipe = os.pipe2(os.O_CLOEXEC)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        instance = Instance(spec.name, self.name, LxcHandle(
            container, directory, *pipe,
            address=address(index) if spec.network == "bridge" else None,
            argv=start_argv(spec, reference)))
        instance.phases["engine_create_s"] = common.now() - begin
        return instance

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
