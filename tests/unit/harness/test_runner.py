"""A suite with a fake backend and a fake kind, through the real loader, runner, RunWriter and
report; clean-up failures recorded in the metadata. No root needed."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from harness import hostinfo, report, runner, scenario
from harness.backends.launch import Launch
from harness.context import RunContext
from harness.kinds import registry as kinds
from harness.kinds.base import HIGHER, Kind, Metric
from harness.params import param
from harness.scenario import Scenario, ScenarioError
from imagestore import image as images
from imagestore.imageconfig import ImageConfig


@dataclass(frozen=True)
class PingParams:
    """A fake kind's own keys."""

    pings: int = field(default=2, metadata=param(minimum=1, doc="instances started per backend"))
    tone: str = field(default="low", metadata=param(choices=("low", "high")))


def run_pings(ctx: RunContext, plan: Scenario[PingParams], backend_names: tuple[str, ...]
              ) -> None:
    """Start, await and stop ``pings`` instances per backend; record a sample for each."""
    for name in backend_names:
        mine = plan.for_backend(name)
        for index in range(mine.params.pings):
            instance = ctx.start(name, mine)
            ctx.backends[name].wait_ready(instance, mine.timeout_s)
            ctx.stop(name, instance)
            ctx.record([ctx.sample(mine, name, "ping_s", 0.001 * (index + 1), "s",
                                   repetition=index, variant=mine.params.tone)])
        ctx.writer.metadata.setdefault("pings", {})[name] = mine.params.pings


def run_then_interrupt(ctx: RunContext, plan: Scenario[PingParams],
                       backend_names: tuple[str, ...]) -> None:
    """Start an instance on each backend, then stop as Ctrl-C would."""
    for name in backend_names:
        ctx.start(name, plan)
    raise KeyboardInterrupt


PING = Kind("ping", "pings every backend", PingParams, run_pings)
INTERRUPTED_KIND = Kind("interrupted", "starts instances, then is interrupted", PingParams,
                        run_then_interrupt)


@pytest.fixture
def fake_kinds(fake_backends) -> Iterator[None]:
    """The ``ping`` kind (no charts, no declared metrics) and the ``interrupted`` kind, for
    one test, registered as a plug-in's would be: by where their declarations are."""
    kinds.register(kinds.KindInfo("ping", f"{__name__}:PING"))
    kinds.register(kinds.KindInfo("interrupted", f"{__name__}:INTERRUPTED_KIND"))
    yield
    kinds.unregister("ping")
    kinds.unregister("interrupted")


@pytest.fixture
def host(state_dir, monkeypatch) -> None:
    """A built image in a private state directory; host facts that need no probing."""
    monkeypatch.setattr(hostinfo, "collect", lambda: {
        "host": {"hostname": "test", "kernel": "6.1", "cpus": 2, "cgroup_mode": "hybrid"},
        "accel": {"accel": "tcg"}, "git_commit": "test"})


SUITE = """
[suite]
name = "fakes"
backends = ["fake", "fakevm"]

[[scenario]]
kind = "ping"
name = "pings"
pings = 3
tone = "high"

[scenario.overrides.vm]
pings = 1
timeout_s = 5

[[scenario]]
kind = "startup"
repetitions = 4
warmup = 1
"""


def test_a_suite_with_a_fake_backend_and_a_fake_kind(tmp_path, host, fake_kinds) -> None:
    suite = scenario.loads(SUITE, tmp_path / "fakes.toml")
    run_dir = runner.run_suite(suite, tmp_path / "results", quiet=True)
    frame = pd.read_csv(run_dir / "samples.csv")
    pings = frame[frame.kind == "ping"]
    assert (pings.scenario == "pings").all() and (pings.variant == "high").all()
    assert pings.groupby("backend").size().to_dict() == {"fake": 3, "fakevm": 1}
    assert pings[pings.backend == "fake"].value.tolist() == [0.001, 0.002, 0.003]
    assert pings[pings.backend == "fakevm"].guest_memory_mib.tolist() == [128]
    startup = frame[(frame.kind == "startup") & (frame.metric == "start_to_ready_s")]
    assert startup.groupby("backend").size().to_dict() == {"fake": 4, "fakevm": 4}
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "complete" and metadata["scenarios"] == ["pings", "startup"]
    assert metadata["pings"] == {"fake": 3, "fakevm": 1}
    assert set(metadata["backends"]) == {"fake", "fakevm"}
    assert metadata["scenario_text"] == SUITE
    assert "cleanup_failures" not in metadata and "failures" not in metadata
    assert (run_dir / "normalized.csv").is_file()

    output = report.write_report([run_dir])  # a kind without charts still reports
    summary = (output / "summary.md").read_text()
    assert "| pings | fake | ping_s | 3 |" in summary
    assert sorted(p.name for p in output.glob("*.png")) == [
        "startup-start_to_ready_s.png", "startup-stop_s.png"]


