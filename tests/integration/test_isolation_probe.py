"""The isolation probe (``tests/isolation_probe.sh``) in every container backend, and the same
cgroups, device rules and mounts in ``ours`` as in crun and runc (root, real kernel objects).

The probe runs as the container's process (``InstanceSpec.command``), writes
``/tmp/probe.out`` inside the container and prints READY; the test reads the file through
``/proc/<pid>/root``.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import backends
from harness.backends.base import WARM, Backend, Instance, InstanceSpec
from harness.backends.containers import container_spec
from runtime import caps

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

PROBE = (Path(__file__).resolve().parents[1] / "isolation_probe.sh").read_text()
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _available(name: str) -> None:
    if name != "ours" and not shutil.which(name):
        pytest.skip(f"{name} is not installed")


@contextmanager
def running(name: str, image, variant: str = "cold", command: tuple[str, ...] = ()
            ) -> Iterator[tuple[Backend, Instance, InstanceSpec]]:
    """One container of backend ``name`` that printed READY; stopped and removed after."""
    _available(name)
    backend = backends.create(name)
    backend.prepare(image)
    spec = InstanceSpec(name=f"cvbench-test-probe-{uuid.uuid4().hex[:8]}", image=image,
                        command=command)
    try:
        if variant == WARM:
            instance = backend.create(spec)
            backend.resume(instance)
        else:
            instance = backend.start(spec)
        backend.wait_ready(instance, 20)
        yield backend, instance, spec
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()


def probe_results(pid: int) -> dict[str, tuple[str, str]]:
    """``check -> (verdict, what was seen)`` from the probe's output file."""
    results = {}
    for line in Path(f"/proc/{pid}/root/tmp/probe.out").read_text().splitlines():
        check, verdict, seen = (line.split(" ", 2) + [""])[:3]
        results[check] = (verdict, seen)
    return results


@pytest.mark.parametrize("name, variant", [("ours", "cold"), ("ours", "warm"),
                                           ("crun", "cold"), ("runc", "cold")])
def test_every_probe_check_passes(state_dir, built_image, name, variant):
    with running(name, built_image, variant, ("/bin/sh", "-c", PROBE)) as (_, instance, spec):
        results = probe_results(instance.pids[0])
    failed = {check: seen for check, (verdict, seen) in results.items() if verdict == "no"}
    assert not failed, f"{name} {variant}: failed checks {failed}"
    expected = {"pid-namespace", "host-files", "devices", "mknod", "mount", "proc-sys-ro",
                "kcore-masked", "sysrq-ro", "sys", "network", "no-new-privs", "seccomp"}
    assert expected <= {c for c, (verdict, _) in results.items() if verdict == "ok"}
    wanted = container_spec(spec).process.capabilities
    assert int(results["cap-effective"][1], 16) == caps.mask(wanted.effective)
    assert int(results["cap-bounding"][1], 16) == caps.mask(wanted.bounding)
    assert results["hostname"][1] == spec.name


def _cgroups(pid: int) -> dict[str, str]:
    """hierarchy -> the process's cgroup path in it ("" is the v2 tree)."""
    found = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        found[names.removeprefix("name=")] = path
    return found


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


def _view_of(name: str, image) -> tuple[set[str], set[str], set[str], dict]:
    """(hierarchies joined, device rules, mount points, describe()) of a fresh container of
    ``name``, seen from the host (the container's own cgroup namespace hides its paths)."""
    with running(name, image) as (backend, instance, _spec):
        pid = instance.pids[0]
        return _joined(pid), _devices(pid), _mount_points(pid), backend.describe()


def test_same_cgroups_devices_mounts_and_profile_as_crun_and_runc(state_dir, built_image):
    if not (CGROUP_ROOT / "devices").is_dir():
        pytest.skip("no cgroup v1 devices hierarchy: cgroup v2 host")
    joined, rules, mounts, described = _view_of("ours", built_image)
    v1 = {e.name for e in CGROUP_ROOT.iterdir()
          if e.is_dir() and not e.is_symlink() and not (e / "cgroup.controllers").exists()}
    assert joined == v1  # every v1 hierarchy, named ones too, not the unified tree
    assert described["cgroup_controllers"] == sorted(joined)  # describe() says what happens
    assert described["devices"] == sorted(rules)
    ours_security = described["security"]
    ours_seccomp = ours_security["seccomp"]
    for extra in ("profile", "profile_sha256"):  # the OCI backends do not name the file
        ours_seccomp.pop(extra)
    for name in ("crun", "runc"):
        _available(name)
        their_joined, their_rules, their_mounts, theirs = _view_of(name, built_image)
        # runc also makes and joins a cgroup in a hybrid host's unified tree; crun cannot
        # see that tree here (it runs with it unmounted) and ours does as crun does
        assert their_joined - {"unified"} == joined, name
        assert their_rules == rules, name
        assert their_mounts == mounts, name
        assert theirs["security"] == ours_security, name
