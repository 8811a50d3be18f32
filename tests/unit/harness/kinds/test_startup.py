"""The startup kind with fake backends: turns in a seeded order, warm-up rounds ending
together, variants, failures (a line each, the run incomplete, three in a row give up),
timings."""

from __future__ import annotations

from collections import Counter

import pytest
from fakes import FakeBackend, context, samples, starts

from harness import scenario
from harness.backends.base import COLD
from harness.kinds import rounds, startup


def test_every_round_takes_each_turn_once_in_a_seeded_order(tmp_path) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    ctx = context(tmp_path, a, b)
    ctx.seed = 7
    startup.run(ctx, scenario.make("startup", repetitions=3, warmup=1), ("a", "b"))
    started = starts(events)
    expected = [turn.backend for round_index in range(4)
                for turn in rounds.order([startup.Turn("a", COLD), startup.Turn("b", COLD)],
                                         7, "startup", round_index)]
    assert started == expected
    for name in ("a", "b"):
        recorded = samples(ctx, "start_to_ready_s", name)
        assert [s.repetition for s in recorded] == [0, 1, 2]  # the warm-up round is not there
        assert all(s.variant == COLD for s in recorded)
    positions = [(s.backend, s.position) for s in samples(ctx, "start_to_ready_s")]
    assert Counter(p for _, p in positions) == {0: 3, 1: 3}
    assert not a.live and not b.live and not ctx.live.get("a")


def test_the_same_seed_gives_the_same_order_and_another_seed_another() -> None:
    turns = list(range(6))
    assert rounds.order(turns, 1, "s", 0) == rounds.order(turns, 1, "s", 0)
    orders = {tuple(rounds.order(turns, seed, "s", 0)) for seed in range(20)}
    assert len(orders) > 10 and all(sorted(order) == turns for order in orders)


def test_each_backend_runs_its_own_number_of_cycles(tmp_path) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    plan = scenario.make("startup", repetitions=3, warmup=0, overrides={"b": {"repetitions": 1}})
    startup.run(context(tmp_path, a, b), plan, ("a", "b"))
    assert Counter(starts(events)) == {"a": 3, "b": 1}


def test_warm_turns_create_before_the_clock_and_resume_inside(tmp_path) -> None:
    events: list[tuple[str, str, str]] = []
    backend = FakeBackend(name="a", events=events, start_s=0.02)
    ctx = context(tmp_path, backend)
    startup.run(ctx, scenario.make("startup", repetitions=2, warmup=0,
                                   variants=("cold", "warm")), ("a",))
    actions = Counter(action for _, action, _ in events)
    assert actions["start"] == 2 and actions["create"] == 2 and actions["resume"] == 2
    assert actions["stop"] == actions["remove"] == 4
    warm = samples(ctx, "start_to_ready_s", "a")
    assert sorted(s.variant for s in warm) == ["cold", "cold", "warm", "warm"]
    # a warm start's phases happened before the clock: not recorded
    assert {s.variant for s in samples(ctx, "fake_call_s")} == {"cold"}


def test_restore_turns_stage_before_the_clock_and_resume_inside(tmp_path) -> None:
    events: list[tuple[str, str, str]] = []
    backend = FakeBackend(name="a", events=events, start_s=0.02, restore=True)
    ctx = context(tmp_path, backend)
    startup.run(ctx, scenario.make("startup", repetitions=2, warmup=0,
                                   variants=("warm", "restore")), ("a",))
    actions = Counter(action for _, action, _ in events)
    assert actions["create restore"] == 2 and actions["create"] == 2
    assert actions["resume"] == 4 and actions["start"] == 0
    assert actions["stop"] == actions["remove"] == 4
    recorded = samples(ctx, "start_to_ready_s", "a")
    assert sorted(s.variant for s in recorded) == ["restore", "restore", "warm", "warm"]
    assert min(s.value for s in recorded) >= 0.02  # the resume is inside the clock
    for index, (_, action, instance) in enumerate(events):  # staged right before its resume
        if action == "create restore":
            assert events[index + 1][1:] == ("resume", instance)


