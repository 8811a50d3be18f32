"""The density kind with a fake backend and fake host memory: steps, stop reasons, failures."""

from __future__ import annotations

from fakes import GIB, MIB, FakeBackend, FakeHost, context, samples

from harness import scenario
from harness.kinds import density, rounds


def _ramp(tmp_path, monkeypatch, backend: FakeBackend, host: FakeHost | None = None, **keys):
    (host or FakeHost([backend])).install(monkeypatch)
    ctx = context(tmp_path, backend)
    keys.setdefault("min_mem_available_mib", 0)
    keys.setdefault("warmup_batch", False)
    density.run(ctx, scenario.make("density", **keys), (backend.name,))
    (summary,) = ctx.writer.metadata["density"]["density"][backend.name]  # one ramp
    return ctx, summary


def test_ramp_to_max_instances_records_every_step(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a")
    ctx, summary = _ramp(tmp_path, monkeypatch, backend, max_instances=7, batch_size=3)
    assert summary["stopped_by"] == "max_instances" and summary["instances"] == 7
    assert [s.value for s in samples(ctx, "instances_alive")] == [3, 6, 7]
    assert [s.step for s in samples(ctx, "instances_alive")] == [1, 2, 3]
    assert ctx.writer.metadata["empty_cgroup_bytes"] == 64 * 1024  # the host's, noted once
    used = [s.value for s in samples(ctx, "host_mem_used_bytes")]
    assert used == [3 * 100 * MIB, 6 * 100 * MIB, 7 * 100 * MIB]
    batches = [s.value for s in samples(ctx, "batch_launch_s")]
    per_instance = [s.value for s in samples(ctx, "launch_s")]
    assert per_instance == [batches[0] / 3, batches[1] / 3, batches[2] / 1]
    assert [s.value for s in samples(ctx, "max_instances_alive")] == [7]
    teardowns = samples(ctx, "teardown_s")  # one per instance
    assert sorted(int(s.instance) for s in teardowns) == list(range(1, 8))
    assert backend.starts == 7 and not backend.live and not ctx.live.get("a")


def test_an_unmeasured_warm_up_batch_comes_first(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    backend = FakeBackend(name="a", events=events)
    ctx, summary = _ramp(tmp_path, monkeypatch, backend, max_instances=4, batch_size=2,
                         warmup_batch=True)
    assert backend.starts == 6 and summary["instances"] == 4
    assert [s.value for s in samples(ctx, "instances_alive")] == [2, 4]
    first_measured = [name for _, action, name in events if action == "start"][2]
    warm_up = [name for _, action, name in events if action == "remove"][:2]
    assert first_measured not in warm_up  # torn down before the ramp began
    assert len(samples(ctx, "teardown_s")) == 4


def test_ramp_stops_at_the_memory_floor(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a")
    host = FakeHost([backend], total=10 * GIB, per_instance=GIB)
    _, summary = _ramp(tmp_path, monkeypatch, backend, host, max_instances=100,
                       min_mem_available_mib=10 * 1024 - 2500)  # 3 alive leave 7 GiB: below
    assert summary["stopped_by"] == "memory_floor" and summary["instances"] == 3


def test_ramp_stops_at_the_time_limit(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a", start_s=0.02)
    _, summary = _ramp(tmp_path, monkeypatch, backend, max_instances=1000, time_limit_s=0.05)
    assert summary["stopped_by"] == "time_limit"
    assert 1 <= summary["instances"] < 10 and not backend.live


def test_a_failed_batch_is_stopped_and_ends_the_ramp(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    backend = FakeBackend(name="a", fail_ready_from=5, events=events)
    ctx, summary = _ramp(tmp_path, monkeypatch, backend, max_instances=9, batch_size=3)
    assert summary["stopped_by"].startswith("failure: ") and summary["instances"] == 3
    assert [s.value for s in samples(ctx, "instances_alive")] == [3]
    assert [s.value for s in samples(ctx, "max_instances_alive")] == [3]
    started = {name for _, action, name in events if action == "start"}
    removed = {name for _, action, name in events if action == "remove"}
    assert len(started) == 6 and removed == started and not backend.live
    (failure,) = ctx.writer.metadata["failures"]
    assert failure["reason"].startswith("ramp (rep0): launch at 3 alive: ")
    assert ctx.incomplete  # a failure marks the run incomplete, as in every kind


def test_a_failed_warm_up_batch_fails_the_ramp_before_it_began(tmp_path, monkeypatch
                                                               ) -> None:
    backend = FakeBackend(name="a", fail_ready_from=1)
    FakeHost([backend]).install(monkeypatch)
    ctx = context(tmp_path, backend)
    density.run(ctx, scenario.make("density", max_instances=4, batch_size=2, ramps=2,
                                   min_mem_available_mib=0), ("a",))
    reasons = [failure["reason"] for failure in ctx.writer.metadata["failures"]]
    assert len(reasons) == 2 and reasons[0].startswith("ramp (rep0): warm-up batch: ")
    assert reasons[1].startswith("ramp (rep1): warm-up batch: ")
    assert not samples(ctx, "launch_s") and not backend.live and ctx.incomplete
    assert "density" not in ctx.writer.metadata["density"]  # no ramp began


def test_a_backend_whose_ramps_keep_failing_is_given_up(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a", fail_ready_from=1)
    FakeHost([backend]).install(monkeypatch)
    ctx = context(tmp_path, backend)
    density.run(ctx, scenario.make("density", max_instances=2, ramps=5, warmup_batch=False,
                                   min_mem_available_mib=0), ("a",))
    reasons = [failure["reason"] for failure in ctx.writer.metadata["failures"]]
    assert len(reasons) == 3  # the 4th and 5th ramps never start
    assert reasons[-1].endswith("; giving up on ramp on this backend")
    assert backend.starts == 3


def test_backends_ramp_one_after_another(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    FakeHost([a, b]).install(monkeypatch)
    ctx = context(tmp_path, a, b)
    density.run(ctx, scenario.make("density", max_instances=2, min_mem_available_mib=0,
                                   warmup_batch=False), ("a", "b"))
    first, second = rounds.order(("a", "b"), ctx.seed, "density", 0)
    actions = [(backend, action) for backend, action, _ in events]
    assert actions == [(first, "start"), (first, "ready"), (first, "start"), (first, "ready"),
                       (first, "stop"), (first, "remove"), (first, "stop"), (first, "remove"),
                       (second, "start"), (second, "ready"), (second, "start"),
                       (second, "ready"), (second, "stop"), (second, "remove"),
                       (second, "stop"), (second, "remove")]
    summary = ctx.writer.metadata["density"]["density"]
    assert summary[first][0]["position"] == 0 and summary[second][0]["position"] == 1
    assert {s.position for s in samples(ctx, "launch_s", second)} == {1}
    assert {s.repetition for s in ctx.writer.samples} == {0}


def test_a_batch_starts_concurrently(tmp_path, monkeypatch) -> None:
    import time

    backend = FakeBackend(name="a", start_s=0.1)
    began = time.monotonic()
    _ramp(tmp_path, monkeypatch, backend, max_instances=5, batch_size=5)
    assert time.monotonic() - began < 0.4  # five 0.1 s starts at once, not one after another


def test_curve_by_tenth_and_harness_cpu_are_recorded(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a")
    ctx, summary = _ramp(tmp_path, monkeypatch, backend, max_instances=20, batch_size=2)
    curve = summary["curve_by_tenth"]
    assert [point["tenth"] for point in curve] == list(range(1, 11))
    assert [point["alive"] for point in curve] == list(range(2, 21, 2))
    assert "launch_last_over_first_tenth" not in summary  # tenths of different ranges
    assert len(samples(ctx, "harness_cpu_per_launch_s")) == 10
    assert all(s.value >= 0 for s in samples(ctx, "harness_cpu_per_launch_s"))


def test_by_tenth_groups_steps() -> None:
    steps = [(alive, alive / 1000, 0.001, alive * MIB) for alive in range(10, 101, 10)]
    result = density.by_tenth(steps)
    assert [p["launch_p50_ms"] for p in result["curve_by_tenth"]] == [
        float(x) for x in range(10, 101, 10)]
    assert result["curve_by_tenth"][-1]["mem_mib_per_instance"] == 1.0
    assert density.by_tenth([]) == {}


def test_idle_cpu_is_measured_per_instance_at_the_top(tmp_path, monkeypatch) -> None:
    import os

    backend = FakeBackend(name="a")
    original = backend.start

    def start(spec):
        instance = original(spec)
        instance.pids = [os.getpid()]
        return instance

    backend.start = start
    ctx, summary = _ramp(tmp_path, monkeypatch, backend, max_instances=3, batch_size=3,
                         idle_cpu_s=0.05)
    assert len(samples(ctx, "idle_cpu_percent")) == 3
    assert len(samples(ctx, "host_cpu_busy_percent")) == 1
    assert "idle_cpu_percent_per_instance_p50" in summary


def test_ksm_is_set_for_the_ramp_and_restored(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a")
    host = FakeHost([backend])
    _, summary = _ramp(tmp_path, monkeypatch, backend, host, max_instances=2, ksm="on")
    assert host.ksm_switches == [True, False] and summary["ksm"] == "on"
    assert host.ksm_on is False


def test_two_ramps_run_a_b_b_a_each_tagged(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    FakeHost([a, b]).install(monkeypatch)
    ctx = context(tmp_path, a, b)
    density.run(ctx, scenario.make("density", max_instances=4, batch_size=2, ramps=2,
                                   min_mem_available_mib=0, warmup_batch=False), ("a", "b"))
    first, second = rounds.order(("a", "b"), ctx.seed, "density", 0)
    # each ramp: 2 batches of 2 starts, then 4 stops; the backends take turns A B B A
    ramps = [backend for index, (backend, action, _) in enumerate(events)
             if action == "start" and (index == 0 or events[index - 1][1] == "remove")]
    assert ramps == [first, second, second, first]
    assert [backend for backend, action, _ in events if action == "start"] == (
        [first] * 4 + [second] * 4 + [second] * 4 + [first] * 4)
    tags = {(s.backend, s.repetition, s.position) for s in samples(ctx, "launch_s")}
    assert tags == {(first, 0, 0), (second, 0, 1), (second, 1, 2), (first, 1, 3)}
    for metric, per_ramp in (("launch_s", 2), ("instances_alive", 2), ("teardown_s", 4),
                             ("max_instances_alive", 1)):
        for backend in (first, second):
            found = [s.repetition for s in samples(ctx, metric, backend)]
            assert sorted(found) == [0] * per_ramp + [1] * per_ramp, (metric, backend)
    summary = ctx.writer.metadata["density"]["density"]
    assert [(r["ramp"], r["position"], r["turns"], r["stopped_by"], r["instances"])
            for r in summary[first]] == [(0, 0, 4, "max_instances", 4),
                                         (1, 3, 4, "max_instances", 4)]
    assert [(r["ramp"], r["position"]) for r in summary[second]] == [(0, 1), (1, 2)]


def test_a_backend_with_fewer_ramps_skips_its_later_turns(tmp_path, monkeypatch) -> None:
    a, b = FakeBackend(name="a"), FakeBackend(name="b")
    FakeHost([a, b]).install(monkeypatch)
    ctx = context(tmp_path, a, b)
    density.run(ctx, scenario.make("density", max_instances=2, batch_size=2, ramps=3,
                                   min_mem_available_mib=0, warmup_batch=False,
                                   overrides={"a": {"ramps": 1}}), ("a", "b"))
    first, second = rounds.order(("a", "b"), ctx.seed, "density", 0)
    turns = sorted({(s.position, s.backend, s.repetition) for s in samples(ctx, "launch_s")})
    expected = [(first, 0), (second, 0), (second, 1), (first, 1), (first, 2), (second, 2)]
    expected = [turn for turn in expected if turn[0] == "b" or turn[1] == 0]
    assert turns == [(position, *turn) for position, turn in enumerate(expected)]


def test_at_live_takes_the_batches_below_the_level() -> None:
    # batches of 25: the band (90, 100] is covered by the batch 76-100 alone
    steps = [(25, 0.001, 50 * MIB), (50, 0.002, 100 * MIB), (75, 0.003, 150 * MIB),
             (100, 0.004, 200 * MIB), (125, 0.005, 250 * MIB)]
    assert density.at_live(steps, 100) == {"alive": 100, "launch_p50_ms": 4.0, "batches": 1,
                                            "mem_mib_per_instance": 2.0}
    # batches of 30 do not stop at 100: the batch 91-120 covers the band, memory read at 120
    steps = [(30, 0.001, 30 * MIB), (60, 0.002, 60 * MIB), (90, 0.003, 90 * MIB),
             (120, 0.006, 180 * MIB)]
    assert density.at_live(steps, 100) == {"alive": 120, "launch_p50_ms": 6.0, "batches": 1,
                                           "mem_mib_per_instance": 1.5}
    # batches of 250 up to 10,000: 9,001-9,250 ... 9,751-10,000, four batches, median of two
    steps = [(alive, alive / 1e6, alive * MIB) for alive in range(250, 10_001, 250)]
    assert density.at_live(steps, 10_000) == {"alive": 10_000, "launch_p50_ms": 9.625,
                                              "batches": 4, "mem_mib_per_instance": 1.0}
    assert density.at_live(steps, 5_000)["launch_p50_ms"] == 4.875  # 4,750 and 5,000
    assert density.at_live(steps[:10], 5_000) is None  # reached 2,500 only
    assert density.at_live([], 1_000) is None


def test_the_ramps_summary_has_the_levels_it_reached(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a")
    host = FakeHost([backend], per_instance=2 * MIB)
    ctx, summary = _ramp(tmp_path, monkeypatch, backend, host, max_instances=1000,
                         batch_size=250)
    (step_1000,) = [s.value for s in samples(ctx, "launch_s") if s.step == 4]  # 751-1,000
    assert summary["at_live"] == {"1000": {"alive": 1000, "batches": 1,
                                           "launch_p50_ms": round(step_1000 * 1000, 3),
                                           "mem_mib_per_instance": 2.0}}
    assert summary["ramp"] == 0 and summary["turns"] == 1
