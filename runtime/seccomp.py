"""The containers' seccomp filter: one profile for every runtime alike.

The profile is the containers/Docker lineage's default (Debian's
``golang-github-containers-common`` ships it as ``/usr/share/containers/seccomp.json``). Its
format has conditions the OCI runtime spec has not (``includes``/``excludes`` by capability
and architecture), so :func:`to_oci` resolves them for one container (its capabilities, this
machine's architecture) into the OCI ``linux.seccomp`` section: what crun and runc get in
``config.json``, and what ``ours`` compiles with libseccomp for every container, as they do
(:func:`compile_bpf`, on a worker thread of :class:`Compiler`), and installs in the child
right before exec (:func:`hostkit.syscalls.seccomp_set_filter`, one ``seccomp`` system call).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import platform
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = Path("/usr/share/containers/seccomp.json")
PROFILE_PACKAGE = "golang-github-containers-common"
# Docker-format architecture names and libseccomp's, for this machine's architecture.
_NATIVE = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64")}


class SeccompError(ValueError):
    """The profile is missing or malformed, or the filter could not be built/installed."""


@dataclass(frozen=True)
class Profile:
    """A seccomp profile file (Docker/containers format) and its identity."""

    path: Path
    data: dict[str, Any]
    digest: str  # sha256 of the file as read

    def describe(self) -> dict[str, Any]:
        """For run metadata: which profile, from which file, with which digest."""
        return {"profile": str(self.path), "sha256": self.digest,
                "default_action": self.data.get("defaultAction"),
                "rules": len(self.data.get("syscalls", []))}


def profile_path() -> Path:
    """The default profile's file: ``CVBENCH_SECCOMP_PROFILE``, else the containers/Docker one."""
    return Path(os.environ.get("CVBENCH_SECCOMP_PROFILE") or DEFAULT_PROFILE)


def load_profile(path: Path | str | None = None) -> Profile:
    """The profile at ``path`` (default: :func:`profile_path`)."""
    path = Path(path or profile_path())
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError:
        raise SeccompError(f"seccomp profile {path} missing: apt-get install {PROFILE_PACKAGE}"
                           " (scripts/setup.sh does)") from None
    except (OSError, ValueError) as error:
        raise SeccompError(f"seccomp profile {path} unreadable: {error}") from None
    if not isinstance(data, dict) or "defaultAction" not in data:
        raise SeccompError(f"seccomp profile {path} has no defaultAction")
    return Profile(path, data, hashlib.sha256(raw).hexdigest())


def _native(machine: str | None = None) -> tuple[str, str]:
    machine = machine or platform.machine()
    try:
        return _NATIVE[machine]
    except KeyError:
        raise SeccompError(f"no seccomp architecture mapping for {machine}") from None


def _applies(rule: dict[str, Any], caps: set[str], arch: str) -> bool:
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if includes.get("caps") and not set(includes["caps"]) <= caps:
        return False
    if excludes.get("arches") and arch in excludes["arches"]:
        return False
    return not (excludes.get("caps") and set(excludes["caps"]) & caps)


