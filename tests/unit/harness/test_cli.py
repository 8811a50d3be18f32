"""The ``cvbench`` command line: one module per subcommand, -v logging, bad input as one line.

Nothing here starts an instance or touches the host's state: every bad input is refused
before a command does any work, and the state directory is a private temporary one.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from synthetic_runs import make_run

from harness import cli
from harness.gate.stats import DEFAULT_ALPHA
from harness.log import configure_logging, level_for
from hostkit import validate

REPOSITORY = Path(__file__).resolve().parents[3]
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
                                        "clean", "ctr", "compare", "thresholds", "fleet",
                                        "items", "profile", "idle"]
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
        (["image", "verify", "no-such-image"], "no-such-image"),
        (["run", "/nonexistent.toml"], "/nonexistent.toml"),
        (["report", "/nonexistent-run", "--results-dir", "RUNS"], "/nonexistent-run"),
        (["baseline", "nope", "--results-dir", "RUNS"], "nope"),
        (["compare", "base", "nope", "--results-dir", "RUNS"], "nope"),
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
        ["compare", "a", "b", "--alpha", "1.5"],
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


@pytest.mark.parametrize(
    "args",
    [
        ["doctor", "--backend", "nosuchengine"],
        ["run", "scenarios/quick.toml", "--backend", "nosuchengine"],
        ["run", "scenarios/quick.toml", "--runtime", "mycrun=/bin/true", "--backend", "mycrun"],
    ],
)
def test_an_unknown_backend_is_one_line_and_exit_2(capsys, args) -> None:
    """``--backend`` of run and doctor is checked once ``--runtime`` declared its runtimes
    (they are backends too), so after argparse; still one line, exit 2, nothing started."""
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    (line,) = _lines(captured.err)
    if "--runtime" in args:  # the runtime is refused first: /bin/true is no OCI runtime
        assert re.fullmatch(r"cvbench: error: --runtime: runtime mycrun: /bin/true: not an "
                            r"OCI runtime: `--version` printed 'true \(GNU coreutils\) \S+' "
                            r"\(exit 0\), expected '<name> version <x>'", line), line
    else:
        assert line.startswith("cvbench: error: --backend: unknown backend 'nosuchengine', "
                               "expected one of process, ours, crun, runc,"), line
    assert captured.out == ""


# ---------------------------------------------------------------- every option, one validator
#
# The parser is walked, so an option added later is held to the same rule: its type is one of
# hostkit.validate's, and every bad value is one line, exit 2, with nothing made on the host.

VALIDATORS = (validate.Bounds, validate.Names, validate.Text)


def _commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
              ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command's words and parser: (), ("doctor",), ..., ("ctr", "run"), ..."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*words, name))


def _takes_a_value(action: argparse.Action) -> bool:
    """An option or positional given a value (not a flag, -v, --help or a subcommand); the
    command ``ctr run`` runs (everything after ``--``) is the container's, not ours."""
    return action.nargs not in (0, argparse.PARSER, argparse.REMAINDER)


PARSERS = dict(_commands(cli.build_parser()))
OPTIONS = [(words, action) for words, parser in PARSERS.items() for action in parser._actions
           if _takes_a_value(action)]


def _label(words: tuple[str, ...], action: argparse.Action) -> str:
    return " ".join((*words, argparse._get_action_name(action) or ""))


def _valid(action: argparse.Action) -> str:
    """A value the action's validator takes (a placeholder for a required positional)."""
    check = action.type
    if isinstance(check, validate.Names) and (callable(check.known) or check.known):
        return next(iter(check.choices()), "cvbench-x")
    return "cvbench-x"  # a path, a run id, a container or image name


def _command_line(words: tuple[str, ...], action: argparse.Action, value: str) -> list[str]:
    """``cvbench WORDS`` with ``value`` given to ``action``, placed first so that it is
    parsed first, and valid values for the required positionals around it."""
    positionals = [a for a in PARSERS[words]._actions if not a.option_strings
                   and _takes_a_value(a)]
    if action.option_strings:
        required = [a for a in positionals if a.nargs not in ("?", "*")]
        return [*words, action.option_strings[-1], value, *map(_valid, required)]
    return [*words, *map(_valid, positionals[:positionals.index(action)]), value]


def _bad_values(check: object) -> list[tuple[str, str]]:
    """(what, value) pairs the validator must refuse."""
    if isinstance(check, validate.Bounds):
        oversized = (str(int(check.maximum) + 1) if check.integer
                     else repr(check.maximum + 1))
        values = [("negative", "-1"), ("non-numeric", "ten"), ("empty", ""),
                  ("oversized", oversized), ("huge", "1" + "0" * 400)]
        if check.problem(0) is not None:
            values.append(("zero", "0"))
        if check.integer:
            values.append(("fraction", "1.5"))
        else:
            values.append(("not-a-number", "nan"))
        return values
    if isinstance(check, validate.Names):
        values = [("unknown", "no-such-name" if check.known else "../no such/name")]
        if check.separator:
            values.append(("empty-list", check.separator))
        return values
    return [("empty", "")]


ISSUE_VALUES = ("negative", "zero", "non-numeric", "oversized")  # each in a process of its own
CASES = [pytest.param(words, action, value, id=f"{_label(words, action)}={what}")
         for words, action in OPTIONS for what, value in _bad_values(action.type)]
NUMERIC = [case for case in CASES if isinstance(case.values[1].type, validate.Bounds)
           and str(case.id).rpartition("=")[2] in ISSUE_VALUES]


