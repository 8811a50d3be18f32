"""The isolation probe (``tests/isolation_probe.sh``) in every container backend, and the same
cgroups, device rules and mounts in ``ours`` as in crun and runc (root, real kernel objects).

The probe runs as the container's process (``InstanceSpec.command``), writes
``/tmp/probe.out`` inside the container and prints READY; the test reads the file through
``/proc/<pid>/root``. It runs in ours cold and warm, crun cold and warm, runc cold and warm,
a copy of crun declared as an OCI runtime by configuration (``mycrun``: ``[runtimes]``) cold
and warm, and the kernel's floor (the ``floor`` backend, every step on) cold and warm, whose
verdicts and rlimits equal ours'; ours never fails a check crun or runc pass, and their workloads'
rlimits are the same (the spec sets none), but for runc's soft NOFILE limit: runc 1.1.5
passes on the one Go's runtime raised to the hard limit (seen in the v2 VM: 1048576 against
ours' and crun's 1024).

Shared findings (``SHARED_FINDINGS``): checks that ours, crun and runc all fail alike because
of the profile they share (the containers/Docker default seccomp profile, the OCI default
capabilities), printed as ``<check> no shared: ...`` and asserted to be the same for
all three:

- ``userns``: ``unshare -U`` succeeds (the profile allows unshare(CLONE_NEWUSER));
- ``userns-mount``: inside it, with a mount namespace of its own, a tmpfs mount succeeds
  (fresh procfs and sysfs mounts stay refused: ``userns-mount-proc``, ``userns-mount-sysfs``);
- ``userns-chroot``: chroot(2) inside it succeeds (CAP_SYS_CHROOT is in the default set
  anyway); a chroot to ``/..`` still finds no host files (``userns-chroot-escape``).

The checks busybox cannot make come from ``tests/probe_syscalls.c``, built by the session with
the system gcc as a static binary (``probe_binary``) and handed to each container on its volume
(``InstanceSpec.volume``, bind-mounted at ``/data`` by ours, crun and runc alike); the probe
runs it as the container's process: ``chroot-escape`` (chroot into a new directory without
chdir, ``..`` walked up, ``chroot(".")``: the host's root files must stay out of reach),
``open-by-handle`` (open_by_handle_at), ``bpf`` (BPF_MAP_CREATE), ``perf-event-open`` (a
software counter of its own): each refused (the profile allows the last three only with
CAP_DAC_READ_SEARCH or CAP_SYS_ADMIN, which the default set lacks).

The umask check expects 0022 (the spec gives none; crun and runc then apply 0022, and so does
ours): the harness runs at 0027 meanwhile, so a runtime that passed its own umask on would
show 0027.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from isolation import PROBE, build_probe, probe_results
from oci_runtimes import copy_of_crun, forgetting_user_runtimes

from harness import backends
from harness.backends import registry
from harness.backends.base import Backend, Instance, InstanceSpec, launch
from harness.backends.containers import container_spec
from harness.backends.floor.paths import launcher_path
from harness.backends.oci import probe, runtimes
from runtime import caps, cgroups, scopes

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _available(name: str) -> None:
    if name == "floor":
        if not os.access(launcher_path(), os.X_OK):
            pytest.fail(f"no floor launcher at {launcher_path()}: run scripts/setup.sh")
    elif name != "ours" and name not in registry.user_runtimes() and not shutil.which(name):
        pytest.skip(f"{name} is not installed")


@contextmanager
def running(name: str, image, variant: str = "cold", command: tuple[str, ...] = (),
            memory_limit_mib: int | None = None, volume: Path | None = None
            ) -> Iterator[tuple[Backend, Instance, InstanceSpec]]:
    """One container of backend ``name`` that printed READY; stopped and removed after
    (``volume``: a host directory it sees at /data)."""
    _available(name)
    backend = backends.create(name)
    backend.prepare(image)
    spec = InstanceSpec(name=f"cvbench-test-probe-{uuid.uuid4().hex[:8]}", image=image,
                        command=command, memory_limit_mib=memory_limit_mib, volume=volume)
    try:
        instance = launch(backend, spec, variant)
        backend.wait_ready(instance, 20)
        yield backend, instance, spec
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()


@pytest.fixture(scope="session")
def probe_binary(tmp_path_factory) -> Path:
    """A directory holding ``tests/probe_syscalls.c`` built static (the image has no libc),
    for the containers' volume."""
    try:
        return build_probe(tmp_path_factory.mktemp("probe-binary"))
    except RuntimeError as error:
        pytest.fail(str(error))


