"""The gate's power, measured: scratch commits with real regressions, judged by the real gate.

Four codes are made from HEAD, each a scratch commit in a detached worktree under the state
directory (removed afterwards, and by ``cvbench clean`` after a kill): ``unchanged``;
``slow20``, ours' start path slowed by 20% (a busy wait in the backend's start and resume, 20%
of ours' median cold and warm start in the committed baseline); ``mem10``, memory per container
raised by 10% (each container's init writes a file of 10% of ours' median host memory per
instance into its own /dev tmpfs, kept as long as it lives); ``broken``, ours' start fails.
Then, ``--rounds`` times, the quick suite is run with the baseline's code (the reference, as the
gate runs it) and with each scratch code, one after another on this machine.

Each scratch run is then judged as the gate judges a candidate (``harness.gate.confirm``, the
committed thresholds, alpha 0.01): the screen against the committed baseline, pair 1 against the
reference run of its round (B A), and, when pair 1 finds a regression, pair 2 from the next
round's reference and the same code's next run (the previous round's for the last). The gate's
decision logic is the real one; the runs are shared between the decisions instead of made afresh
for each (a gate in CI makes its own), which is what makes the measurement fit in an afternoon.
The page written (``--output``) gives, per code, how often the gate failed and on what, with the
run ids and this command: detection for the regressions (on the metric they touch), false alarms
for ``unchanged``.

    .venv/bin/python scripts/gate_power.py --rounds 3 --output docs/gate-power.md
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness import baseline, hostinfo, results
from harness.gate import reference
from harness.gate.compare import compare_runs
from harness.gate.confirm import Confirmation, confirm
from harness.gate.thresholds import Thresholds
from harness.log import configure_logging
from hostkit.procs import proc_start_time

log = logging.getLogger("gate_power")

SUITE = "scenarios/quick.toml"
ALPHA = 0.01  # scripts/quick-gate.sh
CODES = ("unchanged", "slow20", "mem10", "broken")
# what a detection must name: the backend and the metrics (a name prefix) each one touches
TOUCHES = {"slow20": ("ours", "start_to_ready_s"), "mem10": ("ours", "mem_")}


@dataclass
class Code:
    """A scratch commit and the runs made with it."""

    name: str
    tree: Path
    commit: str = ""
    runs: list[Path] = field(default_factory=list)
    refs: list[Path] = field(default_factory=list)  # the baseline's code's run of each round


def _median(frame: pd.DataFrame, scenario: str, metric: str, variant: str) -> float:
    rows = frame[(frame.scenario == scenario) & (frame.backend == "ours")
                 & (frame.metric == metric) & (frame.variant.fillna("") == variant)]
    if rows.empty:
        raise SystemExit(f"gate_power: the baseline has no ours {metric} [{variant}]")
    return float(rows.value.median())


def _patch(path: Path, anchor: str, addition: str) -> None:
    """Insert ``addition`` right after ``anchor`` (which must occur once) in ``path``."""
    text = path.read_text()
    if text.count(anchor) != 1:
        raise SystemExit(f"gate_power: {path} no longer has the anchor {anchor.strip()!r}")
    path.write_text(text.replace(anchor, anchor + addition))


def inject(name: str, tree: Path, committed: pd.DataFrame) -> None:
    """Put the regression ``name`` into the code in ``tree``."""
    ours = tree / "harness" / "backends" / "ours.py"
    if name == "slow20":
        cold = 0.2 * _median(committed, "startup", "start_to_ready_s", "cold")
        warm = 0.2 * _median(committed, "startup", "start_to_ready_s", "warm")
        spin = ("        _until = __import__('time').perf_counter() + {:.6f}\n"
                "        while __import__('time').perf_counter() < _until:  # gate power\n"
                "            pass\n")
        _patch(ours, '        """Cold: spec, directory, cgroups, fork, namespaces, ... exec, all '
               'inside the call."""\n', spin.format(cold))
        _patch(ours, '        """Warm, inside the clock: the plan to the spare, which does the '
               'rest and execs."""\n', spin.format(warm))
    elif name == "mem10":
        size = int(0.1 * _median(committed, "memory", "mem_host_delta_per_instance_bytes",
                                 "ksm=off"))
        _patch(tree / "runtime" / "child.py", "        rootfs.prepare(plan.rootfs, skeleton)\n",
               f"        with open('/dev/.cvbench-gate-power', 'wb') as _pad:  # gate power\n"
               f"            _pad.write(b'x' * {size})\n")
    elif name == "broken":
        _patch(ours, '        """Cold: spec, directory, cgroups, fork, namespaces, ... exec, all '
               'inside the call."""\n',
               '        raise BackendError(f"{spec.name}: failure put in by gate_power")\n')


