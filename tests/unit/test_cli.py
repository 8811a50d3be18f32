"""The ``cvbench`` command line: one module per subcommand, -v logging, bad input as one line.

Nothing here starts an instance or touches the host's state: every bad input is refused
before a command does any work, and the state directory is a private temporary one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from synthetic_runs import make_run

from harness import cli
from harness.log import configure_logging, level_for

REPOSITORY = Path(__file__).resolve().parents[2]
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} [DIWEC] [\w.]+: ")


@pytest.fixture(autouse=True)
def quiet_logging_afterwards():
    """A test's -v must not make later tests' library calls log to stderr."""
    yield
    configure_logging(0)


@pytest.fixture
def private_state(tmp_path, monkeypatch):
    """An empty private state directory: no image, no containers, no lock held."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(state))
    return state


@pytest.fixture
def runs(tmp_path):
    results_dir = tmp_path / "results"
    make_run(results_dir, "base", seed=1)
    make_run(results_dir, "same", seed=2)
    return results_dir


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()


# ---------------------------------------------------------------- the subcommands


def test_every_subcommand_is_registered_in_order() -> None:
    parser = cli.build_parser()
    (subparsers,) = [action for action in parser._actions
                     if action.dest == "command"]
    assert list(subparsers.choices) == ["doctor", "image", "run", "report", "ls", "baseline",
                                        "clean", "ctr", "compare", "thresholds", "fleet"]
    for module in cli.COMMANDS:  # each module registers one parser whose handler it owns
        name = module.__name__.rpartition(".")[2]
        handler = subparsers.choices[name].get_default("func")
        if name == "ctr":  # the runtime's own command line, with its own subcommands
            assert handler is None
        else:
            assert handler is module.handle


