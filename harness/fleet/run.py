"""``cvbench fleet run``: one scenario on every host of an Ansible inventory.

1. The scenario file and the inventory are read here (Ansible parses the inventory); a
   mistake in either is one line and exit 2, and nothing starts.
2. Ansible gathers each host's facts; a host that is unreachable, not Debian 12 or not root
   is failed with one line naming it. When no host is left: exit 2, nothing written.
3. ``playbooks/run.yml`` runs on the other hosts, all at once (``--serial``: one after
   another): it copies ``git archive`` of this repository's commit to the host's cache
   directory, runs the README's set-up there, ``cvbench run SCENARIO --quiet --seed S`` (the
   same seed on every host, so every host takes the same turn order), and fetches the run
   directory. A host-side lock keeps two cvbench runs off one host. A host whose step fails
   is cleaned (``cvbench clean``) and marked failed with the step's error in one line; the
   others go on.
4. The fleet directory (:mod:`harness.fleet.fleetdir`) gets every fetched run, the merged
   samples with a ``host`` column, and the hosts' facts.

Ctrl-C (or SIGTERM) stops Ansible, then runs ``playbooks/stop.yml`` on the hosts that had
started: it ends their cvbench run (SIGTERM, so the run stops its instances and marks itself
incomplete), runs ``cvbench clean`` and removes the run's work directory; the fleet directory
is marked ``incomplete`` and the exit code is 130.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from harness import hostinfo, results
from harness.fleet import engine, fleetdir, preflight

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 3 * 3600
DEFAULT_LOCK_WAIT_S = 600
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# The playbook's task names, up to " (", are the steps progress reports.
STEPS = ("copy cvbench", "set up", "run", "fetch")


class FleetUsageError(Exception):
    """Bad input (scenario, inventory, repository, or no host could start): exit 2."""


@dataclass(frozen=True)
class Options:
    inventory: Path
    scenario: Path
    results_dir: Path = Path("results")
    backends: str | None = None
    seed: int | None = None
    serial: bool = False
    timeout_s: int = DEFAULT_TIMEOUT_S
    lock_wait_s: int = DEFAULT_LOCK_WAIT_S
    remote_dir: str | None = None  # the hosts' cache directory (else inventory's, else default)


@dataclass
class HostState:
    """What one host did, as the playbook's events tell it."""

    name: str
    step: str = ""
    error: str | None = None
    started: float | None = None
    run_seconds: float | None = None


@dataclass
class Outcome:
    """The end of a fleet run: the directory written (if any) and the exit code."""

    exit_code: int
    fleet_dir: Path | None = None
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)


class Progress:
    """Turns the playbook's events into one line per host and step (on ``out``), and keeps
    each host's first error."""

    def __init__(self, hosts: list[str], out: TextIO) -> None:
        self.hosts = {name: HostState(name) for name in hosts}
        self.out = out
        self.width = max((len(name) for name in hosts), default=0)

    def say(self, host: str, text: str) -> None:
        print(f"fleet: {host:<{self.width}}  {text}", file=self.out, flush=True)

    def __call__(self, event: engine.Event) -> None:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host = data.get("host")
        if host not in self.hosts:
            return
        state = self.hosts[host]
        step = str(data.get("task", "")).split(" (")[0]
        if kind == "runner_on_start" and step in STEPS and step != state.step \
                and state.error is None:
            state.step = step
            state.started = time.monotonic()
            self.say(host, f"{step} …")
        elif kind == "runner_on_ok" and data.get("task") == "run" and state.started:
            state.run_seconds = time.monotonic() - state.started
            self.say(host, f"ran in {state.run_seconds:.0f} s")
        elif kind in ("runner_on_failed", "runner_on_unreachable") \
                and not data.get("ignore_errors") and state.error is None:
            why = engine.one_line(data.get("res", {}))
            where = "unreachable" if kind == "runner_on_unreachable" else (state.step or step)
            state.error = f"{where}: {why}"
            self.say(host, f"failed: {state.error}")


