"""The ``podman`` backend: containers through the libpod API of the backend's own podman
service (create, init, attach, start; kill, remove)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from typing import Any

from harness.backends.base import (
    BackendError,
    Instance,
    InstanceSpec,
    Method,
)
from harness.backends.engines import common
from harness.backends.engines.podman import config
from harness.backends.engines.podman.config import (
    BRIDGE,
    CGROUP_MANAGER,
    CGROUP_PARENT,
    GATEWAY,
    NETWORK,
    PREFIXLEN,
    SUBNET,
)
from harness.backends.engines.podman.service import (
    API_TIMEOUT_S,
    API_VERSION,
    Service,
    client,
    message,
)
from hostkit.paths import PREFIX
from imagestore.image import Image
from runtime import cgroups, network

GRACE_S = 10.0
WAIT_FLOOR_S = 0.5  # the shortest wait for an exit code (the attach stream ended already)
# How often libpod's wait looks at the container's state (its default, 250 ms, added up to
# that much to every exit rule's wait): the tcp rule's longest retry pause.
WAIT_INTERVAL = "5ms"


class PodmanBackend(common.ApiEngine):
    """Containers through the libpod API: create, init, attach, start; kill, remove."""

    name = "podman"
    # tcp: the network is internal (no route out for its containers) and gives the host no
    # address on its bridge, so prepare() puts the network's gateway address there itself
    # (CNI keeps a bridge it finds; netavark removes it with its last container: refused
    # there, unreachable())
    ready_kinds = (common.LINE, common.EXIT, common.TCP)

    def __init__(self, *, runtime: str = "crun", grace_s: float = GRACE_S) -> None:
        super().__init__(runtime, grace_s)
        self.service = Service(runtime, f"{PREFIX}{runtime}-{os.getpid()}")
        self.version: dict[str, Any] = {}
        self.seccomp_path = ""
        self.host_on_bridge = False  # the host reaches SUBNET through BRIDGE (rule tcp)
        self.bridge_made = False  # GATEWAY put on BRIDGE by prepare()
        self.gauge = common.EngineGauge(lambda: [self.service.pid] if self.service.pid else [])

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
            self.host_on_bridge = self._host_on_bridge()
        except BaseException:
            self.cleanup()
            raise

    def _host_on_bridge(self) -> bool:
        """Put :data:`GATEWAY` on :data:`BRIDGE` (made now if Podman has not made it yet), so
        that the host reaches the containers through the bridge (rule ``tcp``); whether it
        does. Only with the CNI network backend, which keeps a bridge it finds as it is."""
        from pyroute2 import IPRoute

        if self.network_backend != "cni":
            return False
        try:
            with IPRoute() as ipr:
                network.ensure_bridge(ipr, BRIDGE, GATEWAY, PREFIXLEN)
        except Exception as error:
            raise BackendError(f"podman: cannot address bridge {BRIDGE}: {error}") from None
        self.bridge_made = True
        return common.routed_via(SUBNET, BRIDGE)

    @property
    def network_backend(self) -> str | None:
        """``cni`` or ``netavark``, as the service's info says."""
        return self.info.get("host", {}).get("networkBackend")

    def unreachable(self) -> str | None:
        if self.host_on_bridge:
            return None
        if self.network_backend != "cni":
            return (f"podman's network backend is {self.network_backend}, not cni: it would "
                    f"remove {BRIDGE} and the host's address on it with its last container")
        return common.no_route(SUBNET, BRIDGE)

    def resume(self, instance: Instance) -> None:
        begin = common.now()
        self._call("POST", f"/containers/{instance.handle.id}/start", instance.name)
        instance.phases["engine_start_s"] = common.now() - begin

    def _kill(self, instance: Instance, signal_name: str) -> None:
        response = self.api.post(f"/containers/{instance.handle.id}/kill",
                                 params={"signal": signal_name})
        if response.status_code not in (204, 404, 409):  # sent, gone, not running
            raise BackendError(f"{instance.name}: podman kill: {message(response)}")

    def _remove(self, instance: Instance) -> None:
        response = self.api.delete(f"/containers/{instance.handle.id}",
                                   params={"force": "true"})
        if response.status_code not in (200, 204, 404):
            raise BackendError(f"{instance.name}: podman rm: {message(response)}")

    def _close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                if self.network_made:
                    self.api.delete(f"/networks/{NETWORK}", params={"force": "true"})
                    self.network_made = False
            with contextlib.suppress(Exception):
                if self.image_ref:
                    self.api.delete(f"/images/{self.image_ref}")
            self._client.close()
            self._client = None
        if self.bridge_made:  # removed with the network, unless the network was not ours
            with contextlib.suppress(Exception):
                network.delete_link(BRIDGE)
            self.bridge_made = False
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
            "network_backend": self.network_backend,
            "storage_driver": self.info.get("store", {}).get("graphDriverName"),
            "method": method.as_dict(),
            "image": {"ref": self.image_ref, "id": self.image_id, "digest": self.image_digest},
            "network_bridge": f"{NETWORK} (internal, {SUBNET}, bridge {BRIDGE})",
            "ready_tcp": (f"the container's IPAddress on {NETWORK} (inspect, after start), "
                          f"connected from the host's {GATEWAY} on {BRIDGE}"
                          if self.host_on_bridge else f"refused: {self.unreachable()}"),
            "ready_exit": "the attach stream's end, then the exit code of the libpod API's "
                          f"wait (condition stopped, polled every {WAIT_INTERVAL})",
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
            raise BackendError(f"podman: {method} {path}: {message(response)}")
        return response.json()

    def _call(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        response = getattr(self.api, method.lower())(path, **kwargs)
        if response.status_code >= 400:
            raise BackendError(f"{name}: podman {path.rsplit('/', 1)[-1]}: {message(response)}")
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
                raise BackendError(f"podman: image import failed: {message(response)}")
            found = self.api.get(f"/images/{ref}/json")
        self.image_ref, self.image_id = ref, found.json()["Id"]
        self.image_digest = image.digest

    def _network(self) -> None:
        if self.api.get(f"/networks/{NETWORK}/exists").status_code == 204:
            self.network_made = True
            return
        self._json("POST", "/networks/create", data=json.dumps({
            "name": NETWORK, "driver": "bridge", "network_interface": BRIDGE, "internal": True,
            "dns_enabled": False, "subnets": [{"subnet": SUBNET, "gateway": GATEWAY}],
            "labels": {"cvbench": "1"},
        }), headers={"Content-Type": "application/json"})
        self.network_made = True

    def container_spec(self, spec: InstanceSpec) -> dict[str, Any]:
        return config.container_spec(spec, self.image_ref, self.seccomp_path)

    def _create(self, spec: InstanceSpec) -> Instance:
        common.check_name(spec.name)
        begin = common.now()
        response = self._call("POST", "/containers/create", spec.name,
                              data=json.dumps(self.container_spec(spec)),
                              headers={"Content-Type": "application/json"})
        created = common.now()
        container_id = response.json()["Id"]
        handle = common.ApiHandle(container_id, cgroup=f"{CGROUP_PARENT}/libpod-{container_id}")
        instance = Instance(spec.name, self.name, handle)
        try:
            self._call("POST", f"/containers/{container_id}/init", spec.name)
            initialised = common.now()
            handle.stream, handle.early = self._attach(container_id, spec.name)
        except BaseException:
            self._discard(instance)
            raise
        attached = common.now()
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

    def _api_init(self, handle: common.ApiHandle) -> int | None:
        with contextlib.suppress(Exception):
            return self._json("GET", f"/containers/{handle.id}/json")["State"].get("Pid") or None
        return None

    def _exit_code(self, handle: common.ApiHandle, timeout: float) -> int | None:
        """``POST /libpod/containers/<id>/wait`` (condition stopped): the exit code it
        answers. Libpod polls the container's state for it, every 250 ms unless told
        (:data:`WAIT_INTERVAL`)."""
        try:
            response = self.api.post(f"/containers/{handle.id}/wait",
                                     params={"condition": "stopped",
                                             "interval": WAIT_INTERVAL},
                                     timeout=max(timeout, WAIT_FLOOR_S))
            code = response.json() if response.status_code == 200 else None
        except Exception:  # not exited in time (the client's timeout), or gone
            return None
        return code if isinstance(code, int) else None

    def _address(self, handle: common.ApiHandle) -> str | None:
        """``GET /libpod/containers/<id>/json``: its IPAddress on :data:`NETWORK`."""
        try:
            networks = self._json("GET", f"/containers/{handle.id}/json")[
                "NetworkSettings"]["Networks"]
        except (BackendError, KeyError, TypeError, ValueError):
            return None
        return (networks or {}).get(NETWORK, {}).get("IPAddress") or None


class PodmanOursBackend(PodmanBackend):
    """Podman with cvbench-runtime as its OCI runtime: the same service, containers, profile,
    limits, network and clean-up as ``podman``; conmon runs ``cvbench-runtime`` (the console
    script installed with cvbench, named in the service's ``containers.conf``) where
    ``podman`` runs crun."""

    name = "podman-ours"
    runtimes = (common.OURS,)

    def __init__(self, *, grace_s: float = GRACE_S) -> None:
        super().__init__(runtime=common.OURS, grace_s=grace_s)

    def prepare(self, image: Image) -> None:
        binary = common.ours_runtime()
        if not os.access(binary, os.X_OK):
            raise BackendError(f"{self.name}: {binary} missing: {common.SETUP} (it installs "
                               "cvbench, and its cvbench-runtime, into the virtualenv)")
        super().prepare(image)
