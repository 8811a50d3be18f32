"""What podman is told: for a container, the reference profile and limits as a libpod
SpecGenerator (:func:`container_spec`); for the backend's service, its ``containers.conf``
(:func:`containers_conf`).

Why the libpod API and not the Docker-compatible one: it takes the container's limits as OCI
``LinuxResources`` and the seccomp profile as a path (what the other backends run, with no
translation through Docker's HostConfig), and it offers podman's own create/start split
(create, ``init``: conmon and ``<runtime> create``, then start) which the compatible API hides.

The OCI runtime is podman's service-wide setting (a container's ``oci_runtime`` is ignored by
podman 4.3's API), so each backend runs its own service with ``runtime = "crun"`` (podman's
default; on a hybrid host the ``crun-v1view`` wrapper, as crun 1.8 refuses hybrid cgroups,
elsewhere plain crun), ``"runc"`` or ``"cvbench-runtime"`` (ours behind the OCI command line,
the console script installed with cvbench: :func:`common.ours_runtime`), written to a
``containers.conf`` of its own (``CONTAINERS_CONF``), with file events (no journald needed)
and one cgroup manager on every host kind and init system: **cgroupfs**
(:data:`CGROUP_MANAGER`), the one crun, runc and ``ours`` use (podman would pick systemd where
systemd is PID 1, asking it for a scope per container). The manager podman reports
(``info.host.cgroupManager``) is recorded by ``describe()``, and ``prepare()`` refuses a
service that does not run with it.
"""

from __future__ import annotations

from typing import Any

from harness.backends.base import VOLUME_PATH, InstanceSpec
from harness.backends.engines import common
from hostkit.paths import PREFIX

NETWORK = f"{PREFIX}podman"
BRIDGE = f"{PREFIX}pd0"
SUBNET = "10.215.0.0/16"
# The host's address on BRIDGE (rule tcp), the subnet's first: the network's gateway, which
# host-local IPAM never hands to a container; internal, so no container gets a route by it.
GATEWAY = "10.215.0.1"
PREFIXLEN = 16
CGROUP_PARENT = f"{PREFIX}podman"
CGROUP_MANAGER = "cgroupfs"
# Podman's default masked paths (containers/common 0.50), and those of its default masked or
# read-only paths that the reference profile does not have.
DEFAULT_MASKED = ("/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                  "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats",
                  "/sys/dev/block", "/sys/devices/virtual/powercap", "/sys/firmware",
                  "/sys/fs/selinux")
EXTRA_DEFAULT_PATHS = ("/proc/timer_stats", "/sys/dev/block", "/sys/devices/virtual/powercap",
                       "/sys/fs/selinux", "/proc/asound")


def containers_conf(runtime: str, mode: str | None = None) -> str:
    """The service's ``containers.conf``: ``runtime``, the cgroupfs manager, file events,
    crun as the engines run it on a host in cgroup ``mode`` (:func:`common.engine_crun`) and
    cvbench-runtime as installed (:func:`common.ours_runtime`)."""
    return (
        "# written by cvbench for its podman service\n"
        "[engine]\n"
        f'cgroup_manager = "{CGROUP_MANAGER}"\n'
        'events_logger = "file"\n'
        f'runtime = "{runtime}"\n'
        "[engine.runtimes]\n"
        f'crun = ["{common.engine_crun(mode)}"]\n'
        'runc = ["/usr/bin/runc", "/usr/sbin/runc", "/usr/local/bin/runc"]\n'
        f'{common.OURS} = ["{common.ours_runtime()}"]\n'
    )


def container_spec(spec: InstanceSpec, image_ref: str, seccomp_path: str) -> dict[str, Any]:
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
        "name": spec.name, "hostname": spec.name, "image": image_ref,
        "command": list(reference.process.args),
        "work_dir": reference.process.cwd,
        "user": f"{reference.process.uid}:{reference.process.gid}",
        "env": dict(item.split("=", 1) for item in reference.process.env),
        "labels": {"cvbench": "1"}, "terminal": False, "stdin": False,
        "pidns": private, "ipcns": private, "utsns": private,
        "cgroupns": private if reference.linux.has_namespace("cgroup") else {"nsmode": "host"},
        "resource_limits": resources,
        "cap_drop": ["ALL"], "cap_add": common.capability_names(reference),
        "no_new_privileges": reference.process.no_new_privileges,
        "seccomp_profile_path": seccomp_path,
        # no AppArmor profile, as ours, crun and runc get none (where AppArmor is enabled
        # Podman would apply containers-default)
        "apparmor_profile": "unconfined",
        "mask": [p for p in reference.linux.masked_paths if p not in DEFAULT_MASKED],
        "unmask": [p for p in EXTRA_DEFAULT_PATHS
                   if p not in reference.linux.masked_paths + reference.linux.readonly_paths],
        "cgroup_parent": f"/{CGROUP_PARENT}",
    }
    if spec.volume is not None:  # at /data, read-write, as the OCI backends bind it
        generated["mounts"] = [{"destination": VOLUME_PATH, "source": str(spec.volume),
                                "type": "bind", "options": ["rbind", "rw"]}]
    if spec.network == "bridge":
        generated["netns"] = {"nsmode": "bridge"}
        generated["Networks"] = {NETWORK: {}}
    else:
        generated["netns"] = {"nsmode": spec.network}
    return generated
