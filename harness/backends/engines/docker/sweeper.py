"""``cvbench clean`` for Docker (``docker`` and ``docker-ours``): every ``cvbench-``
container, network and image dockerd has, the ``cvbench-docker`` cgroups, and what a killed
``cvbench-runtime create`` left half-made under the shim's runtime root (made containers are
dockerd's: removing them through its API has the shim delete them)."""

from __future__ import annotations

import os

from docker import errors as docker_errors

from harness.backends.engines import common
from harness.backends.engines.docker.config import CGROUP_PARENT, RUNTIME_ROOT, slice_path
from harness.backends.engines.docker.service import SOCKET, first_line, sdk_client
from hostkit.paths import PREFIX
from runtime.oci import sweep as oci_sweep


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
                removed.append(f"docker container {names[0]}: {first_line(error)}")
        for network in api.networks():
            if network["Name"].startswith(PREFIX):
                try:
                    api.remove_network(network["Id"])
                    removed.append(f"docker network {network['Name']}")
                except docker_errors.DockerException as error:
                    removed.append(f"docker network {network['Name']}: {first_line(error)}")
        for found in api.images():
            for tag in found.get("RepoTags") or []:
                if tag.startswith(PREFIX):
                    try:
                        api.remove_image(tag, force=True)
                        removed.append(f"docker image {tag}")
                    except docker_errors.DockerException as error:
                        removed.append(f"docker image {tag}: {first_line(error)}")
    finally:
        client.close()
    removed += oci_sweep.sweep(RUNTIME_ROOT)
    removed += common.sweep_cgroups([CGROUP_PARENT, slice_path(f"{CGROUP_PARENT}.slice")])
    return removed
