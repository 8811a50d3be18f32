"""``cvbench fleet`` through the real Ansible path, on "hosts" made on this machine.

Three hosts (``tests/fleet_hosts.py``): ``a`` and ``b`` with an sshd each, ``c`` with an
address but nothing listening (unreachable). They share this kernel and file system, so they
share one cache directory (a checkout prepared once here, with network, since the hosts have
none) and its host lock: their runs take turns. Run alone (as root, under the host lock):

    flock /tmp/cvbench-host.lock .venv/bin/pytest -m fleet tests/integration/harness/test_fleet.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from fleet_hosts import Hosts, ensure_sshd

pytestmark = [pytest.mark.root, pytest.mark.fleet, pytest.mark.slow,
              pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[3]
HOST_SH = REPO / "harness" / "fleet" / "playbooks" / "host.sh"
# The hosts' cache directory: a checkout of HEAD with its virtualenv, kept between test runs
# (set-up then skips the pip install while pyproject.toml is unchanged).
REMOTE_DIR = "/var/cache/cvbench-fleet-test"
SCENARIO = """\
[suite]
name = "fleet-tiny"
description = "A tiny startup run for the fleet test"
image = "default"
backends = ["process", "ours"]

[[scenario]]
kind = "startup"
name = "startup"
variants = ["cold"]
repetitions = {repetitions}
warmup = 1
timeout_s = 30
network = "none"
"""


def cvbench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)


def _services_from_cache() -> set[int]:
    """Daemon supervisors the cache directory's set-up started (scripts/subreaper.py there)."""
    script = f"{REMOTE_DIR}/cvbench/scripts/subreaper.py"
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        if script in (process.info["cmdline"] or [])[1:2]:
            found.add(process.info["pid"])
    return found


def _stop(pids: set[int]) -> None:
    """End these supervisors and the daemons under them (daemons first)."""
    for pid in pids:
        try:
            supervisor = psutil.Process(pid)
            daemons = supervisor.children(recursive=True)
        except psutil.Error:
            continue
        for process in [*daemons, supervisor]:
            try:
                process.terminate()
            except psutil.Error:
                pass
        psutil.wait_procs([*daemons, supervisor], timeout=20)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    """The commit the hosts run, unpacked and set up in REMOTE_DIR (with network, here).

    The hosts share this machine, whose services (libvirtd, virtlogd, dockerd) the README's
    set-up starts. If they were not running, the cache directory's set-up starts them from
    there; this test stops those again, so that it leaves no daemon behind."""
    before = _services_from_cache()
    ensure_sshd()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], text=True,
                            capture_output=True, check=True).stdout.strip()
    archive = tmp_path_factory.mktemp("archive") / "cvbench.tar.gz"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar.gz", "-o", str(archive),
                    commit], check=True)
    for step in (["prepare", REMOTE_DIR, str(archive), commit, "test"], ["setup", REMOTE_DIR]):
        done = subprocess.run(["bash", str(HOST_SH), *step], text=True, capture_output=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    try:
        yield commit
    finally:
        _stop(_services_from_cache() - before)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory, prepared: str):
    made = Hosts(tmp_path_factory.mktemp("fleet") / "hosts", ("a", "b", "c"), no_sshd=("c",))
    try:
        made.start()
        yield made
    finally:
        made.close()
    assert made.leftovers() == []


def scenario(tmp_path: Path, repetitions: int = 5) -> Path:
    path = tmp_path / "fleet-tiny.toml"
    path.write_text(SCENARIO.format(repetitions=repetitions))
    return path


