"""A bundle's ``config.json`` as the spec ``runtime/`` runs, or one line saying what in it
cannot be honoured.

:func:`load` reads ``<bundle>/config.json``, refuses every field that asks for something
``runtime/`` does not do (:func:`refusals`, each a :class:`ConfigError` naming the field), and
returns the :class:`runtime.spec.Spec` with ``root.path`` made absolute. Nothing is dropped
quietly: a container runs with every namespace, mount, mask, capability, limit, rlimit and
seccomp rule its config asks for, or it does not run (never weaker isolation than crun would
give it). What is refused, and why, is listed in docs/backends.md (``cvbench-runtime``).

A ``cgroup`` (or ``cgroup2``) mount, which Docker and Podman add at ``/sys/fs/cgroup``, is
honoured as runc honours it on a v1 host: :func:`cgroup_mounts` gives the container its own
cgroup directories, bound read-only (or as the mount asks) under a tmpfs, one per hierarchy
(v1), or its one directory (v2).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from runtime import cgroups
from runtime.oci import hooks
from runtime.planner import MOUNT_FLAGS, RLIMITS
from runtime.spec import NETWORK_ANNOTATION, Mount, Spec, SpecError

# Mount types the child mounts as they are (runtime.rootfs._mount_one); ``cgroup`` and
# ``cgroup2`` are expanded (cgroup_mounts)
MOUNT_TYPES = ("proc", "tmpfs", "devpts", "sysfs", "mqueue", "bind", "none", "")
CGROUP_TYPES = ("cgroup", "cgroup2")
# Propagation options: every mount of a container's namespace is private (runtime.rootfs), so
# a slave mount's host events do not reach it; shared ones would reach the host: refused.
PRIVATE_PROPAGATION = ("private", "rprivate", "slave", "rslave")
REFUSED_PROPAGATION = ("shared", "rshared", "unbindable", "runbindable")
# Options a bind mount may carry besides MOUNT_FLAGS and the propagation ones
BIND_EXTRAS = ("nosymfollow",)
SYSTEMD_CGROUPS_PATH = re.compile(r"^[^/:]*:[^:]*:[^:]*$")  # slice:prefix:name


class ConfigError(SpecError):
    """``config.json`` is unreadable, malformed, or asks for what runtime/ cannot honour."""


def read(bundle: Path) -> dict[str, Any]:
    """The parsed ``<bundle>/config.json``; ConfigError naming the problem."""
    path = bundle / "config.json"
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except ValueError as error:
        raise ConfigError(f"{path}: not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a JSON object")
    return data


def load(bundle: Path) -> Spec:
    """The spec of the bundle at ``bundle`` (root.path absolute); ConfigError if it asks for
    anything that cannot be honoured or is malformed."""
    data = read(bundle)
    refusals(data)
    try:
        spec = Spec.from_oci(data)
    except SpecError as error:
        raise ConfigError(str(error)) from None
    root = Path(spec.root.path)
    spec.root.path = str(root if root.is_absolute() else (bundle / root).resolve())
    if not Path(spec.root.path).is_dir():
        raise ConfigError(f"root.path: {spec.root.path} is not a directory")
    return spec


def _nonempty(value: Any) -> bool:
    return value not in (None, "", [], {}, 0, False)


def _refuse(field: str, why: str) -> None:
    raise ConfigError(f"{field}: {why}")


def refusals(data: dict[str, Any]) -> None:
    """Raise ConfigError for the first field of ``data`` that cannot be honoured."""
    version = str(data.get("ociVersion", ""))
    if not version.startswith("1."):
        _refuse("ociVersion", f"{version!r} is not a 1.x runtime-spec version")
    try:
        hooks.check(data.get("hooks"))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if _nonempty(data.get("domainname")):
        _refuse("domainname", "setting the NIS domain name is not supported")
    _process(data.get("process"))
    for index, mount in enumerate(data.get("mounts") or []):
        _mount(index, mount)
    _linux(data.get("linux") or {})
    network = (data.get("annotations") or {}).get(NETWORK_ANNOTATION)
    if network == "bridge":
        _refuse(f"annotations.{NETWORK_ANNOTATION}", "bridge (wired by cvbench's harness) is "
                "not supported by cvbench-runtime; give a network namespace path instead")


def _process(process: Any) -> None:
    if not isinstance(process, dict):
        _refuse("process", "missing: cvbench-runtime has nothing to run")
    if process.get("terminal"):
        _refuse("process.terminal", "a terminal (--console-socket) is not supported")
    user = process.get("user") or {}
    for key in ("uid", "gid"):
        value = user.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            _refuse(f"process.user.{key}", f"{value!r} is not a {key}")
    caps = process.get("capabilities") or {}
    if _nonempty(caps.get("ambient")):
        _refuse("process.capabilities.ambient", "ambient capabilities are not supported")
    # AppArmor's "unconfined" asks for no profile, which is what the runtime applies (Docker
    # and Podman pass it where AppArmor is enabled and no profile was wanted); any other
    # profile is refused
    if process.get("apparmorProfile") == "unconfined":
        process = {key: value for key, value in process.items() if key != "apparmorProfile"}
    for key in ("apparmorProfile", "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity"):
        if _nonempty(process.get(key)):
            _refuse(f"process.{key}", "not supported")
    for limit in process.get("rlimits") or []:
        kind = limit.get("type") if isinstance(limit, dict) else None
        if kind not in RLIMITS:
            _refuse("process.rlimits", f"unknown rlimit {kind!r}")
    score = process.get("oomScoreAdj")
    if score is not None and (not isinstance(score, int) or not -1000 <= score <= 1000):
        _refuse("process.oomScoreAdj", f"{score!r} is not an integer from -1000 to 1000")


def _mount(index: int, mount: Any) -> None:
    where = f"mounts[{index}]"
    if not isinstance(mount, dict):
        _refuse(where, "not an object")
    kind = mount.get("type", "")
    options = [str(option) for option in mount.get("options") or []]
    where = f"{where} ({mount.get('destination')})"
    if kind not in MOUNT_TYPES + CGROUP_TYPES:
        _refuse(where, f"mount type {kind!r} is not supported")
    for option in options:
        if option in REFUSED_PROPAGATION:
            _refuse(where, f"{option} propagation is not supported (mounts are private)")
        if option.startswith("idmap") or option.startswith("ridmap"):
            _refuse(where, "id-mapped mounts are not supported")
        if option == "tmpcopyup":
            _refuse(where, "tmpcopyup is not supported")
    if kind in ("bind", "none", "") or "bind" in options or "rbind" in options:
        if not mount.get("source"):
            _refuse(where, "a bind mount needs a source")
        unknown = [o for o in options if o not in MOUNT_FLAGS and o not in PRIVATE_PROPAGATION
                   and o not in BIND_EXTRAS]
        if unknown:
            _refuse(where, f"bind mount option(s) {', '.join(unknown)} not supported")


_RESOURCES_HONOURED = {
    "memory": ("limit", "swap"),
    "cpu": ("quota", "period"),
    "pids": ("limit",),
    "devices": None,  # a list of rules (runtime.devices)
}


def _linux(linux: dict[str, Any]) -> None:
    sysctls(linux)
    for key in ("uidMappings", "gidMappings", "devices", "mountLabel", "intelRdt",
                "personality", "timeOffsets", "memoryPolicy"):
        if _nonempty(linux.get(key)):
            _refuse(f"linux.{key}", "not supported")
    for namespace in linux.get("namespaces") or []:
        if not (isinstance(namespace, dict) and namespace.get("path")):
            continue
        kind, path = namespace.get("type"), namespace["path"]
        if kind != "network":  # a network namespace an engine wired is joined (Podman's)
            _refuse(f"linux.namespaces ({kind})",
                    "joining an existing namespace is not supported (network only)")
        if not isinstance(path, str) or not os.path.isabs(path):
            _refuse("linux.namespaces (network).path", f"{path!r} is not an absolute path")
    propagation = linux.get("rootfsPropagation") or ""
    if propagation and propagation not in PRIVATE_PROPAGATION:
        _refuse("linux.rootfsPropagation", f"{propagation!r} is not supported (private only)")
    path = linux.get("cgroupsPath") or ""
    if SYSTEMD_CGROUPS_PATH.match(path):
        _refuse("linux.cgroupsPath", f"{path!r} is systemd's slice:prefix:name form; "
                "cvbench-runtime manages cgroups itself (cgroupfs)")
    seccomp = linux.get("seccomp") or {}
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if _nonempty(seccomp.get(key)):
            _refuse(f"linux.seccomp.{key}", "not supported")
    resources = linux.get("resources") or {}
    for key, value in resources.items():
        if key not in _RESOURCES_HONOURED:
            # a section that sets nothing asks for nothing (Docker always passes blockIO
            # with weight 0: "not set", as runc and crun read it); a field set is refused
            if isinstance(value, dict):
                for field, setting in value.items():
                    if _nonempty(setting):
                        _refuse(f"linux.resources.{key}.{field}", "not supported")
            elif _nonempty(value):
                _refuse(f"linux.resources.{key}", "not supported")
            continue
        honoured = _RESOURCES_HONOURED[key]
        if honoured is None or not isinstance(value, dict):
            continue
        for field, setting in value.items():
            if field not in honoured and _nonempty(setting):
                _refuse(f"linux.resources.{key}.{field}", "not supported")
    memory = resources.get("memory") or {}
    swap, limit = memory.get("swap"), memory.get("limit")
    if swap not in (None, 0) and swap != limit:
        _refuse("linux.resources.memory.swap", f"{swap}: only no swap (swap equal to the "
                "limit) is supported")
    for key in ("memory", "pids"):
        section = resources.get(key) or {}
        if section.get("limit") is not None and section["limit"] <= 0:
            section.pop("limit")  # 0 or -1: unlimited, as no limit at all


IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
               "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")
SYSCTL_KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")


def sysctls(linux: dict[str, Any]) -> dict[str, str]:
    """``linux.sysctl``, each one checked to belong to a namespace of the container's own
    (``net.*``: a network namespace; the System V IPC ones and ``fs.mqueue.*``: an IPC
    namespace), as runc checks them; ConfigError else: a host-wide parameter is not the
    container's to set."""
    settings = linux.get("sysctl") or {}
    if not isinstance(settings, dict):
        _refuse("linux.sysctl", "not an object")
    own = {ns.get("type") for ns in linux.get("namespaces") or [] if isinstance(ns, dict)}
    for key, value in settings.items():
        where = f"linux.sysctl.{key}"
        if not SYSCTL_KEY.match(key) or "\n" in str(value):
            _refuse(where, "not a kernel parameter name and one-line value")
        if key.startswith("net."):
            needed = "network"
        elif key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            needed = "ipc"
        else:
            _refuse(where, "not a parameter of the container's own namespaces")
        if needed not in own:
            _refuse(where, f"needs a {needed} namespace of the container's own")
    return {key: str(value) for key, value in settings.items()}


