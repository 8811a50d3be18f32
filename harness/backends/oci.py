"""Shared code of the ``crun`` and ``runc`` peer backends: OCI bundles made from our image.

Each container gets a bundle under ``state_dir()/oci/<name>/``: a ``config.json`` generated from
the :class:`InstanceSpec` (same namespaces, hostname and limits as ``ours``) and a ``rootfs``
that is an overlay of the shared read-only image rootfs plus a private upper/work directory.

Every runtime command runs through one small *launcher* process per backend (:class:`Launcher`):

- it lives in a private mount namespace (mounts ``rslave``); on a hybrid cgroup host it unmounts
  ``/sys/fs/cgroup/unified`` there, which is how crun 1.8 runs on such a host;
- for ``<runtime> run`` it forks a child that mounts the container's overlay in a mount namespace
  of its own before exec'ing the runtime: the overlay is never in the host's mount table nor in
  anybody else's (starts stay flat over a ramp to thousands), and it vanishes with the container;
- it is a child subreaper: a ``<runtime> run -d`` container is reparented to it and reaped by it
  (this host's PID 1 does not reap orphans);
- other commands are spawned with ``posix_spawn``; the harness never forks for them;
- it runs in a session of its own, so a Ctrl-C of the harness does not reach it or the containers.

The harness talks to it over one socket (fds passed with SCM_RIGHTS; requests matched by id, so
threads may start containers concurrently); no descriptor is held per live container once it is
ready. When the harness dies the launcher stays only while it still has containers to reap;
:func:`sweep` removes those, the launcher, bundles and cgroups.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import select
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

from harness.backends.base import BackendError, Instance, InstanceSpec, MemorySample
from harness.backends.containers import container_spec
from harness.backends.readiness import close_ready, wait_then_close
from hostkit import mountinfo
from hostkit.paths import PREFIX, state_dir
from hostkit.procs import running, wait_exit
from imagestore.image import Image
from runtime import cgroups
from runtime import spec as runtime_spec

GRACE_S = 10.0  # SIGTERM → SIGKILL
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = f"{PREFIX}oci"
RUNTIMES = ("crun", "runc")
HELPER_ARGV0 = f"{PREFIX}oci-launcher"
STARTUP_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 120.0  # a runtime command that takes longer is reported as hung

# --- places --------------------------------------------------------------------------------


def bundles_dir() -> Path:
    return state_dir() / "oci"


def runtime_root(runtime: str) -> Path:
    """The runtime's ``--root`` state directory."""
    return state_dir() / "oci-state" / runtime


def launchers_dir() -> Path:
    return state_dir() / "oci-state" / "launchers"


@dataclass(frozen=True)
class Bundle:
    """Paths of one container's bundle."""

    name: str
    dir: Path

    @classmethod
    def for_name(cls, name: str) -> Bundle:
        return cls(name, bundles_dir() / name)

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    @property
    def log(self) -> Path:
        return self.dir / "stderr.log"


def cgroups_path(name: str) -> str:
    return f"/{CGROUP_PARENT}/{name}"


# --- config.json (pure) --------------------------------------------------------------------


def build_config(spec: InstanceSpec) -> dict[str, Any]:
    """The OCI runtime-spec ``config.json`` for ``spec`` (rootfs at ``<bundle>/rootfs``).

    It is ``runtime.spec.default_spec`` (what ``ours`` runs) with the root made bundle-relative,
    a ``cvbench-`` cgroups path and a deny-all device cgroup: same namespaces, mounts,
    capabilities, masked paths and limits as ``ours``.
    """
    if not spec.name.startswith(PREFIX):
        raise BackendError(f"container name {spec.name!r} must start with {PREFIX!r}")
    if spec.network not in ("none", "host"):
        raise BackendError(f"network {spec.network!r} not supported by the OCI backends yet")
    oci_spec = container_spec(spec)
    oci_spec.root = runtime_spec.Root("rootfs", readonly=False)  # the overlay, bundle-relative
    oci_spec.linux.cgroups_path = cgroups_path(spec.name)
    config = oci_spec.to_oci()
    config["linux"]["resources"]["devices"] = [{"allow": False, "access": "rwm"}]
    return config


