"""The startup kind with fake backends: interleaving, warm-up, failure cap, timings."""

from __future__ import annotations

import pytest
from fakes import FakeBackend, context, samples, starts

from harness import scenario
from harness.kinds import startup


def test_backends_interleave_and_warm_up_is_not_recorded(tmp_path) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    ctx = context(tmp_path, a, b)
    startup.run(ctx, scenario.make("startup", repetitions=3, warmup=1), ("a", "b"))
    assert starts(events) == ["a", "b", "b", "a", "a", "b", "b", "a"]
    for name in ("a", "b"):
        recorded = samples(ctx, "start_to_ready_s", name)
        assert [s.repetition for s in recorded] == [0, 1, 2]  # the warm-up cycle is not there
    assert not a.live and not b.live and not ctx.live.get("a")


def test_each_backend_runs_its_own_number_of_cycles(tmp_path) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    plan = scenario.make("startup", repetitions=3, warmup=0, overrides={"b": {"repetitions": 1}})
    startup.run(context(tmp_path, a, b), plan, ("a", "b"))
    assert starts(events) == ["a", "b", "a", "a"]


def test_timings_and_the_backends_own_phases_are_recorded(tmp_path) -> None:
    backend = FakeBackend(name="a", start_s=0.02, ready_s=0.03)
    ctx = context(tmp_path, backend)
    startup.run(ctx, scenario.make("startup", repetitions=2, warmup=0), ("a",))
    by_metric: dict[str, list[float]] = {}
    for sample in samples(ctx):
        assert sample.unit == "s" and sample.kind == "startup" and sample.scenario == "startup"
        by_metric.setdefault(sample.metric, []).append(sample.value)
    assert set(by_metric) == {"start_to_ready_s", "stop_s", "start_call_s", "ready_wait_s",
                              "fake_call_s"}
    for rep in range(2):
        call, wait = by_metric["start_call_s"][rep], by_metric["ready_wait_s"][rep]
        assert call >= 0.02 and wait >= 0.03
        assert by_metric["start_to_ready_s"][rep] == pytest.approx(call + wait)
    assert by_metric["fake_call_s"] == [0.000_5, 0.000_5]


def test_three_consecutive_failures_end_a_backend_the_others_go_on(tmp_path) -> None:
    broken, healthy = FakeBackend(name="a", fail_ready_from=1), FakeBackend(name="b")
    ctx = context(tmp_path, broken, healthy)
    startup.run(ctx, scenario.make("startup", repetitions=10, warmup=0), ("a", "b"))
    assert broken.starts == startup.MAX_CONSECUTIVE_FAILURES
    assert not broken.live and not ctx.live.get("a")  # each failed start was stopped
    assert len(samples(ctx, "start_to_ready_s", "b")) == 10
    assert not samples(ctx, backend="a")
    failures = ctx.writer.metadata["failures"]
    assert [f["backend"] for f in failures] == ["a"] * 3
    assert failures[0]["reason"].startswith("repetition 0: ")
    assert "never printed READY" in failures[0]["reason"]


def test_a_success_resets_the_failure_count(tmp_path) -> None:
    backend = FakeBackend(name="a", fail_ready={2, 3, 5, 6})
    ctx = context(tmp_path, backend)
    startup.run(ctx, scenario.make("startup", repetitions=7, warmup=0), ("a",))
    assert backend.starts == 7
    assert [s.repetition for s in samples(ctx, "start_to_ready_s")] == [0, 3, 6]
    assert len(ctx.writer.metadata["failures"]) == 4


def test_a_failed_warm_up_counts_towards_the_cap(tmp_path) -> None:
    backend = FakeBackend(name="a", fail_ready={1, 2, 3})
    ctx = context(tmp_path, backend)
    startup.run(ctx, scenario.make("startup", repetitions=5, warmup=2), ("a",))
    assert backend.starts == 3 and not samples(ctx)
    assert ctx.writer.metadata["failures"][0]["reason"].startswith("repetition -2: ")