def test_every_option_that_takes_a_value_goes_through_the_one_validator() -> None:
    assert len(OPTIONS) > 30  # the walk found every command's options
    unchecked = [_label(words, action) for words, action in OPTIONS
                 if not isinstance(action.type, VALIDATORS)]
    assert not unchecked, f"options without a hostkit.validate type: {unchecked}"
    numeric = [action.type for _, action in OPTIONS if isinstance(action.type, validate.Bounds)]
    assert len(numeric) >= 10
    for bounds in numeric:  # so a negative or oversized value is bad input everywhere
        assert bounds.minimum >= 0 and math.isfinite(bounds.maximum)


@pytest.fixture
def bare_host(tmp_path: Path) -> dict[str, Path]:
    """A working directory, state and cache directories that do not exist yet: whatever a
    command makes (a run directory, a container, the run lock) shows up in one of them."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return {"cwd": cwd, "state": tmp_path / "state", "cache": tmp_path / "cache"}


def _nothing_made(host: dict[str, Path]) -> None:
    assert list(host["cwd"].iterdir()) == []  # no results/ (the default --results-dir)
    assert not host["state"].exists() and not host["cache"].exists()


def _refused_in_one_line(err: str, out: str, action: argparse.Action) -> None:
    (line,) = err.splitlines()
    name = argparse._get_action_name(action)
    assert line.startswith(f"cvbench: error: argument {name}: "), line
    # the validator's words (argparse's own say "invalid ..." or "expected one argument")
    assert re.match(r"cvbench: error: argument \S+: (expected .*, got |unknown \w+ ')", line)
    assert "--help" in line and out == ""


@pytest.mark.parametrize(("words", "action", "value"), NUMERIC)
def test_a_bad_number_is_one_line_exit_2_and_starts_nothing(bare_host, words, action,
                                                            value) -> None:
    """The issue's check, in a process of its own: ``cvbench ctr run --timeout -1`` and the
    like for every numeric option of every subcommand."""
    env = {**os.environ, "CVBENCH_STATE_DIR": str(bare_host["state"]),
           "CVBENCH_CACHE_DIR": str(bare_host["cache"]), "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run([sys.executable, "-m", "harness.cli",
                           *_command_line(words, action, value)],
                          cwd=bare_host["cwd"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    _refused_in_one_line(done.stderr, done.stdout, action)
    _nothing_made(bare_host)


@pytest.mark.parametrize(("words", "action", "value"),
                         [case for case in CASES if case not in NUMERIC])
def test_any_other_bad_value_is_one_line_exit_2_and_starts_nothing(
        bare_host, monkeypatch, capsys, words, action, value) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(bare_host["state"]))
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(bare_host["cache"]))
    monkeypatch.chdir(bare_host["cwd"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(_command_line(words, action, value))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    _refused_in_one_line(captured.err, captured.out, action)
    _nothing_made(bare_host)


@pytest.mark.parametrize(("words", "action"),
                         [pytest.param(words, action, id=_label(words, action))
                          for words, action in OPTIONS
                          if isinstance(action.type, validate.Bounds)])
def test_a_number_at_either_bound_is_taken(private_state, words, action) -> None:
    """The bounds refuse only what is outside them: both ends parse to the same value."""
    (private_state / "containers" / "cvbench-x").mkdir(parents=True)  # for ctr stop
    bounds = action.type
    for end, is_open in ((bounds.minimum, bounds.open_minimum),
                         (bounds.maximum, bounds.open_maximum)):
        value = (end + 0.001 if end == bounds.minimum else end - 0.001) if is_open else end
        text = str(int(value)) if bounds.integer else repr(float(value))
        args = cli.build_parser().parse_args(_command_line(words, action, text))
        assert getattr(args, action.dest) == (int(value) if bounds.integer else float(value))


def test_the_defaults_are_unchanged(private_state) -> None:
    parser = cli.build_parser()
    ctr_run = parser.parse_args(["ctr", "run"])
    assert (ctr_run.timeout, ctr_run.network, ctr_run.image, ctr_run.memory) == (
        10.0, "none", "default", None)
    (private_state / "containers" / "cvbench-a").mkdir(parents=True)
    assert parser.parse_args(["ctr", "stop", "cvbench-a"]).grace == 2.0
    compare = parser.parse_args(["compare", "a", "b"])
    assert (compare.alpha, compare.results_dir) == (DEFAULT_ALPHA, "results")
    run = parser.parse_args(["run", "scenarios/quick.toml", "--backend", "ours,crun"])
    assert (run.backend, run.seed) == ("ours,crun", None)


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


def test_run_refuses_microvm_on_a_qemu_without_it_before_anything_starts(
        state_dir, tmp_path, capsys) -> None:
    """Issue 24 point 6: a machine type the host's QEMU lacks is one line naming it, exit 2,
    with no run directory and no VM made."""
    from fake_qemu import fake_qemu

    from hostkit.paths import state_dir as current_state_dir

    qemu = fake_qemu(tmp_path)
    suite = tmp_path / "microvm.toml"
    suite.write_text(f"""
[suite]
name = "microvm"
backends = ["microvm"]

[backend_options.microvm]
binary = "{qemu}"

[[scenario]]
kind = "startup"
name = "startup"
repetitions = 1
""")
    vms = current_state_dir() / "vms"
    before = sorted(vms.iterdir()) if vms.is_dir() else []
    results = tmp_path / "results"
    assert cli.main(["run", str(suite), "--results-dir", str(results)]) == 2
    captured = capsys.readouterr()
    (line,) = _lines(captured.err)
    assert line.startswith("cvbench: error: ") and "no 'microvm' machine" in line
    assert str(qemu) in line and captured.out == ""
    assert not results.exists() or not any(results.iterdir())
    assert (sorted(vms.iterdir()) if vms.is_dir() else []) == before


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
