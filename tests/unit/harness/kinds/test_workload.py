"""The workload kind with fake instances whose agent is a thread answering with recorded tool
output: turns in a seeded order, samples with the workload in ``variant``, raw output kept,
failures named in one line and the run marked incomplete, charts and summary table."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from pathlib import Path

import pytest
from fakes import FakeBackend, context, samples

from harness import scenario
from harness.backends.base import Instance, InstanceSpec
from harness.kinds import rounds, workload
from harness.workloads.agent import AgentError, Controller

RECORDED = Path(__file__).parents[1] / "workload_output"
OUTPUTS = (  # (words in the command, recorded output)
    (("sysbench", "cpu"), "sysbench-cpu.txt"),
    (("access-mode=seq",), "sysbench-mem-seq.txt"),
    (("access-mode=rnd",), "sysbench-mem-rnd.txt"),
    (("--rw=randread",), "fio-randread.json"),
    (("--rw=randwrite",), "fio-randwrite.json"),
    (("--rw=read",), "fio-read.json"),
    (("--rw=write",), "fio-write.json"),
)


class AgentBackend(FakeBackend):
    """Each instance is a thread playing the image's agent: it connects to CVBENCH_CONTROL,
    says HELLO with its token and answers commands with recorded output (or as told)."""

    def __init__(self, *, answers: dict[str, tuple[int, str]] | None = None, **options) -> None:
        super().__init__(**options)
        self.answers = answers or {}  # a word of the command -> (exit code, output)
        self.commands: list[str] = []

    def start(self, spec: InstanceSpec) -> Instance:
        instance = super().start(spec)
        env = dict(item.split("=", 1) for item in spec.env)
        threading.Thread(target=self._agent, args=(env,), daemon=True).start()
        return instance

    def answer(self, command: str) -> tuple[int, str]:
        for word, answer in self.answers.items():
            if word in command:
                return answer
        for words, name in OUTPUTS:
            if all(word in command for word in words):
                return 0, (RECORDED / name).read_text()
        return 127, "tool: exec: nope: not found"

    def _agent(self, env: dict[str, str]) -> None:
        host, port = env["CVBENCH_CONTROL"].rsplit(":", 1)
        with contextlib.suppress(OSError), socket.create_connection((host, int(port))) as sock:
            stream = sock.makefile("rwb", buffering=0)
            stream.write(f"HELLO {env['CVBENCH_TOKEN']} /\n".encode())
            for line in stream:
                ident, command = line.decode().rstrip("\n").split(" ", 1)
                self.commands.append(command)
                code, text = self.answer(command)
                stream.write(text.encode() + f"\n@@cvbench-end {ident} {code}\n".encode())


def make(**keys):
    keys = {"workloads": ("cpu", "memory", "disk"), "repetitions": 2, "warmup": 1,
            "duration_s": 1, "network": "host", "timeout_s": 10, **keys}
    return scenario.make("workload", **keys)


@pytest.fixture
def ctx_of(tmp_path, monkeypatch):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    return lambda *backends: context(tmp_path, *backends)


def test_every_workload_on_every_backend_each_round_in_a_seeded_order(ctx_of) -> None:
    floor, other = AgentBackend(name="process"), AgentBackend(name="b")
    ctx = ctx_of(floor, other)
    ctx.seed = 11
    plan = make()
    workload.run(ctx, plan, ("process", "b"))
    assert not ctx.incomplete and not ctx.writer.metadata.get("failures")
    names = [w.name for w in workload.catalog.workloads(("cpu", "memory", "disk"),
                                                        ("root", "volume"))]
    assert len(names) == 2 + 2 + 8
    recorded = samples(ctx)
    variants = Counter((s.backend, s.variant) for s in recorded)
    assert {v for _, v in variants} >= {"cpu threads=1", "memory access=rnd block=64M op=write",
                                        "fio randread bs=4k qd=1 target=volume",
                                        "fio write bs=1M target=root"}
    assert {s.repetition for s in recorded} == {0, 1}  # the warm-up round is not recorded
    assert all(s.value > 0 and s.unit for s in recorded)
    units = {(s.metric, s.unit) for s in recorded}
    assert units == {("events_per_s", "events/s"), ("bandwidth_mib_s", "MiB/s"),
                     ("iops", "IOPS"), ("latency_p50_s", "s"), ("latency_p99_s", "s")}
    turns = [workload.Turn(b, n) for b in ("process", "b") for n in names]
    first_measured = rounds.order(turns, 11, "workload", 1)
    cpu_sample = next(s for s in recorded if s.repetition == 0 and s.backend == "b"
                      and s.variant == "cpu threads=1")
    assert first_measured[cpu_sample.position] == workload.Turn("b", "cpu-1")
    # one instance per backend for the whole scenario, stopped and removed at the end
    assert Counter(action for _, action, _ in floor.events) == {"start": 1, "stop": 1,
                                                                 "remove": 1, "ready": 1}
    assert not floor.live and not ctx.live.get("process")
    raw = ctx.writer.directory / "raw" / "workload" / "b"
    assert (raw / "rep1-fio-randread-volume.txt").read_text().startswith("$ mkdir -p /data && ")
    assert "events per second" in (raw / "warmup0-cpu-1.txt").read_text()
    assert not (Path(ctx.writer.directory).parent / "state" / "workloads").exists() or not any(
        (Path(ctx.writer.directory).parent / "state" / "workloads").iterdir())


def test_disk_targets_are_the_instances_own_root_and_the_volume(ctx_of) -> None:
    backend = AgentBackend(name="b")
    workload.run(ctx_of(backend), make(workloads=("disk",), repetitions=1, warmup=0), ("b",))
    files = {c.split("--filename=")[1].split()[0] for c in backend.commands if "fio" in c}
    assert files == {"/var/tmp/cvbench/cvbench-fio.dat", "/data/cvbench-fio.dat"}
    assert all("--direct=1" in c and "--iodepth=1" in c for c in backend.commands if "fio" in c)


def test_a_missing_tool_and_unparseable_output_are_one_line_each_and_the_run_goes_on(
        ctx_of) -> None:
    broken = AgentBackend(name="b", answers={
        "sysbench cpu": (127, "/usr/libexec/cvbench/tool: exec: /usr/bin/sysbench: not found"),
        "access-mode=seq": (0, "Segmentation fault"),
    })
    good = AgentBackend(name="c")
    ctx = ctx_of(broken, good)
    workload.run(ctx, make(workloads=("cpu", "memory"), repetitions=1, warmup=0), ("b", "c"))
    assert ctx.incomplete
    reasons = {f["reason"] for f in ctx.writer.metadata["failures"] if f["backend"] == "b"}
    assert "cpu-1 (rep0): sysbench is not in the image (exit 127: /usr/libexec/cvbench/tool: " \
           "exec: /usr/bin/sysbench: not found)" in reasons
    assert any(r.startswith("memory-seq (rep0): unparseable output (sysbench memory: no 'MiB "
                            "transferred") for r in reasons)
    assert all("\n" not in r for r in reasons)
    assert {s.variant for s in samples(ctx, backend="b")} == {
        "memory access=rnd block=64M op=write"}
    assert len({s.variant for s in samples(ctx, backend="c")}) == 4


def test_an_instance_that_never_gets_ready_is_given_up_after_three_tries(ctx_of) -> None:
    dead = AgentBackend(name="b", fail_ready_from=1)
    good = AgentBackend(name="c")
    ctx = ctx_of(dead, good)
    workload.run(ctx, make(workloads=("cpu",), repetitions=3, warmup=0), ("b", "c"))
    reasons = [f["reason"] for f in ctx.writer.metadata["failures"]]
    assert len(reasons) == 3 and "giving up on this backend" in reasons[-1]
    assert all("cannot start the instance" in r and "never printed READY" in r for r in reasons)
    assert len(samples(ctx, backend="c")) == 3 * 2 and ctx.incomplete


def test_a_bridged_scenario_is_required_for_isolated_backends(ctx_of) -> None:
    ctx = ctx_of(AgentBackend(name="b"))
    workload.run(ctx, make(workloads=("cpu",), repetitions=1, warmup=0, network="none"), ("b",))
    [failure] = {f["reason"] for f in ctx.writer.metadata["failures"]}
    assert 'needs network = "bridge"' in failure and ctx.incomplete
    assert not ctx.backends["b"].events  # nothing was started


def test_controller_hands_each_agent_to_its_token_and_refuses_strangers() -> None:
    controller = Controller()
    try:
        host, port = controller.control(on_host=True).rsplit(":", 1)
        assert host == "127.0.0.1"
        stranger = socket.create_connection((host, int(port)))
        stranger.sendall(b"GET / HTTP/1.0\n")
        first = socket.create_connection((host, int(port)))
        first.sendall(b"HELLO aaa /\n")
        second = socket.create_connection((host, int(port)))
        second.sendall(b"HELLO bbb /srv/image/rootfs\n")
        agent = controller.wait("bbb", 5)
        assert agent.on_host and agent.address == "127.0.0.1"
        assert not controller.wait("aaa", 5).on_host
        with pytest.raises(AgentError, match="did not connect"):
            controller.wait("ccc", 0.2)
        assert stranger.recv(10) == b""  # hung up on
        second.sendall(b"not a protocol line")
        with pytest.raises(AgentError, match="no answer"):
            agent.run("true", 0.2)
        assert agent.broken
    finally:
        controller.close()


def test_charts_and_summary_relative_to_process(ctx_of, tmp_path) -> None:
    ctx = ctx_of(AgentBackend(name="process"), AgentBackend(name="b"))
    workload.run(ctx, make(workloads=("cpu", "disk"), targets=("root",), repetitions=2),
                 ("process", "b"))
    ctx.writer.flush()
    from harness import report

    frame = report.load([ctx.writer.directory])
    table = workload.relative(frame, "workload")
    assert set(table.backend) == {"process", "b"}
    assert (table[table.backend == "process"].relative == 1.0).all()
    latency = table[table.metric == "latency_p99_s"]
    assert latency.lower_is_better.all()
    output = tmp_path / "charts"
    output.mkdir()
    paths = workload.charts(frame, "workload", output)
    assert {p.name for p in paths} >= {"workload-summary.md", "workload-cpu.png",
                                       "workload-fio.svg"}
    summary = (output / "workload-summary.md").read_text()
    assert "| cpu threads=1 | events_per_s | events/s | 1,667 | 1,667 (1.00×) |" in summary


def test_clean_removes_what_a_killed_run_left_of_the_workloads(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    left = tmp_path / "workloads" / "cvbench-abc-1" / "volume"
    left.mkdir(parents=True)
    (left / "cvbench-fio.dat").write_bytes(b"x")
    assert workload.sweep() == [f"workload directory {tmp_path / 'workloads' / 'cvbench-abc-1'}"]
    assert workload.sweep() == [] and not any((tmp_path / "workloads").iterdir())


class _ClockAgent:
    """An agent whose instance reports ``clock`` as its clocksource."""

    def __init__(self, clock: str) -> None:
        self.clock = clock

    def run(self, command: str, timeout: float):
        from harness.workloads.agent import Output

        assert command == f"cat {workload.CLOCKSOURCE}"
        return Output(0, self.clock + "\n")


@pytest.mark.parametrize("clock", ["jiffies", "refined-jiffies"])
def test_a_guest_with_a_tick_clock_is_refused_and_its_clock_recorded(ctx_of, clock) -> None:
    from harness.workloads import catalog

    ctx = ctx_of()
    with pytest.raises(catalog.WorkloadError, match=f"clocksource is {clock}.*acpi = true"):
        workload._check_clock(ctx, "qemu", _ClockAgent(clock))
    workload._check_clock(ctx, "libvirt", _ClockAgent("hpet"))
    assert ctx.writer.metadata["clocksource"] == {"qemu": clock, "libvirt": "hpet"}