# --- host facts ----------------------------------------------------------------------------


def _cgroup_mode() -> str:
    """``v2``, ``hybrid`` or ``v1`` (``unknown`` if no cgroup filesystem is mounted)."""
    try:
        return cgroups.detect_mode()
    except cgroups.CgroupError:
        return "unknown"


def _cgroup_dirs(name: str | None) -> list[Path]:
    """Every directory a runtime may have made for container ``name`` (v1, hybrid or v2);
    with ``None``, those of the shared ``cvbench-oci`` parent."""
    relative = cgroups_path(name).lstrip("/") if name else CGROUP_PARENT
    candidates = [CGROUP_ROOT / relative]
    if CGROUP_ROOT.is_dir():
        candidates += [path / relative for path in sorted(CGROUP_ROOT.iterdir()) if path.is_dir()]
    return [path for path in candidates if path.is_dir()]


def _cgroup_pids(name: str) -> list[int]:
    """The processes in container ``name``'s cgroup (any hierarchy lists them all)."""
    for directory in _cgroup_dirs(name):
        with contextlib.suppress(OSError, ValueError):
            return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    return []


def _remove_parent_if_empty() -> list[Path]:
    """Remove the shared ``cvbench-oci`` parent from every hierarchy where nothing is left in
    it (a runtime recreates it with its next container); return what was removed."""
    removed = []
    for directory in _cgroup_dirs(None):
        with contextlib.suppress(OSError):  # EBUSY/ENOTEMPTY: containers still live in it
            directory.rmdir()
            removed.append(directory)
    return removed


def _needs_private_cgroup_view(runtime: str, mode: str) -> bool:
    return Path(runtime).name == "crun" and mode == "hybrid"


# --- the launcher ----------------------------------------------------------------------------


@dataclass
class Result:
    returncode: int
    stdout: str = ""
    stderr: str = ""


