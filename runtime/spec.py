"""The container spec: a subset of the OCI runtime-spec ``config.json``, as dataclasses.

``Spec.from_oci(json.load(...))`` reads a bundle's config; ``Spec.to_oci()`` writes one back.
Only the fields this runtime honours are kept; unknown keys are ignored on input.
cvbench annotations carry what OCI leaves to higher layers: ``cvbench.network``
(``none`` | ``bridge`` | ``host``), ``cvbench.image.digest`` (verified before start) and, when
the spec has the default seccomp profile, the profile's file and sha256.
``root.path`` is the read-only lower layer of the container's overlay root.

:func:`default_spec` is the one spec ``ours``, crun and runc all run: the same namespaces,
mounts, capabilities, masked and read-only paths, no_new_privs, device rules (deny all; each
runtime adds its default allow list) and ``linux.seccomp`` section (the containers/Docker
default profile resolved for the spec's capabilities, see :mod:`runtime.seccomp`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

from hostkit import validate
from runtime import seccomp as profiles
from runtime.devices import DENY_ALL, DeviceRule

OCI_VERSION = "1.0.2"
NETWORK_ANNOTATION = "cvbench.network"
DIGEST_ANNOTATION = "cvbench.image.digest"
SECCOMP_PROFILE_ANNOTATION = "cvbench.seccomp.profile"  # the profile file the section is from
SECCOMP_SHA256_ANNOTATION = "cvbench.seccomp.profile.sha256"
NETWORK_MODES = ("none", "bridge", "host")
NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "cgroup", "user")
DEFAULT_NAMESPACES = ("pid", "network", "mount", "ipc", "uts", "cgroup")
# The OCI/Docker default set (CAP_MKNOD included): every runtime filters devices on every
# host kind (a v1 devices cgroup, or on v2 an eBPF program: runtime.device_filter), so a node
# a container makes of a device outside the allow list cannot be opened.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
DEFAULT_MASKED = (
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
DEFAULT_READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root")
MIN_MEMORY_BYTES = int(validate.MEMORY_LIMIT_MIB.minimum) << 20  # below, even busybox sh
# cannot start (the bound of `cvbench ctr run --memory` and of `memory_limit_mib`)


class SpecError(ValueError):
    """A spec is malformed or asks for something impossible; the message says which field."""


@dataclass
class Capabilities:
    bounding: list[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    effective: list[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    permitted: list[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    inheritable: list[str] = field(default_factory=list)


@dataclass
class Rlimit:
    type: str  # e.g. RLIMIT_NOFILE
    hard: int
    soft: int


@dataclass
class Process:
    args: list[str]
    env: list[str] = field(default_factory=lambda: list(DEFAULT_ENV))
    cwd: str = "/"
    capabilities: Capabilities = field(default_factory=Capabilities)
    no_new_privileges: bool = True
    rlimits: list[Rlimit] = field(default_factory=list)
    # process.user.additionalGids: the supplementary groups the process gets (setgroups, as
    # crun and runc do; none when empty, never the runtime's own)
    additional_gids: list[int] = field(default_factory=list)
    # process.user.umask; None: 0022, which crun and runc set when the spec gives none
    umask: int | None = None
    uid: int = 0  # process.user.uid and gid: who the process runs as
    gid: int = 0


@dataclass
class Root:
    path: str
    readonly: bool = False


@dataclass
class Mount:
    destination: str
    type: str
    source: str
    options: list[str] = field(default_factory=list)


@dataclass
class Namespace:
    type: str
    path: str | None = None


@dataclass
class Resources:
    memory_limit: int | None = None  # bytes
    pids_limit: int | None = None
    cpu_quota: int | None = None  # microseconds per period
    cpu_period: int | None = None  # microseconds
    devices: list[DeviceRule] = field(default_factory=list)  # in order, before the defaults


@dataclass(frozen=True)
class SeccompArg:
    index: int
    value: int
    op: str  # SCMP_CMP_*
    value_two: int | None = None


@dataclass(frozen=True)
class SeccompRule:
    names: tuple[str, ...]
    action: str  # SCMP_ACT_*
    errno_ret: int | None = None
    args: tuple[SeccompArg, ...] = ()


@dataclass(frozen=True)
class Seccomp:
    """The OCI ``linux.seccomp`` section. Frozen, so that one (large) section is shared by
    every spec made from the same profile; :attr:`digest` identifies it."""

    default_action: str
    architectures: tuple[str, ...] = ()
    syscalls: tuple[SeccompRule, ...] = ()
    default_errno_ret: int | None = None

    @cached_property
    def digest(self) -> str:
        """sha256 of the section's canonical JSON (sorted keys, no spaces): the same digest
        as ``harness.backends.oci.profile.seccomp_summary`` gives its ``config.json`` copy."""
        canonical = json.dumps(self.to_oci(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_oci(self) -> dict[str, Any]:
        section: dict[str, Any] = {"defaultAction": self.default_action}
        if self.default_errno_ret is not None:
            section["defaultErrnoRet"] = self.default_errno_ret
        section["architectures"] = list(self.architectures)
        section["syscalls"] = [_rule_to_oci(rule) for rule in self.syscalls]
        return section

    @classmethod
    def from_oci(cls, data: dict[str, Any]) -> Seccomp:
        return cls(
            default_action=data["defaultAction"],
            architectures=tuple(data.get("architectures") or ()),
            syscalls=tuple(
                SeccompRule(
                    names=tuple(rule["names"]),
                    action=rule["action"],
                    errno_ret=rule.get("errnoRet"),
                    args=tuple(SeccompArg(int(a["index"]), int(a.get("value", 0)), a["op"],
                                          a.get("valueTwo")) for a in rule.get("args") or ()),
                )
                for rule in data.get("syscalls") or ()
            ),
            default_errno_ret=data.get("defaultErrnoRet"),
        )


def _rule_to_oci(rule: SeccompRule) -> dict[str, Any]:
    data: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
    if rule.errno_ret is not None:
        data["errnoRet"] = rule.errno_ret
    if rule.args:
        data["args"] = [{"index": a.index, "value": a.value,
                         **({"valueTwo": a.value_two} if a.value_two is not None else {}),
                         "op": a.op} for a in rule.args]
    return data


@dataclass
class Linux:
    namespaces: list[Namespace] = field(
        default_factory=lambda: [Namespace(t) for t in DEFAULT_NAMESPACES]
    )
    resources: Resources = field(default_factory=Resources)
    masked_paths: list[str] = field(default_factory=lambda: list(DEFAULT_MASKED))
    readonly_paths: list[str] = field(default_factory=lambda: list(DEFAULT_READONLY))
    cgroups_path: str | None = None
    seccomp: Seccomp | None = None

    def has_namespace(self, kind: str) -> bool:
        return any(ns.type == kind for ns in self.namespaces)


SYSFS = Mount("/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"])


def default_mounts() -> list[Mount]:
    """The mounts every container gets: /proc, a minimal /dev (with /dev/shm) and /dev/pts.

    Few superblocks on purpose: each one the kernel must walk or reparent grows the cost of
    later launches and cgroup removals with the number of live containers. /dev/shm is a
    directory of the /dev tmpfs, not a tmpfs of its own, and /sys is left out by default
    (a sysfs per netns makes every later sysfs mount walk all of them); ask for it with
    ``default_spec(..., sysfs=True)``.
    """
    return [
        Mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        Mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        ),
    ]


@dataclass
class Spec:
    process: Process
    root: Root
    hostname: str = "cvbench"
    mounts: list[Mount] = field(default_factory=default_mounts)
    linux: Linux = field(default_factory=Linux)
    annotations: dict[str, str] = field(default_factory=dict)
    oci_version: str = OCI_VERSION

    @property
    def network(self) -> str:
        if not self.linux.has_namespace("network"):
            return "host"
        return self.annotations.get(NETWORK_ANNOTATION, "none")

    @classmethod
    def from_oci(cls, data: dict[str, Any]) -> Spec:
        """Load the supported subset of an OCI ``config.json`` dict; raise SpecError if invalid."""
        try:
            proc = data["process"]
            caps = proc.get("capabilities") or {}
            process = Process(
                args=list(proc["args"]),
                env=list(proc.get("env", [])),
                cwd=proc.get("cwd", "/"),
                capabilities=Capabilities(
                    **{k: list(caps.get(k, [])) for k in vars(Capabilities()) if k in caps}
                )
                if caps
                else Capabilities([], [], [], []),
                no_new_privileges=bool(proc.get("noNewPrivileges", False)),
                rlimits=[
                    Rlimit(r["type"], int(r["hard"]), int(r["soft"]))
                    for r in proc.get("rlimits", [])
                ],
                additional_gids=[int(g) for g in
                                 (proc.get("user") or {}).get("additionalGids") or []],
                umask=(proc.get("user") or {}).get("umask"),
                uid=int((proc.get("user") or {}).get("uid", 0)),
                gid=int((proc.get("user") or {}).get("gid", 0)),
            )
            root = Root(data["root"]["path"], bool(data["root"].get("readonly", False)))
            lin = data.get("linux", {})
            res = lin.get("resources", {})
            linux = Linux(
                namespaces=[Namespace(n["type"], n.get("path")) for n in lin.get("namespaces", [])],
                resources=Resources(
                    memory_limit=res.get("memory", {}).get("limit"),
                    pids_limit=res.get("pids", {}).get("limit"),
                    cpu_quota=res.get("cpu", {}).get("quota"),
                    cpu_period=res.get("cpu", {}).get("period"),
                    devices=[DeviceRule.from_oci(d) for d in res.get("devices", [])],
                ),
                masked_paths=list(lin.get("maskedPaths", [])),
                readonly_paths=list(lin.get("readonlyPaths", [])),
                cgroups_path=lin.get("cgroupsPath"),
                seccomp=Seccomp.from_oci(lin["seccomp"]) if lin.get("seccomp") else None,
            )
            mounts = [
                Mount(
                    m["destination"],
                    m.get("type", "bind"),
                    m.get("source", ""),
                    list(m.get("options", [])),
                )
                for m in data.get("mounts", [])
            ]
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise SpecError(f"invalid OCI config: missing or malformed {error}") from None
        spec = cls(
            process=process,
            root=root,
            hostname=data.get("hostname", ""),
            mounts=mounts,
            linux=linux,
            annotations=dict(data.get("annotations", {})),
            oci_version=data.get("ociVersion", OCI_VERSION),
        )
        spec.validate()
        return spec

    def to_oci(self, *, seccomp: bool = True) -> dict[str, Any]:
        """The OCI ``config.json`` dict for this spec (round-trips through from_oci).

        ``seccomp=False`` leaves the (large) seccomp section out, e.g. for a state file.
        """
        caps = self.process.capabilities
        resources: dict[str, Any] = {}
        res = self.linux.resources
        if res.memory_limit is not None:
            resources["memory"] = {"limit": res.memory_limit}
        if res.pids_limit is not None:
            resources["pids"] = {"limit": res.pids_limit}
        if res.cpu_quota is not None:
            resources["cpu"] = {"quota": res.cpu_quota, "period": res.cpu_period or 100000}
        if res.devices:
            resources["devices"] = [rule.to_oci() for rule in res.devices]
        linux: dict[str, Any] = {
            "namespaces": [
                {"type": n.type, **({"path": n.path} if n.path else {})}
                for n in self.linux.namespaces
            ],
            "resources": resources,
            "maskedPaths": list(self.linux.masked_paths),
            "readonlyPaths": list(self.linux.readonly_paths),
        }
        if self.linux.cgroups_path:
            linux["cgroupsPath"] = self.linux.cgroups_path
        if seccomp and self.linux.seccomp is not None:
            linux["seccomp"] = self.linux.seccomp.to_oci()
        return {
            "ociVersion": self.oci_version,
            "process": {
                "terminal": False,
                "user": {"uid": self.process.uid, "gid": self.process.gid,
                         **({"additionalGids": list(self.process.additional_gids)}
                            if self.process.additional_gids else {}),
                         **({"umask": self.process.umask}
                            if self.process.umask is not None else {})},
                "args": list(self.process.args),
                "env": list(self.process.env),
                "cwd": self.process.cwd,
                "capabilities": {k: list(v) for k, v in vars(caps).items()},
                "noNewPrivileges": self.process.no_new_privileges,
                "rlimits": [vars(r).copy() for r in self.process.rlimits],
            },
            "root": {"path": self.root.path, "readonly": self.root.readonly},
            "hostname": self.hostname,
            "mounts": [
                {
                    "destination": m.destination,
                    "type": m.type,
                    "source": m.source,
                    "options": list(m.options),
                }
                for m in self.mounts
            ],
            "linux": linux,
            "annotations": dict(self.annotations),
        }

    def validate(self) -> None:
        """Raise SpecError naming the first field that is malformed or impossible."""
        if not self.process.args:
            raise SpecError("process.args: must name a program to run")
        if not self.process.cwd.startswith("/"):
            raise SpecError(f"process.cwd: must be absolute, got {self.process.cwd!r}")
        if not self.root.path:
            raise SpecError("root.path: must name the image rootfs")
        for gid in self.process.additional_gids:
            if not 0 <= gid < 1 << 32:
                raise SpecError(f"process.user.additionalGids: {gid} is not a gid")
        umask = self.process.umask
        if umask is not None and (not isinstance(umask, int) or not 0 <= umask <= 0o777):
            raise SpecError(f"process.user.umask: {umask!r} is not a mode from 0 to 0777")
        for ns in self.linux.namespaces:
            if ns.type not in NAMESPACE_TYPES:
                raise SpecError(f"linux.namespaces: unknown type {ns.type!r}")
            if ns.path and ns.type != "network":  # an engine's wired network namespace
                raise SpecError(f"linux.namespaces ({ns.type}): joining an existing namespace "
                                "is not supported (network only)")
        if self.linux.has_namespace("user"):
            raise SpecError("linux.namespaces: user namespaces are not supported")
        if not self.linux.has_namespace("mount"):
            raise SpecError("linux.namespaces: a mount namespace is required")
        if self.network not in NETWORK_MODES:
            raise SpecError(
                f"annotations.{NETWORK_ANNOTATION}: {self.network!r} is not one of "
                + ", ".join(NETWORK_MODES)
            )
        if self.network == "host" and self.annotations.get(NETWORK_ANNOTATION, "host") != "host":
            raise SpecError(f"annotations.{NETWORK_ANNOTATION}: needs a network namespace")
        if len(self.hostname.encode()) > 64:
            raise SpecError(f"hostname: {self.hostname!r} is longer than 64 bytes")
        for mount in self.mounts:
            if not mount.destination.startswith("/"):
                raise SpecError(f"mounts: destination {mount.destination!r} is not absolute")
        res = self.linux.resources
        if res.memory_limit is not None:
            total = _host_memory_bytes()
            if res.memory_limit < MIN_MEMORY_BYTES:
                raise SpecError(
                    f"linux.resources.memory.limit: {res.memory_limit} bytes is below the "
                    f"minimum of {MIN_MEMORY_BYTES >> 20} MiB"
                )
            if total and res.memory_limit > total:
                raise SpecError(
                    f"linux.resources.memory.limit: {res.memory_limit >> 20} MiB exceeds the "
                    f"host's {total >> 20} MiB"
                )
        if res.pids_limit is not None and res.pids_limit < 1:
            raise SpecError(f"linux.resources.pids.limit: must be >= 1, got {res.pids_limit}")
        if res.cpu_quota is not None:
            period = res.cpu_period or 100000
            if not 1000 <= period <= 1000000:
                raise SpecError(f"linux.resources.cpu.period: {period} us not in 1000..1000000")
            if res.cpu_quota < 1000:
                raise SpecError(f"linux.resources.cpu.quota: {res.cpu_quota} us is below 1000")
            cpus = os.cpu_count() or 1
            if res.cpu_quota > period * cpus:
                raise SpecError(
                    f"linux.resources.cpu: quota {res.cpu_quota}/{period} asks for more than "
                    f"the host's {cpus} CPUs"
                )


def _host_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


def default_spec(
    image: Any,
    name: str,
    *,
    memory_limit_mib: int | None = None,
    pids_limit: int | None = None,
    cpu_limit: float | None = None,
    network: str = "none",
    args: list[str] | None = None,
    readonly: bool = False,
    sysfs: bool = False,
    seccomp: bool = True,
) -> Spec:
    """A spec running ``image``'s ``/init`` as ``name`` with the given limits.

    ``image`` is a :class:`imagestore.image.Image` (or anything with ``rootfs`` and ``digest``).
    ``seccomp``: the default profile's section (:func:`default_seccomp`); SpecError naming
    the package to install if the profile is missing.
    """
    namespaces = [Namespace(t) for t in DEFAULT_NAMESPACES if t != "network" or network != "host"]
    cpu_quota = None if cpu_limit is None else round(cpu_limit * 100000)
    spec = Spec(
        process=Process(args=list(args) if args else ["/init"]),
        root=Root(str(image.rootfs), readonly),
        hostname=name,
        linux=Linux(
            namespaces=namespaces,
            resources=Resources(
                memory_limit=None if memory_limit_mib is None else memory_limit_mib << 20,
                pids_limit=pids_limit,
                cpu_quota=cpu_quota,
                cpu_period=None if cpu_quota is None else 100000,
                devices=[DENY_ALL],
            ),
        ),
        annotations={NETWORK_ANNOTATION: network, DIGEST_ANNOTATION: image.digest},
    )
    if seccomp:
        try:
            profile, section = default_seccomp(tuple(spec.process.capabilities.bounding))
        except profiles.SeccompError as error:
            raise SpecError(str(error)) from None
        spec.linux.seccomp = section
        spec.annotations[SECCOMP_PROFILE_ANNOTATION] = str(profile.path)
        spec.annotations[SECCOMP_SHA256_ANNOTATION] = profile.digest
    if network not in NETWORK_MODES:
        raise SpecError(f"network: {network!r} is not one of {', '.join(NETWORK_MODES)}")
    if sysfs and network != "host":  # sysfs can only be mounted in a netns of one's own
        spec.mounts.append(SYSFS)
    spec.validate()
    return spec


def default_seccomp(capabilities: tuple[str, ...]) -> tuple[profiles.Profile, Seccomp]:
    """The default profile (``CVBENCH_SECCOMP_PROFILE`` or the containers/Docker one) and its
    section for a container holding ``capabilities``; read and resolved once per process."""
    return _resolved(str(profiles.profile_path()), capabilities)


@cache
def _resolved(path: str, capabilities: tuple[str, ...]) -> tuple[profiles.Profile, Seccomp]:
    profile = profiles.load_profile(path)
    return profile, Seccomp.from_oci(profiles.to_oci(profile, capabilities))