HARNESS_GROUPS = [4242, 4343]  # supplementary groups no container may inherit


@pytest.fixture
def harness_groups() -> Iterator[list[int]]:
    """The test process (the harness, and every runtime it starts: ours' fork server, the OCI
    launchers) holds supplementary groups and a umask of 0027 for the test's duration, so that
    a runtime that does not setgroups, or passes its umask on, shows them in its container."""
    saved = os.getgroups()
    os.setgroups(HARNESS_GROUPS)
    umask = os.umask(0o027)
    try:
        yield HARNESS_GROUPS
    finally:
        os.umask(umask)
        os.setgroups(saved)


def session_keyrings(name: str) -> set[str]:
    """Descriptions of the keyrings in the host's /proc/keys made for container ``name``:
    ``name`` (crun and ours: the container id) or ``_ses.<name>`` (runc)."""
    found = set()
    for line in Path("/proc/keys").read_text().splitlines():
        fields = line.split(None, 8)
        if len(fields) == 9 and fields[7] == "keyring":
            description = fields[8].split(":", 1)[0]
            if description in (name, f"_ses.{name}"):
                found.add(description)
    return found


RUNS = [("ours", "cold"), ("ours", "warm"), ("crun", "cold"), ("crun", "warm"),
        ("runc", "cold"), ("runc", "warm"), ("floor", "cold"), ("floor", "warm")]
PEERS = ("crun", "runc")

# Checks every runtime fails alike because the profile they share allows it (the
# containers/Docker default seccomp profile, the OCI default capabilities): the report of
# the probe, not a difference between runtimes. test_shared_findings_are_alike asserts that
# ours, crun and runc give the same verdict on each.
SHARED_FINDINGS: dict[str, str] = {
    "userns": "unshare(CLONE_NEWUSER) is allowed by the profile (and needs no capability)",
    "userns-mount": "in a user and mount namespace of its own the workload mounts a tmpfs "
                    "(that namespace's mounts only; fresh procfs and sysfs stay refused)",
    "userns-chroot": "chroot(2) in that user namespace (CAP_SYS_CHROOT is in the OCI default "
                     "set anyway); chroot to /.. still finds no host files",
}

# The checks of the compiled probe (tests/probe_syscalls.c), all refused in every runtime
COMPILED_CHECKS = {"chroot-escape", "open-by-handle", "bpf", "perf-event-open"}

# (name, variant) -> the probe's verdicts and the workload's rlimits, as each run saw them
SEEN: dict[tuple[str, str], tuple[dict[str, str], dict[str, tuple[str, str]]]] = {}


def probe_limits(pid: int) -> dict[str, tuple[str, str]]:
    """``limit name -> (soft, hard)`` from the probe's copy of its /proc/self/limits."""
    text = Path(f"/proc/{pid}/root/tmp/probe.limits").read_text()
    limits = {}
    for line in text.splitlines()[1:]:
        name, soft, hard = line[:26].strip(), line[26:47].split(), line[47:68].split()
        limits[name] = (soft[0], hard[0])
    return limits


NOFILE = "Max open files"
RLIMIT_NAMES = {"RLIMIT_NOFILE": "Max open files", "RLIMIT_NPROC": "Max processes",
                "RLIMIT_CORE": "Max core file size", "RLIMIT_STACK": "Max stack size",
                "RLIMIT_MEMLOCK": "Max locked memory"}