def _launcher_main(sock_fd: int, unmount_unified: bool) -> None:
    """Body of the launcher process (a fresh interpreter; stdlib and hostkit.syscalls only).

    Requests are JSON datagrams with an ``id``; a ``spawn`` is answered when its command exits,
    so several commands may run at once. Every child is reaped, also adopted orphans.
    """
    from hostkit import syscalls

    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    syscalls.unshare(syscalls.CLONE_NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_SLAVE)
    if unmount_unified:
        syscalls.umount2(str(CGROUP_ROOT / "unified"), syscalls.MNT_DETACH)
    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pending: dict[int, int] = {}  # pid of a spawned command -> request id
    connected = True

    def reply(message: dict[str, Any]) -> None:
        if connected:
            with contextlib.suppress(OSError):
                sock.send(json.dumps(message).encode())

    def reap() -> bool:
        """Reap every exited child; False once there are no children left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid in pending:
                reply({"id": pending.pop(pid), "rc": os.waitstatus_to_exitcode(status)})

    def spawn_with_overlay(argv: list[str], fds: list[int], overlay: dict[str, str]) -> int:
        """Fork a child that mounts the overlay in a mount namespace of its own, then execs.

        The container's mount namespace is copied from that one, so it holds one overlay, not
        one per live container, and the overlay vanishes with the container.
        """
        pid = os.fork()
        if pid:
            return pid
        try:
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)
            syscalls.unshare(syscalls.CLONE_NEWNS)
            syscalls.mount("overlay", overlay["target"], "overlay", 0, overlay["data"])
            os.execve(argv[0], argv, os.environ)
        except BaseException as error:
            with contextlib.suppress(BaseException):
                os.write(2, f"cvbench oci launcher: {error}\n".encode())
        finally:
            os._exit(127)

    def handle(request: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
        try:
            if request["op"] != "spawn":
                raise ValueError(f"unknown op {request['op']!r}")
            if request.get("overlay"):
                pid = spawn_with_overlay(request["argv"], fds, request["overlay"])
            else:
                pid = os.posix_spawn(
                    request["argv"][0],
                    request["argv"],
                    dict(os.environ),
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)
                    ],
                    setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD),
                )
        finally:
            for fd in fds:
                os.close(fd)
        pending[pid] = request["id"]
        return None  # answered by reap() when the command exits

    sock.send(b'{"id": -1, "rc": 0}')
    while connected or reap():
        readable, _, _ = select.select([sock, wake_r] if connected else [wake_r], [], [])
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        if connected and sock in readable:
            try:
                message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3, socket.MSG_CMSG_CLOEXEC)
            except OSError:
                message, fds = b"", []
            if not message:  # the harness is gone: stay only while containers need reaping
                connected = False
                sock.close()
                continue
            request = json.loads(message)
            try:
                answer = handle(request, fds)
            except Exception as error:  # report it to the caller, keep serving
                answer = {"id": request.get("id"), "rc": -1, "error": f"{error}"}
            if answer is not None:
                reply(answer)
        reap()


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


class Launcher:
    """Client side of one launcher process: runs runtime commands in its mount namespace.

    Thread-safe: requests from several threads are in flight at once, matched by id.
    """

    def __init__(self, unmount_unified: bool, label: str = "oci") -> None:
        self.unmount_unified = unmount_unified
        self._ids = itertools.count()
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}
        self._abandoned: set[int] = set()
        self._receiving = False
        self._dead = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        code = (
            f"import sys; sys.path.insert(0, {_package_root()!r})\n"
            "from harness.backends.oci import _launcher_main\n"
            f"_launcher_main({theirs.fileno()}, {unmount_unified!r})\n"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", code, HELPER_ARGV0, label],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._sock: socket.socket | None = ours
        self.record = launchers_dir() / f"{label}-{self.process.pid}.json"
        launchers_dir().mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps({"pid": self.process.pid, "label": label}))
        try:
            self._await(-1, STARTUP_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(
        self, message: dict[str, Any], fds: tuple[int, ...] = (), timeout: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any]:
        """Send one request (with ``fds``) and wait for its answer."""
        request_id = next(self._ids)
        with self._send_lock:
            if self._sock is None or self._dead:
                raise BackendError("OCI launcher is not running")
            try:
                socket.send_fds(self._sock, [json.dumps({**message, "id": request_id}).encode()],
                                list(fds))  # fmt: skip
            except OSError as error:
                raise BackendError(f"OCI launcher: {error.strerror}") from None
        answer = self._await(request_id, timeout)
        if "error" in answer:
            raise BackendError(f"OCI launcher: {message['op']}: {answer['error']}")
        return answer

    def _await(self, request_id: int, timeout: float) -> dict[str, Any]:
        """Wait for the answer to ``request_id``; one waiting thread at a time reads the socket."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                while True:
                    if request_id in self._replies:
                        return self._replies.pop(request_id)
                    remaining = deadline - time.monotonic()
                    if self._dead or remaining <= 0:
                        self._abandoned.add(request_id)
                        raise BackendError(
                            "OCI launcher died" if self._dead else "OCI launcher: no answer in time"
                        )
                    if not self._receiving:
                        self._receiving = True
                        break
                    self._cond.wait(remaining)
            data = b""
            try:
                sock = self._sock
                if sock is not None and select.select([sock], [], [], remaining)[0]:
                    data = sock.recv(1 << 16)
                    if not data:
                        self._dead = True
            except (OSError, ValueError):
                self._dead = True
            finally:
                with self._cond:
                    self._receiving = False
                    if data:
                        answer = json.loads(data)
                        if answer["id"] not in self._abandoned:
                            self._replies[answer["id"]] = answer
                        self._abandoned.discard(answer["id"])
                    self._cond.notify_all()

    def spawn(
        self,
        argv: list[str],
        stdin: int,
        stdout: int,
        stderr: int,
        overlay: tuple[Path, Path, Path, Path] | None = None,
    ) -> int:
        """Run ``argv`` with the given stdio to completion; return its exit code.

        ``overlay`` = (lower, upper, work, target): mount that overlay in a mount namespace
        private to the command (and to the container it starts) first.
        """
        message: dict[str, Any] = {"op": "spawn", "argv": argv}
        if overlay is not None:
            lower, upper, work, target = overlay
            message["overlay"] = {
                "target": str(target),
                "data": f"lowerdir={lower},upperdir={upper},workdir={work}",
            }
        return self.request(message, (stdin, stdout, stderr))["rc"]

    def run(self, argv: list[str]) -> Result:
        """Run ``argv`` and capture its (small) output in memory files."""
        out = os.memfd_create("cvbench-out", os.MFD_CLOEXEC)
        err = os.memfd_create("cvbench-err", os.MFD_CLOEXEC)
        null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            rc = self.spawn(argv, null, out, err)
            return Result(rc, _read_all(out), _read_all(err))
        finally:
            for fd in (out, err, null):
                os.close(fd)

    def close(self, timeout: float = 10.0) -> None:
        """Disconnect; the launcher exits once it has no child left (killed after ``timeout``)."""
        with self._send_lock, self._cond:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
                self._sock.close()
                self._sock = None
            self._dead = True
            self._cond.notify_all()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.record.unlink(missing_ok=True)


