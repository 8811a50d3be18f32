"""The harness's own share of a start, stop and clean-up (the OCI backends tell it): how the
startup kind records it, that the report's headline says it and that the gate does not judge
it (pure: fake backends, synthetic samples)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeBackend, context, samples

from harness import scenario
from harness.backends.base import (
    HARNESS_CLEANUP,
    HARNESS_METRICS,
    HARNESS_START,
    HARNESS_STOP,
    Instance,
    InstanceSpec,
)
from harness.gate import verdicts
from harness.kinds import startup
from harness.report import headline
from harness.results import RunWriter, Sample


class Shares(FakeBackend):
    """A fake backend that tells the harness's share of each step, as the OCI backends do."""

    def start(self, spec: InstanceSpec) -> Instance:
        instance = super().start(spec)
        instance.harness[HARNESS_START] = 0.001
        return instance

    def resume(self, instance: Instance) -> None:
        super().resume(instance)
        instance.harness[HARNESS_START] = 0.000_2

    def stop(self, instance: Instance) -> None:
        super().stop(instance)
        instance.harness[HARNESS_STOP] = 0.000_3

    def remove(self, instance: Instance) -> None:
        super().remove(instance)
        instance.harness[HARNESS_CLEANUP] = 0.000_4


def test_startup_records_the_harness_share_apart_in_either_variant(tmp_path) -> None:
    ctx = context(tmp_path, Shares(name="a"), FakeBackend(name="b"))
    startup.run(ctx, scenario.make("startup", repetitions=2, warmup=1,
                                   variants=("cold", "warm")), ("a", "b"))
    values = {(s.metric, s.variant): [] for s in samples(ctx, backend="a")}
    for sample in samples(ctx, backend="a"):
        assert sample.unit == "s"
        values[(sample.metric, sample.variant)].append(sample.value)
    assert values[(HARNESS_START, "cold")] == [0.001, 0.001]
    assert values[(HARNESS_START, "warm")] == [0.000_2, 0.000_2]  # the resume's, not create's
    for variant in ("cold", "warm"):
        assert values[(HARNESS_STOP, variant)] == [0.000_3] * 2
        assert values[(HARNESS_CLEANUP, variant)] == [0.000_4] * 2
    # a backend that tells none records none
    assert not {s.metric for s in samples(ctx, backend="b")} & set(HARNESS_METRICS)


def test_the_gate_does_not_judge_the_harness_share() -> None:
    for metric in HARNESS_METRICS:
        assert verdicts.direction(metric) is None
    assert verdicts.direction("start_to_ready_s") == verdicts.LOWER_IS_BETTER
    assert verdicts.direction("cleanup_s") == verdicts.LOWER_IS_BETTER
    assert verdicts.direction("engine_start_s") == verdicts.LOWER_IS_BETTER  # as before


def _run(results_dir: Path) -> Path:
    writer = RunWriter.create(results_dir, "h", {"suite": "t"})
    for backend, harness in (("process", None), ("ours", None), ("crun", 0.002)):
        for i in range(6):
            metrics = {"start_to_ready_s": 0.01, "stop_s": 0.005}
            if harness is not None:
                metrics |= {HARNESS_START: harness, HARNESS_STOP: harness / 4,
                            HARNESS_CLEANUP: harness / 2}
            writer.add([Sample(run_id="h", scenario="startup", kind="startup",
                               backend=backend, metric=metric, value=value * (1 + i / 100),
                               unit="s", variant="cold", repetition=i, accel="none")
                        for metric, value in metrics.items()])
    writer.finish("complete")
    return writer.directory


def test_the_headline_says_the_harness_share_without_ratios(tmp_path) -> None:
    from harness import report

    frame = report.load([_run(tmp_path / "results")])
    (table,) = headline.tables(frame)
    rows = {(row.measure.metric, row.backend): row for row in table.rows}
    for metric in HARNESS_METRICS:
        assert {backend for m, backend in rows if m == metric} == {"crun"}
        row = rows[(metric, "crun")]
        assert row.to_floor is None and row.measure.unit == "s" and row.measure.note
    assert rows[(HARNESS_START, "crun")].median == pytest.approx(0.002 * 1.025)
    assert rows[("start_to_ready_s", "crun")].to_floor is not None
