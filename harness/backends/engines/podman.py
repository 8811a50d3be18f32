"""The ``podman`` backend: Debian's podman (daemonless, conmon per container) through its own
REST API, the libpod API of a ``podman system service`` the backend starts on a unix socket
of its state directory and stops when done, with the ``podman`` Python package's client.

Why the libpod API and not the Docker-compatible one: it takes the container's limits as OCI
``LinuxResources`` and the seccomp profile as a path (what the other backends run, with no
translation through Docker's HostConfig), and it offers podman's own create/start split
(create, ``init``: conmon and ``<runtime> create``, then start) which the compatible API hides.

The OCI runtime is podman's service-wide setting (a container's ``oci_runtime`` is ignored by
podman 4.3's API), so each backend runs its own service with ``runtime = "crun"`` (podman's
default; on a hybrid host the ``crun-v1view`` wrapper, as crun 1.8 refuses hybrid cgroups,
elsewhere plain crun) or ``"runc"``, written to a ``containers.conf`` of its own
(``CONTAINERS_CONF``), with file events (no journald needed) and one cgroup manager on every
host kind and init system: **cgroupfs** (:data:`CGROUP_MANAGER`), the one crun, runc and
``ours`` use (podman would pick systemd where systemd is PID 1, asking it for a scope per
container). The manager podman reports (``info.host.cgroupManager``) is recorded by
``describe()``, and ``prepare()`` refuses a service that does not run with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
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
)
from harness.backends.engines import common
from hostkit.paths import PREFIX, state_dir
from hostkit.procs import parent_pid, signal_and_wait, wait_pidfd
from imagestore.image import Image
from runtime import cgroups

API_VERSION = "4.3.0"  # the libpod API version asked for (Debian 12's podman 4.3)
NETWORK = f"{PREFIX}podman"
BRIDGE = f"{PREFIX}pd0"
SUBNET = "10.215.0.0/16"
CGROUP_PARENT = f"{PREFIX}podman"
CGROUP_MANAGER = "cgroupfs"
GRACE_S = 10.0
SERVICE_START_S = 30.0
API_TIMEOUT_S = 120
# Podman's default masked paths (containers/common 0.50), and those of its default masked or
# read-only paths that the reference profile does not have.
DEFAULT_MASKED = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats",
                  "/sys/dev/block", "/sys/devices/virtual/powercap", "/sys/firmware",
                  "/sys/fs/selinux")
EXTRA_DEFAULT_PATHS = ("/proc/timer_stats", "/sys/dev/block", "/sys/devices/virtual/powercap",
                       "/sys/fs/selinux", "/proc/asound")


def service_dir() -> Path:
    return state_dir() / "podman"


class Service:
    """A ``podman system service`` of our own, on ``<state dir>/podman/<label>.sock``."""

    def __init__(self, runtime: str, label: str) -> None:
        self.runtime = runtime
        self.label = label
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return service_dir() / f"{self.label}.sock"

    @property
    def conf(self) -> Path:
        return service_dir() / f"{self.label}.conf"

    @property
    def record(self) -> Path:
        return service_dir() / f"{self.label}.json"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        binary = shutil.which("podman")
        if binary is None:
            raise BackendError(f"podman: not installed: {common.SETUP}")
        directory = service_dir()
        directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.conf.write_text(containers_conf(self.runtime))
        log = open(directory / f"{self.label}.log", "ab")  # the child keeps its own copy
        try:
            self.process = subprocess.Popen(
                [binary, "system", "service", "--time=0", f"unix://{self.socket}"],
                env={**os.environ, "CONTAINERS_CONF": str(self.conf)},
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                start_new_session=True)  # a Ctrl-C of the harness must not reach it
        finally:
            log.close()
        self.record.write_text(json.dumps({"pid": self.process.pid}))
        deadline = time.monotonic() + SERVICE_START_S
        while not _answers(self.socket):  # set-up, before any clock
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = _tail(directory / f"{self.label}.log")
                self.stop()
                raise BackendError(f"podman: system service did not start ({tail})")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                signal_and_wait(self.process.pid, signal.SIGTERM, 10.0)
                if self.process.poll() is None:
                    self.process.kill()
            self.process.wait()
            self.process = None
        for path in (self.record, self.socket, self.conf, self.socket.with_suffix(".log")):
            path.unlink(missing_ok=True)


def containers_conf(runtime: str, mode: str | None = None) -> str:
    """The service's ``containers.conf``: ``runtime``, the cgroupfs manager, file events, and
    crun as the engines run it on a host in cgroup ``mode`` (:func:`common.engine_crun`)."""
    return (
        "# written by cvbench for its podman service\n"
        "[engine]\n"
        f'cgroup_manager = "{CGROUP_MANAGER}"\n'
        'events_logger = "file"\n'
        f'runtime = "{runtime}"\n'
        "[engine.runtimes]\n"
        f'crun = ["{common.engine_crun(mode)}"]\n'
        'runc = ["/usr/bin/runc", "/usr/sbin/runc", "/usr/local/bin/runc"]\n'
    )


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            sock.connect(str(path))
            sock.sendall(f"GET /v{API_VERSION}/libpod/_ping HTTP/1.0\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def client(path: Path) -> Any:
    from podman import PodmanClient

    return PodmanClient(base_url=f"unix://{path}", version=API_VERSION, timeout=API_TIMEOUT_S,
                        max_pool_size=64)


@dataclass
class PodmanHandle:
    id: str
    stream: socket.socket | None = None  # the attach connection, until READY was read
    early: bytes = b""  # what came with the attach answer's headers
    init: int | None = None
    cgroup: str = ""


class PodmanBackend(common.SplitStart):
    """Containers through the libpod API: create, init, attach, start; kill, remove."""

    name = "podman"

    def __init__(self, *, runtime: str = "crun", grace_s: float = GRACE_S) -> None:
        common.check_runtime(runtime, self.name)
        self.runtime = runtime
        self.grace_s = grace_s
        self.service = Service(runtime, f"{PREFIX}{runtime}-{os.getpid()}")
        self._client: Any = None
        self.info: dict[str, Any] = {}
        self.version: dict[str, Any] = {}
        self.image_ref = ""
        self.image_id = ""
        self.image_digest = ""
        self.seccomp_path = ""
        self.network_made = False
        self.cgroups = cgroups.every_hierarchy("v1")
        self.live: dict[str, Instance] = {}
        self.gauge = common.EngineGauge(lambda: [self.service.pid] if self.service.pid else [])

    @property
    def api(self) -> Any:
        if self._client is None:
            raise BackendError("podman: backend not prepared")
        return self._client.api

    # -- Backend protocol ---------------------------------------------------------------------

    def prepare(self, image: Image) -> None:
        if self.runtime == "crun" and not common.engine_crun().exists():
            raise BackendError(f"podman: {common.engine_crun()} missing: {common.SETUP}")
        self.seccomp_path = str(common.seccomp_profile_path())
        self.service.start()
        try:
            self._client = client(self.service.socket)
            self.info = self._json("GET", "/info")
            self.version = self._json("GET", "/version")
            self.cgroups = cgroups.every_hierarchy(
                "v2" if self.info["host"].get("cgroupVersion") == "v2" else "v1")
            manager = self.info["host"].get("cgroupManager")
            if manager != CGROUP_MANAGER:
                raise BackendError(f"podman: the service runs with the {manager} cgroup "
                                   f"manager, not {CGROUP_MANAGER} as its containers.conf "
                                   f"asks ({self.service.conf})")
            self._import(image)
            self._network()
        except BaseException:
            self.cleanup()
            raise

    def resume(self, instance: Instance) -> None:
        begin = _now()
        self._call("POST", f"/containers/{instance.handle.id}/start", instance.name)
        instance.phases["engine_start_s"] = _now() - begin

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        handle: PodmanHandle = instance.handle
        if handle.stream is None:
            return
        try:
            common.wait_ready_fd(handle.stream.fileno(), timeout, instance.name,
                                 decode=common.FrameDecoder().feed, initial=handle.early)
        finally:
            _close_stream(handle)

    def stop(self, instance: Instance) -> None:
        handle: PodmanHandle = instance.handle
        _close_stream(handle)
        init = self._init(handle)
        if init is None:
            return
        try:
            pidfd = os.pidfd_open(init)
        except ProcessLookupError:
            return
        try:
            for signal_name in ("TERM", "KILL"):
                response = self.api.post(f"/containers/{handle.id}/kill",
                                         params={"signal": signal_name})
                if response.status_code not in (204, 404, 409):
                    raise BackendError(f"{instance.name}: podman kill: {_message(response)}")
                if wait_pidfd(pidfd, self.grace_s):
                    return
        finally:
            os.close(pidfd)

    def remove(self, instance: Instance) -> None:
        try:
            response = self.api.delete(f"/containers/{instance.handle.id}",
                                       params={"force": "true"})
            if response.status_code not in (200, 204, 404):
                raise BackendError(f"{instance.name}: podman rm: {_message(response)}")
        finally:
            self.live.pop(instance.name, None)

    def memory(self, instance: Instance) -> MemorySample:
        handle: PodmanHandle = instance.handle
        init = self._init(handle)
        conmon = parent_pid(init) if init else None
        return common.instance_memory(init, conmon, self.cgroups.memory_usage(handle.cgroup),
                                      self.gauge)

    def cleanup(self) -> None:
        if self._client is not None:
            for instance in list(self.live.values()):
                with contextlib.suppress(Exception):
                    self.stop(instance)
                    self.remove(instance)
            with contextlib.suppress(Exception):
                if self.network_made:
                    self.api.delete(f"/networks/{NETWORK}", params={"force": "true"})
                    self.network_made = False
            with contextlib.suppress(Exception):
                if self.image_ref:
                    self.api.delete(f"/images/{self.image_ref}")
            self._client.close()
            self._client = None
        self.service.stop()
        with contextlib.suppress(cgroups.CgroupError):
            self.cgroups.remove_parent(f"{CGROUP_PARENT}/conmon")
            self.cgroups.remove_parent(CGROUP_PARENT)

    def describe(self) -> dict[str, Any]:
        method = Method(
            cold=("nothing of the container (the backend's podman service runs, the image is "
                  "imported)",
                  "create (podman's record and the container's layer), init (conmon, "
                  f"{self.runtime} create), attach to its stdout, start ({self.runtime} start)"),
            warm=("create, init (conmon and the container's namespaces, stopped before "
                  "its workload), attach to its stdout",
                  f"start ({self.runtime} start)"),
            stop="kill TERM through the API; until the container's init exited (pidfd on its "
                 "host pid, found in its cgroup); KILL after the grace time",
            remove="DELETE ?force: podman deletes the container's state, layer and record",
        )
        host = self.info.get("host", {})
        runtime = host.get("ociRuntime", {})
        return {
            "engine": "podman",
            "api": "libpod REST API of a podman system service the backend runs, with the "
                   "podman Python package's client (attach: the same API, read on the socket)",
            "version": self.version.get("Version"),
            "api_version": self.version.get("ApiVersion"),
            "oci_runtime": self.runtime,
            "oci_runtime_path": runtime.get("path"),
            "oci_runtime_version": (runtime.get("version") or "").splitlines()[0] or None
            if runtime else None,
            "conmon_version": (host.get("conmon", {}).get("version") or "").splitlines()[0]
            or None if host else None,
            "cgroup_manager": host.get("cgroupManager"),
            "network_backend": host.get("networkBackend"),
            "storage_driver": self.info.get("store", {}).get("graphDriverName"),
            "method": method.as_dict(),
            "image": {"ref": self.image_ref, "id": self.image_id, "digest": self.image_digest},
            "network_bridge": f"{NETWORK} (internal, {SUBNET}, bridge {BRIDGE})",
            "memory": common.memory_facts("conmon", "the podman system service"),
            "security": common.security_facts([
                "podman mounts /dev/shm, /dev/mqueue, a read-only /sys and /sys/fs/cgroup, "
                "binds /etc/hosts, /etc/hostname, /etc/resolv.conf, /run/.containerenv and "
                "adds its default devices; ours mounts /proc, a /dev tmpfs and /dev/pts",
                "stdout goes to conmon's k8s-file log as well as to the attach stream",
                "at exit conmon runs 'podman container cleanup' (a podman process per stop)",
                "network bridge: an internal podman network (CNI or netavark), no default "
                "route; ours routes to the cvbench0 bridge",
            ], same="namespaces, capabilities (drop ALL, add the reference set), masked and "
                    "read-only paths (podman's extra defaults unmasked), no_new_privs, "
                    "seccomp profile (the same file), memory/pids/cpu limits"),
        }

    # -- internals ----------------------------------------------------------------------------

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = getattr(self.api, method.lower())(path, **kwargs)
        if response.status_code >= 400:
            raise BackendError(f"podman: {method} {path}: {_message(response)}")
        return response.json()

    def _call(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        response = getattr(self.api, method.lower())(path, **kwargs)
        if response.status_code >= 400:
            raise BackendError(f"{name}: podman {path.rsplit('/', 1)[-1]}: {_message(response)}")
        return response

    def _import(self, image: Image) -> None:
        ref = f"localhost/{common.image_repository(image)}:{common.image_tag(image)}"
        found = self.api.get(f"/images/{ref}/json")
        labels = (found.json().get("Labels") or {}) if found.status_code == 200 else {}
        if labels.get(common.DIGEST_LABEL) != image.digest:
            response = self.api.post(
                "/images/import", data=common.image_tarball(image),
                params={"reference": ref,
                        "changes": [f"LABEL {common.DIGEST_LABEL}={image.digest}",
                                    f'CMD ["{image.init}"]']},
                headers={"Content-Type": "application/x-tar"})
            if response.status_code >= 400:
                raise BackendError(f"podman: image import failed: {_message(response)}")
            found = self.api.get(f"/images/{ref}/json")
        self.image_ref, self.image_id = ref, found.json()["Id"]
        self.image_digest = image.digest

    def _network(self) -> None:
        if self.api.get(f"/networks/{NETWORK}/exists").status_code == 204:
            self.network_made = True
            return
        self._json("POST", "/networks/create", data=json.dumps({
            "name": NETWORK, "driver": "bridge", "network_interface": BRIDGE, "internal": True,
            "dns_enabled": False, "subnets": [{"subnet": SUBNET}], "labels": {"cvbench": "1"},
        }), headers={"Content-Type": "application/json"})
        self.network_made = True

    def container_spec(self, spec: InstanceSpec) -> dict[str, Any]:
        """The libpod SpecGenerator of ``spec``: the reference spec's limits and profile."""
        reference = common.reference_spec(spec)
        res = reference.linux.resources
        resources: dict[str, Any] = {}
        if res.memory_limit is not None:
            # memory+swap as ours sets it (memsw = the limit)
            resources["memory"] = {"limit": res.memory_limit, "swap": res.memory_limit}
        if res.pids_limit is not None:
            resources["pids"] = {"limit": res.pids_limit}
        if res.cpu_quota is not None:
            resources["cpu"] = {"quota": res.cpu_quota, "period": res.cpu_period or 100000}
        private = {"nsmode": "private"}
        generated: dict[str, Any] = {
            "name": spec.name, "hostname": spec.name, "image": self.image_ref,
            "command": list(spec.command) or [spec.image.init],
            "env": dict(item.split("=", 1) for item in reference.process.env),
            "labels": {"cvbench": "1"}, "terminal": False, "stdin": False,
            "pidns": private, "ipcns": private, "utsns": private,
            "cgroupns": private if reference.linux.has_namespace("cgroup") else {"nsmode": "host"},
            "resource_limits": resources,
            "cap_drop": ["ALL"], "cap_add": common.capability_names(reference),
            "no_new_privileges": reference.process.no_new_privileges,
            "seccomp_profile_path": self.seccomp_path,
            # no AppArmor profile, as ours, crun and runc get none (where AppArmor is enabled
            # Podman would apply containers-default)
            "apparmor_profile": "unconfined",
            "mask": [p for p in reference.linux.masked_paths if p not in DEFAULT_MASKED],
            "unmask": [p for p in EXTRA_DEFAULT_PATHS
                       if p not in reference.linux.masked_paths + reference.linux.readonly_paths],
            "cgroup_parent": f"/{CGROUP_PARENT}",
        }
        if spec.network == "bridge":
            generated["netns"] = {"nsmode": "bridge"}
            generated["Networks"] = {NETWORK: {}}
        else:
            generated["netns"] = {"nsmode": spec.network}
        return generated

    def _create(self, spec: InstanceSpec) -> Instance:
        common.check_name(spec.name)
        begin = _now()
        response = self._call("POST", "/containers/create", spec.name,
                              data=json.dumps(self.container_spec(spec)),
                              headers={"Content-Type": "application/json"})
        created = _now()
        container_id = response.json()["Id"]
        handle = PodmanHandle(container_id, cgroup=f"{CGROUP_PARENT}/libpod-{container_id}")
        instance = Instance(spec.name, self.name, handle)
        self.live[spec.name] = instance
        try:
            self._call("POST", f"/containers/{container_id}/init", spec.name)
            initialised = _now()
            handle.stream, handle.early = self._attach(container_id, spec.name)
        except BaseException:
            self._discard(instance)
            raise
        attached = _now()
        instance.phases.update(engine_create_s=created - begin,
                               engine_init_s=initialised - created,
                               engine_attach_s=attached - initialised)
        return instance

    def _attach(self, container_id: str, name: str) -> tuple[socket.socket, bytes]:
        """The container's stdout, from the libpod attach endpoint (a hijacked connection)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(API_TIMEOUT_S)
            sock.connect(str(self.service.socket))
            sock.sendall(
                f"POST /v{API_VERSION}/libpod/containers/{container_id}/attach"
                "?stream=true&stdout=true&stderr=false HTTP/1.1\r\nHost: podman\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    raise BackendError(f"{name}: podman attach: connection closed")
                answer += chunk
            head, _, early = answer.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status and b" 200 " not in status:
                raise BackendError(f"{name}: podman attach: {status.decode(errors='replace')}")
            sock.setblocking(True)
            return sock, early
        except BaseException:
            sock.close()
            raise

    def _discard(self, instance: Instance) -> None:
        with contextlib.suppress(Exception):
            self.stop(instance)
        with contextlib.suppress(Exception):
            self.remove(instance)

    def _init(self, handle: PodmanHandle) -> int | None:
        if handle.init is None or not os.path.exists(f"/proc/{handle.init}"):
            handle.init = common.namespace_init(self.cgroups.procs(handle.cgroup))
            if handle.init is None:
                with contextlib.suppress(Exception):
                    state = self._json("GET", f"/containers/{handle.id}/json")["State"]
                    handle.init = state.get("Pid") or None
        return handle.init


def _close_stream(handle: PodmanHandle) -> None:
    if handle.stream is not None:
        with contextlib.suppress(OSError):
            handle.stream.close()
        handle.stream = None


def _message(response: Any) -> str:
    try:
        return str(response.json().get("message") or response.status_code)
    except ValueError:
        return f"HTTP {response.status_code}"


def _now() -> float:
    from harness import metrics

    return metrics.now_ns() / 1e9


# -- cvbench clean ---------------------------------------------------------------------------


def sweep() -> list[str]:
    """Stop podman services a killed run left, then (through a service of the sweep's own)
    remove every ``cvbench-`` container, network and image, and the ``cvbench-podman``
    cgroups. Nothing to do where podman is not installed."""
    removed = kill_services()
    if shutil.which("podman") is None or not Path("/var/lib/containers/storage").is_dir():
        return removed
    service = Service("runc", f"{PREFIX}sweep-{os.getpid()}")
    try:
        service.start()
    except BackendError as error:
        return [*removed, str(error)]
    try:
        api = client(service.socket).api
        listed = api.get("/containers/json", params={"all": "true"})
        for container in listed.json() or []:
            names = container.get("Names") or []
            if any(name.startswith(PREFIX) for name in names):
                response = api.delete(f"/containers/{container['Id']}", params={"force": "true"})
                removed.append(f"podman container {names[0]}" + (
                    "" if response.status_code < 400 else f": {_message(response)}"))
        for network in api.get("/networks/json").json() or []:
            if network.get("name", "").startswith(PREFIX):
                response = api.delete(f"/networks/{network['name']}", params={"force": "true"})
                removed.append(f"podman network {network['name']}" + (
                    "" if response.status_code < 400 else f": {_message(response)}"))
        for found in api.get("/images/json").json() or []:
            tags = [t for t in found.get("RepoTags") or [] if t.startswith(f"localhost/{PREFIX}")]
            for tag in tags:
                response = api.delete(f"/images/{tag}", params={"force": "true"})
                removed.append(f"podman image {tag}" + (
                    "" if response.status_code < 400 else f": {_message(response)}"))
    finally:
        service.stop()
    return [*removed, *common.sweep_cgroups([CGROUP_PARENT])]


def kill_services() -> list[str]:
    """SIGTERM (then SIGKILL) the podman services recorded by runs that did not stop them."""
    removed = []
    directory = service_dir()
    for record in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            pid = int(json.loads(record.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            pid = 0
        if pid and _is_service(pid):
            if not signal_and_wait(pid, signal.SIGTERM, 10.0):
                signal_and_wait(pid, signal.SIGKILL, 5.0)
            removed.append(f"podman service (pid {pid})")
        record.unlink(missing_ok=True)
        for leftover in (record.with_suffix(".sock"), record.with_suffix(".conf"),
                         record.with_suffix(".log")):
            leftover.unlink(missing_ok=True)
    return removed


def _is_service(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return b"service" in argv and any(arg.startswith(b"unix://") and
                                      str(service_dir()).encode() in arg for arg in argv)