# --- the backend ---------------------------------------------------------------------------


@dataclass
class OciHandle:
    bundle: Bundle
    pid: int
    ready_fd: int | None


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class OciBackend:
    """A peer backend driving an OCI runtime binary (``crun``, ``runc``) through bundles."""

    name = "oci"
    runtime = "crun"

    def __init__(self, *, binary: str | None = None, grace_s: float = GRACE_S) -> None:
        self.binary = binary or shutil.which(self.runtime) or self.runtime
        self.grace_s = grace_s
        self.mode = _cgroup_mode()
        self.live: dict[str, Instance] = {}
        self._launcher: Launcher | None = None
        self._lock = threading.Lock()

    # helpers

    @property
    def root(self) -> Path:
        return runtime_root(self.runtime)

    def _runtime_argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    @property
    def launcher(self) -> Launcher:
        with self._lock:
            if self._launcher is None or self._launcher.process.poll() is not None:
                self._launcher = Launcher(
                    _needs_private_cgroup_view(self.binary, self.mode), label=self.runtime
                )
            return self._launcher

    # Backend protocol

    def prepare(self, image: Image) -> None:
        if shutil.which(self.binary) is None:
            raise BackendError(f"{self.runtime} not found on PATH")
        if not (image.rootfs / image.init.lstrip("/")).exists():
            raise BackendError(f"image {image.name} has no {image.init}")
        self.root.mkdir(parents=True, exist_ok=True)
        bundles_dir().mkdir(parents=True, exist_ok=True)
        self.launcher  # noqa: B018 - start it now, not during the first measured start

    def start(self, spec: InstanceSpec) -> Instance:
        config = build_config(spec)
        bundle = Bundle.for_name(spec.name)
        launcher = self.launcher
        try:
            bundle.dir.mkdir(parents=True)
        except FileExistsError:
            raise BackendError(f"{spec.name}: bundle {bundle.dir} already exists") from None
        self.root.mkdir(parents=True, exist_ok=True)
        read_fd = None
        try:
            for directory in (bundle.upper, bundle.work, bundle.rootfs):
                directory.mkdir()
            bundle.config.write_text(json.dumps(config))
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            log_fd = os.open(bundle.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)
            null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                argv = self._runtime_argv(
                    "run", "-d", "--pid-file", str(bundle.pid_file),
                    "--bundle", str(bundle.dir), spec.name,
                )  # fmt: skip
                overlay = (spec.image.rootfs, bundle.upper, bundle.work, bundle.rootfs)
                rc = launcher.spawn(argv, null_fd, write_fd, log_fd, overlay)
            finally:
                for fd in (write_fd, log_fd, null_fd):
                    os.close(fd)
            if rc != 0:
                raise BackendError(f"{self.runtime} run {spec.name} failed: {self._log(bundle)}")
            pid = int(bundle.pid_file.read_text())
        except BaseException:
            if read_fd is not None:
                os.close(read_fd)
            self._teardown(bundle)
            raise
        instance = Instance(spec.name, self.name, OciHandle(bundle, pid, read_fd), [pid])
        self.live[spec.name] = instance
        return instance

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        wait_then_close(instance.handle, timeout, instance.name)

    def stop(self, instance: Instance) -> None:
        handle: OciHandle = instance.handle
        close_ready(handle)
        if running(handle.pid):
            self.launcher.run(self._runtime_argv("kill", instance.name, "TERM"))
            if not wait_exit(handle.pid, self.grace_s):
                self.launcher.run(self._runtime_argv("kill", instance.name, "KILL"))
                wait_exit(handle.pid, self.grace_s)
        self._teardown(handle.bundle)
        self.live.pop(instance.name, None)

    def memory(self, instance: Instance) -> MemorySample:
        from harness import metrics

        # The container's cgroup lists its processes: no scan of every host process for
        # children (psutil's recursive children() reads all of /proc once per instance).
        pids = _cgroup_pids(instance.name)
        sample = (metrics.process_memory(pids, include_children=False) if pids
                  else metrics.process_memory(instance.pids))
        return dataclasses.replace(sample, cgroup=self._cgroup_memory(instance.name))

    def cleanup(self) -> None:
        for instance in list(self.live.values()):
            with contextlib.suppress(BackendError):
                self.stop(instance)
        with self._lock:
            if self._launcher is not None:
                self._launcher.close()
                self._launcher = None
        _remove_parent_if_empty()

    def describe(self) -> dict[str, Any]:
        try:
            out = subprocess.run(
                [self.binary, "--version"], capture_output=True, text=True, check=False
            ).stdout
        except OSError:
            out = ""
        first = out.splitlines()[0] if out else ""
        return {
            "runtime": self.runtime,
            "version": first.split()[-1] if first else "unknown",
            "cgroup_mode": self.mode,
            "private_cgroup_view": _needs_private_cgroup_view(self.binary, self.mode),
            "launcher": "subreaper in a private mount namespace, overlay per container namespace",
        }

    # internals

    def _teardown(self, bundle: Bundle) -> None:
        """Delete the container, unmount and remove its bundle; tolerate partial states."""
        launcher = self.launcher
        result = launcher.run(self._runtime_argv("delete", "-f", bundle.name))
        if result.returncode != 0 and (self.root / bundle.name).exists():
            raise BackendError(f"{self.runtime} delete {bundle.name}: {result.stderr.strip()}")
        shutil.rmtree(bundle.dir, ignore_errors=True)
        for directory in _cgroup_dirs(bundle.name):
            with contextlib.suppress(OSError):
                directory.rmdir()

    def _log(self, bundle: Bundle) -> str:
        try:
            text = bundle.log.read_text(errors="replace").strip()
        except OSError:
            return "no log"
        return text.splitlines()[-1] if text else "no log"

    def _cgroup_memory(self, name: str) -> int | None:
        relative = cgroups_path(name).lstrip("/")
        for path in (
            CGROUP_ROOT / "memory" / relative / "memory.usage_in_bytes",
            CGROUP_ROOT / relative / "memory.current",
        ):
            with contextlib.suppress(OSError, ValueError):
                return int(path.read_text())
        return None