def test_report_of_a_kind_no_longer_registered(tmp_path, host, fake_kinds) -> None:
    suite = scenario.loads(SUITE, tmp_path / "fakes.toml")
    run_dir = runner.run_suite(suite, tmp_path / "results", quiet=True)
    kinds.unregister("ping")
    summary = (report.write_report([run_dir]) / "summary.md").read_text()
    assert "ping_s" in summary and "start_to_ready_s" in summary


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("kind = 'ping'\npings = 0\n", "key 'pings': expected a value >= 1, got 0"),
        ("kind = 'ping'\ntone = 'loud'\n", "key 'tone': expected one of low, high"),
        ("kind = 'ping'\nrepetitions = 3\n",
         "key 'repetitions' belongs to kind startup and workload, not ping: ping's own keys are "
         "pings, tone"),
        ("kind = 'startup'\npings = 3\n", "key 'pings' belongs to kind ping"),
        ("kind = 'pong'\n",
         "key 'kind': expected one of startup, density, memory, workload, ping"),
    ],
)
def test_the_loader_checks_a_fake_kinds_keys(fake_kinds, table, expected) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario.loads(f"[suite]\nbackends = ['fake']\n[[scenario]]\n{table}", "f.toml")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


@dataclass(frozen=True)
class Clashing:
    timeout_s: float = 1.0


CLASH = Kind("clash", "clashes", Clashing, run_pings)
WIDGET = Metric("start_to_ready_s", "widgets", HIGHER)
REDEFINES = Kind("clash", "means start_to_ready_s otherwise", PingParams, run_pings,
                 (WIDGET,))


@pytest.mark.parametrize(("name", "expected"), [
    ("CLASH", "timeout_s is a key of every scenario"),
    ("REDEFINES", "metric 'start_to_ready_s' means something else in kind 'startup'"),
    ("PingParams", "is not its Kind declaration"),
])
def test_a_kind_is_refused_when_loaded(fake_kinds, name, expected) -> None:
    kinds.loaded()  # the built-in kinds' metrics are known
    kinds.register(kinds.KindInfo("clash", f"{__name__}:{name}"))
    try:
        with pytest.raises(ValueError, match=expected):
            kinds.info("clash")
    finally:
        kinds.unregister("clash")
    with pytest.raises(ValueError, match="built-in"):
        kinds.unregister("startup")


INTERRUPTED = """
[suite]
backends = ["fake"]

[backend_options.fake]
fail_stop = true
fail_cleanup = true

[[scenario]]
kind = "interrupted"
"""


def test_clean_up_failures_are_recorded_and_logged(tmp_path, host, fake_kinds, caplog,
                                                   monkeypatch) -> None:
    def no_ratios(run_dir: Path) -> None:
        raise OSError(f"{run_dir}: disk full")

    monkeypatch.setattr(runner, "write_normalized", no_ratios)
    suite = scenario.loads(INTERRUPTED, tmp_path / "i.toml")
    with caplog.at_level(logging.WARNING, logger="harness.runner"):
        with pytest.raises(runner.RunInterrupted):
            runner.run_suite(suite, tmp_path / "results", quiet=True)
    (run_dir,) = (tmp_path / "results").iterdir()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["status"] == "incomplete"
    stop, cleanup, ratios = metadata["cleanup_failures"]
    assert stop.startswith("stop cvbench-") and stop.endswith(
        "on fake: BackendError: " + stop.split()[1] + " would not stop")
    assert cleanup == "clean-up of fake: BackendError: cleanup failed"
    assert ratios.startswith("normalized.csv: OSError: ") and "disk full" in ratios
    logged = [r.getMessage() for r in caplog.records if r.name == "harness.runner"]
    assert logged == [f"clean-up failed: {line}" for line in (stop, cleanup, ratios)]


