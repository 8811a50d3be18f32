"""What the engine backends share.

- the image: cvbench's image store's rootfs as a reproducible tarball (sorted entries, owner
  root, mtime 0), imported into an engine under ``cvbench-<image name>:<digest[:12]>`` with
  the full digest as the label ``cvbench.digest``; nothing is pulled from a registry;
- readiness: the READY line read from an engine's attach stream (Docker's multiplexed frames)
  or a console, waiting on the socket (no sleep-polling); the ``exit`` rule reads it to its
  end, then asks the engine for the container's exit code; the ``tcp`` rule connects from
  the host to the container's address on the engine's bridge network
  (:func:`harness.backends.readiness.connect_ready`);
- the container's init: found in the container's cgroup by its pid-namespace pid 1, so no API
  call is needed to know which host pid to watch with a pidfd;
- memory: :class:`EngineMemorySample` adds the engine's per-instance process (Docker's shim,
  Podman's conmon, the LXC monitor: ``mem_monitor_pss_bytes``, also inside ``mem_pss_bytes``)
  and its daemons (``mem_engine_pss_bytes``, on the first instance sampled in a pass);
- the security profile: the one ``ours``, crun and runc run (:mod:`runtime.spec`), the
  containers/Docker default seccomp profile (:mod:`runtime.seccomp`).
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import socket
import struct
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends import launch as launches
from harness.backends.base import (
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    NotReady,
)
from harness.backends.chores import SplitStart
from harness.backends.readiness import check_exit, connect_ready
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit.paths import PREFIX, cache_dir
from hostkit.procs import parent_pid, wait_pidfd
from imagestore.image import Image
from runtime import cgroups
from runtime import spec as runtime_spec

RUNTIMES = ("runc", "crun")  # the runtimes the docker and podman backends run
OURS = "cvbench-runtime"  # ours as the engines name it (dockerd's --add-runtime, containers.conf)
READY = b"READY"
DIGEST_LABEL = "cvbench.digest"
SETUP = "run 'bash scripts/setup.sh' as root"
BURST_GAP_S = 1.0  # memory() calls closer than this belong to one pass of the memory scenario


def now() -> float:
    """The harness's clock (:func:`harness.metrics.now_ns`) in seconds, for an engine's own
    phases inside a start."""
    from harness import metrics

    return metrics.now_ns() / 1e9


def check_name(name: str) -> None:
    if not name.startswith(PREFIX):
        raise BackendError(f"container name {name!r} must start with {PREFIX!r}")


# --- the image ------------------------------------------------------------------------------


def image_repository(image: Image) -> str:
    """``cvbench-<name>`` (lower case, as engines want repository names)."""
    return f"{PREFIX}{image.name}".lower()


def image_tag(image: Image) -> str:
    return image.digest[:12]


def image_tarball(image: Image) -> bytes:
    """The image's rootfs as a tar archive, byte for byte the same for the same digest."""
    buffer = io.BytesIO()
    root = image.rootfs
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for directory, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = os.path.join(directory, name)
                info = archive.gettarinfo(path, arcname=os.path.relpath(path, root))
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as handle:
                        archive.addfile(info, handle)
                else:
                    archive.addfile(info)
    return buffer.getvalue()


# --- readiness ------------------------------------------------------------------------------


class FrameDecoder:
    """Payload of Docker's multiplexed attach stream: 8-byte headers (stream, 0, 0, 0,
    big-endian length) before each frame. ``multiplexed=False`` passes bytes through (a tty)."""

    def __init__(self, multiplexed: bool = True) -> None:
        self.multiplexed = multiplexed
        self.pending = b""
        self.remaining = 0  # bytes of the current frame's payload still to come
        self.keep = True  # the current frame is stdout

    def feed(self, data: bytes) -> bytes:
        if not self.multiplexed:
            return data
        self.pending += data
        out = b""
        while self.pending:
            if self.remaining == 0:
                if len(self.pending) < 8:
                    break
                stream, size = self.pending[0], struct.unpack(">I", self.pending[4:8])[0]
                self.pending = self.pending[8:]
                self.remaining, self.keep = size, stream == 1
                continue
            chunk, self.pending = self.pending[:self.remaining], self.pending[self.remaining:]
            self.remaining -= len(chunk)
            if self.keep:
                out += chunk
        return out


