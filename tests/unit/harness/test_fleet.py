"""cvbench fleet without hosts: preflight, Ansible's answers, fleet directories, report, gate.

The real Ansible path (hosts in network namespaces, sshd) is
tests/integration/harness/test_fleet.py.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from synthetic_runs import make_run

from harness.cli import main
from harness.fleet import engine, fleetdir, preflight
from harness.fleet import gate as fleet_gate
from harness.fleet import report as fleet_report
from harness.fleet import run as fleet_run
from harness.gate.errors import CompareError

DEBIAN_12 = {"distribution": "Debian", "distribution_major_version": "12",
             "distribution_version": "12.11", "user_uid": 0, "user_id": "root"}


# ---------------------------------------------------------------- preflight


def test_a_debian_12_root_host_passes() -> None:
    assert preflight.problem(DEBIAN_12) is None


@pytest.mark.parametrize(("facts", "expected"), [
    ({**DEBIAN_12, "distribution": "Ubuntu", "distribution_major_version": "22",
      "distribution_version": "22.04"}, "not Debian 12 but Ubuntu 22.04"),
    ({**DEBIAN_12, "distribution_major_version": "11", "distribution_version": "11.9"},
     "not Debian 12 but Debian 11.9"),
    ({**DEBIAN_12, "user_uid": 1000, "user_id": "alice"}, "not root (logged in as alice)"),
    ("unreachable: ssh: connect to host 10.214.1.13 port 22: Connection refused",
     "unreachable: ssh: connect"),
])
def test_a_host_that_cannot_take_a_run_gets_one_line(facts, expected) -> None:
    problem = preflight.problem(facts)
    assert problem is not None and problem.startswith(expected) and "\n" not in problem


# ---------------------------------------------------------------- Ansible's answers


def test_one_line_skips_ssh_noise_and_prefers_the_last_telling_line() -> None:
    result = {"rc": 2, "stdout": "cvbench: error: ours: no cgroup filesystem\r\n",
              "stderr": "Connection to 10.214.1.11 closed.\r\n", "msg": "non-zero return code"}
    assert engine.one_line(result) == "cvbench: error: ours: no cgroup filesystem"
    assert engine.one_line({"msg": "Task failed: Failed to connect"}) == "Failed to connect"
    assert engine.one_line({"rc": 3}) == "exit code 3"
    assert len(engine.one_line({"stderr": "x" * 1000})) == 300


def test_hosts_are_listed_in_inventory_order_once() -> None:
    listing = {"all": {"children": ["ungrouped", "web", "db"]},
               "ungrouped": {"hosts": ["z"]}, "web": {"hosts": ["b", "a"]},
               "db": {"hosts": ["a", "c"]}}
    assert engine._hosts(listing) == ["z", "b", "a", "c"]


def test_the_telling_line_of_an_inventory_error() -> None:
    stderr = ("[WARNING]: Failed to parse inventory with 'ini' plugin: Failed to parse "
              "inventory: not enough values to unpack\n\n[ERROR]: Completely failed to parse "
              "inventory source /x.ini\n")
    assert engine._inventory_error(stderr) == "not enough values to unpack"


def test_inventories_are_read_by_ansible(tmp_path: Path) -> None:
    good = tmp_path / "fleet.yml"
    good.write_text("all:\n  hosts:\n    a:\n      ansible_host: 10.214.1.11\n"
                    "      ansible_port: 2222\n    b:\n")
    inventory = engine.load_inventory(good)
    assert inventory.hosts == ("a", "b")
    assert inventory.address("a") == "10.214.1.11:2222" and inventory.address("b") == "b"
    bad = tmp_path / "bad.ini"
    bad.write_text("[web\nfoo ansible_host=1.2.3.4 = =\n")
    with pytest.raises(engine.EngineError, match=r"bad.ini: not an Ansible inventory"):
        engine.load_inventory(bad)
    empty = tmp_path / "empty.ini"
    empty.write_text("[web]\n")
    with pytest.raises(engine.EngineError, match="names no host"):
        engine.load_inventory(empty)
    with pytest.raises(engine.EngineError, match="no such inventory file"):
        engine.load_inventory(tmp_path / "missing.ini")


def _event(kind: str, host: str, task: str, **data) -> dict:
    return {"event": kind, "event_data": {"host": host, "task": task, **data}}


def test_progress_prints_each_step_once_and_keeps_the_first_error() -> None:
    out = io.StringIO()
    progress = fleet_run.Progress(["a", "b"], out)
    for event in (
        _event("runner_on_start", "a", "copy cvbench"),
        _event("runner_on_start", "a", "copy cvbench (archive)"),
        _event("runner_on_start", "a", "run"),
        _event("runner_on_ok", "a", "run"),
        _event("runner_on_start", "b", "set up"),
        _event("runner_on_failed", "b", "set up", res={"stderr": "setup: apt failed"}),
        _event("runner_on_failed", "b", "clean up after the failure", ignore_errors=True,
               res={"stderr": "ignored"}),
        _event("runner_on_start", "b", "fetch"),
        _event("runner_on_ok", "zzz", "run"),  # a host the run does not know
    ):
        progress(event)
    lines = out.getvalue().splitlines()
    assert lines[0] == "fleet: a  copy cvbench …"
    assert sum("copy cvbench" in line for line in lines) == 1
    assert progress.hosts["a"].error is None and progress.hosts["a"].run_seconds is not None
    assert progress.hosts["b"].error == "set up: setup: apt failed"
    assert not any("fetch" in line for line in lines)  # no step after a failure


# ---------------------------------------------------------------- fleet directories


def make_fleet(results_dir: Path, fleet_id: str, hosts: dict[str, dict],
               failed: dict[str, str] | None = None) -> Path:
    """A fleet directory of synthetic startup runs, one per host (kwargs for make_run)."""
    fleet_dir = results_dir / fleet_id
    runs = {}
    for name, kwargs in hosts.items():
        runs[name] = make_run(fleet_dir / fleetdir.HOSTS, name, kinds=("startup",),
                              backends=("process", "ours", "crun"), hostname=name, **kwargs)
    entries = {name: {"status": "complete", "error": None, "run_id": name,
                      "host": {"hostname": name, "kernel": "6.1.0", "cpu_model": "Test CPU",
                               "cpus": 2},
                      "facts": {"memtotal_mb": 2048}} for name in hosts}
    entries.update({name: {"status": "failed", "error": error, "facts": {}}
                    for name, error in (failed or {}).items()})
    fleetdir.write_metadata(fleet_dir, {
        "kind": "fleet", "run_id": fleet_id, "status": "complete", "git_commit": "c0ffee",
        "copied_commit": "c0ffee", "order_seed": 7, "hosts": entries,
        "host": {"hostname": "fleet"}, "started_at": "2026-11-27T10:00:00+00:00"})
    fleetdir.write_samples(fleet_dir, runs)
    return fleet_dir


def test_a_fleet_directory_is_a_run_with_a_host_column(tmp_path: Path) -> None:
    fleet_dir = make_fleet(tmp_path, "f1", {"a": {"seed": 1}, "b": {"seed": 2}})
    assert fleetdir.is_fleet(fleet_dir) and not fleetdir.is_fleet(fleet_dir / "hosts" / "a")
    samples = fleetdir.load(fleet_dir)
    assert list(samples.columns)[-1] == "host"
    assert fleetdir.hosts_of(samples) == ["a", "b"]
    assert samples.groupby("host").run_id.unique().map(list).to_dict() == {"a": ["a"],
                                                                           "b": ["b"]}
    assert list(fleetdir.host_runs(fleet_dir)) == ["a", "b"]


@pytest.mark.parametrize("data_filter", [True, False], ids=["tarfile-filter", "python-3.11.2"])
def test_unpack_refuses_members_outside_the_destination(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_filter: bool) -> None:
    if not data_filter:  # Debian's Python 3.11.2 has no extraction filters
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good = tmp_path / "run.tar.gz"
    with tarfile.open(good, "w:gz") as archive:
        info = tarfile.TarInfo("run/samples.csv")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    fleetdir.unpack(good, tmp_path / "ok")
    assert (tmp_path / "ok" / "run" / "samples.csv").read_bytes() == b"x"
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        archive.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        fleetdir.unpack(tarball, tmp_path / "dest")
    assert not (tmp_path / "escaped").exists()


def test_finish_merges_the_fetched_runs_and_names_the_failed_host(tmp_path: Path) -> None:
    source = tmp_path / "hostruns"
    fetched = tmp_path / "fleet" / "fetched"
    fetched.mkdir(parents=True)
    for name in ("a", "b"):
        run_dir = make_run(source, name, kinds=("startup",), backends=("process", "ours"))
        meta = json.loads((run_dir / "metadata.json").read_text())
        meta.update(status="complete", git_commit="unknown")
        (run_dir / "metadata.json").write_text(json.dumps(meta))
        with tarfile.open(fetched / f"{name}.tar.gz", "w:gz") as archive:
            archive.add(run_dir, arcname=".")
    progress = fleet_run.Progress(["a", "b", "c"], io.StringIO())
    progress.hosts["c"].error = "run: cvbench: error: boom"
    (fetched / "c.tar.gz").write_bytes(b"")  # a failed host's leftover is not read
    metadata = {"hosts": {n: {"status": "running", "error": None} for n in "abc"},
                "backends": {"process": {}, "ours": {}}}
    out = io.StringIO()
    outcome = fleet_run._finish(tmp_path / "fleet", metadata, progress, fetched, "abc123",
                                interrupted=False, out=out)
    assert outcome.exit_code == fleet_run.EXIT_FAILED
    written = json.loads((tmp_path / "fleet" / "metadata.json").read_text())
    assert written["status"] == "partial"
    assert written["hosts"]["c"] == {"status": "failed", "error": "run: cvbench: error: boom"}
    assert written["hosts"]["a"]["status"] == "complete"
    host_meta = json.loads((tmp_path / "fleet" / "hosts" / "a" / "metadata.json").read_text())
    assert host_meta["git_commit"] == "abc123"
    assert set(pd.read_csv(tmp_path / "fleet" / "samples.csv").host) == {"a", "b"}
    assert not fetched.exists()
    assert "fleet: c  failed: run: cvbench: error: boom" in out.getvalue()


# ---------------------------------------------------------------- report and gate


def test_the_report_shows_each_host_against_its_own_floor(tmp_path: Path) -> None:
    # b is a machine twice as slow: absolute medians differ, ratios to its floor do not
    fleet_dir = make_fleet(tmp_path, "f1", {"a": {"seed": 1}, "b": {"seed": 2, "speed": 2.0}},
                           failed={"c": "unreachable: Connection refused"})
    from harness import report

    output = report.write_report([fleet_dir])
    summary = (output / "summary.md").read_text()
    assert "- fleet run `f1`: status **complete**, 2 of 3 host(s) complete" in summary
    assert "| c | failed |" in summary and "unreachable: Connection refused" in summary
    assert "| startup | ours @ a | start_to_ready_s |" in summary
    ratios = fleet_report.side_by_side(fleet_report.per_host_ratios(fleetdir.load(fleet_dir)))
    row = ratios.loc[("startup", "ours", "", "start_to_ready_s_vs_process", "ratio")]
    assert row["a"] == pytest.approx(row["b"], rel=0.1)
    medians = fleet_report.side_by_side(fleetdir.load(fleet_dir))
    row = medians.loc[("startup", "ours", "", "start_to_ready_s", "s")]
    assert row["b"] == pytest.approx(2 * row["a"], rel=0.1)
    assert "| scenario | backend | metric | a | b |" in summary


def test_the_gate_judges_each_host_apart(tmp_path: Path) -> None:
    base = make_fleet(tmp_path, "base", {"a": {"seed": 1}, "b": {"seed": 2}})
    cand = make_fleet(tmp_path, "cand", {"a": {"seed": 3},
                                         "b": {"seed": 4, "shifts": {("ours",
                                                                      "start_to_ready_s"): 1.5}}})
    outcome = fleet_gate.compare_fleet(base, cand, normalized=True)
    assert not outcome.comparisons["a"].regressions
    assert [r.backend for r in outcome.comparisons["b"].regressions] == ["ours"]
    assert outcome.exit_code == 1
    assert outcome.comparisons["b"].candidate == "cand/b"


def test_the_gate_fails_a_host_missing_from_the_candidate(tmp_path: Path) -> None:
    base = make_fleet(tmp_path, "base", {"a": {"seed": 1}, "b": {"seed": 2}})
    cand = make_fleet(tmp_path, "cand", {"a": {"seed": 3}}, failed={"b": "set up: apt failed"})
    outcome = fleet_gate.compare_fleet(base, cand)
    assert outcome.problems == {"b": "no run in the candidate (set up: apt failed)"}
    assert outcome.exit_code == 1


def test_a_single_baseline_gates_every_host_and_a_fleet_cannot_gate_a_run(tmp_path) -> None:
    single = make_run(tmp_path, "single", kinds=("startup",), backends=("process", "ours",
                                                                        "crun"))
    cand = make_fleet(tmp_path, "cand", {"a": {"seed": 3}, "b": {"seed": 4}})
    outcome = fleet_gate.compare_fleet(single, cand, normalized=True)
    assert set(outcome.comparisons) == {"a", "b"} and outcome.exit_code == 0
    with pytest.raises(CompareError, match="name one host's run"):
        fleet_gate.compare_fleet(cand, single)
    other = make_fleet(tmp_path, "other", {"x": {"seed": 5}})
    with pytest.raises(CompareError, match="no host of .* could be gated"):
        fleet_gate.compare_fleet(cand, other)


def test_cvbench_compare_gates_a_fleet_per_host(tmp_path: Path, capsys) -> None:
    base = make_fleet(tmp_path, "base", {"a": {"seed": 1}, "b": {"seed": 2}})
    cand = make_fleet(tmp_path, "cand", {"a": {"seed": 3}, "b": {"seed": 4}})
    markdown = tmp_path / "gate.md"
    assert main(["compare", str(base), str(cand), "--normalized",
                 "--markdown", str(markdown)]) == 0
    out = capsys.readouterr().out
    assert "host a: 0 regression(s)" in out and "host b: 0 regression(s)" in out
    assert "base/a → cand/a" in markdown.read_text()


# ---------------------------------------------------------------- the command's bad input


def test_bad_options_and_files_are_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # refused while the options are parsed
        main(["fleet", "run", "inv.ini", "scenarios/startup.toml",
              "--remote-dir", "/var/cache/elsewhere"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--remote-dir" in err and "'/var/cache/elsewhere'" in err
    assert main(["fleet", "run", str(tmp_path / "inv.ini"), str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.toml" in err  # the scenario is read first
    assert main(["fleet", "run", str(tmp_path / "inv.ini"), "scenarios/startup.toml"]) == 2
    assert capsys.readouterr().err == (
        f"cvbench: error: {tmp_path / 'inv.ini'}: no such inventory file\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fleet", "run", "only-one-argument"])
    assert exit_info.value.code == 2