RESTORE_SUITE = """
[suite]
name = "restores"
backends = ["fake", "fakevm"]

[[scenario]]
kind = "startup"
repetitions = 1
warmup = 0
variants = ["cold", "restore"]
{extra}
[backend_options.fakevm]
restore = true
"""


@pytest.mark.parametrize(("extra", "expected"), [
    ("", "scenario 'startup': backend 'fake' cannot restore: criu is not installed"),
    ('[scenario.overrides.container]\nvariants = ["cold"]\n[scenario.overrides.vm]\n'
     'network = "bridge"\n', "scenario 'startup': backend 'fakevm' cannot restore: restore "
     'takes network = "none" and disk = false here: restored guests would share the '
     "saved guest's tap and disk"),
])
def test_a_restore_a_backend_cannot_make_is_refused_before_any_prepare(
        tmp_path, host, fake_backends, monkeypatch, extra, expected) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no criu on it
    events: list[tuple[str, str, str]] = []
    monkeypatch.setattr(runner.backend_registry, "create",
                        _recording_create(runner.backend_registry.create, events))
    suite = scenario.loads(RESTORE_SUITE.format(extra=extra), tmp_path / "r.toml")
    with pytest.raises(runner.BackendError) as refused:
        runner.run_suite(suite, tmp_path / "results", quiet=True)
    assert str(refused.value) == expected
    assert not [event for event in events if event[1] == "prepare"]
    assert not (tmp_path / "results").exists()


def test_an_imported_image_is_not_restored_on_a_vm_that_runs_it(
        tmp_path, host, fake_backends, monkeypatch) -> None:
    from fakes import FakeBackend

    monkeypatch.setattr(FakeBackend, "launch_fields", ("workdir", "user"), raising=False)
    monkeypatch.setattr(runner.images, "load_verified", lambda name: _imported(tmp_path))
    text = RESTORE_SUITE.format(extra="").replace('"fake", "fakevm"', '"fakevm"')
    with pytest.raises(runner.BackendError) as refused:
        runner.run_suite(scenario.loads(text, tmp_path / "r.toml"), tmp_path / "results",
                         quiet=True)
    assert str(refused.value) == (
        "scenario 'startup': backend 'fakevm' cannot restore: an imported image (its guest "
        "execs the image's process, not cvbench's /init with the restore's console responder)")
    assert not (tmp_path / "results").exists()


def test_a_restore_the_backends_make_is_measured_apart(tmp_path, host, fake_backends) -> None:
    text = RESTORE_SUITE.format(extra="").replace('"fake", "fakevm"', '"fakevm"')
    run_dir = runner.run_suite(scenario.loads(text, tmp_path / "r.toml"), tmp_path / "results",
                               quiet=True)
    frame = pd.read_csv(run_dir / "samples.csv")
    starts = frame[frame.metric == "start_to_ready_s"]
    assert sorted(starts.variant) == ["cold", "restore"]


def _recording_create(create, events):
    def recording(name, **options):
        return create(name, events=events, **options)
    return recording


def test_microvm_differs_from_the_other_vm_backends_in_its_machine_only() -> None:
    from harness.backends.base import BackendError
    from harness.backends.qemu import MicrovmBackend, QemuBackend

    runner.check_same_guest({"qemu": QemuBackend(), "microvm": MicrovmBackend()})
    with pytest.raises(BackendError, match="same guest"):
        runner.check_same_guest({"qemu": QemuBackend(), "microvm": MicrovmBackend(
            tb_cache_mib=64)})
    with pytest.raises(BackendError, match="same guest"):  # the others still agree on it
        runner.check_same_guest({"qemu": QemuBackend(), "microvm": MicrovmBackend(),
                                 "libvirt": QemuBackend(machine="q35")})


def test_a_readiness_rule_a_backend_cannot_keep_is_refused_before_any_prepare(
        tmp_path, host, fake_backends, monkeypatch) -> None:
    events: list[tuple[str, str, str]] = []
    monkeypatch.setattr(runner.backend_registry, "create",
                        _recording_create(runner.backend_registry.create, events))
    text = ('[suite]\nbackends = ["fake"]\nready = "exit"\n'
            '[[scenario]]\nkind = "startup"\nrepetitions = 1\n')
    with pytest.raises(runner.BackendError) as refused:
        runner.run_suite(scenario.loads(text, tmp_path / "r.toml"), tmp_path / "results",
                         quiet=True)
    assert str(refused.value) == ("scenario 'startup': backend 'fake' cannot wait for ready "
                                  "= 'exit': it honours only the default, line:READY")
    assert not [event for event in events if event[1] == "prepare"]
    assert not (tmp_path / "results").exists()


