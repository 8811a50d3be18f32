"""``cvbench run --runtime NAME=PATH``: every bad runtime is one line on stderr and exit code
2 before anything starts (no state directory, no run directory)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from oci_runtimes import copy_of_crun, forgetting_user_runtimes

from harness import cli
from harness.backends import registry

REPOSITORY = Path(__file__).resolve().parents[4]
QUICK = str(REPOSITORY / "scenarios" / "quick.toml")


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """State and results directories that do not exist yet: a start would make them."""
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    with forgetting_user_runtimes():
        yield tmp_path


def _refused(capsys, bare: Path, args: list[str]) -> str:
    code = cli.main(["run", QUICK, *args])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert not (bare / "state").exists() and not (bare / "results").exists()
    assert "mycrun" not in registry.names()
    return line


def test_a_missing_binary(capsys, bare) -> None:
    line = _refused(capsys, bare, ["--runtime", f"mycrun={bare}/none/crun"])
    assert line == f"cvbench: error: --runtime: runtime mycrun: {bare}/none/crun: no such file"


def test_a_relative_missing_binary_is_named_by_its_absolute_path(capsys, bare) -> None:
    line = _refused(capsys, bare, ["--runtime", "mycrun=bin/crun"])
    assert line == f"cvbench: error: --runtime: runtime mycrun: {bare}/bin/crun: no such file"


def test_a_binary_that_is_not_executable(capsys, bare) -> None:
    plain = copy_of_crun(bare)
    plain.chmod(plain.stat().st_mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    line = _refused(capsys, bare, ["--runtime", f"mycrun={plain}"])
    assert line == f"cvbench: error: --runtime: runtime mycrun: {plain}: not an executable file"


@pytest.mark.parametrize("binary", ["/bin/true", "/bin/false"])
def test_a_binary_that_is_not_an_oci_runtime(capsys, bare, binary) -> None:
    line = _refused(capsys, bare, ["--runtime", f"mycrun={binary}"])
    assert line.startswith(f"cvbench: error: --runtime: runtime mycrun: {binary}: not an OCI "
                           "runtime: `--version` printed "), line


def test_a_built_in_name(capsys, bare) -> None:
    line = _refused(capsys, bare, ["--runtime", f"runc={copy_of_crun(bare)}"])
    assert line == ("cvbench: error: --runtime: runtime runc: 'runc' is a built-in backend, "
                    "give the runtime another name")


def test_a_malformed_name(capsys, bare) -> None:
    line = _refused(capsys, bare, ["--runtime", f"My.Crun={copy_of_crun(bare)}"])
    assert line.startswith("cvbench: error: --runtime: runtime My.Crun: expected a runtime "
                           "name (a lowercase letter"), line


@pytest.mark.parametrize("text", ["mycrun", "mycrun=", "=/usr/bin/crun"])
def test_a_malformed_name_path_pair(capsys, bare, text) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", QUICK, "--runtime", text])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line == (f"cvbench: error: argument --runtime: expected NAME=PATH (a runtime's name "
                    f"and the path of its binary), got {text!r} (see 'cvbench run --help')")
    assert captured.out == "" and not (bare / "state").exists()


def test_a_files_bad_runtime(capsys, bare) -> None:
    scenario = bare / "s.toml"
    scenario.write_text('[suite]\nbackends = ["mycrun"]\n[runtimes]\nmycrun = "/bin/true"\n'
                        '[[scenario]]\nkind = "startup"\n')
    code = cli.main(["run", str(scenario)])
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert code == 2 and line.startswith(
        f"cvbench: error: {scenario}: [runtimes]: key 'mycrun': runtime mycrun: /bin/true: "
        "not an OCI runtime"), line
    assert not (bare / "state").exists()
