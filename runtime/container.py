"""The container lifecycle: :class:`Runtime` creates, starts, waits for READY, stops,
destroys and lists containers.

A container lives in ``state_dir()/containers/<name>/`` (see :mod:`runtime.containerdir`)
and in the cgroup ``cvbench-<scope>/<shard>/<name>`` of every hierarchy (see :mod:`runtime.scopes`,
:mod:`runtime.cgroups`). Its overlay and other mounts exist only inside its own mount
namespace, so the host's mount table does not grow with the number of containers and
teardown is the namespace dying.

Cold: ``create`` then ``start``; nothing of the container exists before ``create``, which
has a worker thread compile the seccomp program (:class:`runtime.seccomp.Compiler`) while it
makes the directories and cgroups and ``start`` launches the init; ``start`` sends the program
once the init is set up. Warm: ``create(..., spare=True)``
also has the fork server fork a *spare* for the container, which makes its namespaces and mounts
its overlay, then gets the plan and does everything crun's ``create`` has its init do (mounts,
root switch, hostname, rlimits, capabilities, no_new_privs) and waits; ``start`` then sends it
one byte, and it installs its seccomp filter and execs, as crun's init does after ``crun
start``. The launch path (``start``) does no subprocess call, no sleep and no scan of other
containers: one request to the fork server, or one byte. After readiness the runtime holds no
descriptor for the container; ``stop`` opens a pidfd only while it waits, and returns once the
init exited and was reaped; ``destroy`` releases the rest. Leftovers of crashed owners are
removed by :func:`runtime.sweep.sweep_all`.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import shutil
import socket
import time
from pathlib import Path

from hostkit import validate
from hostkit.paths import containers_dir
from hostkit.procs import proc_start_time, process_alive, terminate, wait_exit
from hostkit.readiness import ERROR_PREFIX, READY, read_ready, read_to_end
from imagestore.image import Image, ImageError, verify
from runtime import cgroups, child, containerdir, network, seccomp
from runtime.errors import ContainerError, NotReadyError
from runtime.forkserver import ForkServer, ForkServerError
from runtime.planner import cgroup_limits, launch_plan
from runtime.scopes import cgroup_parent, container_cgroup, register_scope
from runtime.spec import DIGEST_ANNOTATION, Spec, SpecError
from runtime.state import Container, ExitInfo, load

__all__ = [
    "GRACE_S",
    "VERSION",
    "Container",
    "ContainerError",
    "ExitInfo",
    "NotReadyError",
    "Runtime",
]

VERSION = "0.1.0"
GRACE_S = 2.0
GONE_TIMEOUT_S = 10.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# A container's name as the one validator checks it (``cvbench ctr`` options check the same).
NAME = validate.Names(pattern=NAME_RE.pattern, meaning="a container name: letters, digits, "
                      "'.', '_' or '-' (at most 63, not starting with a symbol)")


class Runtime:
    """Creates, starts, stops, destroys and lists containers; owns what it made.

    Used as a context manager it destroys its own containers on exit. ``close()`` only stops
    the fork server: containers it started keep running (``cvbench ctr run``).
    """

    def __init__(self, *, pivot_root: bool = False) -> None:
        """``pivot_root``: switch into each container's root with pivot_root(2), as crun and
        runc do, instead of the move onto the skeleton root (:mod:`runtime.rootfs`)."""
        self.pivot_root = pivot_root
        self.cgroups = cgroups.driver()
        self.parent = cgroup_parent()
        self.root = containers_dir()
        self.server = ForkServer()
        self.compiler = seccomp.Compiler()
        self.containers: dict[str, Container] = {}
        self.wired_bridge = False  # this Runtime attached a container to cvbench0
        self._verified: set[tuple[str, str]] = set()  # (digest, rootfs) checked once
        self._owner: tuple[int, int | None] = (os.getpid(), proc_start_time(os.getpid()))
        register_scope()

    # -- lifecycle --------------------------------------------------------------------------
    def create(self, spec: Spec, name: str, *, spare: bool = False) -> Container:
        """Check everything and plan the launch, then make the directories and cgroups; start
        nothing. ``spare``: also have a spare child prepare the container's namespaces (warm),
        and return once it is ready."""
        try:
            NAME.check(name)
        except validate.Invalid as error:
            raise ContainerError(f"invalid container name: {error}") from None
        program = None
        if not spare and spec.linux.seccomp is not None:  # cold: compiled from now on
            program = self.compiler.submit(spec.linux.seccomp.to_oci())
        cgroup = container_cgroup(self.parent, name)
        limits = cgroup_limits(spec)
        try:
            spec.validate()
            self._check_image(spec)
            plan = launch_plan(
                spec,
                self.root / name,
                self.cgroups.join_files(cgroup, limits, by_itself=not spare),
                pivot_root=self.pivot_root,
                cgroup_dir="" if spare else self.cgroups.birth_directory(cgroup),
                seccomp_follows=not spare,  # cold: being compiled, as crun compiles
                wait_for_start=spare,  # warm: the init waits where crun's waits for start
            )
        except (SpecError, ImageError, ValueError) as error:
            raise ContainerError(str(error)) from None
        directory = containerdir.make(self.root, name, self._owner)
        container = Container(
            name=name,
            spec=spec,
            directory=directory,
            cgroup=cgroup,
            owner_pid=self._owner[0],
            owner_start=self._owner[1],
            plan=plan,
            program=program,
        )
        try:
            self.cgroups.create(cgroup, limits)
        except (OSError, cgroups.CgroupError) as error:
            shutil.rmtree(directory, ignore_errors=True)
            raise ContainerError(f"cannot create {name}: {error}") from None
        self.containers[name] = container
        if spare:
            try:
                container.spare = self.server.spare(plan)
                child.join_cgroups(plan.cgroup_procs, container.spare)
                self._launch(container, None)  # it sets up all crun's create does, and waits
            except (ForkServerError, OSError, ContainerError) as error:
                self.destroy(container)
                raise ContainerError(f"cannot prepare {name}: {error}") from None
        return container

    def start(self, container: Container, output_fd: int | None = None) -> int:
        """Launch the container; return its host pid as soon as it is forked (cold), or let
        the prepared init of a warm one go on (crun's ``start``: it opens the exec fifo).

        Its stdout and stderr go to a pipe read by :meth:`wait_ready`, or to ``output_fd``
        (then there is no readiness to wait for; cold only: a warm container's output was
        set by ``create``).
        """
        if container.state != "created" or container.plan is None:
            raise ContainerError(f"{container.name} is {container.state}, not created")
        if container.channel is not None:  # warm, prepared
            if output_fd is not None:
                raise ContainerError(f"{container.name} is warm: its output was set by create")
            channel, container.channel = container.channel, None
            pid, container.spare = container.spare, None
            assert pid is not None
            try:
                channel.sendall(child.START)
            except OSError as error:
                raise ContainerError(f"{container.name} died before its start: {error}"
                                     ) from None
            finally:
                channel.close()
            self._running(container, pid)
            return pid
        pid = self._launch(container, output_fd)
        self._running(container, pid)
        return pid

    def _running(self, container: Container, pid: int) -> None:
        container.plan = None  # done with: a live container holds no more than its record
        container.pid = pid
        container.pid_start = proc_start_time(pid)
        container.state = "running"
        container.save()

    def _launch(self, container: Container, output_fd: int | None) -> int:
        """Have the fork server fork the init (cold) or hand its plan to the container's spare
        (warm), then do the host's part on the channel: wire the network, send the seccomp
        program (cold), wait until the init is prepared (warm: the channel is kept for
        :meth:`start`). The init's pid; its output pipe's read end in ``ready_fd``."""
        plan = container.plan
        assert plan is not None
        if output_fd is None:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        else:
            read_fd, write_fd = None, os.dup(output_fd)
        fds = [write_fd]
        ours: socket.socket | None = None
        theirs: socket.socket | None = None
        if plan.wire_network or plan.seccomp_follows or plan.wait_for_start:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            fds.append(theirs.fileno())
        try:
            pid = self.server.launch(plan, fds, container.spare)
        except ForkServerError as error:
            if read_fd is not None:
                os.close(read_fd)
            if ours is not None:
                ours.close()
            raise ContainerError(f"cannot launch {container.name}: {error}") from None
        finally:
            os.close(write_fd)
            if theirs is not None:
                theirs.close()
        container.ready_fd = read_fd
        if ours is None:
            return pid
        try:
            if plan.wire_network:
                self._wire_bridge(container, pid, ours)
            if plan.seccomp_follows:
                self._send_seccomp(container, ours)
            if plan.wait_for_start:
                self._await_prepared(container, ours)
                container.channel, ours = ours, None
        except ContainerError:
            if not plan.wait_for_start:  # a warm one is destroyed by create
                container.state = "running"
                container.pid = pid
                self.stop(container, grace=0)
            raise
        finally:
            if ours is not None:
                ours.close()
        return pid

    def _await_prepared(self, container: Container, channel: socket.socket) -> None:
        """Wait until a warm container's init is set up (:func:`runtime.child.wait_for_start`);
        if it failed instead, its error (on the output pipe) as a ContainerError."""
        channel.settimeout(GONE_TIMEOUT_S)
        try:
            said = channel.recv(1)
        except OSError as error:
            said, problem = b"", str(error)
        else:
            problem = "it exited"
        if said == child.PREPARED:
            return
        if container.ready_fd is not None:
            output = read_to_end(container.ready_fd, GONE_TIMEOUT_S) or b""
            lines = output.decode(errors="replace").strip().splitlines()
            problem = lines[-1] if lines else problem
        raise ContainerError(f"{container.name} failed to prepare: {problem}")

    def wait_ready(self, container: Container, timeout: float = 10.0,
                   marker: bytes = READY) -> None:
        """Block until the workload prints ``READY`` (or ``marker``); close the pipe either
        way."""
        fd = container.ready_fd
        if fd is None:
            return
        container.ready_fd = None
        try:
            read_ready(fd, timeout, container.name, NotReadyError, ERROR_PREFIX, marker)
        finally:
            os.close(fd)

    def wait(self, container: Container, timeout: float | None = None) -> ExitInfo | None:
        """Wait for the container to exit on its own; None if still running after timeout."""
        if container.pid is None:
            raise ContainerError(f"{container.name} was never started")
        if not wait_exit(container.pid, timeout):
            return None
        return self._finish(container)

    def stop(
        self, container: Container, grace: float = GRACE_S, timeout: float = GONE_TIMEOUT_S
    ) -> ExitInfo:
        """SIGTERM, SIGKILL after ``grace`` seconds, then wait until it is gone."""
        if container.ready_fd is not None:
            os.close(container.ready_fd)
            container.ready_fd = None
        if container.state != "running" or container.pid is None:
            return container.exit or ExitInfo(None, False)
        # Our fork server's child stays a zombie until we reap it: its pid cannot be reused.
        # Another owner's container may have been reaped by someone else: check its identity.
        ours = container.owner_pid == self._owner[0]
        start = None if ours else container.pid_start
        if not terminate(container.pid, grace, timeout, start):
            raise ContainerError(f"{container.name} (pid {container.pid}) won't die")
        return self._finish(container)

    def destroy(self, container: Container) -> None:
        """Stop if needed, then release the network, cgroup and directory."""
        if container.state == "running":
            self.stop(container)
        if container.channel is not None:
            container.channel.close()
            container.channel = None
        if container.spare is not None:
            self.server.discard(container.spare)
            container.spare = None
        if container.ready_fd is not None:
            os.close(container.ready_fd)
            container.ready_fd = None
        problems = []
        if container.net is not None:
            try:
                network.detach(container.net)
                container.net = None
            except Exception as error:  # netlink: report after the rest
                problems.append(f"network: {error}")
        try:
            self._remove_cgroup(container)
        except ContainerError as error:
            problems.append(str(error))
        shutil.rmtree(container.directory, ignore_errors=True)
        self.containers.pop(container.name, None)
        if problems:
            raise ContainerError(f"{container.name} destroyed, but: {'; '.join(problems)}")

    def run(self, spec: Spec, name: str, timeout: float = 10.0) -> Container:
        """create + start + wait_ready; on failure nothing is left behind."""
        container = self.create(spec, name)
        try:
            self.start(container)
            self.wait_ready(container, timeout)
        except BaseException:
            self.destroy(container)
            raise
        return container

    def run_to_exit(self, spec: Spec, name: str, timeout: float = 30.0) -> tuple[str, ExitInfo]:
        """Run a container to completion; return its output (stdout+stderr) and exit.

        Raises NotReadyError if it is still running after ``timeout`` (it is then destroyed).
        """
        container = self.create(spec, name)
        try:
            self.start(container)
            deadline = time.monotonic() + timeout
            fd, container.ready_fd = container.ready_fd, None
            assert fd is not None  # start made the pipe
            try:
                output = read_to_end(fd, timeout)
            finally:
                os.close(fd)
            if output is None:
                raise NotReadyError(f"{name}: still running after {timeout:g} s")
            info = self.wait(container, max(0.0, deadline - time.monotonic()))
            if info is None:
                raise NotReadyError(f"{name}: still running after {timeout:g} s")
            return output.decode(errors="replace"), info
        finally:
            self.destroy(container)

    # -- queries ----------------------------------------------------------------------------
    def get(self, name: str) -> Container:
        if name in self.containers:
            return self.containers[name]
        container = load(self.root / name)
        if container is None:
            raise ContainerError(f"no container named {name!r}")
        if container.state == "running" and not process_alive(container.pid, container.pid_start):
            container.state = "stopped"  # it died unattended: was it the OOM killer?
            container.exit = ExitInfo(None, self.cgroups.oom_kills(container.cgroup) > 0)
        return container

    def list(self) -> builtins.list[Container]:
        """Every container of this state directory (from disk; O(n), never on launch)."""
        found = []
        if self.root.is_dir():
            for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
                try:
                    found.append(self.get(entry.name))
                except ContainerError:
                    continue
        return found

    def pids(self, container: Container) -> builtins.list[int]:
        """Host pids of the container's processes (its cgroup's members)."""
        return self.cgroups.procs(container.cgroup)

    def memory_usage(self, container: Container) -> int | None:
        return self.cgroups.memory_usage(container.cgroup)

    def prepare_cgroups(self) -> None:
        """Make this state directory's cgroup parent and all its shards now, with their
        settings (:meth:`runtime.cgroups.Driver.prepare_layout`; idempotent), so that no
        ``create`` makes one: the harness calls it before the clock. CgroupError if it cannot."""
        self.cgroups.prepare_layout(self.parent)

    # -- teardown ---------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Destroy every container this Runtime created; idempotent.

        Also removes this state directory's cgroup parent, and the ``cvbench0`` bridge if
        this Runtime used it, when nothing else uses them.
        """
        for container in list(self.containers.values()):
            try:
                self.destroy(container)
            except ContainerError:
                continue
        if not self.cgroups.containers(self.parent):
            self.cgroups.remove_parent(self.parent)
        if self.wired_bridge:
            network.remove_bridge_if_unused()
            self.wired_bridge = False

    def close(self) -> None:
        self.server.close()
        self.compiler.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.cleanup()
        finally:
            self.close()

    # -- internals --------------------------------------------------------------------------
    def _check_image(self, spec: Spec) -> None:
        lower = Path(spec.root.path)
        if not lower.is_dir():
            raise ContainerError(f"image rootfs {lower} does not exist: unknown image")
        digest = spec.annotations.get(DIGEST_ANNOTATION)
        if digest and (digest, str(lower)) not in self._verified:
            if not (lower.parent / "manifest.txt").exists():
                raise ContainerError(f"image rootfs {lower} has no manifest: unknown image")
            verify(Image(name=digest[:12], digest=digest, rootfs=lower))
            self._verified.add((digest, str(lower)))

    def _wire_bridge(self, container: Container, pid: int, sync: socket.socket) -> None:
        sync.settimeout(GONE_TIMEOUT_S)
        try:
            if sync.recv(1) != b"n":
                raise ContainerError(f"{container.name} died before its netns was ready")
            self.wired_bridge = True
            container.net = network.attach(pid, str(container.directory))
            sync.sendall(b"g")
        except (OSError, network.NetworkError) as error:
            raise ContainerError(f"{container.name}: {error}") from None

    def _send_seccomp(self, container: Container, channel: socket.socket) -> None:
        """Send the container's seccomp program, compiled since :meth:`create` (libseccomp,
        as crun does for each of its containers) while the child set itself up; the child
        reads it right before installing it (:func:`runtime.child.receive_program`)."""
        program, container.program = container.program, None
        assert program is not None  # seccomp_follows is set only with a section
        try:
            compiled = program.result()
        except seccomp.SeccompError as error:
            raise ContainerError(f"{container.name}: {error}") from None
        with contextlib.suppress(OSError):  # the child is gone: its error is on READY's pipe
            child.send_program(channel, compiled)

    def _finish(self, container: Container) -> ExitInfo:
        status = self.server.reap(container.pid) if container.pid else None
        oom = self.cgroups.oom_kills(container.cgroup) > 0
        container.exit = ExitInfo(status, oom)
        container.state = "stopped"
        return container.exit

    def _remove_cgroup(self, container: Container) -> None:
        try:
            self.cgroups.remove(container.cgroup)
        except cgroups.CgroupError:
            self.cgroups.kill(container.cgroup)
            try:
                self.cgroups.remove(container.cgroup)
            except cgroups.CgroupError as error:
                raise ContainerError(str(error)) from None
