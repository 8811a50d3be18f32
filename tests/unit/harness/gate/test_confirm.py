"""The gate's confirmation: a regression against the committed baseline fails CI only if the
baseline's own code, measured again on the same machine, is faster than the candidate too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from synthetic_runs import make_run

from harness.cli import main
from harness.gate import confirm, reference
from harness.gate.compare import compare_runs
from harness.gate.thresholds import Thresholds

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SLOWER_OURS = {("ours", "start_to_ready_s"): 1.6}


def _made_from(run: Path, commit: str) -> None:
    """Record ``commit`` as the code ``run`` was made from."""
    metadata = json.loads((run / "metadata.json").read_text())
    metadata["git_commit"] = commit
    (run / "metadata.json").write_text(json.dumps(metadata))


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
def baseline(results_dir: Path) -> Path:
    """A committed baseline made on another machine, from a commit in git."""
    run = make_run(results_dir, "base", seed=1, cpu_model="Intel Xeon")
    _made_from(run, COMMIT)
    return run


def _reference_returning(monkeypatch: pytest.MonkeyPatch, run: Path | list[Path],
                         second: Path | list[Path] | None = None) -> list[str]:
    """Make the reference runs return ``run`` and the candidate's further runs ``second`` (one
    each, or one per pair in order); what was run (the commits, then "again")."""
    asked: list[str] = []

    def nth(runs: Path | list[Path], count: int) -> Path:
        return runs[count] if isinstance(runs, list) else runs

    def run_suite(commit: str, suite: str, results_dir: Path) -> Path:
        asked.append(commit)
        return nth(run, asked.count(commit) - 1)

    def run_again(suite: str, results_dir: Path) -> Path:
        asked.append("again")
        assert second is not None
        return nth(second, asked.count("again") - 1)

    monkeypatch.setattr(reference, "run_suite", run_suite)
    monkeypatch.setattr(reference, "run_again", run_again)
    return asked


def _confirm(baseline: Path, candidate: Path, normalized: bool = False,
             thresholds: Thresholds | None = None) -> confirm.Confirmation:
    thresholds = thresholds or Thresholds()
    screen = compare_runs(baseline, candidate, thresholds, normalized=normalized)
    return confirm.confirm(screen, candidate, "scenarios/quick.toml", thresholds, 0.05,
                           allow_image_change=False)


def _amd(results_dir: Path, name: str, seed: int, shifts: dict | None = None) -> Path:
    return make_run(results_dir, name, seed=seed, shifts=shifts or {}, cpu_model="AMD EPYC")


def test_every_gate_runs_the_baselines_code_here_once(
        results_dir: Path, baseline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    candidate = _amd(results_dir, "cand", 2)
    asked = _reference_returning(monkeypatch, _amd(results_dir, "ref", 3))

    outcome = _confirm(baseline, candidate)

    assert asked == [COMMIT] and len(outcome.pairs) == 1  # B (the candidate's run), then A
    pair = outcome.pairs[0]
    assert pair.order == "B A" and pair.candidate == "cand" and pair.baseline == "ref"
    assert pair.ratios.normalized and not pair.absolute.normalized
    assert outcome.exit_code == 0
    lines = outcome.verdict_lines()
    assert lines[0].startswith("pair 1 of at most 2 (every gate")
    assert lines[-1].startswith("gate: pass") and "the pairs took" in lines[-1]


def test_a_regression_the_baselines_code_shows_here_too_is_the_machine(
        results_dir: Path, baseline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine runs ours 60% slower, whatever the code: the baseline's code too.
    candidate = _amd(results_dir, "cand", 2, SLOWER_OURS)
    asked = _reference_returning(monkeypatch, _amd(results_dir, "ref", 3, SLOWER_OURS))

    outcome = _confirm(baseline, candidate)

    assert asked == [COMMIT]
    assert [row.metric for row in outcome.screen.regressions] == ["start_to_ready_s"]
    assert outcome.confirmed == [] and outcome.exit_code == 0
    assert [row.metric for row in outcome.cleared] == ["start_to_ready_s"]
    assert outcome.pairs[0].regressions == []
    lines = outcome.verdict_lines()
    assert any(line.startswith("cleared: startup/ours.start_to_ready_s") for line in lines)
    verdict = next(line for line in outcome.metric_verdicts()
                   if line.name == "startup/ours.start_to_ready_s")
    assert not verdict.failed and "committed baseline only" in verdict.why


def test_a_regression_of_the_code_fails_in_both_pairs(
        results_dir: Path, baseline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    candidate = _amd(results_dir, "cand", 2, SLOWER_OURS)
    asked = _reference_returning(
        monkeypatch, _amd(results_dir, "ref", 3), _amd(results_dir, "again", 4, SLOWER_OURS))

    outcome = _confirm(baseline, candidate)

    assert asked == [COMMIT, COMMIT, "again"] and len(outcome.pairs) == 2  # B A A B
    assert [pair.order for pair in outcome.pairs] == ["B A", "A B"]
    # in ratios to the floor and in absolute figures alike
    assert sorted(row.metric for row in outcome.confirmed) == [
        "start_to_ready_s", "start_to_ready_s_vs_process"]
    assert {row.backend for row in outcome.confirmed} == {"ours"} and outcome.exit_code == 1
    lines = outcome.verdict_lines()
    regression = next(line for line in lines if line.startswith("REGRESSION"))
    assert regression.startswith("REGRESSION: startup/ours.start_to_ready_s")
    assert regression.count("%") == 2  # its change in each pair
    assert "pair 1 found 2 regression(s)" in lines[1]
    assert lines[-1].startswith("gate: FAIL")
    verdict = next(line for line in outcome.metric_verdicts() if line.failed)
    assert verdict.rule == "rank" and len(verdict.changes) == 2
    assert verdict.why.startswith("worse beyond the threshold in every pair")


def test_one_disturbed_pair_does_not_fail_the_gate(
        results_dir: Path, baseline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first reference run came out fast (or the candidate's first run slow, after the
    # test suite): the second pair measures the baseline's code as slow as this code.
    candidate = _amd(results_dir, "cand", 2, SLOWER_OURS)
    asked = _reference_returning(
        monkeypatch, [_amd(results_dir, "ref1", 3), _amd(results_dir, "ref2", 5, SLOWER_OURS)],
        _amd(results_dir, "again", 6, SLOWER_OURS))

    outcome = _confirm(baseline, candidate)

    assert asked == [COMMIT, COMMIT, "again"]
    assert sorted(row.metric for row in outcome.pairs[0].regressions) == [
        "start_to_ready_s", "start_to_ready_s_vs_process"]
    assert outcome.confirmed == [] and outcome.exit_code == 0
    assert outcome.verdict_lines()[-1].startswith("gate: pass: 0 regression(s) confirmed, "
                                                  "2 cleared")


def test_a_slowdown_of_every_backend_is_red(
        results_dir: Path, baseline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness's own code slows every start, the floor's included: the ratios to the
    # floor do not move, the absolute figures of the same-machine pairs do.
    slower = {"start_to_ready_s": 1.6}
    candidate = _amd(results_dir, "cand", 2, slower)
    _reference_returning(monkeypatch, _amd(results_dir, "ref", 3),
                         _amd(results_dir, "again", 4, slower))

    outcome = _confirm(baseline, candidate, normalized=True)

    assert outcome.screen.regressions == []  # the ratios hide it
    failed = {(row.backend, row.metric) for row in outcome.confirmed}
    assert ("process", "start_to_ready_s") in failed  # the floor itself is gated
    assert ("ours", "start_to_ready_s") in failed and outcome.exit_code == 1


def test_a_floor_that_moved_by_itself_is_reported_not_judged(
        results_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The committed baseline's machine started processes 60% slower; here both codes do not.
    record = make_run(results_dir, "base", seed=1, shifts={("process", "start_to_ready_s"): 1.6})
    _made_from(record, COMMIT)
    candidate = make_run(results_dir, "cand", seed=2)
    _reference_returning(monkeypatch, make_run(results_dir, "ref", seed=3))

    outcome = _confirm(record, candidate, normalized=True)

    assert outcome.exit_code == 0
    notes = [line for line in outcome.verdict_lines() if line.startswith("floor ")]
    assert notes and notes[0].startswith("floor startup/process.start_to_ready_s")
    assert "not against the baseline's code here" in notes[0]


# startup/cleanup_s of libvirt and qemu, cold, as CI recorded them on 2026-12-07 (Intel Xeon,
# TCG; to the microsecond): the pair that failed a gate on code that touched neither backend.
# Pair 1 ran this code (B) then the baseline's (A); qemu's cleanup, ~0.5 ms, was 0.1 ms
# shorter in B, so libvirt's ratio to it rose ~20% while libvirt's own figure did not move.
RECORDED_CLEANUP = {
    "A": {"qemu": [0.000403, 0.000679, 0.000621, 0.000578, 0.000687],
          "libvirt": [0.207695, 0.206343, 0.206935, 0.209522, 0.20604]},
    "B": {"qemu": [0.000571, 0.000466, 0.000534, 0.000473, 0.000451],
          "libvirt": [0.209427, 0.204998, 0.203725, 0.203789, 0.199399]},
}


def _recorded_run(results_dir: Path, run_id: str, values: dict[str, list[float]]) -> Path:
    from harness.results import RunWriter, Sample

    writer = RunWriter.create(results_dir, run_id, {"suite": "quick", "accel": {"accel": "tcg"}})
    writer.add([Sample(run_id=run_id, scenario="startup", kind="startup", backend=backend,
                       metric="cleanup_s", value=value, unit="s", variant="cold",
                       repetition=index, accel="tcg", position=index % 2)
                for backend, recorded in values.items() for index, value in enumerate(recorded)])
    writer.finish("complete")
    return writer.directory


def _recorded_pair(results_dir: Path, libvirt_factor: float = 1.0) -> confirm.Pair:
    thresholds = Thresholds.load(Path(__file__).resolve().parents[4] / "results" / "baseline"
                                 / "thresholds.toml")
    base = _recorded_run(results_dir, "a", RECORDED_CLEANUP["A"])
    cand = _recorded_run(results_dir, "b", {**RECORDED_CLEANUP["B"], "libvirt": [
        value * libvirt_factor for value in RECORDED_CLEANUP["B"]["libvirt"]]})
    return confirm.Pair(
        ratios=compare_runs(base, cand, thresholds, 0.01, normalized=True),
        absolute=compare_runs(base, cand, thresholds, 0.01, normalized=False),
        order="B A", seconds=0.0, why="test")


def test_a_ratio_that_moved_with_its_floor_alone_is_the_floors_move(results_dir) -> None:
    pair = _recorded_pair(results_dir)
    ratio = [row for row in pair.ratios.regressions if row.backend == "libvirt"]
    assert [row.metric for row in ratio] == ["cleanup_s_vs_qemu"]  # what failed the gate
    assert ratio[0].ratio > 1.15
    libvirt = [row for row in pair.absolute.rows
               if (row.backend, row.metric) == ("libvirt", "cleanup_s")]
    assert not libvirt[0].regression  # libvirt's own figure did not move
    assert [(row.metric, floor.backend) for row, floor in pair.floor_moves] == \
        [("cleanup_s_vs_qemu", "qemu")]
    assert pair.regressions == []
    outcome = confirm.Confirmation(pair.ratios, commit=COMMIT, pairs=[pair])
    assert outcome.exit_code == 0
    said = [line for line in outcome.verdict_lines() if line.startswith("the floor's move")]
    assert said and "startup/libvirt.cleanup_s_vs_qemu [cold]" in said[0]
    why = {line.name: line.why for line in outcome.metric_verdicts()}
    assert why["startup/libvirt.cleanup_s_vs_qemu [cold]"].endswith("the floor's move")


def test_a_ratio_whose_backend_regressed_too_stays_a_regression(results_dir) -> None:
    pair = _recorded_pair(results_dir, libvirt_factor=1.5)  # libvirt's own cleanup +50%
    failed = {row.metric for row in pair.regressions if row.backend == "libvirt"}
    assert failed == {"cleanup_s", "cleanup_s_vs_qemu"}
    assert pair.floor_moves == []


def test_without_the_baselines_code_the_screen_stands(
        results_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dirty = make_run(results_dir, "base", seed=1)
    _made_from(dirty, f"{COMMIT}-dirty")
    candidate = make_run(results_dir, "cand", seed=2, shifts=SLOWER_OURS)
    asked = _reference_returning(monkeypatch, candidate)

    outcome = _confirm(dirty, candidate)

    assert asked == [] and outcome.exit_code == 1
    assert "uncommitted changes" in (outcome.unconfirmed_because or "")
    assert outcome.verdict_lines()[0].startswith("no pair on this machine")


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env,
                          capture_output=True, text=True).stdout.strip()


def _repo_of_two_commits(repo: Path) -> str:
    """A repository whose suite.toml says "old", then "new"; the first commit."""
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "suite.toml").write_text("old\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "old")
    old = _git(repo, "rev-parse", "HEAD")
    (repo / "suite.toml").write_text("new\n")
    _git(repo, "commit", "-q", "-am", "new")
    return old


def test_the_commit_is_exported_then_removed(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    repo = tmp_path / "repo"
    old = _repo_of_two_commits(repo)

    with reference.exported_tree(old, repo) as tree:
        assert (tree / "suite.toml").read_text() == "old\n"
        assert tree.parent == reference.reference_root()
        assert reference.sweep() == []  # this process still uses it
    assert not tree.exists()

    with pytest.raises(reference.ReferenceError, match="not in .* history"):
        with reference.exported_tree("f" * 40, repo):
            pass


FAKE_CLI = """
import json, os, pathlib, sys
args = sys.argv
run = pathlib.Path(args[args.index("--results-dir") + 1]) / "ref-run"
run.mkdir(parents=True)
meta = {"status": "complete", "cwd": os.getcwd(), "module": __file__, "suite": args[2]}
(run / "metadata.json").write_text(json.dumps(meta))
print(run)
"""


def test_the_suite_runs_with_the_commits_own_code(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    repo = tmp_path / "repo"
    (repo / "harness").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "harness" / "__init__.py").write_text("")
    (repo / "harness" / "cli.py").write_text(FAKE_CLI)
    (repo / "quick.toml").write_text("")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "fake")
    monkeypatch.chdir(tmp_path)

    run = reference.run_suite(_git(repo, "rev-parse", "HEAD"), "quick.toml", Path("results"),
                               repo)

    # the results land where this process means (not under the removed tree)
    assert run == tmp_path / "results" / "ref-run"
    metadata = json.loads((run / "metadata.json").read_text())
    assert metadata["module"].startswith(str(reference.reference_root()))
    assert metadata["suite"] == "quick.toml"
    assert list(reference.reference_root().iterdir()) == []
    again = reference.run_again("quick.toml", Path("again"), repo)  # this checkout's code
    assert json.loads((again / "metadata.json").read_text())["module"] == str(
        repo / "harness" / "cli.py")
    with pytest.raises(reference.ReferenceError, match="has no nope.toml"):
        reference.run_suite(_git(repo, "rev-parse", "HEAD"), "nope.toml", Path("results"), repo)


def test_a_shallow_clone_fetches_the_commit_from_a_local_origin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    origin = tmp_path / "origin"
    old = _repo_of_two_commits(origin)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(clone)],
                   check=True)
    assert subprocess.run(["git", "-C", str(clone), "cat-file", "-e", old]).returncode != 0

    with reference.exported_tree(old, clone) as tree:
        assert (tree / "suite.toml").read_text() == "old\n"


def test_clean_removes_the_tree_of_a_killed_gate(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    dead = reference.reference_root() / f"999999999-1-{COMMIT[:12]}"
    (dead / "harness").mkdir(parents=True)

    assert reference.sweep() == [f"reference tree {dead}"]
    assert not dead.exists()


def test_cli_refuses_an_unknown_suite_before_comparing(baseline: Path, results_dir: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    candidate = make_run(results_dir, "cand", seed=2)
    code = main(["compare", str(baseline), str(candidate), "--confirm", "scenarios/nope.toml"])
    assert code == 2
    assert "--confirm scenarios/nope.toml: no such suite" in capsys.readouterr().err


def test_a_screen_with_faults_fails_without_measuring_again(results_dir, baseline,
                                                            monkeypatch) -> None:
    """A backend absent from the candidate is no machine noise: the gate fails on it, says
    so in one line, and runs nothing (even when something else regressed too)."""
    candidate = make_run(results_dir, "cand", seed=2, shifts=SLOWER_OURS,
                         backends=("process", "ours", "crun", "qemu", "libvirt"))
    asked = _reference_returning(monkeypatch, baseline, candidate)
    screen = compare_runs(baseline, candidate, Thresholds())
    assert screen.regressions and screen.faults
    outcome = confirm.confirm(screen, candidate, "scenarios/quick.toml", Thresholds(), 0.05,
                              allow_image_change=False)
    assert asked == [] and outcome.pairs == []
    assert outcome.exit_code == 1
    lines = outcome.verdict_lines()
    assert "FAULT: backend startup/runc of the baseline is absent from the candidate" in lines
    assert lines[-1].startswith("gate: FAIL:") and "3 fault(s)" in lines[-1]