# --- sweep ---------------------------------------------------------------------------------


def _session_members(sid: int) -> list[int]:
    """Every process of session ``sid`` (the launcher and what it spawned)."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    members.append(int(entry.name))
    return members


def _kill_launchers(removed: list[str], timeout: float = 5.0) -> None:
    """Kill launchers left by dead harnesses, with every runtime command still in flight in
    their sessions: a ``run`` caught mid-way must not finish after the sweep deleted its
    container."""
    directory = launchers_dir()
    if not directory.is_dir():
        return
    for record in directory.glob("*.json"):
        try:
            pid = int(json.loads(record.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pid = 0
        if pid and _is_launcher(pid):
            members = _session_members(pid)
            for member in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member, signal.SIGKILL)
            for member in members:
                wait_exit(member, timeout)
            removed.append(f"oci launcher (pid {pid}) and {len(members) - 1} process(es) "
                           "in its session")
        record.unlink(missing_ok=True)


def _is_launcher(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return HELPER_ARGV0.encode() in handle.read()
    except OSError:
        return False


def _kill_cgroup(name: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process left in container ``name``'s cgroups; wait until they are gone."""
    pids = sorted({pid for directory in _cgroup_dirs(name)
                   for pid in _read_procs(directory / "cgroup.procs")})
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_exit(pid, timeout)
    return pids