def cgroups_path(data: dict[str, Any], container_id: str) -> str:
    """The container's cgroup, relative to each hierarchy's root: ``linux.cgroupsPath``
    (leading "/" dropped), else ``cvbench-runtime/<id>``."""
    path = ((data.get("linux") or {}).get("cgroupsPath") or "").strip("/")
    if not path:
        return f"{DEFAULT_CGROUP_PARENT}/{container_id}"
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ConfigError(f"linux.cgroupsPath: {path!r} is not a plain cgroup path")
    return path


DEFAULT_CGROUP_PARENT = "cvbench-runtime"


def cgroup_mounts(spec: Spec, driver: cgroups.Driver, cgroup: str, merged: str) -> None:
    """Replace each ``cgroup``/``cgroup2`` mount of ``spec`` by what gives the container its
    own cgroup there: on v2 a bind of its directory; on v1 a tmpfs holding a bind of its
    directory in each hierarchy (``<destination>/<hierarchy>``), then the tmpfs made
    read-only if the mount asked for ``ro`` (a recursive bind of it onto itself at ``merged``,
    the root's mount point before the switch). Comounted hierarchies' aliases (``cpu`` for
    ``cpu,cpuacct``) are not made."""
    mounts: list[Mount] = []
    for mount in spec.mounts:
        if mount.type not in CGROUP_TYPES:
            mounts.append(mount)
            continue
        flags = [o for o in mount.options if o in ("ro", "rw", "nosuid", "nodev", "noexec")]
        directories = driver.directories(cgroup)
        if driver.mode == "v2":
            mounts.append(Mount(mount.destination, "bind", str(directories[0]),
                                ["bind", *flags]))
            continue
        mounts.append(Mount(mount.destination, "tmpfs", "tmpfs",
                            ["nosuid", "nodev", "noexec", "mode=755"]))
        for directory in directories:
            hierarchy = directory.relative_to(driver.root).parts[0]
            mounts.append(Mount(f"{mount.destination}/{hierarchy}", "bind", str(directory),
                                ["bind", *flags]))
        if "ro" in flags:
            mounts.append(Mount(mount.destination, "bind", merged + mount.destination,
                                ["rbind", "ro", "nosuid", "nodev", "noexec"]))
    spec.mounts = mounts
