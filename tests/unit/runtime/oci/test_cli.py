"""The command line: its global options, bad input as one line and exit code 2, failures as
one line and exit code 1."""

from __future__ import annotations

import json

import pytest

from runtime.oci import cli


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("cvbench-runtime version ")


@pytest.mark.parametrize("argv", [
    ["--systemd-cgroup", "state", "x"],
    ["--cgroup-manager=systemd", "state", "x"],
    ["--log-format", "xml", "state", "x"],
    ["nope"],
    [],
    ["state"],
    ["state", "../x"],
    ["kill", "x", "SIGNOPE"],
    ["create", "--console-socket", "/tmp/s", "x"],
    ["create", "--preserve-fds", "2", "x"],
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv):
    assert cli.main(["--root", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cvbench-runtime: ") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())  # nothing made


def test_failures_are_one_line_exit_1_and_logged(tmp_path, capsys):
    log = tmp_path / "log"
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json",
                     "delete", "absent"]) == 1
    assert capsys.readouterr().err == "cvbench-runtime: container absent does not exist\n"
    entry = json.loads(log.read_text())
    assert (entry["level"], entry["msg"]) == ("error", "container absent does not exist")
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "start", "absent"]) == 1
    assert log.read_text().splitlines()[-1].endswith(
        'level=error msg="container absent does not exist"')


def test_list_of_an_empty_root(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path / "none"), "list"]) == 0
    assert capsys.readouterr().out == ""
