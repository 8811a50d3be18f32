"""The report's methodology section and order-effect table, from metadata and samples."""

from __future__ import annotations

import pandas as pd
from fakes import FakeBackend

from harness import methodology


def test_section_says_what_each_backend_did_before_and_inside_the_clock() -> None:
    metadata = {"order_seed": 42, "backends": {
        "fake": {**FakeBackend().describe(), "cgroup_controllers": ["memory", "pids"],
                 "security": {"seccomp": {"default_action": "SCMP_ACT_ERRNO"},
                              "capabilities": ["CAP_KILL"]}},
        "old": {"accel": "none"}}}
    text = "\n".join(methodology.section(metadata))
    assert "cvbench run --seed 42" in text
    assert "| cold | nothing | a record |" in text and "| warm | a record | an event |" in text
    assert "- stop: an event" in text and "- clean-up: the record" in text
    assert "cgroup controllers: memory, pids" in text
    assert "seccomp: default_action SCMP_ACT_ERRNO" in text and "capabilities: CAP_KILL" in text
    assert "No method recorded" in text  # the backend of an older run


def test_section_states_the_host_kind_and_each_backends_cgroup_manager() -> None:
    metadata = {"host": {"cgroup_mode": "v2", "init_system": "systemd"}, "backends": {
        "crun": {**FakeBackend().describe(), "cgroup_manager": "cgroupfs",
                 "devices": ["c 1:3 rwm"],
                 "device_filter": {"programs": [{"type": "cgroup_device", "id": 12,
                                                 "attach": "observed"}]}},
        "docker": {**FakeBackend().describe(), "cgroup_driver": "cgroupfs"},
        "ours": {**FakeBackend().describe(), "device_filter": {"programs": [{
            "type": "cgroup_device", "name": "crun's generator", "instructions": 97}]}},
        "old": {**FakeBackend().describe(), "device_filter": {"programs": []}},
        "v1": {**FakeBackend().describe(), "device_filter": "v1 devices cgroup"}}}
    text = "\n".join(methodology.section(metadata))
    assert "Host kind: cgroup mode `v2` (cgroup v2 only:" in text
    assert "init system `systemd`" in text
    assert text.count("- cgroup manager: cgroupfs") == 2
    assert ("device filter: cgroup_device program (observed) attached to the container's "
            "cgroup" in text)
    assert ("device filter: cgroup_device program crun's generator, 97 instructions attached"
            in text)
    assert "device filter: none attached" in text
    assert "device filter: v1 devices cgroup" in text
    older = "\n".join(methodology.section({"backends": {}}))
    assert "cgroup mode `not recorded` (unknown); init system `not recorded`" in older


def test_order_effects_table_by_position() -> None:
    samples = pd.DataFrame([
        {"backend": "a", "variant": "cold", "metric": "start_to_ready_s", "position": p,
         "value": v} for p, v in ((0, 0.001), (1, 0.003), (0, 0.001), (1, 0.005))])
    lines = methodology.order_effects(samples)
    assert lines[2] == "| backend | variant | 0 | 1 |"
    assert lines[4] == "| a | cold | 1 ms | 4 ms |"
    assert methodology.order_effects(samples[samples.position == 0]) == []  # one position


def test_order_effects_table_after_the_same_backend_or_another() -> None:
    rounds = (("a", 0.001, "b", 0.004), ("b", 0.002, "a", 0.003), ("a", 0.001, "a", 0.001))
    samples = pd.DataFrame([
        {"scenario": "s", "repetition": r, "backend": backend, "variant": "cold",
         "metric": "start_to_ready_s", "position": p, "value": value}
        for r, (first, v1, second, v2) in enumerate(rounds)
        for p, (backend, value) in enumerate(((first, v1), (second, v2)))])
    lines = methodology.order_effects(samples)
    start = lines.index("| backend | variant | after the same (n) | after another (n) |")
    assert lines[start + 2:start + 4] == ["| b | cold | - | 4 ms (1) |",
                                          "| a | cold | 1 ms (1) | 3 ms (1) |"]


def test_section_states_the_cgroup_layout_once_for_every_container_backend(tmp_path) -> None:
    from runtime import cgroups

    layout = cgroups.V1Driver(tmp_path, ("memory", "cpuset")).layout
    metadata = {"backends": {
        "ours": {**FakeBackend().describe(), "cgroup_layout": layout("cvbench-0123abcd")},
        "crun": {**FakeBackend().describe(), "cgroup_layout": layout("cvbench-oci")},
        "runc": {**FakeBackend().describe(), "cgroup_layout": layout("cvbench-oci")},
        "process": FakeBackend().describe()}}
    text = "\n".join(methodology.section(metadata))
    [line] = [line for line in text.splitlines() if "Cgroup layout" in line]
    assert "the same for ours, crun, runc: **yes**" in line
    assert "`<parent>/shard-<crc32(name) mod 16, hex>/<name>`, 16 shards" in line
    assert "the parent and its 16 shards made before the first start" in line
    assert "cgroup.clone_children = 1" in line
    assert "parents: ours `cvbench-0123abcd`, crun `cvbench-oci`, runc `cvbench-oci`" in line
    assert text.count("clone_children") == 1  # stated once, not per backend
    flat = {**layout("cvbench-oci"), "container": "<parent>/<name>", "shards": 0}
    metadata["backends"]["runc"]["cgroup_layout"] = flat
    [line] = [line for line in methodology.section(metadata) if "Cgroup layout" in line]
    assert "the same for ours, crun, runc: **no**" in line
    assert "runc: `<parent>/<name>`, 0 shards" in line
    assert methodology.cgroup_layouts({"backends": {"qemu": {"accel": "kvm"}}}) is None


def test_section_says_which_readiness_rule_each_scenario_used() -> None:
    from harness.backends.ready_rule import ReadyRule

    exit_rule, line = ReadyRule.parse("exit").as_dict(), ReadyRule.parse("line:go").as_dict()
    same = "\n".join(methodology.section({"ready": {"a": exit_rule, "b": exit_rule}}))
    assert ("Readiness (every scenario): `exit`: the workload's process exited with status 0 "
            "(a run-to-completion image).") in same
    both = "\n".join(methodology.section({"ready": {"a": exit_rule, "b": line}}))
    assert "scenario a: `exit`, the workload's process exited" in both
    assert "scenario b: `line:go`, the workload printed the line 'go' on its stdout" in both
    assert "Readiness: the workload's READY line on its stdout (not recorded" in "\n".join(
        methodology.section({}))


def test_section_says_how_a_vm_ran_an_imported_image_only_when_one_ran() -> None:
    from harness.backends.guests import IMPORTED_GUEST

    backends = {"qemu": {**FakeBackend().describe(), "imported_image": IMPORTED_GUEST}}
    built = "\n".join(methodology.section({"backends": backends,
                                           "image": {"name": "default", "launch": None}}))
    assert "imported image" not in built
    launch = {"entrypoint": ["/bin/sh"], "cmd": [], "env": [], "workdir": "/", "uid": 0,
              "gid": 0}
    imported = "\n".join(methodology.section({"backends": backends,
                                              "image": {"name": "x", "launch": launch}}))
    assert f"- imported image: {IMPORTED_GUEST}" in imported
    assert "/.cvbench/init" in IMPORTED_GUEST and "exec helper" in IMPORTED_GUEST
