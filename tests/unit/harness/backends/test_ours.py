"""What ``ours`` says about its device filter and cgroup join, per host kind (no host needed)."""

from __future__ import annotations

from unittest import mock

import pytest

from harness.backends import ours
from runtime import cgroups


@pytest.mark.parametrize("mode", ["v1", "hybrid", "v2"])
def test_describe_reports_the_device_filter_and_join(mode):
    with mock.patch.object(cgroups, "detect_mode", return_value=mode), \
            mock.patch.object(cgroups, "v1_hierarchies", return_value=("memory", "devices")):
        facts = ours.OursBackend().describe()
    assert "c 1:3 rwm" in facts["devices"] and "b *:* m" in facts["devices"]
    assert "no device filter" not in str(facts)
    assert facts["cgroup_manager"] == "cgroupfs"  # as crun's and runc's, on every host kind
    cold = facts["method"]["variants"]["cold"]["inside_clock"]
    if mode == "v2":
        [program] = facts["device_filter"]["programs"]
        assert program["type"] == "cgroup_device" and program["instructions"] == 69
        assert "BPF_F_ALLOW_MULTI" in program["attach"]
        assert "CLONE_INTO_CGROUP" in facts["cgroup_join"] and "runc 1.1" in facts["cgroup_join"]
        assert "clones the init into the container's cgroup" in cold and "eBPF" in cold
        # the overlay is mounted outside the container's cgroup, as crun's is by the launcher
        assert "detached mount" in cold and "move_mount" in cold
        assert "outside the container's memory cgroup" in facts["cgroup_join"]
    else:
        assert facts["device_filter"].startswith("v1 devices cgroup")
        assert "cgroup.procs" in facts["cgroup_join"]
        assert "joins the cgroups" in cold
