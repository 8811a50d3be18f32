"""One cgroup layout for every container backend, read from the live host (issue 21).

A cold container of ours, crun, runc and the floor each: its init's cgroup in every hierarchy
it joined (``/proc/<pid>/cgroup``) is ``<parent>/shard-<x>/<name>`` with ``x`` the shard
:func:`runtime.scopes.shard` gives the name, the parent ours' ``cvbench-<scope>``, the OCI
runtimes' ``cvbench-oci`` or the floor's ``cvbench-floor``, and all 16 shards of the parent
exist (made in ``prepare()``, not by the starts). The parent and shard levels are set alike:

- **v1 and hybrid hosts**: ``cgroup.clone_children`` = 1 in the cpuset hierarchy at parent and
  shard, the same ``cpuset.cpus``/``cpuset.mems`` at parent, shard and container, and the same
  v1 hierarchies hold the container (runc's extra cgroup in a hybrid host's unified tree aside,
  which has the same shape);
- **v2 hosts**: the same ``cgroup.subtree_control`` at parent and shard, and the same
  ``cgroup.controllers`` in the container's cgroup.

The cgroup mounts are found in ``/proc/self/mountinfo`` wherever they are, so the test runs
on this hybrid host and in the cgroup-v2 VM alike (``vm/test_testhost.py``).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import backends
from harness.backends.base import Backend, Instance, InstanceSpec, launch
from harness.backends.floor import paths as floor_paths
from harness.backends.oci import cgroup as oci_cgroup
from harness.backends.oci import probe
from hostkit import mountinfo
from runtime import cgroups, scopes

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

BACKENDS = ("ours", "crun", "runc", "floor")
PARENTS = {"crun": oci_cgroup.PARENT, "runc": oci_cgroup.PARENT, "floor": floor_paths.PARENT}


@contextmanager
def running(name: str, image) -> Iterator[tuple[Backend, Instance]]:
    """One cold container of backend ``name`` that printed READY; stopped, removed after."""
    if name not in ("ours", "floor") and not shutil.which(name):
        pytest.skip(f"{name} is not installed")
    backend = backends.create(name)
    backend.prepare(image)
    spec = InstanceSpec(name=f"cvbench-test-layout-{uuid.uuid4().hex[:8]}", image=image)
    try:
        instance = launch(backend, spec, "cold")
        backend.wait_ready(instance, 20)
        yield backend, instance
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()


def _mounts() -> dict[str, Path]:
    """Hierarchy -> where it is mounted: each v1 controller and named hierarchy (``systemd``
    for ``name=systemd``, as ``/proc/<pid>/cgroup`` is read), and ``""`` for the v2 tree."""
    mounts = mountinfo.read()
    found = {name.removeprefix("name="): Path(point)
             for name, point in mountinfo.cgroup_v1_controllers(mounts).items()}
    unified = mountinfo.cgroup2_points(mounts)
    if unified:
        found[probe.UNIFIED] = Path(unified[0])
    return found


def _read(path: Path) -> str:
    return path.read_text().strip()


@dataclass(frozen=True)
class Seen:
    """What the host shows of one backend's container and its parent and shard levels."""

    parent: str
    v1: frozenset[str]  # the v1 hierarchies holding the container
    settings: dict[str, object]  # the parent, shard and container settings compared


def _seen(name: str, image) -> Seen:
    mode = cgroups.detect_mode()
    mounts = _mounts()
    with running(name, image) as (backend, instance):
        joined = {hierarchy: path for hierarchy, path in
                  probe.process_cgroups(instance.pids[0]).items() if path != "/"}
        assert joined, f"{name}: the init is in no cgroup of its own"
        parents = set()
        for hierarchy, path in joined.items():
            parts = path.lstrip("/").split("/")
            # exactly <parent>/<shard>/<name>: a flat <parent>/<name> fails here
            assert len(parts) == 3, f"{name}: {hierarchy or 'unified'} cgroup {path}"
            parent, shard, container = parts
            assert container == instance.name, f"{name}: {path}"
            assert shard == scopes.shard(instance.name), f"{name}: {path} not in its shard"
            parents.add(parent)
        [parent] = parents  # one parent in every hierarchy
        assert parent == PARENTS.get(name, scopes.cgroup_parent()), name
        shards = [level.rsplit("/", 1)[1] for level in scopes.shards(parent)]
        levels = {"parent": parent, "shard": f"{parent}/{scopes.shard(instance.name)}",
                  "container": joined[next(iter(joined))].lstrip("/")}
        settings: dict[str, object] = {}
        if mode == "v2":
            root = mounts[probe.UNIFIED]
            # all 16 made by prepare(), not only the one this start needed
            assert sorted(p.name for p in (root / parent).iterdir()
                          if p.name.startswith(scopes.SHARD_PREFIX)) == sorted(shards), name
            parent_control = _read(root / levels["parent"] / "cgroup.subtree_control").split()
            shard_control = _read(root / levels["shard"] / "cgroup.subtree_control").split()
            assert sorted(parent_control) == sorted(shard_control), name
            settings["subtree_control"] = sorted(shard_control)
            controllers = _read(root / levels["container"] / "cgroup.controllers").split()
            assert {"cpu", "memory", "pids"} <= set(controllers), name
            settings["controllers"] = sorted(controllers)
        else:
            for hierarchy in joined:  # all 16 made by prepare(), in every hierarchy
                made = {p.name for p in (mounts[hierarchy] / parent).iterdir() if p.is_dir()}
                assert set(shards) <= made, f"{name}: {hierarchy} shards {sorted(made)}"
            cpuset = mounts["cpuset"]
            for level in ("parent", "shard"):
                clone = _read(cpuset / levels[level] / "cgroup.clone_children")
                assert clone == "1", f"{name}: {level} clone_children {clone}"
            for key in ("cpuset.cpus", "cpuset.mems"):
                values = {level: _read(cpuset / levels[level] / key) for level in levels}
                assert len(set(values.values())) == 1 and values["container"], (name, values)
                settings[key] = values["container"]
            settings["clone_children"] = "1"
        return Seen(parent, frozenset(h for h in joined if h != probe.UNIFIED), settings)


def test_ours_crun_runc_and_the_floor_get_the_same_cgroup_layout(state_dir, built_image):
    seen = {name: _seen(name, built_image) for name in BACKENDS}
    ours = seen["ours"]
    assert ours.parent != oci_cgroup.PARENT  # its own scope's parent, the same shape
    for name in ("crun", "runc", "floor"):
        assert seen[name].settings == ours.settings, name
        if cgroups.detect_mode() != "v2":
            assert seen[name].v1 == ours.v1, name
    if cgroups.detect_mode() != "v2":
        assert {"cpuset", "memory", "pids", "cpu"} <= ours.v1
