"""Containers: create, start, wait for READY, stop, destroy, list; ``sweep()`` leftovers.

A container lives in ``state_dir()/containers/<name>/`` (``owner`` symlink naming the owning
process, ``state.json`` once started, overlay ``upper`` and ``work``; the directory itself is
the overlay's mount point inside the container) and in the cgroup ``cvbench-<scope>/<name>``,
where the scope is derived from the state directory so that separate state directories never
touch each other's objects. Its overlay and other mounts exist only inside its own mount
namespace, so the host's mount table does not grow with the number of containers and
teardown is the namespace dying.

The launch path (``start``) does no subprocess call, no sleep and no scan of other
containers: one request to the fork server, which forks the container. After readiness the
runtime holds no descriptor for the container; ``stop`` opens a pidfd only while it waits.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from hostkit import syscalls as sc
from hostkit.files import atomic_write
from hostkit.paths import PREFIX, containers_dir, state_dir
from hostkit.procs import proc_start_time, process_alive
from imagestore.image import Image, ImageError, verify
from runtime import caps, cgroups, network, rootfs
from runtime.forkserver import ForkServer, ForkServerError
from runtime.readiness import read_ready
from runtime.spec import DIGEST_ANNOTATION, Spec, SpecError

VERSION = "0.1.0"
GRACE_S = 2.0
GONE_TIMEOUT_S = 10.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ERROR_PREFIX = b"cvbench-error: "
STATE_FILE = "state.json"
OWNER_LINK = "owner"  # symlink to "<pid>:<start time>" of the owning process
CREATING_PREFIX = ".new-"  # ".new-<owner pid>-<owner start>-<name>": a directory being made


class ContainerError(Exception):
    """Bad input or a failed operation; the message is one line meant for a human."""


class NotReadyError(ContainerError):
    """The workload did not print READY in time, or died before it did."""


def cgroup_parent(directory: Path | None = None) -> str:
    """``cvbench-<8 hex>``: the cgroup parent of a state directory (default: this one)."""
    key = os.path.realpath(directory or state_dir())
    return f"{PREFIX}{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def scopes_dir() -> Path:
    """Where each state directory in use registers its cgroup parent (for ``sweep``)."""
    return Path(os.environ.get("CVBENCH_SCOPES_DIR", "/run/cvbench-runtime/scopes"))


def register_scope() -> None:
    """Record ``<cgroup parent> -> <state dir>`` so that a later sweep finds both."""
    link = scopes_dir() / cgroup_parent()
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(os.path.realpath(state_dir()), link)
        except FileExistsError:
            pass





def _poll(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0.0, timeout) * 1000))


@dataclass
class ExitInfo:
    status: int | None  # wait status when we reaped it, else None
    oom_killed: bool

    @property
    def signal(self) -> int | None:
        if self.status is not None and os.WIFSIGNALED(self.status):
            return os.WTERMSIG(self.status)
        return None

    @property
    def code(self) -> int | None:
        if self.status is not None and os.WIFEXITED(self.status):
            return os.WEXITSTATUS(self.status)
        return None

    def describe(self) -> str:
        if self.oom_killed:
            return "killed by the kernel: out of memory (cgroup limit)"
        if self.signal is not None:
            return f"killed by signal {signal.Signals(self.signal).name}"
        if self.code is not None:
            return f"exited with code {self.code}"
        return "exited"


@dataclass
class Container:
    """One container and every host object it holds."""

    name: str
    spec: Spec
    directory: Path
    cgroup: str
    cgroup_dirs: list[str] = field(default_factory=list)
    pid: int | None = None
    pid_start: int | None = None
    state: str = "created"  # created | running | stopped
    net: network.Attachment | None = None
    owner_pid: int | None = None
    owner_start: int | None = None
    exit: ExitInfo | None = None
    ready_fd: int | None = field(default=None, repr=False)
    plan_caps: dict | None = field(default=None, repr=False)

    def to_state(self) -> dict:
        return {
            "name": self.name,
            "pid": self.pid,
            "pid_start": self.pid_start,
            "state": self.state,
            "cgroup": self.cgroup,
            "cgroup_dirs": self.cgroup_dirs,
            "network": vars(self.net) if self.net else None,
            "owner_pid": self.owner_pid,
            "owner_start": self.owner_start,
            "exit": vars(self.exit) if self.exit else None,
            "spec": self.spec.to_oci(),
        }

    @classmethod
    def from_state(cls, directory: Path, data: dict) -> Container:
        return cls(
            name=data["name"],
            spec=Spec.from_oci(data["spec"]),
            directory=directory,
            cgroup=data["cgroup"],
            cgroup_dirs=list(data.get("cgroup_dirs", [])),
            pid=data.get("pid"),
            pid_start=data.get("pid_start"),
            state=data.get("state", "created"),
            net=network.Attachment(**data["network"]) if data.get("network") else None,
            owner_pid=data.get("owner_pid"),
            owner_start=data.get("owner_start"),
            exit=ExitInfo(**data["exit"]) if data.get("exit") else None,
        )

    def save(self) -> None:
        atomic_write(self.directory / STATE_FILE, json.dumps(self.to_state()), fsync=False)

    @property
    def running(self) -> bool:
        return self.state == "running" and process_alive(self.pid, self.pid_start)


def load(directory: Path) -> Container | None:
    try:
        with open(directory / STATE_FILE) as handle:
            return Container.from_state(directory, json.load(handle))
    except (OSError, ValueError, KeyError, SpecError):
        return None


_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


class Runtime:
    """Creates, starts, stops, destroys and lists containers; owns what it made.

    Used as a context manager it destroys its own containers on exit. ``close()`` only stops
    the fork server: containers it started keep running (``cvbench ctr run``).
    """

    def __init__(self, *, cgroup_mode: str | None = None) -> None:
        self.mode = cgroup_mode or cgroups.detect_mode()
        self.cgroups = cgroups.driver(self.mode)
        self.parent = cgroup_parent()
        self.root = containers_dir()
        self.server = ForkServer()
        self.containers: dict[str, Container] = {}
        self.wired_bridge = False  # this Runtime attached a container to cvbench0
        self._verified: set[tuple[str, str]] = set()  # (digest, rootfs) checked once
        self._owner = (os.getpid(), proc_start_time(os.getpid()))
        register_scope()

    # -- lifecycle --------------------------------------------------------------------------
    def create(self, spec: Spec, name: str) -> Container:
        """Check everything, make the directories and cgroup; start nothing."""
        if not NAME_RE.match(name):
            raise ContainerError(
                f"invalid container name {name!r}: use letters, digits, '.', '_' or '-' "
                "(at most 63, not starting with a symbol)"
            )
        try:
            spec.validate()
            self._check_image(spec)
            plan_caps = self._caps(spec)
        except (SpecError, ImageError, ValueError) as error:
            raise ContainerError(str(error)) from None
        directory = self._make_directory(name)
        container = Container(
            name=name,
            spec=spec,
            directory=directory,
            cgroup=f"{self.parent}/{name}",
            owner_pid=self._owner[0],
            owner_start=self._owner[1],
        )
        try:
            res = spec.linux.resources
            limits = cgroups.Limits(
                memory_bytes=res.memory_limit,
                pids=res.pids_limit,
                cpu_quota_us=res.cpu_quota,
                cpu_period_us=res.cpu_period or 100000,
            )
            container.cgroup_dirs = [str(d) for d in self.cgroups.create(container.cgroup, limits)]
        except (OSError, cgroups.CgroupError) as error:
            if container.cgroup_dirs:
                self._remove_cgroup(container)
            shutil.rmtree(directory, ignore_errors=True)
            raise ContainerError(f"cannot create {name}: {error}") from None
        container.plan_caps = plan_caps
        self.containers[name] = container
        return container

    def _make_directory(self, name: str) -> Path:
        """Make ``<root>/<name>`` with its owner link, upper and work in one visible step.

        They are made under a temporary name that itself names the owner, then renamed into
        place: a sweep after a SIGKILL at any point finds either an owned directory or a
        temporary one whose owner it can read from the name, never an ownerless one.
        """
        owner = f"{self._owner[0]}:{self._owner[1]}"
        self.root.mkdir(parents=True, exist_ok=True)
        temporary = self.root / f"{CREATING_PREFIX}{self._owner[0]}-{self._owner[1]}-{name}"
        try:
            temporary.mkdir()
            os.symlink(owner, temporary / OWNER_LINK)
            for sub in ("upper", "work"):
                (temporary / sub).mkdir()
            os.rename(temporary, self.root / name)  # fails: the target exists, never empty
        except OSError as error:
            shutil.rmtree(temporary, ignore_errors=True)
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise ContainerError(f"a container named {name!r} already exists") from None
            raise ContainerError(f"cannot create {name}: {error}") from None
        return self.root / name

    def start(self, container: Container, output_fd: int | None = None) -> int:
        """Launch the container; return its host pid as soon as it is forked.

        Its stdout and stderr go to a pipe read by :meth:`wait_ready`, or to ``output_fd``
        (then there is no readiness to wait for).
        """
        if container.state != "created":
            raise ContainerError(f"{container.name} is {container.state}, not created")
        plan = self._plan(container)
        if output_fd is None:
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        else:
            read_fd, write_fd = None, os.dup(output_fd)
        fds = [write_fd]
        ours = theirs = None
        if container.spec.network == "bridge":
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            fds.append(theirs.fileno())
        try:
            pid = self.server.launch(plan, fds)
        except ForkServerError as error:
            if read_fd is not None:
                os.close(read_fd)
            raise ContainerError(f"cannot launch {container.name}: {error}") from None
        finally:
            os.close(write_fd)
            if theirs is not None:
                theirs.close()
        container.pid = pid
        container.pid_start = proc_start_time(pid)
        container.ready_fd = read_fd
        container.state = "running"
        if ours is not None:
            try:
                self._wire_bridge(container, ours)
            except ContainerError:
                self.stop(container, grace=0)
                raise
            finally:
                ours.close()
        container.save()
        return pid

    def wait_ready(self, container: Container, timeout: float = 10.0) -> None:
        """Block until the workload prints ``READY``; close the pipe either way."""
        fd = container.ready_fd
        if fd is None:
            return
        container.ready_fd = None
        try:
            read_ready(fd, timeout, container.name, NotReadyError, ERROR_PREFIX)
        finally:
            os.close(fd)

    def wait(self, container: Container, timeout: float | None = None) -> ExitInfo | None:
        """Wait for the container to exit on its own; None if still running after timeout."""
        if container.pid is None:
            raise ContainerError(f"{container.name} was never started")
        try:
            pidfd = os.pidfd_open(container.pid)
        except ProcessLookupError:
            return self._finish(container)
        try:
            if not _poll(pidfd, 1e9 if timeout is None else timeout):
                return None
        finally:
            os.close(pidfd)
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
        try:
            pidfd = os.pidfd_open(container.pid)
        except ProcessLookupError:
            pidfd = None
        if pidfd is not None:
            try:
                if container.owner_pid != self._owner[0] and not self._still_ours(container):
                    raise ProcessLookupError
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
                if not _poll(pidfd, grace):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                    if not _poll(pidfd, timeout):
                        raise ContainerError(f"{container.name} (pid {container.pid}) won't die")
            except ProcessLookupError:
                pass
            finally:
                os.close(pidfd)
        return self._finish(container)

    def destroy(self, container: Container) -> None:
        """Stop if needed, then release the network, cgroup and directory."""
        if container.state == "running":
            self.stop(container)
        if container.ready_fd is not None:
            os.close(container.ready_fd)
            container.ready_fd = None
        problems = []
        if container.net is not None:
            try:
                network.detach(container.net)
                container.net = None
            except Exception as error:  # noqa: BLE001 - netlink: report after the rest
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
            fd, container.ready_fd = container.ready_fd, None
            output = b""
            deadline = time.monotonic() + timeout
            try:
                while True:
                    if not _poll(fd, deadline - time.monotonic()):
                        raise NotReadyError(f"{name}: still running after {timeout:g} s")
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    output += chunk
            finally:
                os.close(fd)
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

    def list(self) -> list[Container]:
        """Every container of this state directory (from disk; O(n), never on launch)."""
        found = []
        if self.root.is_dir():
            for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
                try:
                    found.append(self.get(entry.name))
                except ContainerError:
                    continue
        return found

    def pids(self, container: Container) -> list[int]:
        """Host pids of the container's processes (its cgroup's members)."""
        return self.cgroups.procs(container.cgroup)

    def memory_usage(self, container: Container) -> int | None:
        return self.cgroups.memory_usage(container.cgroup)

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
        if not self.cgroups.children(self.parent):
            self.cgroups.remove_parent(self.parent)
        if self.wired_bridge:
            network.remove_bridge_if_unused()
            self.wired_bridge = False

    def close(self) -> None:
        self.server.close()

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

    def _caps(self, spec: Spec) -> dict[str, int]:
        wanted = spec.process.capabilities
        return {
            "bounding": caps.mask(wanted.bounding),
            "effective": caps.mask(wanted.effective),
            "permitted": caps.mask(wanted.permitted),
            "inheritable": caps.mask(wanted.inheritable),
        }

    def _plan(self, container: Container) -> dict:
        spec = container.spec
        flags = 0
        for ns in spec.linux.namespaces:
            if ns.type != "pid":
                flags |= sc.NAMESPACE_FLAGS[ns.type]
        directory = container.directory
        plan_caps = container.plan_caps or self._caps(spec)
        return {
            "new_pid": spec.linux.has_namespace("pid"),
            "unshare": flags,
            "cgroup_procs": self.cgroups.join_files(
                container.cgroup, [Path(d) for d in container.cgroup_dirs]
            ),
            "merged": str(directory),  # mounted over in the container's own mount ns
            "overlay": rootfs.overlay_options(
                spec.root.path, str(directory / "upper"), str(directory / "work")
            ),
            "mounts": rootfs.mount_plan(spec.mounts),
            "masked": list(spec.linux.masked_paths),
            "readonly_paths": list(spec.linux.readonly_paths),
            "readonly_root": spec.root.readonly,
            "hostname": spec.hostname if spec.linux.has_namespace("uts") else "",
            "loopback": spec.linux.has_namespace("network"),
            "rlimits": [
                [_RLIMITS[r.type], r.soft, r.hard]
                for r in spec.process.rlimits
                if r.type in _RLIMITS
            ],
            "cwd": spec.process.cwd,
            "args": spec.process.args,
            "env": spec.process.env,
            "caps": plan_caps,
            "no_new_privs": spec.process.no_new_privileges,
        }

    def _wire_bridge(self, container: Container, sync: socket.socket) -> None:
        sync.settimeout(GONE_TIMEOUT_S)
        try:
            if sync.recv(1) != b"n":
                raise ContainerError(f"{container.name} died before its netns was ready")
            self.wired_bridge = True
            container.net = network.attach(
                container.pid, str(container.directory), str(container.directory)
            )
            sync.sendall(b"g")
        except (OSError, network.NetworkError) as error:
            raise ContainerError(f"{container.name}: {error}") from None

    def _still_ours(self, container: Container) -> bool:
        return process_alive(container.pid, container.pid_start)

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


def sweep() -> list[str]:
    """Remove every leftover container object whose owner died (see :mod:`runtime.sweep`)."""
    from runtime.sweep import sweep_all

    return sweep_all()
