"""The memory kind with fake backends and fake host memory: warm-up, order, KSM variants."""

from __future__ import annotations

from fakes import MIB, FakeBackend, FakeHost, FakeVM, context, samples, starts

from harness import scenario
from harness.kinds import memory, rounds


def _passes(events: list[tuple[str, str, str]], instances: int) -> list[str]:
    """The backend of each pass, from the order instances were started in."""
    order = starts(events)
    return order[::instances]


def test_warm_up_passes_come_first_and_are_not_recorded(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    FakeHost([a, b]).install(monkeypatch)
    ctx = context(tmp_path, a, b)
    memory.run(ctx, scenario.make("memory", instances=2, warmup=2, passes=1, settle_s=0),
               ("a", "b"))
    measured = rounds.order(["a", "b"], ctx.seed, "memory", 0)
    assert _passes(events, 2) == ["a", "a", "b", "b", *measured]  # warm-ups, then measured
    for name in ("a", "b"):
        pss = samples(ctx, "mem_pss_bytes", name)
        assert [(s.instance, s.repetition) for s in pss] == [("1", 0), ("2", 0)]
    assert not a.live and not b.live


def test_measured_passes_take_the_backends_in_a_seeded_order(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    a, b = FakeBackend(name="a", events=events), FakeBackend(name="b", events=events)
    FakeHost([a, b]).install(monkeypatch)
    ctx = context(tmp_path, a, b)
    memory.run(ctx, scenario.make("memory", instances=2, warmup=0, passes=3, settle_s=0),
               ("a", "b"))
    expected = [name for index in range(3)
                for name in rounds.order(["a", "b"], ctx.seed, "memory", index)]
    assert _passes(events, 2) == expected
    deltas = samples(ctx, "mem_host_delta_per_instance_bytes", "a")
    assert [s.repetition for s in deltas] == [0, 1, 2]
    assert [s.position for s in deltas] == [
        rounds.order(["a", "b"], ctx.seed, "memory", index).index("a") for index in range(3)]


def test_views_per_instance(tmp_path, monkeypatch) -> None:
    backend = FakeBackend(name="a")
    FakeHost([backend], per_instance=100 * MIB).install(monkeypatch)
    ctx = context(tmp_path, backend)
    memory.run(ctx, scenario.make("memory", instances=4, warmup=0, settle_s=0), ("a",))
    (delta,) = samples(ctx, "mem_host_delta_per_instance_bytes")
    (accounted,) = samples(ctx, "mem_host_accounted_per_instance_bytes")
    assert delta.value == accounted.value == 100 * MIB and delta.variant == "ksm=off"
    assert len(samples(ctx, "mem_cgroup_bytes")) == 4
    assert len(samples(ctx, "ksm_pages_sharing")) == 1


def test_ksm_variants_only_for_the_vm_family(tmp_path, monkeypatch, fake_backends) -> None:
    container, vm = FakeBackend(), FakeVM()
    host = FakeHost([container, vm], scan_pages=123).install(monkeypatch)
    ctx = context(tmp_path, container, vm)
    memory.run(ctx, scenario.make("memory", instances=2, warmup=0, settle_s=0,
                                  ksm=("off", "on")), ("fake", "fakevm"))
    variants = {name: [s.variant for s in samples(ctx, "mem_pss_bytes", name)]
                for name in ("fake", "fakevm")}
    assert variants == {"fake": ["ksm=off"] * 2, "fakevm": ["ksm=off"] * 2 + ["ksm=on"] * 2}
    sharing = {s.variant: s.value for s in samples(ctx, "ksm_pages_sharing", "fakevm")}
    assert sharing == {"ksm=off": 0, "ksm=on": 7}  # read while KSM was on
    assert host.ksm_switches == [True, False]  # on for its variant, then back as it was
    assert not host.ksm_on and host.scan_pages == 123
    assert len(samples(ctx, "mem_vmm_overhead_bytes", "fakevm")) == 4


def test_a_failed_warm_up_leaves_the_backend_out(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    broken = FakeBackend(name="a", fail_ready={2}, events=events)
    healthy = FakeBackend(name="b", events=events)
    FakeHost([broken, healthy]).install(monkeypatch)
    ctx = context(tmp_path, broken, healthy)
    memory.run(ctx, scenario.make("memory", instances=2, warmup=1, passes=2, settle_s=0),
               ("a", "b"))
    assert not samples(ctx, backend="a") and len(samples(ctx, "mem_pss_bytes", "b")) == 4
    (failure,) = ctx.writer.metadata["failures"]
    assert failure["backend"] == "a" and failure["reason"].startswith("warm-up: ")
    assert not broken.live and not healthy.live
