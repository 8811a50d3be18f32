"""The ``docker`` backend: containers through dockerd's API (create, attach, start; kill,
remove).

The OCI runtime under containerd's shim is the option ``runtime`` (``runc``, Docker's default,
or ``crun``); it and dockerd's cgroup driver (``docker info``'s CgroupDriver) are recorded in
``describe()``. The image is imported from cvbench's image store (a tarball of the rootfs,
``docker import``'s API).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from docker import errors as docker_errors
from docker.types import IPAMConfig, IPAMPool
from requests.exceptions import RequestException

from harness.backends.base import (
    BackendError,
    Instance,
    InstanceSpec,
    Method,
)
from harness.backends.engines import common
from harness.backends.engines.docker import config
from harness.backends.engines.docker.config import BRIDGE, CGROUP_PARENT, NETWORK, SUBNET
from harness.backends.engines.docker.service import (
    SOCKET,
    daemon_flags,
    dockerd_pid,
    first_line,
    runtime_version,
    sdk_client,
)
from imagestore.image import Image
from runtime import cgroups

GRACE_S = 10.0
# The shortest wait asked of dockerd for an exit code: the attach stream has ended by then
# (the container exited), so its answer is due at once; a zero timeout is no timeout to the
# HTTP client.
WAIT_FLOOR_S = 0.5
REMOVAL_S = 30.0  # the longest wait for a removal dockerd had in progress already


class DockerBackend(common.ApiEngine):
    """Containers through dockerd's API: create, attach, start; kill, remove."""

    name = "docker"

    def __init__(self, *, runtime: str = "runc", socket: str = SOCKET,
                 grace_s: float = GRACE_S) -> None:
        super().__init__(runtime, grace_s)
        self.socket = socket
        self.seccomp_json = ""
        self.cgroup_parent = f"/{CGROUP_PARENT}"
        self.dockerd_pid: int | None = None
        self.gauge = common.EngineGauge(self.daemons)
        self.host_on_bridge = False  # the host routes SUBNET through BRIDGE (rule tcp)

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
                               f"({first_line(error)}): {common.SETUP} (it starts dockerd)"
                               ) from None
        self._client = client
        if self.runtime not in self.info.get("Runtimes", {}):
            client.close()
            self._client = None
            raise BackendError(f"{self.name}: dockerd has no {self.runtime!r} runtime (it has "
                               f"{', '.join(self.info.get('Runtimes', {}))}): restart it as "
                               f"scripts/setup.sh starts it (--add-runtime {self.runtime}=...)")
        self._check_runtime()
        mode = "v2" if self.info.get("CgroupVersion") == "2" else "v1"
        self.cgroups = cgroups.every_hierarchy(mode)
        if self.info.get("CgroupDriver") == "systemd":  # a dockerd set-up did not configure
            self.cgroup_parent = f"{CGROUP_PARENT}.slice"
        self.seccomp_json = common.seccomp_profile_path().read_text()
        self.dockerd_pid = dockerd_pid(self.socket)
        self._import(image)
        self._network()
        self.host_on_bridge = common.routed_via(SUBNET, BRIDGE)

    def _check_runtime(self) -> None:
        """A check of the runtime dockerd offers under :attr:`runtime`, before anything is
        made (runc, crun: none; docker-ours: that it is an executable)."""

    def runtime_path(self) -> str | None:
        """The binary dockerd runs as :attr:`runtime` (``docker info``'s runtimes)."""
        path = self.info.get("Runtimes", {}).get(self.runtime, {}).get("path")
        return str(path) if path else None

    def resume(self, instance: Instance) -> None:
        handle: common.ApiHandle = instance.handle
        begin = common.now()
        try:
            self.api.start(handle.id)
        except docker_errors.APIError as error:
            raise BackendError(f"{instance.name}: docker start: {first_line(error)}") from None
        instance.phases["engine_start_s"] = common.now() - begin

    def _kill(self, instance: Instance, signal_name: str) -> None:
        try:
            self.api.kill(instance.handle.id, signal_name)
        except docker_errors.APIError as error:
            if error.status_code not in (404, 409):  # gone, or not running
                raise BackendError(f"{instance.name}: docker kill: "
                                   f"{first_line(error)}") from None

    def _remove(self, instance: Instance) -> None:
        """remove_container(force); a removal dockerd says is in progress already (seen
        once after a container's exit under cvbench-runtime) is waited for to its end."""
        try:
            self.api.remove_container(instance.handle.id, force=True)
        except docker_errors.NotFound:
            pass
        except docker_errors.APIError as error:
            if error.status_code == 409 and "already in progress" in str(error):
                try:
                    self.api.wait(instance.handle.id, timeout=REMOVAL_S, condition="removed")
                except docker_errors.NotFound:
                    pass  # removed already
                except (docker_errors.DockerException, RequestException) as waiting:
                    raise BackendError(f"{instance.name}: docker rm in progress, not done "
                                       f"in {REMOVAL_S:g} s: {first_line(waiting)}") from None
                return
            raise BackendError(f"{instance.name}: docker rm: {first_line(error)}") from None

    def _close(self) -> None:
        if self._client is None:  # not prepared, or closed already
            return
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
            "oci_runtime_path": self.runtime_path(),
            "oci_runtime_version": runtime_version(self._runtime_binary()),
            "method": method.as_dict(),
            "image": {"ref": self.image_ref, "id": self.image_id, "digest": self.image_digest},
            "network_bridge": f"{NETWORK} (internal, {SUBNET}, bridge {BRIDGE})",
            "ready_tcp": (f"the container's IPAddress on {NETWORK} (inspect, after start), "
                          f"connected from the host through {BRIDGE}" if self.host_on_bridge
                          else f"refused: {self.unreachable()}"),
            "ready_exit": "the attach stream's end, then the exit code of the API's wait",
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

    def _runtime_binary(self) -> str:
        """What to ask for the runtime's version: the path dockerd runs if it is one (the
        crun-v1view wrapper answers as crun), else the name on PATH (runc)."""
        path = self.runtime_path()
        return path if path and path.startswith("/") else self.runtime

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
                raise BackendError(f"docker: image import failed: {first_line(error)}"
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
            raise BackendError(f"docker: network {NETWORK}: {first_line(error)}") from None
        self.network_made = True

    def host_config(self, spec: InstanceSpec) -> dict[str, Any]:
        return config.host_config(self.api, spec, runtime=self.runtime,
                                  seccomp_json=self.seccomp_json,
                                  cgroup_parent=self.cgroup_parent)

    def _create(self, spec: InstanceSpec) -> Instance:
        common.check_name(spec.name)
        begin = common.now()
        try:
            reference = common.reference_spec(spec)
            created = self.api.create_container(
                self.image_ref, command=list(reference.process.args),
                name=spec.name, hostname=spec.name, host_config=self.host_config(spec),
                environment=list(reference.process.env),
                working_dir=reference.process.cwd,
                user=f"{reference.process.uid}:{reference.process.gid}",
                labels={"cvbench": "1"}, stdin_open=False, tty=False)
        except docker_errors.APIError as error:
            raise BackendError(f"{spec.name}: docker create: {first_line(error)}") from None
        handle = common.ApiHandle(created["Id"], cgroup=self._cgroup_path(created["Id"]))
        instance = Instance(spec.name, self.name, handle)
        instance.phases["engine_create_s"] = common.now() - begin
        try:
            handle.stream = self.api.attach_socket(handle.id, params={"stdout": 1, "stream": 1})
        except BaseException:
            self._discard(instance)
            raise
        attach_s = common.now() - begin - instance.phases["engine_create_s"]
        instance.phases["engine_attach_s"] = attach_s
        return instance

    def _cgroup_path(self, container_id: str) -> str:
        """The container's cgroup, relative to the cgroup root: ``<parent>/<id>`` with the
        cgroupfs driver; with the systemd driver a scope in the parent slice, which systemd
        nests by the slice name's dashes (``cvbench-docker.slice`` lives in
        ``cvbench.slice``)."""
        if self.cgroup_parent.endswith(".slice"):
            return f"{config.slice_path(self.cgroup_parent)}/docker-{container_id}.scope"
        return f"{self.cgroup_parent.strip('/')}/{container_id}"

    def _api_init(self, handle: common.ApiHandle) -> int | None:
        with contextlib.suppress(docker_errors.DockerException):
            return self.api.inspect_container(handle.id)["State"]["Pid"] or None
        return None

    def unreachable(self) -> str | None:
        return None if self.host_on_bridge else common.no_route(SUBNET, BRIDGE)

    def _exit_code(self, handle: common.ApiHandle, timeout: float) -> int | None:
        """``POST /containers/<id>/wait`` (condition not-running): its ``StatusCode``."""
        try:
            answer = self.api.wait(handle.id, timeout=max(timeout, WAIT_FLOOR_S))
        except (docker_errors.DockerException, OSError, ValueError, RequestException):
            return None  # not exited in time, or gone
        code = answer.get("StatusCode")
        return code if isinstance(code, int) else None

    def _address(self, handle: common.ApiHandle) -> str | None:
        """``GET /containers/<id>/json``: its IPAddress on :data:`NETWORK`."""
        try:
            networks = self.api.inspect_container(handle.id)["NetworkSettings"]["Networks"]
        except (docker_errors.DockerException, KeyError, TypeError):
            return None
        return (networks or {}).get(NETWORK, {}).get("IPAddress") or None


class DockerOursBackend(DockerBackend):
    """Docker with cvbench-runtime as its OCI runtime: the same dockerd, containerd, shim,
    containers, profile, limits, network and clean-up as ``docker``; the shim runs what dockerd
    knows as ``cvbench-runtime`` (``scripts/setup.sh`` registers the virtualenv's console
    script: ``--add-runtime cvbench-runtime=...``) where ``docker`` runs runc or crun."""

    name = "docker-ours"
    runtimes = (common.OURS,)

    def __init__(self, *, socket: str = SOCKET, grace_s: float = GRACE_S) -> None:
        super().__init__(runtime=common.OURS, socket=socket, grace_s=grace_s)

    def _check_runtime(self) -> None:
        path = self.runtime_path()
        if not path or not os.access(path, os.X_OK):
            raise BackendError(f"{self.name}: dockerd's {self.runtime} runtime is {path!r}, "
                               f"not an executable: {common.SETUP} (it installs cvbench, and "
                               "its cvbench-runtime, into the virtualenv)")

    def describe(self) -> dict[str, Any]:
        facts = super().describe()
        facts["oci_runtime_installed"] = str(common.ours_runtime())  # the harness's own
        return facts