def settle(hosts: Hosts, timeout: float = 10) -> dict[str, dict[int, str]]:
    """The processes left in the hosts' namespaces once SSH sessions had time to close."""
    deadline = time.monotonic() + timeout
    while (left := hosts.foreign_processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def work_dirs() -> list[str]:
    runs = Path(REMOTE_DIR) / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


def test_two_hosts_run_and_an_unreachable_one_is_named(hosts: Hosts, tmp_path: Path) -> None:
    inventory = hosts.inventory(tmp_path / "inventory.ini",
                                extra=f"cvbench_fleet_dir={REMOTE_DIR}")
    done = cvbench("fleet", "run", str(inventory), str(scenario(tmp_path)),
                   "--results-dir", str(tmp_path / "results"), "--seed", "42")
    assert done.returncode == 1, done.stderr  # partial: c failed, a and b complete
    fleet_dir = Path(done.stdout.strip().splitlines()[-1])
    unreachable = [line for line in done.stderr.splitlines() if line.startswith("cvbench:")]
    assert len(unreachable) == 1 and "host c (10.214.1.13)" in unreachable[0]
    assert "unreachable" in unreachable[0]

    metadata = json.loads((fleet_dir / "metadata.json").read_text())
    assert metadata["kind"] == "fleet" and metadata["status"] == "partial"
    assert metadata["order_seed"] == 42
    entries = metadata["hosts"]
    assert entries["c"]["status"] == "failed" and "unreachable" in entries["c"]["error"]
    for name in ("a", "b"):
        entry = entries[name]
        assert entry["status"] == "complete", entry
        assert entry["facts"]["distribution"] == "Debian"
        assert entry["facts"]["hostname"] == f"fleet-{name}"
        assert entry["host"]["hostname"] == f"fleet-{name}"  # cvbench's own facts, on the host
        run_meta = json.loads((fleet_dir / "hosts" / name / "metadata.json").read_text())
        assert run_meta["order_seed"] == 42 and run_meta["git_commit"] == metadata[
            "copied_commit"]
    def span(name: str) -> tuple[str, str]:
        run_meta = json.loads((fleet_dir / "hosts" / name / "metadata.json").read_text())
        return run_meta["started_at"], run_meta["finished_at"]

    (a_start, a_end), (b_start, b_end) = span("a"), span("b")
    # whole seconds: runs that take turns may share the second of a change-over, never more
    assert not (a_start < b_end and b_start < a_end), "two runs shared the machine"

    samples = pd.read_csv(fleet_dir / "samples.csv")
    assert set(samples.host) == {"a", "b"}
    assert set(samples.backend) == {"process", "ours"}
    assert samples.groupby("host").run_id.nunique().to_dict() == {"a": 1, "b": 1}

    # nothing of cvbench's left running on the hosts, and their work directories are gone
    assert settle(hosts) == {}
    assert not [name for name in work_dirs() if name.startswith(metadata["run_id"])]

    report = cvbench("report", str(fleet_dir))
    assert report.returncode == 0, report.stderr
    summary = (fleet_dir / "report" / "summary.md").read_text()
    assert "Each host against its own floors" in summary
    assert "| scenario | backend | metric | a | b |" in summary
    assert "start_to_ready_s_vs_process [cold]" in summary

    gate = cvbench("compare", str(fleet_dir), str(fleet_dir), "--normalized")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "host a: 0 regression(s)" in gate.stdout and "host b: 0 regression(s)" in gate.stdout


def test_nothing_can_start_exits_2_naming_the_host(hosts: Hosts, tmp_path: Path) -> None:
    inventory = hosts.inventory(tmp_path / "inventory.ini", names=("c",))
    done = cvbench("fleet", "run", str(inventory), str(scenario(tmp_path)),
                   "--results-dir", str(tmp_path / "results"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert any("host c (10.214.1.13): unreachable" in line for line in lines), lines
    assert lines[-1].startswith("cvbench: error: no host of ")
    assert not (tmp_path / "results").exists()


def test_a_host_whose_key_does_not_match_is_refused(hosts: Hosts, tmp_path: Path) -> None:
    inventory = hosts.inventory(tmp_path / "inventory.ini", names=("a",))
    wrong = tmp_path / "known_hosts"  # b's key for a's address
    line_b = next(line for line in hosts.known_hosts.read_text().splitlines()
                  if line.startswith(hosts.hosts["b"].address))
    wrong.write_text(line_b.replace(hosts.hosts["b"].address, hosts.hosts["a"].address) + "\n")
    inventory.write_text(inventory.read_text().replace(str(hosts.known_hosts), str(wrong)))
    done = cvbench("fleet", "run", str(inventory), str(scenario(tmp_path)),
                   "--results-dir", str(tmp_path / "results"))
    assert done.returncode == 2
    assert "host a (10.214.1.11): unreachable" in done.stderr
    assert "Host key verification failed" in done.stderr


def test_an_inventory_that_does_not_parse_exits_2(tmp_path: Path) -> None:
    inventory = tmp_path / "broken.ini"
    inventory.write_text("[fleet\na ansible_host=10.214.1.11 = =\n")
    done = cvbench("fleet", "run", str(inventory), "scenarios/startup.toml")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"cvbench: error: {inventory}: not an Ansible inventory")


def test_an_interrupted_fleet_run_leaves_the_hosts_clean(hosts: Hosts, tmp_path: Path) -> None:
    inventory = hosts.inventory(tmp_path / "inventory.ini", names=("a", "b"),
                                extra=f"cvbench_fleet_dir={REMOTE_DIR}")
    fleet = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "fleet", "run", str(inventory),
         str(scenario(tmp_path, repetitions=400)), "--results-dir", str(tmp_path / "results")],
        cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert fleet.stderr is not None
    started = time.monotonic()
    seen = []
    for line in fleet.stderr:
        seen.append(line)
        if "run …" in line:
            break
    # let the run get going on the host, then Ctrl-C the controller
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
            "cvbench run" in cmd for procs in (hosts.processes("a"), hosts.processes("b"))
            for cmd in procs.values()):
        time.sleep(0.1)
    fleet.send_signal(signal.SIGINT)
    interrupted_at = time.monotonic()
    out, err = fleet.communicate(timeout=300)
    print(f"interrupted after {interrupted_at - started:.1f} s, "
          f"ended {time.monotonic() - interrupted_at:.1f} s later")
    assert fleet.returncode == 130, "".join(seen) + err
    assert "cleaning up" in err
    fleet_dir = Path(out.strip().splitlines()[-1])
    assert json.loads((fleet_dir / "metadata.json").read_text())["status"] == "incomplete"
    assert settle(hosts) == {}
    assert not [name for name in work_dirs() if name.startswith(fleet_dir.name)]
    state = [hosts.hosts[n].state_dir for n in ("a", "b")]
    assert not [p for s in state for p in (s / "containers").glob("*")]


def test_fleet_clean_on_the_hosts(hosts: Hosts, tmp_path: Path) -> None:
    inventory = hosts.inventory(tmp_path / "inventory.ini", names=("a", "b"),
                                extra=f"cvbench_fleet_dir={REMOTE_DIR}")
    done = cvbench("fleet", "clean", str(inventory))
    assert done.returncode == 0, done.stderr
    assert settle(hosts) == {}
    assert os.path.isdir(REMOTE_DIR)  # the cache stays (--purge removes it)