def _chunks(fd: int, timeout: float, size: int, timed_out: str) -> Iterator[bytes]:
    """What arrives on ``fd`` (a socket or a pty master), chunk by chunk as read (not yet
    decoded), until its end; NotReady(``timed_out``) once ``timeout`` passed with nothing
    to read. EIO, a pty whose other side closed, is its end too."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise NotReady(timed_out)
        try:
            chunk = os.read(fd, size)
        except OSError:  # EIO: a pty whose other side closed
            return
        if not chunk:
            return
        yield chunk


def wait_ready_fd(fd: int, timeout: float, name: str,
                  decode: Callable[[bytes], bytes] = lambda data: data,
                  initial: bytes = b"", marker: bytes = READY) -> None:
    """Block until a line ``READY`` (or the readiness rule's ``marker``) arrives on ``fd``
    (a socket or a pty master); NotReady on timeout or end of stream. ``decode`` turns what
    was read into the workload's output."""
    shown = marker.decode(errors="replace")
    text = decode(initial)

    def found() -> bool:
        return any(line.strip() == marker for line in text.split(b"\n")[:-1])

    if found():
        return
    for chunk in _chunks(fd, timeout, 4096, f"{name}: no {shown} within {timeout:g} s"):
        text = text[-4096:] + decode(chunk)
        if found():
            return
    tail = text[-200:].decode(errors="replace").strip()
    raise NotReady(f"{name}: workload exited before {shown} (output: {tail!r})")


def read_to_eof_fd(fd: int, timeout: float, name: str,
                   decode: Callable[[bytes], bytes] = lambda data: data,
                   initial: bytes = b"") -> bytes:
    """Read ``fd`` (a socket or a pty master) until its end (the workload exited and the
    engine closed the stream); the decoded output's last 200 bytes. NotReady on timeout."""
    text = decode(initial)
    for chunk in _chunks(fd, timeout, 65536,
                         f"{name}: workload still runs after {timeout:g} s (no exit)"):
        text = (text + decode(chunk))[-4096:]
    return text[-200:]


def wait_rule_fd(instance: Instance, fd: int, timeout: float,
                 decode: Callable[[bytes], bytes] = lambda data: data, initial: bytes = b"",
                 *, exit_code: Callable[[float], int | None],
                 address: Callable[[], str | None], init: Callable[[], int | None]) -> None:
    """Wait for ``instance.ready`` on an engine's output ``fd``: its line; (``exit``) the
    stream's end, then ``exit_code(seconds left)`` (the engine's word; None: not exited);
    (``tcp``) a connection to ``address()`` (the engine's, asked once the container runs),
    the wait ended early by the exit of ``init()`` (the container's init, host pid)."""
    rule = instance.ready
    if rule.kind == EXIT:
        began = time.monotonic()
        tail = read_to_eof_fd(fd, timeout, instance.name, decode, initial)
        check_exit(instance.name, exit_code(max(0.0, timeout - (time.monotonic() - began))),
                   tail, timeout)
    elif rule.kind == TCP:
        began = time.monotonic()
        where = address()
        if where is None:
            if init() is None:  # gone: an engine forgets a stopped container's address
                raise NotReady(f"{instance.name}: workload exited before port {rule.port} "
                               "accepted a connection")
            raise NotReady(f"{instance.name}: the engine gives no address on its bridge "
                           "network (network must be bridge)")
        connect_ready(where, rule.port, fd, max(0.0, timeout - (time.monotonic() - began)),
                      instance.name, init(), whole=timeout, eof_is_exit=True)
    else:
        wait_ready_fd(fd, timeout, instance.name, decode=decode, initial=initial,
                      marker=rule.marker)


def no_route(subnet: str, bridge: str) -> str:
    """Why the ``tcp`` rule is refused when :func:`routed_via` says no."""
    return (f"the host has no route to {subnet} through {bridge}, so no connection to a "
            "container would go over the bridge")


def routed_via(subnet: str, interface: str) -> bool:
    """Whether the host reaches ``subnet``'s hosts through ``interface`` (its routing table's
    answer for one of them), so that the ``tcp`` rule's connection goes over the bridge and
    nowhere else (a default route could hand it to something that accepts anything)."""
    import ipaddress

    from pyroute2 import IPRoute

    probe = str(ipaddress.ip_network(subnet)[2])
    try:
        with IPRoute() as ipr:
            routes = ipr.route("get", dst=probe)
            found = ipr.link_lookup(ifname=interface)
    except Exception:  # no route at all: unreachable
        return False
    return bool(routes and found and routes[0].get_attr("RTA_OIF") == found[0])


# --- processes and cgroups ------------------------------------------------------------------


def namespace_init(pids: Iterable[int]) -> int | None:
    """The pid (among ``pids``) that is pid 1 of its own pid namespace: a container's init."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"NSpid:"):
                        fields = line.split()
                        if len(fields) > 2 and fields[-1] == b"1":
                            return pid
                        break
        except OSError:
            continue
    return None


def socket_peer_pid(path: str | Path) -> int | None:
    """The pid of the process serving the unix socket ``path`` (SO_PEERCRED), or None."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(path))
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
    except OSError:
        return None
    pid = struct.unpack("3i", creds)[0]
    return pid or None


def children_named(pid: int, names: tuple[str, ...]) -> list[int]:
    """Direct children of ``pid`` whose command name is one of ``names``."""
    import psutil

    try:
        return [child.pid for child in psutil.Process(pid).children()
                if child.name() in names]
    except psutil.Error:
        return []


# --- memory ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineMemorySample(MemorySample):
    """A container's memory plus its engine's: ``monitor_pss`` is the engine's per-instance
    process (Docker's containerd-shim, Podman's conmon, the LXC monitor), counted in ``pss``
    too; ``engine_pss`` the engine's daemons (shared by every instance)."""

    monitor_pss: int | None = None
    engine_pss: int | None = None


def pss_of(pids: Iterable[int]) -> int | None:
    from harness import metrics

    pids = [pid for pid in pids if pid]
    return metrics.process_memory(pids, include_children=False).pss if pids else None


class EngineGauge:
    """The engine daemons' PSS, sampled once per pass of the memory scenario: the first
    :meth:`take` after a pause of :data:`BURST_GAP_S` samples it, the others of that burst
    return None (so the runs' samples hold one engine reading per pass, not one per instance).
    """

    def __init__(self, daemons: Callable[[], list[int]]) -> None:
        self.daemons = daemons
        self._last = 0.0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            now = time.monotonic()
            fresh = now - self._last > BURST_GAP_S
            self._last = now
        return self.sample() if fresh else None

    def sample(self) -> int | None:
        return pss_of(self.daemons())


def instance_memory(init: int | None, monitor: int | None, cgroup: int | None,
                    gauge: EngineGauge) -> EngineMemorySample:
    """PSS/USS/RSS of the container's processes (its init and descendants) plus its monitor
    process, the monitor alone, the container's cgroup usage and (once per pass) the daemons."""
    from harness import metrics

    container = metrics.process_memory([init] if init else [], include_children=True)
    alone = metrics.process_memory([monitor] if monitor else [], include_children=False)
    return EngineMemorySample(
        pss=(container.pss or 0) + (alone.pss or 0),
        uss=(container.uss or 0) + (alone.uss or 0),
        rss=(container.rss or 0) + (alone.rss or 0),
        cgroup=cgroup,
        monitor_pss=alone.pss if monitor else None,
        engine_pss=gauge.take(),
    )


# --- the OCI runtime under an engine --------------------------------------------------------


def crun_wrapper() -> Path:
    """crun with a v1-only cgroup view on hybrid hosts
    (``harness/backends/engines/crun-v1view.c``, built by set-up)."""
    return cache_dir() / "bin" / "crun-v1view"


def engine_crun(mode: str | None = None) -> Path:
    """What the engines run as ``crun`` on a host in cgroup ``mode`` (default: this host's):
    the :func:`crun_wrapper` on a hybrid host, which crun 1.8 refuses as it is; plain crun
    (``/usr/bin/crun``, or the one on PATH) on v1 and v2 hosts, where it runs as it is.
    ``scripts/setup.sh`` makes the same choice for dockerd's ``--add-runtime crun=``."""
    if mode is None:
        try:
            mode = cgroups.detect_mode()
        except cgroups.CgroupError:
            mode = "none"
    if mode == "hybrid":
        return crun_wrapper()
    import shutil

    found = shutil.which("crun")
    return Path(found) if found else Path("/usr/bin/crun")


def ours_runtime() -> Path:
    """``cvbench-runtime`` as installed with cvbench (:mod:`runtime.oci`, the package's console
    script): in the scripts directory of the interpreter running cvbench (the virtualenv's
    ``bin``), by its resolved path. What the podman-ours backend gives its service, and what
    ``scripts/setup.sh`` registers with dockerd (``--add-runtime cvbench-runtime=``)."""
    import sysconfig

    return (Path(sysconfig.get_path("scripts")) / OURS).resolve()


def command_name(pid: int) -> str | None:
    """``/proc/<pid>/comm``, or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def check_runtime(runtime: str, engine: str, runtimes: tuple[str, ...] = RUNTIMES) -> None:
    if runtime not in runtimes:
        raise BackendError(f"{engine}: runtime must be one of {', '.join(runtimes)}, "
                           f"not {runtime!r}")


# --- the security profile every container backend runs --------------------------------------


def reference_spec(spec: InstanceSpec) -> runtime_spec.Spec:
    """The spec ``ours``, crun and runc run for ``spec`` (BackendError on bad limits)."""
    from harness.backends.containers import container_spec

    return container_spec(spec)


def capability_names(spec: runtime_spec.Spec) -> list[str]:
    """The spec's bounding capabilities without the ``CAP_`` prefix (as engines name them)."""
    return [cap.removeprefix("CAP_") for cap in spec.process.capabilities.bounding]


def seccomp_profile_path() -> Path:
    """The seccomp profile every container backend installs (Docker/containers format)."""
    from runtime import seccomp

    try:
        return seccomp.load_profile().path
    except seccomp.SeccompError as error:
        raise BackendError(str(error)) from None


def security_facts(differences: list[str], **extra: Any) -> dict[str, Any]:
    """``describe()["security"]``: the reference profile and, plainly, what differs."""
    return {
        "namespaces": list(runtime_spec.DEFAULT_NAMESPACES),
        "capabilities": list(runtime_spec.DEFAULT_CAPABILITIES),
        "masked_paths": list(runtime_spec.DEFAULT_MASKED),
        "readonly_paths": list(runtime_spec.DEFAULT_READONLY),
        "no_new_privileges": True,
        "seccomp": "containers/Docker default profile (runtime.seccomp)",
        **extra,
        "differences": differences,
    }


def memory_facts(monitor: str, daemons: str) -> dict[str, str]:
    return {"mem_pss_bytes": f"the container's processes plus its {monitor}",
            "mem_monitor_pss_bytes": f"the {monitor} alone",
            "mem_engine_pss_bytes": f"{daemons}, on the first instance sampled in a pass"}


# --- cvbench clean ---------------------------------------------------------------------------


def sweep_cgroups(parents: list[str]) -> list[str]:
    """Kill what is left in the ``parents`` cgroup trees and remove them (every hierarchy)."""
    removed = []
    try:
        driver = cgroups.every_hierarchy()
    except cgroups.CgroupError:
        return []
    for parent in parents:
        for path in _tree(driver, parent):
            try:
                driver.kill(path, 5.0)
                driver.remove(path)
                removed.append(f"cgroup {path}")
            except (cgroups.CgroupError, OSError) as error:
                removed.append(f"cgroup {path}: {error}")
    return removed


def _tree(driver: cgroups.Driver, parent: str) -> list[str]:
    """``parent`` and every cgroup under it, deepest first, in any of the driver's trees."""
    found: set[str] = set()
    for top in driver.directories(parent):
        if top.is_dir():
            base = top.parent
            for directory, _, _ in os.walk(top):
                found.add(os.path.relpath(directory, base))
    return sorted(found, key=lambda path: path.count("/"), reverse=True)


# --- the engines driven through an HTTP API: Docker, Podman ----------------------------------


@dataclass
class ApiHandle:
    """A container of an engine's API: its id, the attach stream until READY was read (and
    what came with the attach answer), its init once known, and its cgroup."""

    id: str
    stream: Any = None  # a socket, or the SDK's SocketIO around one
    early: bytes = b""
    init: int | None = None  # the container's init (host pid)
    cgroup: str = ""  # relative to the cgroup root
    exited: bool = False  # the engine told its exit code (rule exit): nothing left to stop


class ApiEngine(SplitStart):
    """What Docker and Podman do alike: READY read on the attach stream (``exit``: the
    stream's end, then the API's wait for the exit code; ``tcp``: a connection to the
    address the API's inspect gives on the backend's network), the container's init found
    in its cgroup (no API call), stopped by the API's kill (TERM, KILL after the grace time)
    until its pidfd says it exited, its memory with its monitor's (shim, conmon)."""

    gauge: EngineGauge
    runtimes: tuple[str, ...] = RUNTIMES  # the OCI runtimes it may be given
    ready_kinds: tuple[str, ...] = (LINE, EXIT, TCP)
    # an imported image's workdir and user: the API's WorkingDir and User (its entrypoint and
    # cmd as the command, over an engine image that has no entrypoint of its own)
    launch_fields = launches.FIELDS

    def __init__(self, runtime: str, grace_s: float) -> None:
        super().__init__()
        check_runtime(runtime, self.name, self.runtimes)
        self.runtime = runtime
        self.grace_s = grace_s
        self._client: Any = None  # the API's client, from prepare() on
        self.info: dict[str, Any] = {}
        self.image_ref = ""
        self.image_id = ""
        self.image_digest = ""
        self.network_made = False
        self.cgroups = cgroups.every_hierarchy("v1")

    @property
    def api(self) -> Any:
        """The client's low-level API; BackendError before prepare()."""
        if self._client is None:
            raise BackendError(f"{self.name}: backend not prepared")
        return self._client.api

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        handle: ApiHandle = instance.handle
        if handle.stream is None:
            return
        problem = self.unreachable() if instance.ready.kind == TCP else None
        if problem is not None:
            close_stream(handle)
            raise NotReady(f"{instance.name}: {problem}")
        try:
            wait_rule_fd(instance, _raw(handle.stream).fileno(), timeout,
                         FrameDecoder().feed, handle.early,
                         exit_code=lambda waited: self._exited(handle, waited),
                         address=lambda: self._address(handle),
                         init=lambda: self._init(handle))
        finally:
            close_stream(handle)

    def _exited(self, handle: ApiHandle, timeout: float) -> int | None:
        code = self._exit_code(handle, timeout)
        handle.exited = code is not None
        return code

    def stop(self, instance: Instance) -> None:
        handle: ApiHandle = instance.handle
        close_stream(handle)
        if handle.exited:  # its init exited and is gone: its pid may be another's now
            return
        init = self._init(handle)
        if init is None:
            return  # never started, or already gone
        try:
            pidfd = os.pidfd_open(init)
        except ProcessLookupError:
            return
        try:
            for signal_name in ("TERM", "KILL"):
                try:
                    self._kill(instance, signal_name)
                except BackendError:
                    if not wait_pidfd(pidfd, 0):
                        raise
                    return  # it exited meanwhile: some runtimes then fail the engine's kill
                if wait_pidfd(pidfd, self.grace_s):
                    return
        finally:
            os.close(pidfd)

    def memory(self, instance: Instance) -> MemorySample:
        handle: ApiHandle = instance.handle
        init = self._init(handle)
        monitor = parent_pid(init) if init else None
        return instance_memory(init, monitor, self.cgroups.memory_usage(handle.cgroup),
                               self.gauge)

    def _init(self, handle: ApiHandle) -> int | None:
        """The container's init: its cgroup's pid-namespace pid 1 (no API call); the API's
        if the cgroup is not where it should be."""
        if handle.init is None or not os.path.exists(f"/proc/{handle.init}"):
            handle.init = namespace_init(self.cgroups.procs(handle.cgroup))
            if handle.init is None:
                handle.init = self._api_init(handle)
        return handle.init

    def _kill(self, instance: Instance, signal_name: str) -> None:
        """Send ``signal_name`` to the container through the API; BackendError unless it was
        sent, or the container is gone or not running."""
        raise NotImplementedError

    def _api_init(self, handle: ApiHandle) -> int | None:
        """The container's init as the API says (State.Pid), None if it cannot say."""
        raise NotImplementedError

    def unreachable(self) -> str | None:
        """Why the host cannot reach the backend's containers on its bridge (rule ``tcp``),
        or None if it can."""
        return None

    def _exit_code(self, handle: ApiHandle, timeout: float) -> int | None:
        """The container's exit code as the API's wait tells it, once it exited within
        ``timeout``; None if it did not (or the API could not say)."""
        raise NotImplementedError

    def _address(self, handle: ApiHandle) -> str | None:
        """The container's IPv4 address on the backend's bridge network, as the API's inspect
        says; None if it has none there."""
        raise NotImplementedError


def _raw(stream: Any) -> Any:
    return getattr(stream, "_sock", stream)


def close_stream(handle: ApiHandle) -> None:
    if handle.stream is not None:
        raw = _raw(handle.stream)  # SocketIO.close() forgets its socket without closing it
        with contextlib.suppress(OSError):
            handle.stream.close()
        with contextlib.suppress(OSError, AttributeError):
            raw.close()
        handle.stream = None
