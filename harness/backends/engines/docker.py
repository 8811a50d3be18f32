"""The ``docker`` backend: Debian's docker.io (dockerd + containerd), driven with the Docker
SDK for Python (the ``docker`` package) over dockerd's unix socket.

dockerd is started by ``scripts/setup.sh`` with :data:`DAEMON_FLAGS`: no NAT, no forwarding
rules, no default bridge, and the cgroupfs driver (``native.cgroupdriver=cgroupfs``, the one
cgroup manager crun, runc, podman and ``ours`` use; dockerd would pick systemd on a cgroup v2
host where systemd is PID 1), plus ``--add-runtime crun=<crun>`` (the ``crun-v1view`` wrapper
on a hybrid host, plain crun elsewhere). Where systemd is PID 1 that is docker.service with a
drop-in giving it those flags (socket-activated by docker.socket); elsewhere dockerd runs under
``scripts/subreaper.py``, like libvirtd. The backend never starts or stops it. The OCI runtime
under containerd's shim is the option ``runtime`` (``runc``, Docker's default, or ``crun``);
it and dockerd's cgroup driver (``docker info``'s CgroupDriver) are recorded in
``describe()``.

The image is imported from cvbench's image store (a tarball of the rootfs, ``docker
import``'s API); ``network = "bridge"`` uses the internal network ``cvbench-docker`` (no
gateway route out of it) the backend creates and removes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker import errors as docker_errors
from docker.types import IPAMConfig, IPAMPool

from harness.backends.base import (
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
)
from harness.backends.engines import common
from hostkit.paths import PREFIX
from hostkit.procs import parent_pid, wait_pidfd
from imagestore.image import Image
from runtime import cgroups

SOCKET = "/run/docker.sock"
NETWORK = f"{PREFIX}docker"
BRIDGE = f"{PREFIX}dk0"  # the network's Linux bridge (at most 15 characters)
SUBNET = "10.214.0.0/16"  # ours uses 10.213.0.0/16
CGROUP_PARENT = f"{PREFIX}docker"
GRACE_S = 10.0
API_TIMEOUT_S = 120
DAEMON_FLAGS = ("--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
                "--exec-opt", "native.cgroupdriver=cgroupfs")  # as scripts/setup.sh starts it
PID_FILE = Path("/run/docker.pid")  # dockerd's default --pidfile


def sdk_client(socket: str = SOCKET, timeout: int = API_TIMEOUT_S) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"unix://{socket}", timeout=timeout, max_pool_size=64)


@dataclass
class DockerHandle:
    id: str
    stream: Any = None  # the attach socket, until READY was read
    init: int | None = None  # the container's init (host pid), once known
    cgroup: str = ""


class DockerBackend(common.SplitStart):
    """Containers through dockerd's API: create, attach, start; kill, remove."""

    name = "docker"

    def __init__(self, *, runtime: str = "runc", socket: str = SOCKET,
                 grace_s: float = GRACE_S) -> None:
        common.check_runtime(runtime, self.name)
        self.runtime = runtime
        self.socket = socket
        self.grace_s = grace_s
        self._client: docker.DockerClient | None = None
        self.info: dict[str, Any] = {}
        self.image_ref = ""
        self.image_id = ""
        self.image_digest = ""
        self.seccomp_json = ""
        self.network_made = False
        self.cgroup_parent = f"/{CGROUP_PARENT}"
        self.cgroups = cgroups.every_hierarchy("v1")
        self.live: dict[str, Instance] = {}
        self.dockerd_pid: int | None = None
        self.gauge = common.EngineGauge(self.daemons)
        self._lock = threading.Lock()

    @property
    def api(self) -> docker.APIClient:
        if self._client is None:
            raise BackendError("docker: backend not prepared")
        return self._client.api

    # -- Backend protocol ---------------------------------------------------------------------

    def prepare(self, image: Image) -> None:
        client = None
        try:  # the client asks dockerd for its API version as it is made
            client = sdk_client(self.socket)
            client.ping()
            self.info = client.api.info()
        except (docker_errors.DockerException, OSError) as error:
            if client is not None:
                client.close()
            raise BackendError(f"docker: dockerd does not answer at {self.socket} "
                               f"({_first_line(error)}): {common.SETUP} (it starts dockerd)"
                               ) from None
        self._client = client
        if self.runtime not in self.info.get("Runtimes", {}):
            raise BackendError(f"docker: dockerd has no {self.runtime!r} runtime (it has "
                               f"{', '.join(self.info.get('Runtimes', {}))}): restart it as "
                               "scripts/setup.sh starts it (--add-runtime crun=...)")
        mode = "v2" if self.info.get("CgroupVersion") == "2" else "v1"
        self.cgroups = cgroups.every_hierarchy(mode)
        if self.info.get("CgroupDriver") == "systemd":  # a dockerd set-up did not configure
            self.cgroup_parent = f"{CGROUP_PARENT}.slice"
        self.seccomp_json = common.seccomp_profile_path().read_text()
        self.dockerd_pid = dockerd_pid(self.socket)
        self._import(image)
        self._network()

    def resume(self, instance: Instance) -> None:
        handle: DockerHandle = instance.handle
        begin = _now()
        try:
            self.api.start(handle.id)
        except docker_errors.APIError as error:
            raise BackendError(f"{instance.name}: docker start: {_first_line(error)}") from None
        instance.phases["engine_start_s"] = _now() - begin

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        handle: DockerHandle = instance.handle
        if handle.stream is None:
            return
        try:
            common.wait_ready_fd(_raw(handle.stream).fileno(), timeout, instance.name,
                                 decode=common.FrameDecoder().feed)
        finally:
            _close_stream(handle)

    def stop(self, instance: Instance) -> None:
        handle: DockerHandle = instance.handle
        _close_stream(handle)
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
                    self.api.kill(handle.id, signal_name)
                except docker_errors.APIError as error:
                    if error.status_code not in (404, 409):  # gone, or not running
                        raise BackendError(f"{instance.name}: docker kill: "
                                           f"{_first_line(error)}") from None
                if wait_pidfd(pidfd, self.grace_s):
                    return
        finally:
            os.close(pidfd)

    def remove(self, instance: Instance) -> None:
        try:
            self.api.remove_container(instance.handle.id, force=True)
        except docker_errors.NotFound:
            pass
        except docker_errors.APIError as error:
            raise BackendError(f"{instance.name}: docker rm: {_first_line(error)}") from None
        finally:
            self.live.pop(instance.name, None)

    def memory(self, instance: Instance) -> MemorySample:
        handle: DockerHandle = instance.handle
        init = self._init(handle)
        shim = parent_pid(init) if init else None
        return common.instance_memory(init, shim, self.cgroups.memory_usage(handle.cgroup),
                                      self.gauge)

    def cleanup(self) -> None:
        if self._client is None:
            return
        for instance in list(self.live.values()):
            with contextlib.suppress(BackendError, docker_errors.DockerException):
                self.stop(instance)
                self.remove(instance)
        with contextlib.suppress(docker_errors.DockerException):
            if self.network_made:
                self.api.remove_network(NETWORK)
                self.network_made = False
        with contextlib.suppress(docker_errors.DockerException):
            if self.image_ref:
                self.api.remove_image(self.image_ref)
        with contextlib.suppress(cgroups.CgroupError):
            self.cgroups.remove_parent(self.cgroup_parent.strip("/"))
        self._client.close()
        self._client = None

    def describe(self) -> dict[str, Any]:
        method = Method(
            cold=("nothing of the container (dockerd and containerd run, the image is "
                  "imported)",
                  "create (dockerd's record and the container's layer), attach to its stdout, "
                  f"start (containerd-shim-runc-v2, {self.runtime} create + start)"),
            warm=("create (dockerd's record and the container's layer; no namespace, no shim "
                  "yet), attach to its stdout",
                  f"start (containerd-shim-runc-v2, {self.runtime} create + start)"),
            stop="kill TERM through the API; until the container's init exited (pidfd on its "
                 "host pid, found in its cgroup); KILL after the grace time",
            remove="remove_container(force): dockerd deletes the task, the layer and its record",
        )
        facts: dict[str, Any] = {
            "engine": "docker",
            "api": "Docker SDK for Python (docker-py) over the Engine API, unix socket",
            "oci_runtime": self.runtime,
            "oci_runtime_path": self.info.get("Runtimes", {}).get(self.runtime, {}).get("path"),
            "oci_runtime_version": _runtime_version(self.runtime),
            "method": method.as_dict(),
            "image": {"ref": self.image_ref, "id": self.image_id, "digest": self.image_digest},
            "network_bridge": f"{NETWORK} (internal, {SUBNET}, bridge {BRIDGE})",
            "memory": common.memory_facts("containerd-shim-runc-v2",
                                          "dockerd + containerd"),
            "security": common.security_facts([
                "dockerd's device cgroup rules allow its default devices (null, zero, full, "
                "random, urandom, tty, ptmx, ...); the OCI backends' config.json denies all",
                "dockerd mounts /dev/shm (64 MiB tmpfs), /dev/mqueue, a read-only /sys and "
                "/sys/fs/cgroup, and binds /etc/hosts, /etc/hostname, /etc/resolv.conf; ours "
                "mounts /proc, a /dev tmpfs and /dev/pts",
                "stdout goes to dockerd's json-file log as well as to the attach stream",
                "network bridge: an internal Docker network, so no default route; ours routes "
                "to the cvbench0 bridge (nothing is forwarded off the host in either case)",
            ], same="namespaces, capabilities (drop ALL, add the reference set), "
                    "masked/read-only paths, no_new_privs, seccomp profile (the same file), "
                    "memory/pids/cpu limits"),
        }
        if self._client is not None:
            with contextlib.suppress(docker_errors.DockerException):
                version = self.api.version()
                facts["version"] = version.get("Version")
                facts["api_version"] = version.get("ApiVersion")
                facts["components"] = {c.get("Name"): c.get("Version")
                                       for c in version.get("Components", [])}
            facts.update(storage_driver=self.info.get("Driver"),
                         cgroup_manager=self.info.get("CgroupDriver"),
                         cgroup_driver=self.info.get("CgroupDriver"),
                         cgroup_version=self.info.get("CgroupVersion"),
                         log_driver=self.info.get("LoggingDriver"),
                         daemon_flags=daemon_flags(self.dockerd_pid))
        return facts

    # -- the engine's daemons -----------------------------------------------------------------

    def daemons(self) -> list[int]:
        """dockerd and the containerd it manages (or the system one it uses)."""
        if not self.dockerd_pid:
            return []
        found = [self.dockerd_pid, *common.children_named(self.dockerd_pid, ("containerd",))]
        if len(found) == 1:
            system = common.socket_peer_pid("/run/containerd/containerd.sock")
            found += [system] if system else []
        return found

    # -- internals ----------------------------------------------------------------------------

    def _import(self, image: Image) -> None:
        ref = f"{common.image_repository(image)}:{common.image_tag(image)}"
        try:
            found = self.api.inspect_image(ref)
        except docker_errors.ImageNotFound:
            found = None
        labels = ((found or {}).get("Config") or {}).get("Labels") or {}
        if labels.get(common.DIGEST_LABEL) != image.digest:
            try:
                self.api.import_image_from_data(
                    common.image_tarball(image), repository=common.image_repository(image),
                    tag=common.image_tag(image),
                    changes=[f"LABEL {common.DIGEST_LABEL}={image.digest}",
                             f'CMD ["{image.init}"]'])
                found = self.api.inspect_image(ref)
            except docker_errors.DockerException as error:
                raise BackendError(f"docker: image import failed: {_first_line(error)}"
                                   ) from None
        self.image_ref, self.image_id, self.image_digest = ref, found["Id"], image.digest

    def _network(self) -> None:
        if any(n["Name"] == NETWORK for n in self.api.networks(names=[NETWORK])):
            self.network_made = True
            return
        try:
            self.api.create_network(
                NETWORK, driver="bridge", internal=True, check_duplicate=True,
                options={"com.docker.network.bridge.name": BRIDGE,
                         "com.docker.network.bridge.enable_ip_masquerade": "false"},
                ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=SUBNET)]),
                labels={"cvbench": "1"})
        except docker_errors.APIError as error:
            raise BackendError(f"docker: network {NETWORK}: {_first_line(error)}") from None
        self.network_made = True

    def host_config(self, spec: InstanceSpec) -> dict[str, Any]:
        reference = common.reference_spec(spec)
        resources = reference.linux.resources
        network = {"none": "none", "host": "host", "bridge": NETWORK}[spec.network]
        config = self.api.create_host_config(
            network_mode=network,
            mem_limit=resources.memory_limit,
            memswap_limit=resources.memory_limit,  # memory+swap as ours sets it
            pids_limit=resources.pids_limit,
            cpu_period=resources.cpu_period if resources.cpu_quota else None,
            cpu_quota=resources.cpu_quota,
            cap_drop=["ALL"],
            cap_add=common.capability_names(reference),
            # no AppArmor profile, as ours, crun and runc get none (where AppArmor is enabled,
            # as on Debian's systemd hosts, dockerd would load and apply docker-default)
            security_opt=[f"no-new-privileges:{str(reference.process.no_new_privileges).lower()}",
                          f"seccomp={self.seccomp_json}", "apparmor=unconfined"],
            ipc_mode="private",
            runtime=self.runtime,
            cgroup_parent=self.cgroup_parent,
            init=False,
        )
        config["MaskedPaths"] = list(reference.linux.masked_paths)
        config["ReadonlyPaths"] = list(reference.linux.readonly_paths)
        config["CgroupnsMode"] = "private" if reference.linux.has_namespace("cgroup") else "host"
        return config

    def _create(self, spec: InstanceSpec) -> Instance:
        common.check_name(spec.name)
        begin = _now()
        try:
            created = self.api.create_container(
                self.image_ref, command=list(spec.command) or [spec.image.init],
                name=spec.name, hostname=spec.name, host_config=self.host_config(spec),
                environment=list(common.reference_spec(spec).process.env),
                labels={"cvbench": "1"}, stdin_open=False, tty=False)
        except docker_errors.APIError as error:
            raise BackendError(f"{spec.name}: docker create: {_first_line(error)}") from None
        handle = DockerHandle(created["Id"], cgroup=self._cgroup_path(created["Id"]))
        instance = Instance(spec.name, self.name, handle)
        instance.phases["engine_create_s"] = _now() - begin
        self.live[spec.name] = instance
        try:
            handle.stream = self.api.attach_socket(handle.id, params={"stdout": 1, "stream": 1})
        except BaseException:
            self._discard(instance)
            raise
        instance.phases["engine_attach_s"] = _now() - begin - instance.phases["engine_create_s"]
        return instance

    def _discard(self, instance: Instance) -> None:
        with contextlib.suppress(BackendError, docker_errors.DockerException):
            self.stop(instance)
        with contextlib.suppress(BackendError, docker_errors.DockerException):
            self.remove(instance)

    def _cgroup_path(self, container_id: str) -> str:
        """The container's cgroup, relative to the cgroup root: ``<parent>/<id>`` with the
        cgroupfs driver; with the systemd driver a scope in the parent slice, which systemd
        nests by the slice name's dashes (``cvbench-docker.slice`` lives in
        ``cvbench.slice``)."""
        if self.cgroup_parent.endswith(".slice"):
            return f"{slice_path(self.cgroup_parent)}/docker-{container_id}.scope"
        return f"{self.cgroup_parent.strip('/')}/{container_id}"

    def _init(self, handle: DockerHandle) -> int | None:
        """The container's init: its cgroup's pid-namespace pid 1 (no API call); the API's
        State.Pid if the cgroup is not where it should be."""
        if handle.init is None or not os.path.exists(f"/proc/{handle.init}"):
            handle.init = common.namespace_init(self.cgroups.procs(handle.cgroup))
            if handle.init is None:
                with contextlib.suppress(docker_errors.DockerException):
                    handle.init = self.api.inspect_container(handle.id)["State"]["Pid"] or None
        return handle.init