def to_oci(profile: Profile, capabilities: Iterable[str],
           machine: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` section of ``profile`` for a container holding
    ``capabilities`` on this machine's architecture."""
    arch, scmp_arch = _native(machine)
    data, caps = profile.data, set(capabilities)
    architectures = [scmp_arch]
    for entry in data.get("archMap") or []:
        if entry.get("architecture") == scmp_arch:
            architectures += entry.get("subArchitectures") or []
    syscalls = []
    for rule in data.get("syscalls") or []:
        if not _applies(rule, caps, arch):
            continue
        oci: dict[str, Any] = {"names": list(rule["names"]), "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            oci["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            oci["args"] = [{key: arg[key] for key in ("index", "value", "valueTwo", "op")
                            if key in arg} for arg in rule["args"]]
        syscalls.append(oci)
    section: dict[str, Any] = {"defaultAction": data["defaultAction"],
                               "architectures": architectures, "syscalls": syscalls}
    if data.get("defaultErrnoRet") is not None:
        section["defaultErrnoRet"] = data["defaultErrnoRet"]
    return section


# --- compiling (in the parent, with libseccomp) ---------------------------------------------


_NR_SCMP_ERROR = -1  # libseccomp's "no such syscall name"
_log = logging.getLogger(__name__)


def _arg(seccomp: Any, ops: dict[str, int], arg: dict[str, Any], rule: int) -> Any:
    """One ``args`` entry as a libseccomp comparison; SeccompError for what crun refuses."""
    if not 0 <= arg["index"] < 6:
        raise SeccompError(f"seccomp rule {rule}: invalid argument index {arg['index']}")
    if arg["op"] not in ops:
        raise SeccompError(f"seccomp rule {rule}: unknown operator {arg['op']}")
    return seccomp.Arg(arg["index"], ops[arg["op"]], arg.get("value", 0),
                       *([arg.get("valueTwo", 0)] if arg["op"] == "SCMP_CMP_MASKED_EQ" else []))


def compile_bpf(section: dict[str, Any]) -> bytes:
    """The classic-BPF program of an OCI seccomp section, built by libseccomp (pyseccomp),
    rule for rule as crun 1.8 builds it (``libcrun_generate_seccomp``, src/libcrun/seccomp.c).

    Every rule libseccomp refuses fails the whole filter with a :class:`SeccompError` naming
    the rule (crun and runc fail the container); so do an unknown action, operator or
    architecture, an argument index past 5 and an ``errnoRet`` on an action without one. The
    one thing skipped, as crun skips it, is a syscall *name* libseccomp cannot resolve at all
    (``seccomp_syscall_resolve_name`` gives ``__NR_SCMP_ERROR``: a name newer than this
    libseccomp): crun logs "unknown seccomp syscall `NAME` ignored" and goes on (it fails only
    with the ``run.oci.seccomp_fail_unknown_syscall`` annotation), and so does this, with the
    same warning. A name known to libseccomp but absent on this architecture (``socketcall``
    on x86_64) resolves to a pseudo-number that libseccomp itself keeps for the other
    architectures of the filter, as in crun. A rule with two conditions on one argument is
    added as one rule per condition, as crun adds it (libseccomp refuses both in one rule).
    The default profile (/usr/share/containers/seccomp.json) names no syscall libseccomp
    2.5.4 cannot resolve: on Debian 12 it compiles with no warning.
    """
    try:
        import pyseccomp as seccomp
    except (ImportError, OSError) as error:  # OSError: libseccomp.so.2 missing
        raise SeccompError(f"cannot compile the seccomp filter: {error} (pip install pyseccomp;"
                           " scripts/setup.sh does)") from None

    errno_actions = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # crun's seccomp_action_supports_errno

    def action(name: str, errno_ret: int | None) -> int:
        if errno_ret is not None and name not in errno_actions:
            raise SeccompError(f"seccomp: errno value specified for action `{name}`")
        if name == "SCMP_ACT_ALLOW":
            return seccomp.ALLOW
        if name == "SCMP_ACT_ERRNO":
            return seccomp.ERRNO(errno_ret if errno_ret is not None else errno.EPERM)
        if name == "SCMP_ACT_KILL" or name == "SCMP_ACT_KILL_THREAD":
            return seccomp.KILL
        if name == "SCMP_ACT_KILL_PROCESS":
            return seccomp.KILL_PROCESS
        if name == "SCMP_ACT_LOG":
            return seccomp.LOG
        raise SeccompError(f"seccomp action `{name}` not supported")

    ops = {"SCMP_CMP_NE": seccomp.NE, "SCMP_CMP_LT": seccomp.LT, "SCMP_CMP_LE": seccomp.LE,
           "SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_GE": seccomp.GE, "SCMP_CMP_GT": seccomp.GT,
           "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ}
    default = action(section["defaultAction"], section.get("defaultErrnoRet"))
    flt = seccomp.SyscallFilter(default)
    for name in section.get("architectures", []):
        arch = getattr(seccomp.Arch, name.removeprefix("SCMP_ARCH_"), None)
        if arch is None:
            raise SeccompError(f"seccomp unknown architecture {name}")
        try:
            flt.add_arch(arch)
        except OSError as error:
            if error.errno != errno.EEXIST:  # the native one is there from the start
                raise SeccompError(f"seccomp adding architecture {name}: "
                                   f"{os.strerror(error.errno or 0)}") from None
    for index, rule in enumerate(section.get("syscalls", [])):
        verdict = action(rule["action"], rule.get("errnoRet"))
        if verdict == default:
            continue
        args = [_arg(seccomp, ops, arg, index) for arg in rule.get("args") or []]
        positions = [arg["index"] for arg in rule.get("args") or []]
        # one argument compared twice: one rule per comparison (crun's multiple_args)
        groups = ([[arg] for arg in args] if len(set(positions)) < len(positions)
                  else [args])
        for name in rule["names"]:
            number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
            if number == _NR_SCMP_ERROR:
                _log.warning("unknown seccomp syscall `%s` ignored", name)
                continue
            for group in groups:
                try:
                    flt.add_rule(verdict, number, *group)
                except (OSError, ValueError, RuntimeError) as error:
                    reason = (os.strerror(error.errno) if isinstance(error, OSError)
                              and error.errno else str(error))
                    raise SeccompError(
                        f"seccomp rule {index} ({rule['action']} for {name}) rejected by "
                        f"libseccomp: {reason}") from None
    with os.fdopen(os.memfd_create("cvbench-seccomp", os.MFD_CLOEXEC), "w+b") as handle:
        flt.export_bpf(handle)
        handle.seek(0)
        program = handle.read()
    if not program or len(program) % 8:
        raise SeccompError("libseccomp produced no BPF program")
    return program


class Compiler:
    """Compiles seccomp sections on worker threads, so that a cold start's compile runs
    beside the rest of its launch (directories, cgroups, the init's own set-up) rather than
    before or after it: the same libseccomp work per container as crun's, on the critical
    path only for as long as it outlasts the rest. libseccomp runs with the GIL released
    (ctypes), so a worker uses another CPU while the caller goes on. Containers started
    together (a density batch, from several threads) compile side by side, as crun processes
    started together do: the pool has more workers than CPUs (the executor's default), not
    one that would queue them."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, section: dict[str, Any]) -> Future[bytes]:
        """Start compiling ``section`` (:func:`compile_bpf`); the future raises its error."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(thread_name_prefix="cvbench-seccomp")
        return self._pool.submit(compile_bpf, section)

    def close(self) -> None:
        """Stop the worker (after what is queued)."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


# --- installing (in the container's child: see hostkit.syscalls.seccomp_set_filter) ------