class Interrupts:
    """SIGINT/SIGTERM set :attr:`event` (which cancels the Ansible run under way) instead of
    raising in the middle of ansible-runner; :meth:`fresh` arms a new event for the clean-up,
    so a second Ctrl-C abandons that too."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.event = threading.Event()
        self.count = 0

    def _handle(self, signum: int, _frame: Any) -> None:
        self.count += 1
        self.event.set()
        message = ("interrupted: stopping Ansible, then the hosts' runs (Ctrl-C again to "
                   "abandon the clean-up)" if self.count == 1 else "abandoning the clean-up")
        print(f"fleet: {message}", file=self.out, flush=True)

    def fresh(self) -> threading.Event:
        self.event = threading.Event()
        if self.count > 1:
            self.event.set()
        return self.event

    @property
    def interrupted(self) -> bool:
        return self.count > 0

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def repository_archive(destination: Path) -> tuple[str, bool]:
    """``git archive`` of this repository's HEAD into ``destination``; (commit, dirty)."""
    repo = str(hostinfo.REPO)
    try:
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True, timeout=30).stdout.strip()
        subprocess.run(["git", "-C", repo, "archive", "--format=tar.gz", "-o",
                        str(destination), commit], capture_output=True, check=True, timeout=120)
        dirty = bool(subprocess.run(
            ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError) as error:
        raise FleetUsageError(f"{repo}: cannot archive the repository's commit (cvbench fleet "
                              f"copies it to the hosts): {error}") from None
    return commit, dirty


def run_fleet(options: Options, out: TextIO = sys.stderr,
              on_started: Callable[[Path], None] | None = None) -> Outcome:
    """Run a fleet run (see the module's docstring); FleetUsageError for bad input."""
    from harness import scenario

    try:
        suite = scenario.select_backends(scenario.load(options.scenario), options.backends)
    except scenario.ScenarioError as error:
        raise FleetUsageError(str(error)) from None
    seed = options.seed if options.seed is not None else (
        suite.seed if suite.seed is not None else secrets.randbits(32))
    try:
        inventory = engine.load_inventory(options.inventory)
    except engine.EngineError as error:
        raise FleetUsageError(str(error)) from None
    hosts = list(inventory.hosts)
    interrupts = Interrupts(out)
    with interrupts.installed(), tempfile.TemporaryDirectory(prefix="cvbench-fleet-") as tmp:
        facts = engine.gather_facts(Path(tmp) / "facts", inventory, hosts, interrupts.event)
        if interrupts.interrupted:
            print("fleet: interrupted before any host started", file=out)
            return Outcome(EXIT_INTERRUPTED)
        problems = {host: preflight.problem(facts[host]) for host in hosts}
        for host, problem in problems.items():
            if problem:
                print(f"cvbench: fleet: host {host} ({inventory.address(host)}): {problem}",
                      file=out, flush=True)
        ready = [host for host in hosts if not problems[host]]
        if not ready:
            raise FleetUsageError(f"no host of {options.inventory} could start "
                                  f"({len(hosts)} failed the checks above)")
        archive = Path(tmp) / "cvbench.tar.gz"
        commit, dirty = repository_archive(archive)
        if dirty:
            print(f"fleet: note: uncommitted changes are not copied; the hosts run commit "
                  f"{commit[:12]}", file=out)
        fleet_id = results.new_run_id(f"fleet-{suite.name}")
        fleet_dir = options.results_dir / fleet_id
        fleet_dir.mkdir(parents=True)
        metadata = _metadata(options, suite, fleet_id, seed, commit, dirty, inventory, facts,
                             problems)
        fleetdir.write_metadata(fleet_dir, metadata)
        if on_started is not None:
            on_started(fleet_dir)
        print(f"fleet: {fleet_id}: {suite.name} on {len(ready)} host(s) "
              f"{'one after another' if options.serial else 'at once'}, commit {commit[:12]}, "
              f"seed {seed}", file=out, flush=True)
        fetched = fleet_dir / "fetched"
        extravars: dict[str, Any] = {
            "cvbench_fleet_id": fleet_id, "cvbench_commit": commit,
            "cvbench_archive": str(archive), "cvbench_scenario": str(options.scenario.resolve()),
            "cvbench_seed": seed, "cvbench_backends": options.backends or "",
            "cvbench_local_dir": str(fetched.resolve()), "cvbench_timeout_s": options.timeout_s,
            "cvbench_lock_wait_s": options.lock_wait_s,
        }
        if options.remote_dir:
            extravars["cvbench_fleet_dir"] = options.remote_dir
        progress = Progress(ready, out)
        private = fleet_dir / "ansible"
        batches = [[host] for host in ready] if options.serial else [ready]
        for batch in batches:
            if interrupts.interrupted:
                break
            engine.run(private, inventory, playbook="run.yml", limit=batch,
                       extravars=extravars, forks=len(batch), on_event=progress,
                       cancel=interrupts.event)
        if interrupts.interrupted:
            started = [h for h, state in progress.hosts.items() if state.step]
            _stop(private, inventory, started, fleet_id, options, interrupts, out)
        return _finish(fleet_dir, metadata, progress, fetched, commit, interrupts.interrupted,
                       out)


def _metadata(options: Options, suite: Any, fleet_id: str, seed: int, commit: str, dirty: bool,
              inventory: engine.Inventory, facts: dict[str, Any],
              problems: dict[str, str | None]) -> dict[str, Any]:
    return {
        "schema_version": results.SCHEMA_VERSION,
        "kind": fleetdir.KIND,
        "run_id": fleet_id,
        "status": "running",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit + ("-dirty" if dirty else ""),
        "copied_commit": commit,
        "order_seed": seed,
        "scenario_file": str(options.scenario),
        "scenario_text": suite.text,
        "scenarios": [s.name for s in suite.scenarios],
        "backends": {name: {} for name in suite.backends},
        "host": {"hostname": f"fleet of {len(inventory.hosts)}: {', '.join(inventory.hosts)}"},
        "inventory": {"path": str(options.inventory), "hosts": list(inventory.hosts)},
        "fleet": {"serial": options.serial, "timeout_s": options.timeout_s,
                  "remote_dir": options.remote_dir, "engine": engine.versions()},
        "hosts": {
            host: {"address": inventory.address(host),
                   "status": "failed" if problems[host] else "running",
                   "error": problems[host],
                   "facts": facts[host] if isinstance(facts[host], dict) else {}}
            for host in inventory.hosts
        },
    }


def _stop(private: Path, inventory: engine.Inventory, hosts: list[str], fleet_id: str,
          options: Options, interrupts: Interrupts, out: TextIO) -> None:
    """After an interrupt: end the hosts' runs, ``cvbench clean``, remove the work dirs."""
    if not hosts:
        return
    print(f"fleet: cleaning up {', '.join(hosts)} (ending the runs, cvbench clean)", file=out,
          flush=True)
    extravars: dict[str, Any] = {"cvbench_fleet_id": fleet_id}
    if options.remote_dir:
        extravars["cvbench_fleet_dir"] = options.remote_dir
    outcome = engine.run(private, inventory, playbook="stop.yml", limit=hosts,
                         extravars=extravars, forks=len(hosts), cancel=interrupts.fresh())
    for host in hosts:
        failed = [e for e in outcome.events.get(host, [])
                  if e.get("event") in ("runner_on_failed", "runner_on_unreachable")]
        if failed:
            print(f"fleet: {host}: clean-up failed: "
                  f"{engine.one_line(failed[0].get('event_data', {}).get('res', {}))}; "
                  f"run 'cvbench fleet clean {options.inventory}'", file=out, flush=True)
        elif outcome.status != "successful":
            print(f"fleet: {host}: clean-up {outcome.status}; run "
                  f"'cvbench fleet clean {options.inventory}'", file=out, flush=True)


def _finish(fleet_dir: Path, metadata: dict[str, Any], progress: Progress, fetched: Path,
            commit: str, interrupted: bool, out: TextIO) -> Outcome:
    """Unpack every fetched run, merge the samples, write the metadata; the outcome."""
    runs: dict[str, Path] = {}
    for host, state in progress.hosts.items():
        entry = metadata["hosts"][host]
        tarball = fetched / f"{host}.tar.gz"
        if state.error is None and tarball.is_file():
            destination = fleetdir.host_dir(fleet_dir, host)
            fleetdir.unpack(tarball, destination)
            run_meta = _adopt(destination, commit)
            runs[host] = destination
            entry.update(status=run_meta.get("status", "unknown"), error=None,
                         run_id=run_meta.get("run_id"), run_dir=f"{fleetdir.HOSTS}/{host}",
                         run_seconds=state.run_seconds, host=run_meta.get("host", {}),
                         accel=run_meta.get("accel", {}))
            if run_meta.get("status") != "complete":
                entry["error"] = f"the run is {run_meta.get('status')}: {run_meta.get('error')}"
        else:
            error = state.error or ("interrupted" if interrupted else "no run fetched")
            entry.update(status="incomplete" if interrupted and not state.error else "failed",
                         error=error)
    shutil.rmtree(fetched, ignore_errors=True)
    fleetdir.write_samples(fleet_dir, runs)
    states = [entry["status"] for entry in metadata["hosts"].values()]
    if interrupted:
        status = "incomplete"
    elif all(s == "complete" for s in states):
        status = "complete"
    else:
        status = "partial" if runs else "failed"
    metadata["status"] = status
    metadata["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    backends = dict(metadata["backends"])
    for run_dir in runs.values():
        backends.update(results.read_metadata(run_dir).get("backends", {}))
    metadata["backends"] = backends
    fleetdir.write_metadata(fleet_dir, metadata)
    for host, entry in metadata["hosts"].items():
        text = entry["status"] + (f": {entry['error']}" if entry.get("error") else "")
        print(f"fleet: {host:<{progress.width}}  {text}", file=out, flush=True)
    print(f"fleet: {fleet_dir.name}: {status}", file=out, flush=True)
    if interrupted:
        code = EXIT_INTERRUPTED
    else:
        code = EXIT_OK if status == "complete" else EXIT_FAILED
    return Outcome(code, fleet_dir, metadata["hosts"])


def _adopt(run_dir: Path, commit: str) -> dict[str, Any]:
    """A fetched run's metadata; its ``git_commit`` is the copied commit (the host's copy is no
    git repository, so the run could not tell)."""
    metadata = results.read_metadata(run_dir)
    if str(metadata.get("git_commit", "unknown")) == "unknown":
        metadata["git_commit"] = commit
        metadata["git_commit_from"] = "cvbench fleet (the commit it copied to the host)"
        fleetdir.write_metadata(run_dir, metadata)
    return metadata