def _git(*args: str, cwd: Path = hostinfo.REPO) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "gate power", "GIT_AUTHOR_EMAIL": "power@cvbench",
           "GIT_COMMITTER_NAME": "gate power", "GIT_COMMITTER_EMAIL": "power@cvbench"}
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def make_code(name: str, committed: pd.DataFrame) -> Code:
    """A detached worktree of HEAD with ``name``'s change, committed there. It is made where
    the gate's reference trees go and named as they are (``<pid>-<start>-<hex>``), so that
    ``cvbench clean`` removes it after this script was killed (reference.sweep)."""
    pid = os.getpid()
    tree = reference.reference_root() / (f"{pid}-{proc_start_time(pid)}-"
                                         f"{CODES.index(name):x}{_git('rev-parse', 'HEAD')[:11]}")
    tree.parent.mkdir(parents=True, exist_ok=True)
    _git("worktree", "add", "--detach", "--force", str(tree), "HEAD")
    inject(name, tree, committed)
    if name != "unchanged":
        _git("commit", "-q", "-am", f"gate power: {name} (scratch)", cwd=tree)
    return Code(name, tree, _git("rev-parse", "HEAD", cwd=tree))


def run_code(tree: Path, results_dir: Path) -> Path:
    """The quick suite with the code in ``tree``; its run directory (complete or not)."""
    command = [sys.executable, "-m", "harness.cli", "run", SUITE, "--quiet",
               "--results-dir", str(results_dir.resolve())]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode not in (0, 3) or not lines:
        raise SystemExit(f"gate_power: the run in {tree} failed (exit {done.returncode}): "
                         f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
    return Path(lines[-1])


def judge(committed_dir: Path, candidate: Path, pair1_ref: Path, pair2_ref: Path,
          pair2_cand: Path, thresholds: Thresholds) -> Confirmation:
    """The gate's decision on ``candidate`` with these runs standing for the ones it makes."""
    given = {"reference": [pair1_ref, pair2_ref], "again": [pair2_cand]}

    def runner(commit: str, suite: str, results_dir: Path) -> Path:
        return given["reference" if commit else "again"].pop(0)

    screen = compare_runs(committed_dir, candidate, thresholds, ALPHA, normalized=True,
                          allow_image_change=True)
    return confirm(screen, candidate, SUITE, thresholds, ALPHA, allow_image_change=True,
                   runner=runner)


def detected(code: str, outcome: Confirmation) -> bool:
    """The gate failed for the reason ``code`` put in."""
    if code == "broken":
        return bool(outcome.screen.faults)
    backend, metric = TOUCHES[code]
    return any(row.backend == backend and row.metric.startswith(metric)
               for row in outcome.confirmed)


def page(codes: dict[str, Code], verdicts: dict[str, list[Confirmation]],
         committed_dir: Path, command: str, minutes: float, judged_again: bool) -> str:
    made = ("the runs below (made by an earlier call, which saved them) judged again by the "
            f"gate as it is at {_git('rev-parse', '--short', 'HEAD')}: " if judged_again
            else f"{minutes:.0f} min: ")
    lines = ["# The gate's power, measured", "",
             f"Made by `{command}` on {hostinfo.cpu_model()} "
             f"({time.strftime('%Y-%m-%d')}), {made}scratch commits of "
             f"{codes['unchanged'].commit[:12] if 'unchanged' in codes else 'HEAD'} with "
             "regressions put into the code, the "
             "quick suite run with each and with the baseline's code in rounds, and each "
             "scratch run judged by the gate's own decision (`scripts/gate_power.py`: how). "
             f"Committed baseline: {committed_dir.name} (commit "
             f"{str(results.read_metadata(committed_dir).get('git_commit', ''))[:12]}); "
             f"thresholds: results/baseline/thresholds.toml; alpha {ALPHA}.", "",
             "| code | what was put in | gate decisions | failed | for the reason put in | "
             "rate | goal |", "|---|---|---:|---:|---:|---:|---|"]
    what = {"unchanged": "nothing", "slow20": "ours' start +20% (busy wait)",
            "mem10": "ours' memory per container +10% (a kept tmpfs file)",
            "broken": "ours' start fails"}
    goals = {"unchanged": "≤ 5% false alarms", "slow20": "≥ 90%", "mem10": "≥ 90%",
             "broken": "100%"}
    for name, outcomes in verdicts.items():
        failed = sum(outcome.failed for outcome in outcomes)
        right = failed if name == "unchanged" else sum(detected(name, o) for o in outcomes)
        rate = right / len(outcomes) if outcomes else float("nan")
        lines.append(f"| {name} | {what[name]} | {len(outcomes)} | {failed} | "
                     f"{right if name != 'unchanged' else '-'} | {rate:.0%} | {goals[name]} |")
    lines += ["", "Runs, each with the run of the baseline's code of its round:", ""]
    lines += [f"- {code.name} ({code.commit[:12]}): "
              + ", ".join(f"{run.name} (reference {ref.name})"
                          for run, ref in zip(code.runs, code.refs, strict=True))
              for code in codes.values()]
    lines += ["", "What failed the gate, per decision:", ""]
    for name, outcomes in verdicts.items():
        for number, outcome in enumerate(outcomes, 1):
            reasons = [line for line in outcome.verdict_lines()
                       if line.startswith(("REGRESSION", "FAULT"))]
            lines.append(f"- {name} #{number}: "
                         + ("; ".join(reasons[:4]) + (" …" if len(reasons) > 4 else "")
                            if reasons else "pass"))
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def holding(lock: Path | None) -> Iterator[None]:
    """``lock`` held (flock, exclusive) for the block, when one is given: other work on the
    host that takes the same lock (tests, other benchmarks) waits instead of running beside a
    measured run, and gets its turn between runs."""
    if lock is None:
        yield
        return
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def make_runs(names: list[str], rounds: int, results_dir: Path, committed_dir: Path,
              lock: Path | None = None) -> dict[str, Code]:
    """The scratch codes, then ``rounds`` rounds of the baseline's code and each of them, each
    run holding ``lock``."""
    committed = results.load_samples(committed_dir)
    commit = reference.commit_of(committed_dir)
    codes = {name: make_code(name, committed) for name in names}
    refs: list[Path] = []
    try:
        for number in range(rounds):
            log.warning("round %d of %d", number + 1, rounds)
            with holding(lock):
                refs.append(reference.run_suite(commit, SUITE, results_dir))
            for code in codes.values():
                with holding(lock):
                    code.runs.append(run_code(code.tree, results_dir))
                code.refs.append(refs[-1])
    finally:
        for code in codes.values():
            _git("worktree", "remove", "--force", str(code.tree))
    return codes


def save_runs(path: Path, codes: dict[str, Code]) -> None:
    """The runs made, so that ``--judge`` can judge them again (after a gate change). Each
    code keeps its own reference runs, so codes measured on different days can share a file."""
    path.write_text(json.dumps({
        "codes": {code.name: {"commit": code.commit, "runs": [str(run) for run in code.runs],
                              "reference": [str(run) for run in code.refs]}
                  for code in codes.values()}}, indent=1) + "\n")


def load_runs(path: Path) -> dict[str, Code]:
    data = json.loads(path.read_text())
    return {name: Code(name, Path(), entry["commit"], [Path(run) for run in entry["runs"]],
                       [Path(run) for run in entry["reference"]])
            for name, entry in data["codes"].items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gate_power.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--codes", default=",".join(CODES),
                        help=f"comma-separated, of {', '.join(CODES)}")
    parser.add_argument("--results-dir", default=str(hostinfo.REPO / "results"))
    parser.add_argument("--output", default=str(hostinfo.REPO / "docs" / "gate-power.md"),
                        help="the page; the runs made go beside it (.json)")
    parser.add_argument("--host-lock", metavar="FILE", type=Path,
                        help="hold flock(FILE) during each run (e.g. /tmp/cvbench-host.lock), "
                             "so that other work taking it waits for the run")
    parser.add_argument("--judge", metavar="RUNS.json",
                        help="judge the runs a previous call made (its .json) with the gate as "
                             "it is now, making none")
    args = parser.parse_args(argv)
    configure_logging(1)
    names = [name for name in args.codes.split(",") if name]
    unknown = sorted(set(names) - set(CODES))
    if unknown or args.rounds < 2:
        parser.error(f"unknown code(s) {', '.join(unknown)}" if unknown
                     else "--rounds: at least 2 (pair 2 takes the next round's runs)")
    started = time.monotonic()
    committed_dir = baseline.choose(hostinfo.REPO / "results" / "baseline",
                                    hostinfo.machine_kind(hostinfo.cpu_model())).directory
    thresholds = Thresholds.load(hostinfo.REPO / "results" / "baseline" / "thresholds.toml")
    if args.judge:
        codes = load_runs(Path(args.judge))
    else:
        codes = make_runs(names, args.rounds, Path(args.results_dir), committed_dir,
                          args.host_lock)
        save_runs(Path(args.output).with_suffix(".json"), codes)
    verdicts: dict[str, list[Confirmation]] = {}
    for code in codes.values():
        if len(code.refs) != len(code.runs):
            raise SystemExit(f"gate_power: {code.name} has {len(code.runs)} runs but "
                             f"{len(code.refs)} reference runs")
        outcomes = []
        for index, run in enumerate(code.runs):
            other = index + 1 if index + 1 < len(code.runs) else index - 1
            outcomes.append(judge(committed_dir, run, code.refs[index], code.refs[other],
                                  code.runs[other], thresholds))
        verdicts[code.name] = outcomes
    command = "scripts/gate_power.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = page(codes, verdicts, committed_dir, command.strip(),
                (time.monotonic() - started) / 60, judged_again=bool(args.judge))
    Path(args.output).write_text(text)
    print(json.dumps({name: [o.failed for o in outcomes] for name, outcomes in verdicts.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