# ---------------------------------------------------------------- bad input: one line, exit 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["doctor", "--backend", "nosuchengine"], "nosuchengine"),
        (["image", "verify", "no-such-image"], "no-such-image"),
        (["run", "/nonexistent.toml"], "/nonexistent.toml"),
        (["run", "scenarios/quick.toml", "--backend", "nosuchengine"], "nosuchengine"),
        (["report", "/nonexistent-run", "--results-dir", "RUNS"], "/nonexistent-run"),
        (["baseline", "nope", "--results-dir", "RUNS"], "nope"),
        (["compare", "base", "nope", "--results-dir", "RUNS"], "nope"),
        (["compare", "base", "same", "--alpha", "1.5", "--results-dir", "RUNS"], "alpha"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(private_state, runs, monkeypatch, capsys, args,
                                          message) -> None:
    monkeypatch.chdir(REPOSITORY)  # scenarios/ is relative
    assert cli.main([str(runs) if arg == "RUNS" else arg for arg in args]) == 2
    captured = capsys.readouterr()
    (line,) = _lines(captured.err)
    assert line.startswith("cvbench: error:") and message in line
    assert captured.out == ""


def test_ls_refuses_a_results_dir_that_is_a_file(tmp_path, capsys) -> None:
    path = tmp_path / "results"
    path.write_text("")
    assert cli.main(["ls", "--results-dir", str(path)]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line == f"cvbench: error: --results-dir {path}: not a directory"


def test_ls_lists_runs(runs, capsys) -> None:
    assert cli.main(["ls", "--results-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "base" in out and "same" in out and "complete" in out


def test_baseline_refuses_an_incomplete_run(tmp_path, capsys) -> None:
    import json

    run = make_run(tmp_path / "results", "broken")
    metadata = json.loads((run / "metadata.json").read_text())
    (run / "metadata.json").write_text(json.dumps({**metadata, "status": "incomplete"}))
    assert cli.main(["baseline", "broken", "--results-dir", str(tmp_path / "results")]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert "only a complete run can be a baseline" in line
    assert not (tmp_path / "results" / "baseline").exists()


def test_ctr_bad_image_is_one_line_and_exit_2(private_state, capsys) -> None:
    assert cli.main(["ctr", "run", "--image", "no-such-image"]) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("cvbench ctr:") and "no-such-image" in line


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["bogus"],
        ["doctor", "--bogus"],
        ["image", "destroy"],
        ["run"],
        ["report"],
        ["ls", "extra"],
        ["baseline"],
        ["clean", "--bogus"],  # never reaches the sweep
        ["ctr", "stop"],
        ["compare", "only-one"],
        ["compare", "a", "b", "--alpha", "x"],
    ],
)
def test_argument_errors_are_one_line_and_exit_2(capsys, args) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    (line,) = _lines(captured.err)
    assert line.startswith("cvbench: error:") and "--help" in line
    assert captured.out == ""


# ---------------------------------------------------------------- -v / --verbose


def test_without_v_nothing_is_logged(runs, capsys) -> None:
    assert cli.main(["compare", "base", "same", "--results-dir", str(runs)]) == 0
    assert capsys.readouterr().err == ""


def test_v_logs_info_lines_to_stderr(runs, capsys) -> None:
    assert cli.main(["-v", "compare", "base", "same", "--results-dir", str(runs)]) == 0
    captured = capsys.readouterr()
    lines = _lines(captured.err)
    assert lines and all(LOG_LINE.match(line) for line in lines), lines
    assert any(" I harness.gate.compare: comparing " in line for line in lines)
    assert not any(" D " in line for line in lines)
    assert "0 regression(s)" in captured.out and "comparing" not in captured.out


def test_vv_logs_debug_lines(runs, capsys) -> None:
    assert cli.main(["-vv", "compare", "base", "same", "--results-dir", str(runs)]) == 0
    lines = _lines(capsys.readouterr().err)
    assert any(re.search(r" D harness\.gate\.stats: startup/ours/start_to_ready_s: n 20/20", line)
               for line in lines)


def test_v_after_the_subcommand_counts_too(runs, capsys) -> None:
    assert cli.main(["compare", "base", "same", "--results-dir", str(runs), "-v"]) == 0
    err = capsys.readouterr().err
    assert " I harness.gate.compare: " in err and " D " not in err
    assert cli.main(["-v", "compare", "base", "same", "--results-dir", str(runs), "-v"]) == 0
    assert " D harness.gate.stats: " in capsys.readouterr().err


def test_v_says_which_baseline_was_chosen_and_why(tmp_path, capsys) -> None:
    from harness import baseline

    root = tmp_path / "baseline"
    baseline.set_baseline(make_run(tmp_path / "runs", "amd", cpu_model="AMD EPYC"), root)
    thresholds = tmp_path / "t.toml"
    thresholds.write_text("default = 0.3\n[across_kinds]\ndefault = 0.6\n")
    candidate = make_run(tmp_path / "runs", "intel", seed=2, cpu_model="Intel Xeon")
    assert cli.main(["-v", "compare", str(root), str(candidate), "--normalized",
                     "--thresholds", str(thresholds)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"I harness\.baseline: baseline \S+/amd-epyc: no baseline of the "
                     r"candidate's machine kind 'intel-xeon' among amd-epyc, so the newest", err)
    assert re.search(r"I harness\.gate\.thresholds: thresholds from \S+t\.toml: default 0\.3, "
                     r"0 per metric, across kinds default 0\.6", err)
    assert "thresholds across kinds" in err


def test_bad_input_stays_one_line_at_default_verbosity_and_says_more_with_vv(runs,
                                                                             capsys) -> None:
    assert cli.main(["compare", "base", "nope", "--results-dir", str(runs)]) == 2
    assert len(_lines(capsys.readouterr().err)) == 1
    assert cli.main(["-vv", "compare", "base", "nope", "--results-dir", str(runs)]) == 2
    lines = _lines(capsys.readouterr().err)
    assert lines[-1].startswith("cvbench: error: nope")
    assert any(line.startswith("Traceback") for line in lines)  # the debug log's traceback


def test_level_for_verbosity() -> None:
    assert [level_for(n) for n in (0, 1, 2, 5)] == [logging.WARNING, logging.INFO,
                                                    logging.DEBUG, logging.DEBUG]


def test_third_party_loggers_stay_at_warning() -> None:
    configure_logging(2)
    assert logging.getLogger("harness.anything").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("runtime.container").getEffectiveLevel() == logging.DEBUG
    assert logging.getLogger("matplotlib.font_manager").getEffectiveLevel() == logging.WARNING


def test_configure_logging_twice_keeps_one_handler(capsys) -> None:
    configure_logging(1)
    configure_logging(1)
    logging.getLogger("harness.test").info("once")
    err = capsys.readouterr().err
    assert err.count("once") == 1 and LOG_LINE.match(err)


# ---------------------------------------------------------------- run: bad input vs bugs


class _Broken:
    """A backend whose constructor has a bug (a TypeError of its own)."""

    def __init__(self, *, size: int = 1) -> None:
        len(size)  # type: ignore[arg-type]


@pytest.fixture
def broken_backend():
    from harness.backends import registry

    registry.register(registry.BackendInfo("broken", f"{__name__}:_Broken", registry.CONTAINER,
                                           "a backend with a bug"))
    yield "broken"
    registry.unregister("broken")


def test_unknown_backend_option_names_the_key(broken_backend) -> None:
    from harness import backends
    from harness.backends.base import BackendError

    with pytest.raises(BackendError, match="unknown option 'colour' for backend 'broken', "
                                           "expected one of size"):
        backends.create(broken_backend, colour=1)


def test_a_typeerror_inside_a_backend_constructor_is_a_bug_not_bad_input(broken_backend):
    from harness import backends

    with pytest.raises(TypeError, match="has no len"):
        backends.create(broken_backend, size=2)


@pytest.mark.parametrize("error", ["backend", "bug"])
def test_run_reports_backend_errors_as_bad_input_and_lets_bugs_through(
        monkeypatch, tmp_path, capsys, error) -> None:
    """`cvbench run` turns BackendError into one line, exit 2; any other error propagates."""
    from harness import runner
    from harness.backends.base import BackendError

    def run_suite(suite, results_dir, quiet):
        if error == "backend":
            raise BackendError(f"{suite.path}: [backend_options.process]: unknown option 'x'")
        raise TypeError("a bug")

    monkeypatch.setattr(runner, "run_suite", run_suite)
    args = ["run", str(REPOSITORY / "scenarios" / "quick.toml"), "--results-dir",
            str(tmp_path)]
    if error == "bug":
        with pytest.raises(TypeError, match="a bug"):
            cli.main(args)
        return
    assert cli.main(args) == 2
    (line,) = _lines(capsys.readouterr().err)
    assert line.startswith("cvbench: error: ") and "[backend_options.process]" in line


@pytest.mark.parametrize("status", ["complete", "incomplete"])
def test_run_exits_3_when_its_run_is_incomplete(monkeypatch, tmp_path, capsys, status) -> None:
    """An incomplete run prints its directory, one line per failure, and exits 3 (in --help)."""
    from harness import runner
    from harness.results import RunWriter

    def run_suite(suite, results_dir, quiet):
        writer = RunWriter.create(results_dir, "r1", {"suite": suite.name})
        if status == "incomplete":
            writer.metadata["failures"] = [
                {"scenario": "startup", "backend": "crun", "reason": "cold repetition 3: boom"}]
        writer.finish(status)
        return writer.directory

    monkeypatch.setattr(runner, "run_suite", run_suite)
    code = cli.main(["run", str(REPOSITORY / "scenarios" / "quick.toml"), "--results-dir",
                     str(tmp_path)])
    captured = capsys.readouterr()
    assert captured.out.strip() == str(tmp_path / "r1")
    if status == "complete":
        assert code == 0 and captured.err == ""
        return
    assert code == 3
    assert _lines(captured.err) == ["cvbench: run r1 is incomplete: 1 failure(s)",
                                    "cvbench: startup/crun: cold repetition 3: boom"]


def test_run_help_names_every_exit_code(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for said in ("0 the run is complete", "3 it finished incomplete", "2 bad input",
                 "1 an error stopped it", "130 interrupted"):
        assert said in text