def test_a_failed_restore_is_a_line_and_the_run_goes_on_incomplete(tmp_path) -> None:
    backend = FakeBackend(name="a", restore=True, fail_ready={1})  # the first one fails
    ctx = context(tmp_path, backend)
    startup.run(ctx, scenario.make("startup", repetitions=3, warmup=0,
                                   variants=("restore",)), ("a",))
    assert ctx.incomplete
    (failure,) = ctx.writer.metadata["failures"]
    assert failure["reason"] == f"restore (rep0): cvbench-{ctx.tag}-1 never printed READY"
    assert [s.repetition for s in samples(ctx, "start_to_ready_s", "a")] == [1, 2]
    assert not backend.live  # the failed one was stopped and removed too


def test_a_variant_the_backend_lacks_is_noted_not_measured(tmp_path) -> None:
    class ColdOnly(FakeBackend):
        variants = (COLD,)

    ctx = context(tmp_path, ColdOnly(name="a"))
    startup.run(ctx, scenario.make("startup", repetitions=1, warmup=0,
                                   variants=("cold", "warm")), ("a",))
    assert {s.variant for s in samples(ctx, "start_to_ready_s")} == {"cold"}
    assert ctx.writer.metadata["failures"][0]["reason"] == "no warm start: not measured"


def test_timings_and_the_backends_own_phases_are_recorded(tmp_path) -> None:
    backend = FakeBackend(name="a", start_s=0.02, ready_s=0.03)
    ctx = context(tmp_path, backend)
    startup.run(ctx, scenario.make("startup", repetitions=2, warmup=0), ("a",))
    by_metric: dict[str, list[float]] = {}
    for sample in samples(ctx):
        assert sample.unit == "s" and sample.kind == "startup" and sample.scenario == "startup"
        by_metric.setdefault(sample.metric, []).append(sample.value)
    assert set(by_metric) == {"start_to_ready_s", "stop_s", "cleanup_s", "start_call_s",
                              "ready_wait_s", "fake_call_s"}
    for rep in range(2):
        call, wait = by_metric["start_call_s"][rep], by_metric["ready_wait_s"][rep]
        assert call >= 0.02 and wait >= 0.03
        assert by_metric["start_to_ready_s"][rep] == pytest.approx(call + wait)
    assert by_metric["fake_call_s"] == [0.000_5, 0.000_5]


def test_three_consecutive_failures_end_a_backend_the_others_go_on(tmp_path) -> None:
    broken, healthy = FakeBackend(name="a", fail_ready_from=1), FakeBackend(name="b")
    ctx = context(tmp_path, broken, healthy)
    startup.run(ctx, scenario.make("startup", repetitions=10, warmup=0), ("a", "b"))
    assert broken.starts == rounds.MAX_FAILURES_IN_A_ROW
    assert not broken.live and not ctx.live.get("a")  # each failed start was stopped
    assert len(samples(ctx, "start_to_ready_s", "b")) == 10
    assert not samples(ctx, backend="a")
    failures = ctx.writer.metadata["failures"]
    assert [f["backend"] for f in failures] == ["a"] * 3
    assert failures[0]["reason"].startswith("cold (rep0): ")
    assert "never printed READY" in failures[0]["reason"]
    assert failures[-1]["reason"].endswith("; giving up on cold on this backend")
    assert ctx.incomplete  # a measurement failed: the run says so (and `cvbench run` exits 3)


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
    assert ctx.writer.metadata["failures"][0]["reason"].startswith("cold (warmup0): ")


def test_warm_up_rounds_end_together_when_backends_warm_up_differently(tmp_path) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    ctx = context(tmp_path, a, b)
    startup.run(ctx, scenario.make("startup", repetitions=2, warmup=2,
                                   overrides={"b": {"warmup": 0}}), ("a", "b"))
    turns = [startup.Turn("a", COLD), startup.Turn("b", COLD)]
    expected = [turn.backend for round_index in range(4)
                for turn in rounds.order(turns if round_index >= 2 else turns[:1], ctx.seed,
                                         "startup", round_index)]
    assert starts(events) == expected  # b's measured rounds are a's: none while a warms up
    assert [s.repetition for s in samples(ctx, "start_to_ready_s", "b")] == [0, 1]


def test_settle_time_between_turns(tmp_path) -> None:
    import time

    ctx = context(tmp_path, FakeBackend(name="a"))
    began = time.monotonic()
    startup.run(ctx, scenario.make("startup", repetitions=3, warmup=0, settle_s=0.05), ("a",))
    assert time.monotonic() - began >= 0.15
