"""What the experiment subcommands share (harness.commands.experiment): backend options from
the command line, the registries for one call, the exit code of the run. No root needed."""

from __future__ import annotations

import json

import pytest
from synthetic_runs import make_run

from harness.backends import registry
from harness.commands import experiment
from harness.commands.base import EXIT_INCOMPLETE, EXIT_OK
from harness.kinds import registry as kinds
from harness.kinds.startup import StartupParams


@pytest.mark.parametrize(("item", "key", "value"), [
    ("acpi=true", "acpi", True),
    ("grace_s=2.5", "grace_s", 2.5),
    ("vcpus=2", "vcpus", 2),
    ('cmdline_extra="a b"', "cmdline_extra", "a b"),
    ("cmdline_extra=tsc=reliable", "cmdline_extra", "tsc=reliable"),  # not TOML: the text
    ("machine=", "machine", ""),
])
def test_a_backend_option_is_read_as_in_a_scenario_file(item, key, value) -> None:
    assert experiment.backend_options([item]) == {key: value}


def test_the_registries_hold_an_experiments_kind_and_variants_for_the_call_only() -> None:
    kind = kinds.KindInfo("exp-kind", StartupParams, lambda *_: None, "an experiment")
    variant = registry.BackendInfo("exp-variant", "fakes:FakeBackend", registry.CONTAINER, "x")
    with pytest.raises(RuntimeError), experiment.registered([kind], [variant]):
        assert "exp-kind" in kinds.names() and registry.family("exp-variant") == "container"
        raise RuntimeError  # an experiment that fails still leaves the tables as they were
    assert "exp-kind" not in kinds.names() and "exp-variant" not in registry.names()


def test_an_experiment_exits_3_when_a_backend_failed_in_a_complete_run(tmp_path,
                                                                        capsys) -> None:
    run = make_run(tmp_path, "items")
    assert experiment.exit_code(run) == EXIT_OK
    metadata = json.loads((run / "metadata.json").read_text())
    metadata["failures"] = [{"scenario": "memory-items", "backend": "ours-no-mounts",
                             "reason": "ksm=off: launch failed"}]
    (run / "metadata.json").write_text(json.dumps(metadata))
    assert experiment.exit_code(run) == EXIT_INCOMPLETE
    assert capsys.readouterr().err.splitlines() == [
        f"cvbench: run {run.name} is complete: 1 failure(s)",
        "cvbench: memory-items/ours-no-mounts: ksm=off: launch failed"]
