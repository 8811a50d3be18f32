"""The ``floor`` backend: the kernel's floor for a container of the shared spec.

A small static C launcher (``launcher.c``, built by set-up into the cache's ``bin/``) performs
exactly the isolation steps ours performs for the same spec, with nothing around them: no
runtime, no fork server, no parsing. Everything that is not the kernel's work is done before
the clock: the spec, the plan (:mod:`.plan`) and the seccomp program (compiled once per
distinct instance spec with :func:`runtime.seccomp.compile_bpf`; the first start of a spec
other than the default one, a warm-up round's, makes its plan).

Cold, inside the clock: the container's directory (overlay upper and work), its cgroup (the
layout every container backend has: ``cvbench-floor/<shard>/<name>``, limits and device
rules through :mod:`runtime.cgroups`, as ours makes its own), posix_spawn of the launcher,
which clones the init (CLONE_PARENT: the harness's child) and reports its pid; the init
sets itself up and execs ``/init``; until READY on its stdout pipe. Warm: all of that in
``create()``, the init stopping where ours' warm init stops (after capabilities and
no_new_privs); ``resume()`` sends one byte, the init marks its descriptors close-on-exec,
installs the filter and execs.

An imported image (:mod:`harness.backends.launch`) runs as ours runs it: the container spec
holds its argv, environment, working directory, uid and gid, the plan carries them, and the
init does chdir, setgroups and, between the bounding-set drop and capset, setresgid and
setresuid (with PR_SET_KEEPCAPS), as :func:`runtime.child.drop_capabilities`. A program named
without a slash is looked up in the image before the clock, as ours' ``execvpe`` looks it up
in the container (:func:`harness.backends.launch.executable`). Without the ``rootfs`` step
there is no image root to run it in: refused.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import os
import shutil
import signal
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import metrics
from harness.backends import launch as launches
from harness.backends import seccomp_probe
from harness.backends.base import (
    WARM,
    WARM_AFTER_CLOCK,
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
)
from harness.backends.chores import Chores
from harness.backends.containers import container_spec, default_security
from harness.backends.floor import host
from harness.backends.floor import plan as floor_plan
from harness.backends.floor.paths import (
    PARENT,
    PID_FILE,
    cgroup_path,
    containers_dir,
    launcher_path,
    plans_dir,
)
from harness.backends.oci import netns as oci_netns
from harness.backends.readiness import close_ready, reaped_exit_code, wait_then_close
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit import validate
from hostkit.procs import terminate
from hostkit.readiness import ERROR_PREFIX
from imagestore.image import Image, ImageError, verify
from runtime import caps, cgroups, devices, network, planner, seccomp
from runtime.scopes import LAYOUT

GRACE_S = 2.0
GONE_S = 10.0
PID = struct.Struct("<i")  # what the launcher writes on its pid descriptor
HIGH_FD = 10  # descriptors handed to the launcher are moved above 0-4 first
_BACKENDS = itertools.count()  # several floor backends in one run (``floor:<label>`` names,
# each with its own steps) each name their plan files apart


@dataclass
class Prepared:
    """What one distinct instance spec needs at start: its plan file and cgroup limits."""

    plan_file: Path
    limits: cgroups.Limits


@dataclass
class FloorHandle:
    directory: Path
    cgroup: str | None  # None: the cgroups step is off
    pid: int = 0
    ready_fd: int | None = None
    channel: socket.socket | None = None  # warm: the init waits on it for its start
    exited: bool = False  # reaped by wait_ready (rule exit): nothing left to stop
    netns: oci_netns.Netns | None = None  # network = "bridge": released by remove()


class FloorBackend(Chores):
    """The launcher's clone → setup → exec, step by step as ours does it."""

    name = "floor"
    # exit: the init is the harness's child (CLONE_PARENT), its status from waitpid; tcp: the
    # address of the network namespace the harness wired to cvbench0 (network = "bridge"),
    # which the init joins as crun's and runc's do
    ready_kinds = (LINE, EXIT, TCP)
    launch_fields = launches.FIELDS  # an imported image's workdir and user: the plan's

    def __init__(self, *, steps: list[str] | str | None = None,
                 grace_s: float = GRACE_S) -> None:
        super().__init__()
        try:
            self.steps = (frozenset(floor_plan.STEPS) if steps is None
                          else floor_plan.check_steps(steps))
        except validate.Invalid as error:
            raise BackendError(f"steps: {error}") from None
        self.grace_s = grace_s
        self.launcher = launcher_path()
        self._driver: cgroups.Driver | None = None
        self._image: Image | None = None
        self._prepared: dict[tuple[Any, ...], Prepared] = {}
        self._last_cap = 0
        self._kernel_filter = seccomp_probe.EveryVariant(FILTER_ADDITIONS)
        self._serial = next(_BACKENDS)

    def launch_refusal(self, launch: launches.Launch) -> str | None:
        """Without the ``rootfs`` step the workload runs from the image's directory on the
        host (``busybox sh <rootfs>/init``): an imported image's process has no root there."""
        if floor_plan.ROOTFS in self.steps:
            return None
        return ("backend 'floor' cannot run an imported image without its 'rootfs' step: "
                "the process would run on the host's root")

    # -- before any instance ------------------------------------------------------------------

    def prepare(self, image: Image) -> None:
        if os.geteuid() != 0:
            raise BackendError("the floor backend needs root (namespaces, mounts, cgroups)")
        problem = host.missing(self.steps)
        if problem is not None:
            raise BackendError(f"floor: {problem}")
        if not os.access(self.launcher, os.X_OK):
            raise BackendError(f"floor: no launcher at {self.launcher}: run scripts/setup.sh")
        try:
            verify(image)
        except ImageError as error:
            raise BackendError(str(error)) from None
        if floor_plan.CGROUPS in self.steps:
            try:
                self._driver = cgroups.driver()
                self._driver.prepare_layout(PARENT)  # the parent and its shards, as ours'
            except (cgroups.CgroupError, OSError) as error:
                raise BackendError(f"floor: {error}") from None
        self._image = image
        self._last_cap = caps.last_cap()
        plans_dir().mkdir(parents=True, exist_ok=True)
        containers_dir().mkdir(parents=True, exist_ok=True)
        self._for(InstanceSpec(name="cvbench-prepare", image=image))  # the default plan now

    def _for(self, spec: InstanceSpec) -> Prepared:
        """The plan file and limits of ``spec`` (made on its first use, reused after)."""
        key = (spec.image.digest, spec.memory_limit_mib, spec.pids_limit, spec.cpu_limit,
               spec.network, spec.command, spec.env, spec.volume, spec.launch)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = self._make(spec, len(self._prepared))
        return prepared

    def _make(self, spec: InstanceSpec, index: int) -> Prepared:
        if spec.network == "bridge" and floor_plan.NAMESPACES not in self.steps:
            raise BackendError("floor: network 'bridge' needs the 'namespaces' step (the "
                               "init joins a wired network namespace in its place)")
        oci = container_spec(spec)
        limits = planner.cgroup_limits(oci)
        try:
            launch = planner.launch_plan(oci, Path("/"), [], seccomp_follows=True)
            program = (seccomp.compile_bpf(oci.linux.seccomp.to_oci())
                       if oci.linux.seccomp is not None else b"")
            rootfs = spec.image.rootfs
            host = floor_plan.HostWorkload(
                args=(str(rootfs / "bin" / "busybox"), "sh", str(rootfs / "init"))
                if not spec.command else tuple(spec.command),
                env=(f"PATH={rootfs / 'bin'}", "HOME=/", *spec.env))
            executable = launches.executable(rootfs, launch.args[0], launch.env,
                                             launch.cwd) if launch.args else ""
            data = floor_plan.encode(launch, self.steps, program, self._last_cap, host,
                                     executable)
        except ValueError as error:
            raise BackendError(f"floor: {error}") from None
        path = plans_dir() / f"{PARENT}-{os.getpid()}-{self._serial}-{index}.plan"
        path.write_bytes(data)
        return Prepared(path, limits)

    # -- start -------------------------------------------------------------------------------

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        prepared = self._for(spec)
        directory = containers_dir() / spec.name
        cgroup = cgroup_path(spec.name) if self._driver is not None else None
        handle = FloorHandle(directory, cgroup)
        instance = Instance(spec.name, self.name, handle)
        try:
            (directory / "upper").mkdir(parents=True)
            (directory / "work").mkdir()
            join: list[str] = []
            if self._driver is not None and cgroup is not None:
                self._driver.create(cgroup, prepared.limits)
                join = self._driver.join_files(cgroup, prepared.limits, by_itself=True)
            if spec.network == "bridge":  # wired as crun's and runc's are (oci.netns)
                handle.netns = oci_netns.create(str(directory))
            self._spawn(instance, prepared, spec, join, warm=variant == WARM)
        except BaseException as error:
            self._discard(instance)
            if isinstance(error, (OSError, cgroups.CgroupError, network.NetworkError)):
                raise BackendError(f"{spec.name}: {error}") from None
            raise
        return instance

    def _spawn(self, instance: Instance, prepared: Prepared, spec: InstanceSpec,
               join: list[str], warm: bool) -> None:
        handle: FloorHandle = instance.handle
        directory = handle.directory
        overlay = planner.overlay_options(str(spec.image.rootfs), str(directory / "upper"),
                                          str(directory / "work"))
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        handle.ready_fd = ready_r
        pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
        handed = [ready_w, pid_w]  # ours to close once the launcher has its copies
        try:
            try:
                actions: list[tuple[Any, ...]] = [
                    (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]
                for fd, targets in ((ready_w, (1, 2)), (pid_w, (3,))):
                    moved = _high(fd, handed)
                    actions += [(os.POSIX_SPAWN_DUP2, moved, target) for target in targets]
                if warm:
                    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                    handle.channel = ours
                    handed.append(theirs.detach())
                    actions.append((os.POSIX_SPAWN_DUP2, _high(handed[-1], handed), 4))
                launcher = os.posix_spawn(
                    str(self.launcher),
                    [str(self.launcher), str(prepared.plan_file), str(directory), overlay,
                     spec.name, "1" if warm else "0",
                     handle.netns.path if handle.netns is not None else "-", *join],
                    {}, file_actions=actions)
            finally:
                for fd in handed:
                    os.close(fd)
            try:
                reported = os.read(pid_r, PID.size)  # one write of 4 bytes: whole, or EOF
            finally:
                os.waitpid(launcher, 0)
        finally:
            os.close(pid_r)
        if len(reported) != PID.size:
            raise BackendError(f"{spec.name}: the launcher failed: {self._failure(handle)}")
        handle.pid = PID.unpack(reported)[0]
        instance.pids = [handle.pid]
        (directory / PID_FILE).write_text(f"{handle.pid}\n")  # for the sweeper
        if handle.channel is not None and handle.channel.recv(1) != b"p":
            raise BackendError(f"{spec.name}: the init died before its start: "
                               f"{self._failure(handle)}")

    def _failure(self, handle: FloorHandle) -> str:
        """The init's or launcher's ``cvbench-error`` line, read from the READY pipe."""
        fd = handle.ready_fd
        if fd is None:
            return "no output"
        os.set_blocking(fd, False)
        try:
            text = os.read(fd, 4096)
        except BlockingIOError:
            text = b""
        line = text.split(b"\n", 1)[0]
        return (line.removeprefix(ERROR_PREFIX) or b"no output").decode(errors="replace")

    def resume(self, instance: Instance) -> None:
        """Warm, inside the clock: one byte; the init installs its filter and execs."""
        handle: FloorHandle = instance.handle
        channel, handle.channel = handle.channel, None
        if channel is None:
            return
        try:
            channel.sendall(b"s")
        finally:
            channel.close()

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        handle: FloorHandle = instance.handle
        wait_then_close(handle, timeout, instance.name, instance.ready,
                        exit_code=lambda waited: reaped_exit_code(handle, waited),
                        address=handle.netns.address if handle.netns is not None else None,
                        pid=handle.pid or None)

    # -- the end -----------------------------------------------------------------------------

    def stop(self, instance: Instance) -> None:
        handle: FloorHandle = instance.handle
        close_ready(handle)
        if handle.channel is not None:  # a warm init never started: it exits on EOF
            handle.channel.close()
            handle.channel = None
        if not handle.pid or handle.exited:  # exited: reaped, its pid may be another's now
            return
        terminate(handle.pid, self.grace_s, GONE_S)
        try:
            os.killpg(handle.pid, signal.SIGKILL)  # what it left in its session (no pid ns)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(handle.pid, 0)
        except ChildProcessError:
            pass

    def _remove(self, instance: Instance) -> None:
        handle: FloorHandle = instance.handle
        try:
            if self._driver is not None and handle.cgroup is not None:
                if self._driver.exists(handle.cgroup):
                    self._driver.kill(handle.cgroup)
                    self._driver.remove(handle.cgroup)
        except cgroups.CgroupError as error:
            raise BackendError(f"{instance.name}: {error}") from None
        finally:
            if handle.netns is not None:  # its address lease lives in the directory
                handle.netns.release()
                handle.netns = None
            shutil.rmtree(handle.directory, ignore_errors=True)

    def _close(self) -> None:
        for prepared in self._prepared.values():
            prepared.plan_file.unlink(missing_ok=True)
        self._prepared.clear()
        if self._driver is not None and not self._driver.containers(PARENT):
            try:
                self._driver.remove_parent(PARENT)
            except cgroups.CgroupError:
                pass
        oci_netns.remove_bridge_if_unused()

    def memory(self, instance: Instance) -> MemorySample:
        handle: FloorHandle = instance.handle
        sample = metrics.process_memory(instance.pids)
        if self._driver is not None and handle.cgroup is not None:
            sample = dataclasses.replace(sample, cgroup=self._driver.memory_usage(handle.cgroup))
        return sample

    def describe(self) -> dict[str, Any]:
        driver = self._driver
        steps = [step for step in floor_plan.STEPS if step in self.steps]
        return {
            "runtime": "cvbench-floor (C, static)",
            "launcher": str(self.launcher),
            "steps": steps,
            "cgroup_manager": "cgroupfs",
            "cgroup_layout": driver.layout(PARENT) if driver else None,
            "cgroup_join": "the init writes 0 into its cgroup's "
                           + (driver.self_join_file if driver else "cgroup.procs")
                           + " file(s) after mounting its overlay (no CLONE_INTO_CGROUP)",
            "cgroup_controllers": sorted(driver.controllers()) if driver else None,
            "root_switch": "pivot_root(2), old root detached" if floor_plan.ROOTFS in steps
            else "none: the image's files on the host",
            "method": METHOD.as_dict(),
            "network_bridge": "network = bridge: a namespace wired to cvbench0 by the harness "
                              "(harness.backends.oci.netns, as for crun and runc: inside the "
                              "clock when cold, in create() when warm), joined by the init "
                              "with setns in place of a new one",
            # the rules ours applies (the default spec's, then ours'), as a v1 list on any host
            "devices": devices.v1_list(devices.container_rules([devices.DENY_ALL]))
            if driver else None,
            "security": {**default_security(),
                         "kernel_filter": self._kernel_filter.of(self, self._image)},
        }


def _high(fd: int, handed: list[int]) -> int:
    """A copy of ``fd`` above the launcher's 0-4 (close-on-exec), added to ``handed``, so
    that one dup2 of the spawn never overwrites another's source."""
    handed.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD))
    return handed[-1]


