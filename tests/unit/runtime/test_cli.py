"""The ``ctr`` command line: what it parses, and bad input in one line with exit code 2."""

from __future__ import annotations

import argparse

from runtime import cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cvbench")
    cli.register(parser.add_subparsers(dest="command"))
    return parser


def test_cli_parses_run_ls_stop_rm(tmp_path, monkeypatch):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    for name in ("a", "b"):  # stop and rm take the names of existing containers only
        (tmp_path / "containers" / name).mkdir(parents=True)
    parser = _parser()
    args = parser.parse_args(
        [
            "ctr",
            "run",
            "--name",
            "cvbench-a",
            "--memory",
            "64",
            "--pids",
            "10",
            "--cpus",
            "0.5",
            "--network",
            "bridge",
            "--",
            "/bin/sh",
        ]
    )
    assert (args.func, args.name, args.memory, args.pids, args.cpus, args.network) == (
        cli.cmd_run, "cvbench-a", 64, 10, 0.5, "bridge"
    )  # fmt: skip
    assert parser.parse_args(["ctr", "ls"]).func is cli.cmd_ls
    assert parser.parse_args(["ctr", "stop", "a", "b"]).names == ["a", "b"]
    assert parser.parse_args(["ctr", "rm", "-f", "a"]).force


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    args = _parser().parse_args(["ctr", "run", "--image", "nosuch"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown image" in err