def _read_procs(path: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(pid) for pid in path.read_text().split()]
    return []


def sweep() -> list[str]:
    """Remove what crashed harnesses left: launchers (and commands in flight), containers,
    processes left in container cgroups, mounts, bundles, cgroups.

    The launchers go first, so no ``run`` caught mid-way creates a container after it was
    looked for; processes still in a container's cgroup (a half-made container) are killed
    before the cgroup is removed.
    """
    removed: list[str] = []
    _kill_launchers(removed)
    names: set[str] = set()  # every bundle is made before its container: names come from here
    mode = _cgroup_mode()
    if bundles_dir().is_dir():
        names |= {path.name for path in bundles_dir().iterdir()}
    for runtime in RUNTIMES:
        root = runtime_root(runtime)
        binary = shutil.which(runtime)
        ids = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        ids = [name for name in ids if name.startswith(PREFIX)]
        names |= set(ids)
        if not ids or binary is None:
            continue
        launcher = Launcher(_needs_private_cgroup_view(binary, mode), label=f"sweep-{runtime}")
        try:
            for name in ids:
                result = launcher.run([binary, "--root", str(root), "delete", "-f", name])
                if result.returncode == 0:
                    removed.append(f"{runtime} container {name}")
                else:
                    removed.append(f"{runtime} container {name}: {result.stderr.strip()}")
                    shutil.rmtree(root / name, ignore_errors=True)  # a half-made state dir
        finally:
            launcher.close()
    for point in mountinfo.points_under(bundles_dir()):
        with contextlib.suppress(OSError):
            from hostkit import syscalls

            syscalls.umount2(point, syscalls.MNT_DETACH)
            removed.append(f"mount {point}")
    for name in sorted(names):
        killed = _kill_cgroup(name)
        if killed:
            removed.append(f"processes {' '.join(map(str, killed))} of {name}")
        bundle = Bundle.for_name(name)
        if bundle.dir.exists():
            shutil.rmtree(bundle.dir, ignore_errors=True)
            removed.append(f"bundle {bundle.dir}")
        for directory in _cgroup_dirs(name):
            try:
                directory.rmdir()
                removed.append(f"cgroup {directory}")
            except OSError as error:
                removed.append(f"cgroup {directory}: {error.strerror}")
    removed.extend(f"cgroup {directory}" for directory in _remove_parent_if_empty())
    return removed


__all__ = ["OciBackend", "Launcher", "build_config", "sweep", "Bundle"]