def test_the_metadata_records_each_scenarios_readiness_rule(tmp_path, host,
                                                             fake_kinds) -> None:
    run_dir = runner.run_suite(scenario.loads(SUITE, tmp_path / "fakes.toml"),
                               tmp_path / "results", quiet=True)
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["ready"] == {name: {
        "rule": "line:READY", "kind": "line",
        "meaning": "the workload printed the line 'READY' on its stdout"}
        for name in ("pings", "startup")}


def _imported(tmp_path, user: str = "1000:1000") -> images.Image:
    """An image with an OCI config beside its rootfs, as ``cvbench image import`` keeps it."""
    rootfs = tmp_path / "imported" / "rootfs"
    (rootfs / "work").mkdir(parents=True, exist_ok=True)
    config = ImageConfig(entrypoint=("/bin/sh", "-c"), cmd=("echo READY",), env=("FOO=bar",),
                         workdir="/work", user=user)
    (rootfs.parent / images.CONFIG).write_text(config.to_json())
    return images.Image("imported", "ef" * 32, rootfs)


def test_an_imported_image_is_resolved_once_for_the_run(tmp_path, built_image) -> None:
    assert runner.image_launch(built_image) is None  # cvbench built it: /init
    assert runner.image_launch(_imported(tmp_path)) == Launch(
        entrypoint=("/bin/sh", "-c"), cmd=("echo READY",), env=("FOO=bar",), workdir="/work",
        uid=1000, gid=1000)
    with pytest.raises(runner.BackendError) as refused:
        runner.image_launch(_imported(tmp_path / "2", user="app"))
    assert str(refused.value) == ("image imported: image user 'app' is not in the image's "
                                  "/etc/passwd")


@pytest.mark.parametrize(("backends", "expected"), [
    ('"fakevm"', "backend 'fakevm' cannot run an imported image: it runs only /init"),
    ('"fake"', "backend 'fake' cannot run an imported image: it runs only /init"),
])
def test_an_imported_image_a_backend_cannot_run_is_refused_before_any_prepare(
        tmp_path, host, fake_backends, monkeypatch, backends, expected) -> None:
    events: list[tuple[str, str, str]] = []
    monkeypatch.setattr(runner.backend_registry, "create",
                        _recording_create(runner.backend_registry.create, events))
    monkeypatch.setattr(runner.images, "load_verified", lambda name: _imported(tmp_path))
    text = f'[suite]\nbackends = [{backends}]\n[[scenario]]\nkind = "startup"\nrepetitions = 1\n'
    with pytest.raises(runner.BackendError) as refused:
        runner.run_suite(scenario.loads(text, tmp_path / "i.toml"), tmp_path / "results",
                         quiet=True)
    assert str(refused.value) == expected
    assert not [event for event in events if event[1] == "prepare"]
    assert not (tmp_path / "results").exists()


def test_every_instance_of_an_imported_image_gets_its_launch(tmp_path, host, fake_backends,
                                                             fake_kinds, monkeypatch) -> None:
    from fakes import FakeBackend

    seen: list[Launch | None] = []
    start = FakeBackend.start
    monkeypatch.setattr(FakeBackend, "launch_fields", ("workdir", "user"), raising=False)
    monkeypatch.setattr(FakeBackend, "start",
                        lambda self, spec: seen.append(spec.launch) or start(self, spec))
    monkeypatch.setattr(runner.images, "load_verified", lambda name: _imported(tmp_path))
    text = '[suite]\nbackends = ["fake"]\n[[scenario]]\nkind = "ping"\npings = 2\n'
    run_dir = runner.run_suite(scenario.loads(text, tmp_path / "i.toml"), tmp_path / "results",
                               quiet=True)
    launch = runner.image_launch(_imported(tmp_path))
    assert seen == [launch, launch]
    metadata = json.loads((run_dir / "metadata.json").read_text())
    assert metadata["image"]["launch"] == {
        "entrypoint": ["/bin/sh", "-c"], "cmd": ["echo READY"], "env": ["FOO=bar"],
        "workdir": "/work", "uid": 1000, "gid": 1000}