def _probe(name: str, variant: str, image, volume: Path
           ) -> tuple[dict[str, str], dict[str, tuple[str, str]], InstanceSpec, set[str],
                      list[int]]:
    with running(name, image, variant, ("/bin/sh", "-c", PROBE), volume=volume) as (
            _, instance, spec):
        results = probe_results(instance.pids[0])
        limits = probe_limits(instance.pids[0])
        keyrings = session_keyrings(spec.name)
        descriptors = sorted(int(fd) for fd in os.listdir(f"/proc/{instance.pids[0]}/fd"))
    verdicts = {check: verdict for check, (verdict, _) in results.items() if verdict != "info"}
    SEEN[(name, variant)] = (verdicts, limits)
    return results, limits, spec, keyrings, descriptors


@pytest.mark.parametrize("name, variant", RUNS)
def test_every_probe_check_passes(state_dir, built_image, harness_groups, probe_binary, name,
                                  variant):
    _every_check_passes(name, variant, built_image, probe_binary)


@pytest.mark.parametrize("variant", ["cold", "warm"])
def test_every_probe_check_passes_in_a_runtime_named_by_configuration(
        state_dir, built_image, harness_groups, probe_binary, tmp_path, variant):
    """A copy of crun declared as ``mycrun`` (``[runtimes]``, ``--runtime``) isolates as
    crun does: the same class, bundle and profile."""
    with forgetting_user_runtimes():
        runtimes.declare("mycrun", str(copy_of_crun(tmp_path)))
        _every_check_passes("mycrun", variant, built_image, probe_binary)


def _every_check_passes(name: str, variant: str, built_image, probe_binary: Path) -> None:
    results, limits, spec, keyrings, descriptors = _probe(name, variant, built_image,
                                                          probe_binary)
    failed = {check: seen for check, (verdict, seen) in results.items()
              if verdict == "no" and not seen.startswith("shared:")}
    assert not failed, f"{name} {variant}: failed checks {failed}"
    marked = {check for check, (_, seen) in results.items() if seen.startswith("shared:")}
    assert marked == set(SHARED_FINDINGS), f"{name} {variant}: shared checks {marked}"
    # a session keyring of its own, named after the container, as crun and runc make one
    assert keyrings, f"{name} {variant}: no session keyring named after {spec.name}"
    assert descriptors == [0, 1, 2], f"{name} {variant}: the workload holds {descriptors}"
    expected = {"pid-namespace", "host-files", "devices", "mknod", "mount", "proc-sys-ro",
                "kcore-masked", "sysrq-ro", "sys", "network", "no-new-privs", "seccomp",
                "groups", "descriptors", "umask", "cap-ambient", "cap-inheritable",
                "seccomp-filters", "kmsg-read", "kmsg-write", "syslog-read",
                "syslog-console-level", "proc-sys-write-hostname", "proc-sys-write-host",
                "sysrq-open-write", "cgroup-mkdir", "userns", "userns-mount",
                "userns-mount-proc", "userns-mount-sysfs", "userns-chroot",
                "userns-chroot-escape"} | COMPILED_CHECKS
    assert expected <= set(results), f"{name} {variant}: missing {expected - set(results)}"
    assert expected - set(SHARED_FINDINGS) <= {c for c, (v, _) in results.items() if v == "ok"}
    oci = container_spec(spec).process
    wanted = oci.capabilities
    assert int(results["cap-effective"][1], 16) == caps.mask(wanted.effective)
    assert int(results["cap-bounding"][1], 16) == caps.mask(wanted.bounding)
    assert results["hostname"][1] == spec.name
    for rlimit in oci.rlimits:  # what the spec sets, the workload has
        assert limits[RLIMIT_NAMES[rlimit.type]] == (str(rlimit.soft), str(rlimit.hard)), rlimit


