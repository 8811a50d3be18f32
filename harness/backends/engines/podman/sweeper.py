"""``cvbench clean`` for podman: the services a killed run left, then every ``cvbench-``
container, network and image, and the ``cvbench-podman`` cgroups."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

from harness.backends.base import BackendError
from harness.backends.engines import common
from harness.backends.engines.podman.config import BRIDGE, CGROUP_PARENT
from harness.backends.engines.podman.service import Service, client, message, service_dir
from hostkit.paths import PREFIX
from hostkit.procs import signal_and_wait
from runtime import network


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
                    "" if response.status_code < 400 else f": {message(response)}"))
        for listed_network in api.get("/networks/json").json() or []:
            name = listed_network.get("name", "")
            if name.startswith(PREFIX):
                response = api.delete(f"/networks/{name}", params={"force": "true"})
                removed.append(f"podman network {name}" + (
                    "" if response.status_code < 400 else f": {message(response)}"))
        for found in api.get("/images/json").json() or []:
            tags = [t for t in found.get("RepoTags") or [] if t.startswith(f"localhost/{PREFIX}")]
            for tag in tags:
                response = api.delete(f"/images/{tag}", params={"force": "true"})
                removed.append(f"podman image {tag}" + (
                    "" if response.status_code < 400 else f": {message(response)}"))
    finally:
        service.stop()
    if network.delete_link(BRIDGE):  # the bridge prepare() addressed, if its network left it
        removed.append(f"bridge {BRIDGE}")
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
