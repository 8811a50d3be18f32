"""The OCI peer backend: our image as an OCI bundle, run by an OCI runtime binary.

Every runtime command goes through the backend's one launcher process (``launcher.py``);
``crun.py`` and ``runc.py`` only name the binary, and a runtime a user names (a scenario's
``[runtimes]``, ``cvbench run --runtime NAME=PATH``: :mod:`.runtimes`) is this class given its
name and path by the registry. Cold, :meth:`OciBackend.start` is
``<runtime> run -d``; warm, :meth:`OciBackend.create` is ``<runtime> create`` (the container's
init waits on the runtime's exec fifo) and :meth:`OciBackend.resume` is ``<runtime> start``.
Every method is safe from several threads at once.

The harness's own share of each timed step goes into ``Instance.harness`` apart from the
runtime's: ``harness_s`` (the start or resume call less the runtime's command: config.json,
the bundle, the overlay's mount and unmount, the launcher's round trip), ``stop_harness_s``
(the stop less the ``kill`` commands and the waits for the init's exit) and
``cleanup_harness_s`` (the removal less the ``delete`` command: the bundle's files, the round
trip). The runtime's command is timed by the launcher, from ``posix_spawn`` until reaped.

A runtime that checkpoints through CRIU (``checkpoints``: runc) also has the ``restore``
variant where ``criu check`` passes on the host (:mod:`.checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from harness.backends import launch as launches
from harness.backends import restorable, seccomp_probe
from harness.backends.base import (
    COLD,
    HARNESS_CLEANUP,
    HARNESS_START,
    HARNESS_STOP,
    RESTORE,
    WARM,
    WARM_AFTER_CLOCK,
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
)
from harness.backends.chores import Chores
from harness.backends.oci import cgroup, checkpoint, probe, runtimes
from harness.backends.oci import netns as oci_netns
from harness.backends.oci.bundle import Bundle, build_config, bundles_dir, runtime_root
from harness.backends.oci.launcher import Launcher, Overlay, Result, harness_share
from harness.backends.oci.profile import security
from harness.backends.readiness import close_ready, wait_then_close
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit.paths import PREFIX
from hostkit.procs import wait_pidfd
from imagestore import imageconfig
from imagestore.image import Image
from runtime.cgroups import CgroupError
from runtime.network import NetworkError

GRACE_S = 10.0  # SIGTERM → SIGKILL
PROBE_READY_S = 20.0
CHECKPOINT_READY_S = 60.0  # the container to checkpoint, before any clock


@dataclasses.dataclass
class OciHandle:
    bundle: Bundle
    pid: int  # the container's init, on the host
    ready_fd: int | None  # closed once READY was read
    started: bool = True  # False while a created container waits for ``start``
    netns: oci_netns.Netns | None = None  # network = "bridge": released by remove()
    stdin_fd: int | None = None  # a restored container's stdin (the ping's pipe), to close
    exited: bool = False  # its exit code taken (rule exit): reaped, its pid may be another's


class OciBackend(Chores):
    """A peer backend driving an OCI runtime binary (``crun``, ``runc``, or one a user named)
    through bundles."""

    name = "oci"
    ready_kinds = (LINE, EXIT, TCP)
    launch_fields = launches.FIELDS  # an imported image's workdir and user: the spec's
    runtime = "crun"  # the binary's name; subclasses set both
    # what the runtime adds to libseccomp's program of the profile (describe's kernel_filter)
    filter_additions = "not recorded"
    checkpoints = False  # restores through `<runtime> checkpoint` and `restore` (CRIU)

    def __init__(self, name: str | None = None, path: str | None = None, /, *,
                 binary: str | None = None, grace_s: float = GRACE_S) -> None:
        """crun and runc (subclasses) find their binary on PATH unless given ``binary``; a
        user-named runtime is this class given ``name`` and ``path`` (its registry entry's
        ``args``, checked by :func:`.runtimes.declare`): its backend name, state directory
        and the binary it runs."""
        if name is not None:
            if path is None or binary is not None:
                raise BackendError(f"runtime {name}: its binary is the path it was declared "
                                   "with, not a backend option")
            self.name = self.runtime = name
            binary = path
            self.filter_additions = "not recorded (a runtime named by the user)"
        super().__init__()
        self.binary = binary or shutil.which(self.runtime) or self.runtime
        self.flavor = runtimes.flavor(self.binary)  # crun's global options, or runc's
        self.grace_s = grace_s
        self.mode = cgroup.host_mode()
        self.cgroups = cgroup.driver(self.mode)
        self.image: Image | None = None
        self._observed: dict[str, Any] | None = None
        self._kernel_filter: dict[str, Any] | None = None  # of the probe container, cold
        self._launcher: Launcher | None = None
        self._lock = threading.Lock()
        # restore where the runtime checkpoints and `criu check` passes here (checked once)
        self.variants = ((COLD, WARM, RESTORE) if self.checkpoints
                         and restorable.criu_problem() is None else (COLD, WARM))
        self._checkpoints: dict[str, checkpoint.Checkpoint] = {}  # by container shape
        self._checkpoint_lock = threading.Lock()

    @property
    def root(self) -> Path:
        return runtime_root(self.runtime)

    def launcher(self) -> Launcher:
        """The backend's launcher, started on first use (and again if it died)."""
        with self._lock:
            if self._launcher is None or not self._launcher.alive():
                self._launcher = Launcher(cgroup.needs_private_view(self.flavor, self.mode),
                                          label=self.runtime)
            return self._launcher

    # Backend protocol

    def prepare(self, image: Image) -> None:
        if shutil.which(self.binary) is None:
            raise BackendError(f"{self.runtime} not found on PATH")
        imported = imageconfig.config_path(image).exists()  # runs its own entrypoint
        if not imported and not (image.rootfs / image.init.lstrip("/")).exists():
            raise BackendError(f"image {image.name} has no {image.init}")
        self.image = image
        self.root.mkdir(parents=True, exist_ok=True)
        runtimes.record(self.runtime, self.binary)  # the sweep deletes with the same binary
        try:  # the parent and its shards with their settings, as ours' are, on every host kind
            self.cgroups.prepare_layout(cgroup.PARENT)
        except CgroupError as error:
            raise BackendError(f"{self.runtime}: {error}") from None
        bundles_dir().mkdir(parents=True, exist_ok=True)
        self.launcher()  # start it now, not during the first measured start

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        """Cold: bundle, config.json, then ``<runtime> run -d`` (overlay mounted on the way);
        the instance's ``harness`` tells the harness's share (``harness_s``). Warm, before the
        clock: bundle, config.json, then ``<runtime> create``: the init exists, its stdout the
        READY pipe, and waits on the runtime's exec fifo. Restore, before the clock: the
        checkpoint of this container shape made (once), nothing of the instance
        (:meth:`_stage`)."""
        if variant == RESTORE:
            return self._stage(spec)
        if variant == COLD:
            return self._run(spec, "run", "-d")
        instance = self._run(spec, "create")
        instance.harness.clear()  # before the clock: resume() tells its own share
        instance.handle.started = False
        return instance

    def resume(self, instance: Instance) -> None:
        """Warm, inside the clock: ``<runtime> start <id>`` lets the init exec the workload;
        ``harness_s`` is the launcher's round trip less the command. Restore, inside the
        clock: :meth:`_restore`."""
        if isinstance(instance.handle, checkpoint.Staged):
            self._restore(instance)
            return
        instance.handle.started = True  # a failed start is stopped like a started one
        result = self.launcher().run(self._argv("start", instance.name))
        instance.harness[HARNESS_START] = result.timing.harness_s
        if result.returncode != 0:
            raise BackendError(f"{self.runtime} start {instance.name} failed: "
                               f"{result.stderr.strip() or instance.handle.bundle.last_log_line()}")

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        """The rule's line on the READY pipe; (``exit``) the pipe's end of file, then the
        init's exit code from the launcher, which reaps it (the container's init is
        reparented to it, a subreaper, once the runtime's command exited); or (``tcp``) a
        connection to the container's bridge address."""
        handle: OciHandle = instance.handle
        wait_then_close(handle, timeout, instance.name, instance.ready,
                        exit_code=lambda waited: self._exit_code(handle, waited),
                        address=handle.netns.address if handle.netns is not None else None,
                        pid=handle.pid)

    def _exit_code(self, handle: OciHandle, timeout: float) -> int | None:
        """The container init's exit code as the launcher reaped it (``handle.exited`` set),
        once it exited within ``timeout``; else None."""
        code = self.launcher().exit_code(handle.pid, timeout)
        if code is not None:
            handle.exited = True
        return code

    def stop(self, instance: Instance) -> None:
        """``<runtime> kill <id> TERM`` (``KILL`` after the grace time) until the container's
        init has exited, seen through a pidfd opened before the first signal. A created
        container never started gets ``KILL`` at once: its init is still the runtime's own code
        (crun's, PID 1 of its namespace, ignores TERM) with no workload to stop gracefully.

        Its harness share (``stop_harness_s``): the stop less the runtime's ``kill`` commands
        and the waits for the init's exit."""
        began = time.perf_counter_ns()
        others = 0.0  # s: the runtime's commands and the waits for the exit
        if isinstance(instance.handle, checkpoint.Staged):
            return  # staged for a restore: nothing of it runs
        handle: OciHandle = instance.handle
        try:
            close_ready(handle)
            checkpoint.close_fd(handle, "stdin_fd")
            if handle.exited:  # reaped (rule exit): its pid may be another process's now
                return
            try:
                pidfd = os.pidfd_open(handle.pid)
            except ProcessLookupError:
                return  # exited and reaped already
            steps = (("TERM", self.grace_s), ("KILL", self.grace_s))
            try:
                for signal_name, wait in steps if handle.started else steps[1:]:
                    if wait_pidfd(pidfd, 0):
                        return
                    others += self._kill(instance.name, signal_name, pidfd)
                    waiting = time.perf_counter_ns()
                    exited = wait_pidfd(pidfd, wait)
                    others += (time.perf_counter_ns() - waiting) / 1e9
                    if exited:
                        return
                raise BackendError(f"{instance.name}: init {handle.pid} still runs after KILL")
            finally:
                os.close(pidfd)
        finally:
            instance.harness[HARNESS_STOP] = harness_share(began, others)

    def _remove(self, instance: Instance) -> None:
        """``<runtime> delete -f`` (which removes the container's cgroup), then the bundle.
        Its harness share (``cleanup_harness_s``): all of it but the runtime's ``delete``."""
        if isinstance(instance.handle, checkpoint.Staged):
            return  # nothing of it was made (a failed restore removed its own bundle)
        began = time.perf_counter_ns()
        command_s = 0.0
        checkpoint.close_fd(instance.handle, "stdin_fd")
        try:
            command_s = self._teardown(instance.handle.bundle)
        finally:
            if instance.handle.netns is not None:
                instance.handle.netns.release()
                instance.handle.netns = None
            instance.harness[HARNESS_CLEANUP] = harness_share(began, command_s)

    def memory(self, instance: Instance) -> MemorySample:
        from harness import metrics

        # The container's cgroup lists its processes: no scan of every host process for
        # children (psutil's recursive children() reads all of /proc once per instance).
        path = cgroup.path(instance.name)
        pids = self.cgroups.procs(path)
        sample = (metrics.process_memory(pids, include_children=False) if pids
                  else metrics.process_memory(instance.pids))
        return dataclasses.replace(sample, cgroup=self.cgroups.memory_usage(path))

    def _close(self) -> None:
        with self._checkpoint_lock:
            for shot in self._checkpoints.values():
                shot.remove()
            self._checkpoints.clear()
        with self._lock:
            if self._launcher is not None:
                self._launcher.close()
                self._launcher = None
        if not self.cgroups.containers(cgroup.PARENT):  # others' containers may still use it
            self.cgroups.remove_parent(cgroup.PARENT)  # its empty shards too
        oci_netns.remove_bridge_if_unused()
        if not self.live:  # none of its containers is left for a sweep to delete
            runtimes.forget(self.runtime)
            if self.runtime not in runtimes.BUILT_IN:  # nothing named after the user's runtime
                with contextlib.suppress(OSError):
                    self.root.rmdir()  # empty unless another backend's containers are there

    def describe(self) -> dict[str, Any]:
        private_view = cgroup.needs_private_view(self.flavor, self.mode)
        observed = self._observe()
        found = self._kernel_filter
        version = runtimes.version_output(self.binary)
        return {
            "runtime": self.runtime,
            "binary": self.binary,
            "version": self._version(version),
            "version_output": version.strip(),  # all of `<binary> --version`
            "options_flavor": self.flavor,  # whose global options it is given: crun's or runc's
            "cgroup_mode": self.mode,
            "cgroup_manager": cgroup.MANAGER,
            "cgroup_manager_args": cgroup.manager_args(self.flavor),
            # the one layout of every container backend (runtime.scopes), made in prepare()
            "cgroup_layout": self.cgroups.layout(cgroup.PARENT),
            "private_cgroup_view": private_view,
            "launcher": "subreaper in a private mount namespace; mounts a container's overlay "
                        "there while the runtime's command that starts it runs",
            "method": self._method(private_view).as_dict(),
            **observed,
            "security": {**security(self._config(f"{PREFIX}describe")), "kernel_filter":
                         None if found is None else seccomp_probe.described(
                             {COLD: found}, self.filter_additions)},
        }

    # internals

    def _argv(self, *args: str) -> list[str]:
        """A runtime command line: its state root and cgroup manager, then ``args``."""
        return [self.binary, "--root", str(self.root), *cgroup.manager_args(self.flavor),
                *args]

    def _run(self, spec: InstanceSpec, *verb: str) -> Instance:
        """``<runtime> <verb> --pid-file --bundle <id>`` on a fresh bundle, the READY pipe's
        write end as the container's stdout; the launcher mounts the overlay in its own mount
        namespace (the container's is copied from it) for the time of the command. The
        instance's ``harness_s`` is all of it but the runtime's command: config.json and the
        bundle, the overlay's mount and unmount, the launcher's round trip, the pid file."""
        began = time.perf_counter_ns()
        bridge = spec.network == "bridge"
        config = build_config(spec, netns="(wired below)" if bridge else None)  # checks first
        bundle = Bundle.for_name(spec.name)
        launcher = self.launcher()
        bundle.make(config)
        read_fd = None
        netns = None
        try:
            if bridge:  # a namespace on cvbench0 first, joined by the container
                try:
                    netns = oci_netns.create(str(bundle.dir))
                except NetworkError as error:
                    raise BackendError(f"{spec.name}: {error}") from None
                bundle.config.write_text(json.dumps(build_config(spec, netns=netns.path)))
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                spawned = self._spawn(launcher, bundle, spec, verb, null_fd, write_fd)
            finally:
                for fd in (write_fd, null_fd):
                    os.close(fd)
            if spawned.returncode != 0:
                raise BackendError(f"{self.runtime} {verb[0]} {spec.name} failed: "
                                   f"{bundle.last_log_line()}")
            pid = int(bundle.pid_file.read_text())
        except BaseException:
            if read_fd is not None:
                os.close(read_fd)
            self._teardown(bundle)
            if netns is not None:
                netns.release()
            raise
        if netns is not None:
            netns.close()  # the container holds its namespace now
        instance = Instance(spec.name, self.name, OciHandle(bundle, pid, read_fd, netns=netns),
                            [pid])
        instance.harness[HARNESS_START] = harness_share(began, spawned.timing.command_s)
        return instance

    # restore (a runtime that checkpoints through CRIU: .checkpoint) ------------------------

    def _stage(self, spec: InstanceSpec) -> Instance:
        """Before the clock: the checkpoint of ``spec``'s shape, made on first use; the
        instance is :class:`.checkpoint.Staged` (nothing of it exists)."""
        if refused := checkpoint.refusal(spec):
            raise BackendError(f"{spec.name}: {refused}")
        key = checkpoint.shape(spec)
        with self._checkpoint_lock:
            if key not in self._checkpoints:
                self._checkpoints[key] = self._checkpoint(spec)
            shot = self._checkpoints[key]
        return Instance(spec.name, self.name, checkpoint.Staged(spec, shot))

    def _checkpoint(self, spec: InstanceSpec) -> checkpoint.Checkpoint:
        """A container of ``spec``'s shape behind the responder, started (``run -d``, its
        stdin, stdout and stderr pipes), READY, then ``<runtime> checkpoint`` (which ends and
        deletes it): its bundle, upper and images become the checkpoint."""
        name = f"{PREFIX}checkpoint-{self.runtime}-{uuid.uuid4().hex[:8]}"
        saved = dataclasses.replace(spec, name=name)
        bundle = Bundle.for_name(name)
        try:
            config = checkpoint.restorable_config(saved, spec.image.rootfs, bundle)
        except ValueError as error:
            raise BackendError(f"{spec.name}: {error}") from None
        launcher = self.launcher()
        bundle.make(config)
        fds: list[int] = []
        try:
            checkpoint.write_criu_config(bundle)
            stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
            ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
            error_read, error_write = os.pipe2(os.O_CLOEXEC)
            fds += [stdin_read, stdin_write, ready_read, ready_write, error_read, error_write]
            os.set_blocking(error_read, False)
            argv = self._argv("run", "-d", "--pid-file", str(bundle.pid_file),
                              "--bundle", str(bundle.dir), name)
            overlay = Overlay(spec.image.rootfs, bundle.upper, bundle.work, bundle.rootfs)
            spawned = launcher.spawn(argv, stdin_read, ready_write, error_write, overlay)
            for fd in (stdin_read, ready_write, error_write):
                fds.remove(fd)
                os.close(fd)
            if spawned.returncode != 0:
                raise BackendError(f"{self.runtime} run {name} failed: "
                                   f"{checkpoint.drain(error_read)}")
            fds.remove(ready_read)  # closed by the wait
            wait_then_close(OciHandle(bundle, 0, ready_read), CHECKPOINT_READY_S, name)
            images = bundle.dir / checkpoint.IMAGES
            work = bundle.dir / checkpoint.DUMP_WORK
            result = launcher.run(self._argv("checkpoint", "--image-path", str(images),
                                             "--work-path", str(work), name))
            if result.returncode != 0:
                raise BackendError(f"{self.runtime} checkpoint {name} failed: "
                                   f"{checkpoint.criu_error(work, result.stderr)}")
        except BaseException:
            for fd in fds:
                os.close(fd)
            self._teardown(bundle)
            checkpoint.Checkpoint(bundle).remove()
            raise
        for fd in fds:
            os.close(fd)
        shot = checkpoint.Checkpoint(bundle)
        shot.seal()
        return shot

    def _restore(self, instance: Instance) -> None:
        """Inside the clock: the instance's bundle with copies of the checkpoint's upper and
        images, ``<runtime> restore --detach`` with fresh stdin and stdout pipes (the launcher
        mounts the overlay for the command's time, as for ``run``), the pid file, then the
        ping on stdin. ``harness_s``: all of it but the runtime's command."""
        began = time.perf_counter_ns()
        staged: checkpoint.Staged = instance.handle
        spec = staged.spec
        bundle = Bundle.for_name(spec.name)
        try:
            config = checkpoint.restorable_config(spec, spec.image.rootfs, bundle)
        except ValueError as error:
            raise BackendError(f"{spec.name}: {error}") from None
        launcher = self.launcher()
        bundle.make(config)
        kept: list[int] = []  # the host's ends: READY's read, stdin's write
        try:
            checkpoint.write_criu_config(bundle, f"/{cgroup.path(spec.name)}")
            images = checkpoint.copy_state(staged.checkpoint, bundle)
            ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
            kept.append(ready_read)
            stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
            kept.append(stdin_write)
            try:
                spawned = self._spawn(launcher, bundle, spec,
                                      ("restore", "--detach", "--image-path", str(images)),
                                      stdin_read, ready_write)
            finally:
                for fd in (stdin_read, ready_write):
                    os.close(fd)
            if spawned.returncode != 0:
                raise BackendError(f"{self.runtime} restore {spec.name} failed: "
                                   f"{checkpoint.criu_error(images, bundle.last_log_line())}")
            pid = int(bundle.pid_file.read_text())
            checkpoint.ping(stdin_write)
        except BaseException:
            for fd in kept:
                os.close(fd)
            self._teardown(bundle)
            raise
        instance.handle = OciHandle(bundle, pid, ready_read, stdin_fd=stdin_write)
        instance.pids = [pid]
        instance.harness[HARNESS_START] = harness_share(began, spawned.timing.command_s)

    def _spawn(self, launcher: Launcher, bundle: Bundle, spec: InstanceSpec,
               args: tuple[str, ...], stdin: int, stdout: int) -> Result:
        """``<runtime> ARGS --pid-file P --bundle B NAME`` through the launcher, which mounts
        the container's overlay for the command's time; ``stdin`` and ``stdout`` are the
        command's (and so the container's), stderr goes to the bundle's log."""
        log_fd = os.open(bundle.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)
        try:
            argv = self._argv(*args, "--pid-file", str(bundle.pid_file),
                              "--bundle", str(bundle.dir), spec.name)
            overlay = Overlay(spec.image.rootfs, bundle.upper, bundle.work, bundle.rootfs)
            return launcher.spawn(argv, stdin, stdout, log_fd, overlay)
        finally:
            os.close(log_fd)

    def _kill(self, name: str, signal_name: str, pidfd: int) -> float:
        """``<runtime> kill <name> <signal>``; a refusal is an error only while the init runs
        (it may exit between our look and the runtime's). Returns the command's own time, s."""
        result = self.launcher().run(self._argv("kill", name, signal_name))
        if result.returncode != 0 and not wait_pidfd(pidfd, 0):
            raise BackendError(f"{self.runtime} kill {name} {signal_name}: "
                               f"{result.stderr.strip()}")
        return result.timing.command_s

    def _teardown(self, bundle: Bundle) -> float:
        """Delete the container, then its bundle; tolerate partial states. The runtime's
        ``delete`` removes the container's cgroup; where it did not run to the end (a start
        that failed half-way), what it left is removed here. Returns the ``delete``
        command's own time, s."""
        result = self.launcher().run(self._argv("delete", "-f", bundle.name))
        if result.returncode != 0 and (self.root / bundle.name).exists():
            raise BackendError(f"{self.runtime} delete {bundle.name}: {result.stderr.strip()}")
        bundle.remove()
        if result.returncode != 0:
            with contextlib.suppress(CgroupError):
                self.cgroups.remove(cgroup.path(bundle.name))
        return result.timing.command_s

    def _config(self, name: str) -> dict[str, Any]:
        """The ``config.json`` this backend writes for a default instance named ``name``."""
        image = self.image or Image(name="unprepared", digest="0" * 64, rootfs=Path("/"))
        return build_config(InstanceSpec(name=name, image=image))

    def _observe(self) -> dict[str, Any]:
        """Cgroup hierarchies and device rules of a probe container (once per backend), and
        the seccomp filters the kernel holds for it (``self._kernel_filter``: the runtime
        builds and installs its filter by the same code in ``run`` and in ``create``, so one
        cold probe stands for both variants)."""
        if self._observed is not None:
            return self._observed
        if self.image is None:
            return {"cgroup_controllers": None, "devices": None}  # not prepared: not observed
        spec = InstanceSpec(name=f"{PREFIX}probe-{self.runtime}-{uuid.uuid4().hex[:8]}",
                            image=self.image)
        try:
            instance = self.start(spec)
            try:
                self.wait_ready(instance, PROBE_READY_S)
                self._kernel_filter = seccomp_probe.read(instance.pids[0])
                self._observed = probe.observe(spec.name,
                                               config=instance.handle.bundle.config).as_dict()
            finally:
                self.stop(instance)
                self.remove(instance)
        except BackendError as error:
            self._kernel_filter = self._kernel_filter or {"error": f"probe container: {error}"}
            return {"cgroup_controllers": None, "devices": None, "probe_error": str(error)}
        return self._observed

    def _method(self, private_view: bool) -> Method:
        via = ("the launcher (a subreaper in a private mount namespace"
               + (" without /sys/fs/cgroup/unified" if private_view else "") + ")")
        bundle = "bundle directories and config.json written"
        launch = (f"the launcher mounts the container's overlay on the bundle's rootfs in its "
                  f"own mount namespace (fsopen, fsconfig, fsmount, move_mount, no extra process "
                  f"or namespace) and posix_spawns `{self.runtime} {{verb}} --pid-file "
                  f"--bundle <id>` with the READY pipe as stdout (the container's mount "
                  f"namespace, cloned by the runtime, holds a private copy), then unmounts its "
                  f"own once the command exited; the pid file read")
        share = "all of it but the runtime's command recorded apart as `harness_s`"
        return Method(
            cold=("nothing of the container (the launcher and the runtime's --root exist)",
                  f"{bundle}; " + launch.format(verb="run -d") + f"; through {via}; {share}"),
            warm=(f"{bundle}; " + launch.format(verb="create")
                  + ": the container's init does all but the seccomp filter and exec, and "
                    "waits on the runtime's exec fifo",
                  f"`{self.runtime} start <id>` through {via} (posix_spawn, the round trip "
                  f"less the command recorded apart as `harness_s`) opens the exec fifo; "
                  + WARM_AFTER_CLOCK),
            stop=f"`{self.runtime} kill <id> TERM` through the launcher, `KILL` after "
                 f"{self.grace_s:g} s; until the container's init exited (pidfd opened before "
                 "the first signal); a created container never started gets KILL at once; "
                 "the launcher's round trips less the commands recorded apart as "
                 "`stop_harness_s`",
            remove=f"`{self.runtime} delete -f <id>` through the launcher (it removes the "
                   "container's cgroup), then the bundle's files and directories (and any "
                   "cgroup cvbench-oci/<shard>/<id> a start that failed half-way left); all "
                   "of it but the delete command recorded apart as `cleanup_harness_s`",
            restore=checkpoint.method(self.runtime, via) if RESTORE in self.variants else None,
        )

    @staticmethod
    def _version(out: str) -> str:
        """The version in ``--version``'s output: its first line's last word."""
        first = out.strip().splitlines()[0] if out.strip() else ""
        return first.split()[-1] if first else "unknown"