def test_shared_findings_are_alike(state_dir, built_image, harness_groups, probe_binary):
    """Ours never fails a check crun or runc pass; each shared finding is the same for ours,
    crun and runc; the workload's rlimits are the same in all three."""
    for name, variant in RUNS:
        if (name, variant) not in SEEN:
            _probe(name, variant, built_image, probe_binary)
    ours = {run: SEEN[run] for run in RUNS if run[0] == "ours"}
    peers = {run: SEEN[run] for run in RUNS if run[0] in PEERS}
    for (_, variant), (verdicts, limits) in ours.items():  # the kernel's floor is as isolated
        floor_verdicts, floor_limits = SEEN[("floor", variant)]
        assert floor_verdicts == verdicts, f"floor {variant} vs ours {variant}"
        assert floor_limits == limits, f"floor {variant} vs ours {variant} rlimits"
    for (_, variant), (verdicts, limits) in ours.items():
        for (peer, peer_variant), (peer_verdicts, peer_limits) in peers.items():
            weaker = {check for check, verdict in peer_verdicts.items()
                      if verdict == "ok" and verdicts.get(check) != "ok"}
            assert not weaker, f"ours {variant} fails what {peer} {peer_variant} passes: {weaker}"
            if peer == "runc":  # runc raises its own soft NOFILE limit (Go's runtime does)
                peer_limits = {**peer_limits, NOFILE: limits[NOFILE]}  # and the workload has it
            assert limits == peer_limits, f"ours {variant} vs {peer} {peer_variant} rlimits"
    for check in SHARED_FINDINGS:
        seen = {run: SEEN[run][0].get(check) for run in RUNS}
        assert set(seen.values()) == {"no"}, f"shared finding {check}: {seen}"
    for check in COMPILED_CHECKS - set(SHARED_FINDINGS):  # it ran, refused, in every run
        seen = {run: SEEN[run][0].get(check) for run in RUNS}
        assert set(seen.values()) == {"ok"}, f"{check}: {seen}"


def _cgroups(pid: int) -> dict[str, str]:
    """hierarchy -> the process's cgroup path in it ("" is the v2 tree)."""
    return probe.process_cgroups(pid)


def _joined(pid: int) -> set[str]:
    """The hierarchies in which the process is in a cgroup of its own (not the root)."""
    return {name or "unified" for name, path in _cgroups(pid).items() if path != "/"}


def _devices(pid: int) -> set[str]:
    path = _cgroups(pid).get("devices")
    if path is None:
        return set()
    text = (CGROUP_ROOT / "devices" / path.lstrip("/") / "devices.list").read_text()
    return set(text.split("\n")) - {""}


def _mount_points(pid: int) -> set[str]:
    return {line.split()[4]
            for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()}


@dataclass(frozen=True)
class View:
    """A fresh container as the host sees it (its own cgroup namespace hides its paths)."""

    joined: set[str]  # hierarchies it has a cgroup of its own in ("unified": the v2 tree)
    rules: set[str]  # v1 devices.list lines (empty on v2)
    mounts: set[str]
    described: dict[str, Any]
    unified_path: str  # its cgroup in the v2 tree ("/" if none of its own)
    controllers: tuple[str, ...]  # v2: its cgroup's cgroup.controllers
    device_programs: int  # v2: BPF_CGROUP_DEVICE programs attached to its cgroup


def _view_of(name: str, image) -> View:
    with running(name, image) as (backend, instance, _spec):
        pid = instance.pids[0]
        path = _cgroups(pid).get("", "/")
        controllers: tuple[str, ...] = ()
        programs = 0
        if cgroups.detect_mode() == "v2":
            directory = CGROUP_ROOT / path.lstrip("/")
            controllers = tuple(sorted((directory / "cgroup.controllers").read_text().split()))
            programs = len(probe.device_programs(directory))
        return View(_joined(pid), _devices(pid), _mount_points(pid), backend.describe(), path,
                    controllers, programs)