_INSIDE = ("posix_spawn of the launcher, which reads the plan (one read), clones the init "
           "(CLONE_PARENT) in the spec's pid, mount, uts, ipc and net namespaces and exits; the "
           "init joins a session keyring, brings loopback up, mounts the overlay root, joins "
           "its cgroup (writes 0), unshares the cgroup namespace, mounts /proc, /dev (the "
           "device nodes ours makes) and devpts, pivot_root, masks and read-only paths, "
           "hostname, setsid, cwd, groups, umask, drops the bounding set, becomes the spec's "
           "uid and gid (an imported image's user), sets the capability sets, no_new_privs")
FILTER_ADDITIONS = ("none: libseccomp's program of the profile, compiled by the harness before "
                    "the clock (runtime.seccomp.compile_bpf) and installed by the launcher "
                    "with seccomp(2), no flags")
METHOD = Method(
    cold=("the spec, the plan file and the seccomp program (compiled with libseccomp once per "
          "distinct instance spec; the floor never compiles)",
          "the container directory (overlay upper and work), its cgroup with limits and "
          "device rules (" + LAYOUT + " under " + PARENT + "), " + _INSIDE + ", marks its "
          "descriptors from 3 close-on-exec, installs the seccomp filter and execs /init (an "
          "imported image's entrypoint and cmd); until READY"),
    warm=("create(): the directory, the cgroup and " + _INSIDE + "; the init then waits on "
          "the host channel", "resume(): one byte on the host channel; " + WARM_AFTER_CLOCK),
    stop="SIGTERM to the init through a pidfd, SIGKILL after the grace period, SIGKILL to "
         "its session; until the init exited and was reaped",
    remove="kills what is left in its cgroup, removes the cgroup and the container directory",
)
