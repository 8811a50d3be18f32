"""``cvbench items`` (harness.commands.items, .stripped): the memory run it builds, the spec
changes of its variants, and its tables from recorded samples. No root needed: the run itself
is a stand-in here (tests/integration/harness/commands/test_experiment.py makes the real one)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from harness import cli
from harness.backends import registry
from harness.commands import experiment, items, stripped
from harness.results import RunWriter, Sample
from runtime import cgroups
from runtime.spec import default_spec

KIB = 1024


def _sample(backend: str, metric: str, kib: float, instance: str = "") -> Sample:
    return Sample("r", "memory-items", "memory", backend, metric, kib * KIB, "bytes",
                  instance=instance, variant="ksm=off")


RECORDED = [  # one pass: KiB per instance, as the memory kind records them
    *(_sample(b, "mem_item_slab_bytes", v) for b, v in
      (("ours", 1100), ("ours-no-seccomp", 1000), ("ours-bridge", 1200), ("process", 40))),
    *(_sample(b, "mem_item_percpu_bytes", v) for b, v in
      (("ours", 15), ("ours-no-seccomp", 15), ("ours-bridge", 17), ("process", 0))),
    *(_sample(b, "mem_item_vmalloc_bytes", v) for b, v in
      (("ours", 31), ("ours-no-seccomp", 0), ("ours-bridge", 31), ("process", 0))),
    *(_sample(b, "mem_host_delta_per_instance_bytes", v) for b, v in
      (("ours", 1421), ("ours-no-seccomp", 1380), ("ours-bridge", 1525), ("process", 260))),
    _sample("ours", "mem_pss_bytes", 300, "1"),  # not an item: left out
]
MEASURED = tuple(v for v in items.VARIANTS if v.name in ("ours-no-seccomp", "ours-bridge"))


def test_the_feature_costs_are_ours_minus_the_variant_without_it() -> None:
    frame = pd.DataFrame([vars(s) for s in RECORDED])
    columns, available = items.columns(frame)
    assert columns["ours"] == {"slab": 1100 * KIB, "percpu": 15 * KIB, "vmalloc": 31 * KIB}
    assert available == {"ours": 1421 * KIB, "ours-no-seccomp": 1380 * KIB,
                         "ours-bridge": 1525 * KIB, "process": 260 * KIB}
    lines = items.report(frame, MEASURED, instances=1000)
    assert lines[0].startswith("# Host memory per container, itemised (1000 idle instances")
    assert lines[2] == "| item | ours | ours-no-seccomp | ours-bridge | process |"
    assert "| **MemAvailable delta** | **1421.0** | **1380.0** | **1525.0** | **260.0** |" in lines
    assert lines[-2:] == [
        "| seccomp filter | 41.0 | 100.0 | 0.0 | vmalloc beyond kernel stacks 31.0 |",
        # a feature added, not taken away: the variant minus ours
        "| bridge network instead of none (veth pair, bridge port) | 104.0 | 100.0 | 2.0 |  |"]


def test_a_run_without_ours_has_no_cost_table() -> None:
    frame = pd.DataFrame([vars(s) for s in RECORDED if s.backend != "ours"])
    assert not any(line.startswith("## What each feature costs")
                   for line in items.report(frame, MEASURED, instances=10))


@pytest.mark.parametrize(("text", "v2", "expected"), [
    (None, False, [v.name for v in items.VARIANTS]),
    (None, True, [v.name for v in items.VARIANTS if v.name != "ours-memory-cgroup-only"]),
    ("ours-bridge,ours-no-seccomp", True, ["ours-no-seccomp", "ours-bridge"]),
])
def test_the_variants_chosen(text, v2, expected) -> None:
    assert [v.name for v in items.chosen(text, v2)] == expected


def test_each_variant_takes_its_feature_away_and_nothing_else() -> None:
    stand_in = SimpleNamespace(rootfs="/", digest="")
    full = default_spec(stand_in, "cvbench-x")
    for without, change in stripped.CHANGES.items():
        spec = default_spec(stand_in, "cvbench-x")
        change(spec)
        differs = {key for key in ("namespaces", "seccomp", "masked_paths", "readonly_paths")
                   if getattr(spec.linux, key) != getattr(full.linux, key)}
        differs |= {"mounts"} if spec.mounts != full.mounts else set()
        assert differs == {"ipc-uts": {"namespaces"}, "seccomp": {"seccomp"},
                           "mounts": {"mounts", "masked_paths", "readonly_paths"},
                           "cgroups": set()}[without]
        if without == "ipc-uts":
            assert {ns.type for ns in full.linux.namespaces} - {
                ns.type for ns in spec.linux.namespaces} == {"ipc", "uts"}
        if without == "mounts":
            assert [mount.destination for mount in spec.mounts] == ["/dev"]


def test_an_unknown_feature_is_refused() -> None:
    from harness.backends.base import BackendError

    with pytest.raises(BackendError, match="without: expected one of ipc-uts, seccomp"):
        stripped.StrippedBackend(without="pid")


def test_items_is_one_memory_run_of_ours_its_variants_and_the_floor(
        tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(cgroups, "detect_mode", lambda: "v2")
    seen: dict[str, Any] = {}

    def run(command, plan, backends, options, out, *, quiet, seed) -> Path:
        seen.update(command=command, backends=backends, options=options, out=out, seed=seed,
                    infos={name: registry.info(name) for name in backends},
                    plans={name: plan.for_backend(name) for name in backends})
        writer = RunWriter.create(out, "run", {})
        writer.add(RECORDED)
        writer.finish("complete")
        return writer.directory

    monkeypatch.setattr(experiment, "run", run)
    assert cli.main(["items", "--instances", "7", "--seed", "3", "--out", str(tmp_path)]) == 0
    names = [v.name for v in items.VARIANTS if v.name != "ours-memory-cgroup-only"]
    assert seen["backends"] == ("ours", *names, "process")
    assert (seen["command"], seen["seed"], seen["out"]) == ("items", 3, tmp_path)
    assert seen["options"] == {"ours-no-ipc-uts": {"without": "ipc-uts"},
                               "ours-no-seccomp": {"without": "seccomp"},
                               "ours-no-mounts": {"without": "mounts"}}
    assert seen["infos"]["ours-no-seccomp"].target == "harness.commands.stripped:StrippedBackend"
    assert seen["infos"]["ours-bridge"].target == registry.info("ours").target
    assert {info.family for info in seen["infos"].values()} == {registry.CONTAINER}
    plans = seen["plans"]
    assert {plan.kind for plan in plans.values()} == {"memory"}
    assert {name: plan.params.warmup for name, plan in plans.items() if plan.params.warmup} == {
        "ours": 1}  # one unmeasured pass grows the slab caches, before any is measured
    assert {name: plan.network for name, plan in plans.items() if plan.network != "none"} == {
        "ours-no-netns": "host", "ours-bridge": "bridge"}
    assert {plan.params.instances for plan in plans.values()} == {7}
    assert "ours-no-seccomp" not in registry.names()  # registered for the run only
    report = (tmp_path / "run" / items.REPORT).read_text()
    assert "| seccomp filter | 41.0 |" in report
    assert capsys.readouterr().out.endswith(f"{tmp_path / 'run'}\n")