def _comparable_security(described: dict[str, Any]) -> dict[str, Any]:
    """describe()["security"] without what only ours names (its seccomp profile's file) and
    the filters read back from the kernel (runc's differ by its own stub: compared apart, in
    test_seccomp_readback.py)."""
    security = dict(described["security"])
    security.pop("kernel_filter", None)
    security["seccomp"] = {key: value for key, value in security["seccomp"].items()
                           if key not in ("profile", "profile_sha256")}
    return security


def test_same_cgroups_devices_mounts_and_profile_as_crun_and_runc(state_dir, built_image):
    """ours makes the cgroups crun and runc make, filters devices by the same rules, mounts
    the same and runs the same profile: on v1 and hybrid hosts the same hierarchies and
    devices.list; on a v2 host a cgroup of its own in the unified tree with the same
    controllers and a device program attached to it, as crun and runc have."""
    ours = _view_of("ours", built_image)
    if cgroups.detect_mode() == "v2":
        assert ours.joined == {"unified"}  # one cgroup, in the one tree
        assert ours.unified_path.rsplit("/", 1)[-1].startswith("cvbench-test-probe-")
        assert {"memory", "pids", "cpu"} <= set(ours.controllers)
        assert ours.device_programs >= 1, "ours attached no device program to its cgroup"
        assert ours.described["cgroup_controllers"] == list(ours.controllers)
    else:
        v1 = {e.name for e in CGROUP_ROOT.iterdir()
              if e.is_dir() and not e.is_symlink() and not (e / "cgroup.controllers").exists()}
        assert ours.joined == v1  # every v1 hierarchy, named ones too, not the unified tree
        assert ours.described["cgroup_controllers"] == sorted(ours.joined)  # says what happens
        assert ours.described["devices"] == sorted(ours.rules)
    for name in ("crun", "runc"):
        _available(name)
        theirs = _view_of(name, built_image)
        if cgroups.detect_mode() == "v2":
            assert theirs.joined == {"unified"}, name
            parent, shard, container = theirs.unified_path.lstrip("/").split("/")
            assert (parent, shard) == ("cvbench-oci", scopes.shard(container)), name
            assert container.startswith("cvbench-test-probe-"), name
            assert theirs.controllers == ours.controllers, name
            assert theirs.device_programs >= 1, name
            assert theirs.described["devices"] == ours.described["devices"], name
        else:
            # runc also makes and joins a cgroup in a hybrid host's unified tree; crun cannot
            # see that tree here (it runs with it unmounted) and ours does as crun does
            assert theirs.joined - {"unified"} == ours.joined, name
            assert theirs.rules == ours.rules, name
        assert theirs.mounts == ours.mounts, name
        assert (_comparable_security(theirs.described)
                == _comparable_security(ours.described)), name


def _swap_limit(pid: int) -> str:
    """The swap limit of ``pid``'s memory cgroup as its file says it: v1 (where memory is a
    v1 controller) memory.memsw.limit_in_bytes, else v2 memory.swap.max."""
    joined = probe.process_cgroups(pid)
    if "memory" in joined:
        directory = CGROUP_ROOT / "memory" / joined["memory"].lstrip("/")
        return (directory / "memory.memsw.limit_in_bytes").read_text().strip()
    directory = CGROUP_ROOT / joined[""].lstrip("/")
    return (directory / "memory.swap.max").read_text().strip()


def test_swap_is_limited_alike(state_dir, built_image):
    """With a memory limit, ours, crun and runc leave their containers the same swap: none
    (v1: memory+swap = the limit; v2: memory.swap.max 0). config.json carries memory.swap =
    the limit, which crun and runc turn into the v2 value themselves."""
    limit = 64 << 20
    seen = {}
    for name in ("ours", "crun", "runc"):
        with running(name, built_image, memory_limit_mib=64) as (_, instance, _spec):
            seen[name] = _swap_limit(instance.pids[0])
    expected = str(limit) if "memory" in probe.process_cgroups(os.getpid()) else "0"
    assert seen == dict.fromkeys(seen, expected), seen
