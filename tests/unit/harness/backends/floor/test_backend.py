"""The floor backend before anything starts: its registry entry, its options, describe()."""

from __future__ import annotations

import pytest

from harness import backends
from harness.backends import launch as launches
from harness.backends import registry
from harness.backends.base import BackendError
from harness.backends.floor import plan as floor_plan
from harness.backends.floor.backend import FloorBackend
from harness.backends.launch import Launch


def test_registered_in_the_container_family_with_its_sweeper():
    info = registry.info("floor")
    assert info.family == registry.CONTAINER and not info.floor
    assert registry.floor_of("floor") == "process"  # its ratios stay to the process floor
    assert info.sweeper == "harness.backends.floor.sweeper:sweep"
    assert info.sweeper in registry.sweepers()
    assert backends.backend_class("floor") is FloorBackend


def test_every_step_is_on_by_default():
    assert FloorBackend().steps == set(floor_plan.STEPS)
    assert FloorBackend(steps="namespaces,caps").steps == {"namespaces", "caps"}
    assert FloorBackend(steps=[]).steps == set()


def test_an_unknown_step_is_one_line_before_anything_starts():
    with pytest.raises(BackendError) as raised:
        backends.create("floor", steps="namespaces,cgroupz")
    assert str(raised.value) == ("steps: unknown floor step 'cgroupz', expected one of "
                                 "namespaces, rootfs, cgroups, caps, seccomp")
    with pytest.raises(BackendError, match="unknown option 'step'"):
        backends.create("floor", step="caps")


def test_describe_says_what_is_inside_the_clock_for_both_variants():
    described = FloorBackend(steps=["namespaces", "seccomp"]).describe()
    assert described["steps"] == ["namespaces", "seccomp"]
    assert described["root_switch"].startswith("none")
    variants = described["method"]["variants"]
    assert set(variants) == {"cold", "warm"}
    assert "the floor never compiles" in variants["cold"]["before_clock"]
    assert "posix_spawn of the launcher" in variants["cold"]["inside_clock"]
    assert "one byte" in variants["warm"]["inside_clock"]
    assert FloorBackend().describe()["root_switch"].startswith("pivot_root")


def test_an_imported_image_runs_with_the_rootfs_step_only():
    imported = Launch(entrypoint=("/bin/sh", "-c"), cmd=("echo READY",), workdir="/work",
                      uid=1000, gid=1000)
    assert launches.refusal("floor", FloorBackend(), imported) is None
    assert launches.refusal("floor", FloorBackend(steps="namespaces,caps"), imported) == (
        "backend 'floor' cannot run an imported image without its 'rootfs' step: the "
        "process would run on the host's root")
    assert launches.refusal("floor", FloorBackend(steps=""), None) is None  # cvbench's own
