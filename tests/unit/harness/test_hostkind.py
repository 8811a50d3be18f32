"""The host kind (cgroup mode, init system) and the hosts cvbench refuses, on fake mount tables
and fake cgroup roots: the v2-only host of systemd machines included, which this machine is
not."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli, hostinfo, hostkind
from harness.report import facts

SYSFS = "30 21 0:26 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"


def _mountinfo(*mounts: tuple[str, str, str]) -> str:
    """A mountinfo text: /sys, then one line per (mount point, fstype, super options)."""
    lines = [SYSFS]
    for index, (point, fstype, options) in enumerate(mounts):
        lines.append(f"{40 + index} 30 0:{50 + index} / {point} rw,nosuid - {fstype} "
                     f"cgroup {options}\n")
    return "".join(lines)


def _v2_root(root: Path, controllers: str = "cpuset cpu io memory hugetlb pids",
             enabled: str = "cpu memory pids") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text(enabled + "\n")
    return root


def _v1_root(root: Path, controllers: tuple[str, ...]) -> str:
    for controller in controllers:
        (root / controller).mkdir(parents=True, exist_ok=True)
    return _mountinfo(*((str(root / c), "cgroup", f"rw,{c}") for c in controllers))


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    """A fake /proc whose PID 1 is a plain init."""
    (tmp_path / "proc" / "1").mkdir(parents=True)
    (tmp_path / "proc" / "1" / "comm").write_text("init\n")
    return tmp_path / "proc"


def _inspect(text: str, root: Path, proc: Path, marker: Path | None = None,
             writable: bool = True) -> hostkind.HostKind:
    return hostkind.inspect(text, root, proc, marker or root / "no-systemd",
                            writable=lambda _path: writable)


def test_a_systemd_v2_host_is_v2_with_its_controllers(tmp_path, proc):
    root = _v2_root(tmp_path / "cgroup")
    marker = tmp_path / "run" / "systemd" / "system"
    marker.mkdir(parents=True)
    kind = _inspect(_mountinfo((str(root), "cgroup2", "rw,nsdelegate")), root, proc, marker)
    assert kind.problem is None
    assert (kind.cgroup_mode, kind.init_system, kind.cgroup2_mount) == ("v2", "systemd",
                                                                        str(root))
    assert {"memory", "pids", "cpu"} <= set(kind.v2_controllers)
    assert kind.summary().startswith("v2 (cgroup2 at ") and kind.summary().endswith("systemd")


def test_a_hybrid_host_without_systemd_names_pid_1(tmp_path, proc):
    root = tmp_path / "cgroup"
    text = _v1_root(root, ("memory", "pids", "cpu", "devices"))
    (root / "unified").mkdir()
    text += _mountinfo((str(root / "unified"), "cgroup2", "rw"))
    kind = _inspect(text, root, proc)
    assert kind.problem is None
    assert (kind.cgroup_mode, kind.init_system) == ("hybrid", "init")
    assert kind.cgroup2_mount == str(root / "unified")
    assert "v1 memory, pids, cpu; cgroup2 at" in kind.summary()


def test_co_mounted_v1_controllers_are_all_found(tmp_path, proc):
    root = tmp_path / "cgroup"
    for name in ("memory", "pids", "cpu,cpuacct"):
        (root / name).mkdir(parents=True)
    (root / "cpu").symlink_to("cpu,cpuacct")
    text = _mountinfo((str(root / "memory"), "cgroup", "rw,memory"),
                      (str(root / "pids"), "cgroup", "rw,pids"),
                      (str(root / "cpu,cpuacct"), "cgroup", "rw,cpu,cpuacct,clone_children"),
                      (str(root / "systemd"), "cgroup", "rw,xattr,name=systemd"))
    kind = _inspect(text, root, proc)
    assert kind.problem is None and kind.cgroup_mode == "v1"
    assert {"memory", "pids", "cpu", "cpuacct", "name=systemd"} == set(kind.v1_controllers)


@pytest.mark.parametrize(("case", "expected"), [
    ("no cgroups", "no cgroup filesystem is mounted"),
    ("v1 without memory", "cgroup v1 without the v1 memory hierarchy"),
    ("hybrid without memory and pids", "cgroup hybrid without the v1 memory and pids "
                                       "hierarchies"),
    ("cgroup2 elsewhere", "cgroup2 is mounted at"),
    ("v2 without cpu", "cgroup v2 without the cpu controller"),
    ("v2 without memory and pids", "cgroup v2 without the memory and pids controllers"),
    ("v2 read-only", "cgroup v2: memory, pids and cpu not enabled"),
])
def test_hosts_cvbench_cannot_use_are_one_line_naming_what_is_missing(tmp_path, proc, case,
                                                                      expected):
    root = tmp_path / "cgroup"
    writable = True
    if case == "no cgroups":
        text = _mountinfo()
    elif case == "v1 without memory":
        text = _v1_root(root, ("pids", "cpu", "devices"))
    elif case == "hybrid without memory and pids":
        text = _v1_root(root, ("cpu", "devices")) + _mountinfo((str(root / "unified"),
                                                                "cgroup2", "rw"))
    elif case == "cgroup2 elsewhere":
        _v2_root(root / "unified")
        text = _mountinfo((str(root / "unified"), "cgroup2", "rw"))
    elif case == "v2 without cpu":
        _v2_root(root, controllers="memory pids io")
        text = _mountinfo((str(root), "cgroup2", "rw"))
    elif case == "v2 without memory and pids":
        _v2_root(root, controllers="cpu io")
        text = _mountinfo((str(root), "cgroup2", "rw"))
    else:  # a container's read-only view of a tree whose root enables nothing
        _v2_root(root, enabled="")
        text = _mountinfo((str(root), "cgroup2", "ro"))
        writable = False
    kind = _inspect(text, root, proc, writable=writable)
    assert kind.problem is not None and kind.problem.startswith(expected), kind.problem
    assert "\n" not in kind.problem
    with pytest.raises(hostkind.HostKindError, match="^" + expected.split(":")[0]):
        hostkind.check(kind)


def test_controllers_not_yet_enabled_are_fine_where_cvbench_can_enable_them(tmp_path, proc):
    root = _v2_root(tmp_path / "cgroup", enabled="")
    kind = _inspect(_mountinfo((str(root), "cgroup2", "rw")), root, proc, writable=True)
    assert kind.problem is None


def test_without_proc_the_init_is_unknown_and_the_mount_table_missing(tmp_path):
    kind = hostkind.inspect(None, tmp_path / "cgroup", tmp_path / "noproc",
                            tmp_path / "nosystemd")
    assert kind.init_system == "unknown"
    assert kind.problem and kind.problem.startswith(f"cannot read {tmp_path}/noproc/self/")


def test_this_host_is_usable_and_recorded(monkeypatch):
    kind = hostkind.check()
    collected = hostinfo.collect()["host"]
    assert collected["cgroup_mode"] == kind.cgroup_mode
    assert collected["init_system"] == kind.init_system


def test_the_report_states_cgroup_mode_and_init_system():
    metadata = {"host": {"kernel": "6.1.0-28-cloud-amd64", "cgroup_mode": "v2",
                         "init_system": "systemd"}}
    shown = dict(facts.host_facts(metadata))["kernel, cgroups, init"]
    assert shown == "6.1.0-28-cloud-amd64, cgroup mode v2, init system systemd"
    assert "cgroups v2, init systemd" in facts.run_line(metadata, "r")


@pytest.mark.parametrize("command", [["doctor"], ["run", "scenarios/quick.toml"]])
def test_doctor_and_run_refuse_such_a_host_in_one_line_with_exit_2(tmp_path, monkeypatch,
                                                                   capsys, command):
    from harness import runner

    monkeypatch.chdir(Path(__file__).resolve().parents[3])
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    root = _v2_root(tmp_path / "cgroup", controllers="cpu io pids")
    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "comm").write_text("systemd\n")
    fake = hostkind.inspect(_mountinfo((str(root), "cgroup2", "rw")), root, proc,
                            tmp_path / "run")
    monkeypatch.setattr(hostkind, "inspect", lambda *args, **kwargs: fake)
    started = []
    monkeypatch.setattr(runner, "run_suite", lambda *args, **kwargs: started.append(args))
    assert cli.main([*command, "--results-dir", str(tmp_path)] if command[0] == "run"
                    else command) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line == ("cvbench: error: cgroup v2 without the memory controller (not in "
                    f"{root}/cgroup.controllers; bound to a v1 hierarchy, or disabled with "
                    "cgroup_disable=)")
    assert captured.out == "" and started == []
