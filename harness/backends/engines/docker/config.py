"""What Docker is told for a container: the reference profile and limits as a HostConfig
(:func:`host_config`), and the names of the backend's network and cgroups.

``network = "bridge"`` uses the internal network :data:`NETWORK` (no gateway route out of it)
the backend creates and removes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker

from harness.backends.base import VOLUME_PATH, InstanceSpec
from harness.backends.engines import common
from hostkit.paths import PREFIX

NETWORK = f"{PREFIX}docker"
BRIDGE = f"{PREFIX}dk0"  # the network's Linux bridge (at most 15 characters)
SUBNET = "10.214.0.0/16"  # ours uses 10.213.0.0/16
CGROUP_PARENT = f"{PREFIX}docker"
# The --root containerd's runc shim gives every OCI runtime under dockerd (runc, crun and
# cvbench-runtime alike): each keeps its containers' state there
RUNTIME_ROOT = Path("/run/docker/runtime-runc/moby")


def host_config(api: docker.APIClient, spec: InstanceSpec, *, runtime: str, seccomp_json: str,
                cgroup_parent: str) -> dict[str, Any]:
    """The HostConfig of ``spec``: the reference spec's limits, capabilities, masked and
    read-only paths, no_new_privs and seccomp profile (``seccomp_json``), under ``runtime``."""
    reference = common.reference_spec(spec)
    resources = reference.linux.resources
    network = {"none": "none", "host": "host", "bridge": NETWORK}[spec.network]
    config = api.create_host_config(
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
                      f"seccomp={seccomp_json}", "apparmor=unconfined"],
        ipc_mode="private",
        # InstanceSpec.volume at /data, read-write, as the OCI backends bind it
        binds=[f"{spec.volume}:{VOLUME_PATH}:rw"] if spec.volume is not None else None,
        runtime=runtime,
        cgroup_parent=cgroup_parent,
        init=False,
    )
    config["MaskedPaths"] = list(reference.linux.masked_paths)
    config["ReadonlyPaths"] = list(reference.linux.readonly_paths)
    config["CgroupnsMode"] = "private" if reference.linux.has_namespace("cgroup") else "host"
    return config


def slice_path(name: str) -> str:
    """Where systemd puts slice ``name``: ``a-b.slice`` is ``a.slice/a-b.slice``."""
    parts = name.removesuffix(".slice").split("-")
    return "/".join("-".join(parts[:depth]) + ".slice" for depth in range(1, len(parts) + 1))