def _raw(stream: Any) -> Any:
    return getattr(stream, "_sock", stream)


def _close_stream(handle: DockerHandle) -> None:
    if handle.stream is not None:
        raw = _raw(handle.stream)  # SocketIO.close() forgets its socket without closing it
        with contextlib.suppress(OSError):
            handle.stream.close()
        with contextlib.suppress(OSError, AttributeError):
            raw.close()
        handle.stream = None


def _now() -> float:
    from harness import metrics

    return metrics.now_ns() / 1e9


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _runtime_version(runtime: str) -> str | None:
    try:
        out = subprocess.run([runtime, "--version"], capture_output=True, text=True,
                             check=False, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.splitlines()[0] if out else ""
    return first.split()[-1] if first else None


def slice_path(name: str) -> str:
    """Where systemd puts slice ``name``: ``a-b.slice`` is ``a.slice/a-b.slice``."""
    parts = name.removesuffix(".slice").split("-")
    return "/".join("-".join(parts[:depth]) + ".slice" for depth in range(1, len(parts) + 1))


def dockerd_pid(socket: str = SOCKET, pid_file: Path = PID_FILE) -> int | None:
    """dockerd's pid: the process serving ``socket``, unless that is not dockerd, as where
    systemd made the socket (docker.socket: the peer is then PID 1, which called listen());
    then the pid in dockerd's ``pid_file``, if that process is dockerd."""
    peer = common.socket_peer_pid(socket)
    if peer is not None and common.command_name(peer) == "dockerd":
        return peer
    try:
        recorded = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return recorded if common.command_name(recorded) == "dockerd" else None


def daemon_flags(pid: int | None) -> list[str]:
    """dockerd's command-line flags (to show it adds no NAT or forwarding rules)."""
    if not pid:
        return []
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [arg.decode(errors="replace") for arg in handle.read().split(b"\0")[1:] if arg]
    except OSError:
        return []


# -- cvbench clean ---------------------------------------------------------------------------


def sweep() -> list[str]:
    """Remove every ``cvbench-`` container, network and image from dockerd, and the empty
    ``cvbench-docker`` cgroups; nothing to do (and nothing said) when dockerd is not running."""
    if not os.path.exists(SOCKET):
        return []
    try:
        client = sdk_client(SOCKET, timeout=60)
        client.ping()
    except (docker_errors.DockerException, OSError):
        return [f"docker: dockerd does not answer at {SOCKET}; its cvbench- objects, if any, "
                "stay until it runs"]
    api = client.api
    removed: list[str] = []
    try:
        for container in api.containers(all=True, filters={"name": PREFIX}):
            names = [name.lstrip("/") for name in container.get("Names") or []]
            if not any(name.startswith(PREFIX) for name in names):
                continue
            try:
                api.remove_container(container["Id"], force=True)
                removed.append(f"docker container {names[0]}")
            except docker_errors.DockerException as error:
                removed.append(f"docker container {names[0]}: {_first_line(error)}")
        for network in api.networks():
            if network["Name"].startswith(PREFIX):
                try:
                    api.remove_network(network["Id"])
                    removed.append(f"docker network {network['Name']}")
                except docker_errors.DockerException as error:
                    removed.append(f"docker network {network['Name']}: {_first_line(error)}")
        for found in api.images():
            for tag in found.get("RepoTags") or []:
                if tag.startswith(PREFIX):
                    try:
                        api.remove_image(tag, force=True)
                        removed.append(f"docker image {tag}")
                    except docker_errors.DockerException as error:
                        removed.append(f"docker image {tag}: {_first_line(error)}")
    finally:
        client.close()
    removed += common.sweep_cgroups([CGROUP_PARENT, slice_path(f"{CGROUP_PARENT}.slice")])
    return removed
