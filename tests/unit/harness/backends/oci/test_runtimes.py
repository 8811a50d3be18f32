"""A user's OCI runtime: its ``NAME=PATH`` form, the check of its binary (a copy of crun and
runc pass; a missing path, a directory, a non-executable file, /bin/true, /bin/false and
scripts that only look like runtimes fail in one line), its entry in the backend table, and
the records the sweep reads."""

from __future__ import annotations

import shutil
import stat

import pytest
from oci_runtimes import copy_of_crun, forgetting_user_runtimes

from harness.backends import create, registry
from harness.backends.base import BackendError
from harness.backends.oci import runtimes
from harness.backends.oci.backend import OciBackend
from hostkit import validate


@pytest.fixture(autouse=True)
def _forget():
    with forgetting_user_runtimes():
        yield


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def _script(path, body: str):
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("text", ["mycrun", "=/usr/bin/crun", "mycrun=", "my crun=/x", ""])
def test_a_malformed_name_path_pair_is_refused(text):
    with pytest.raises(validate.Invalid, match=r"expected NAME=PATH \(a runtime's name and"):
        runtimes.parse(text)


def test_name_path_splits_at_the_first_equals_sign():
    assert runtimes.parse("mycrun=/opt/a=b/crun") == ("mycrun", "/opt/a=b/crun")


def test_a_copy_of_crun_and_runc_are_oci_runtimes(tmp_path):
    mine = copy_of_crun(tmp_path)
    assert runtimes.check(str(mine)) == str(mine)
    runc = shutil.which("runc")
    assert runc is not None
    assert runtimes.check(runc) == runc


def test_a_relative_path_is_made_absolute(tmp_path, monkeypatch):
    copy_of_crun(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert runtimes.check("cvbench-crun2/mycrun") == str(tmp_path / "cvbench-crun2" / "mycrun")


def test_a_missing_path_is_refused(tmp_path):
    with pytest.raises(validate.Invalid) as error:
        runtimes.check(str(tmp_path / "nothing"))
    assert str(error.value) == f"{tmp_path / 'nothing'}: no such file"


def test_a_non_executable_file_and_a_directory_are_refused(tmp_path):
    plain = copy_of_crun(tmp_path)
    plain.chmod(plain.stat().st_mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    for path in (plain, tmp_path):
        with pytest.raises(validate.Invalid) as error:
            runtimes.check(str(path))
        assert str(error.value) == f"{path}: not an executable file"


@pytest.mark.parametrize("binary", ["/bin/true", "/bin/false", "/bin/ls", "/bin/echo"])
def test_coreutils_are_not_oci_runtimes(binary):
    """Their --version names no version the way runtimes do (``ls (GNU coreutils) 9.1``)."""
    with pytest.raises(validate.Invalid,
                       match=rf"^{binary}: not an OCI runtime: `--version` printed"):
        runtimes.check(binary)


def test_a_version_line_alone_is_not_enough(tmp_path):
    """A binary that says ``x version 1`` but answers ``state`` of a missing container with
    success (or fails it silently) is no OCI runtime."""
    succeeds = _script(tmp_path / "succeeds", 'echo "fake version 1.0"')
    with pytest.raises(validate.Invalid, match=r"^.*/succeeds: not an OCI runtime: `state "
                       r"cvbench-nonexistent-[0-9a-f]{8}` of a container that does not exist "
                       r"exited 0 with success$"):
        runtimes.check(str(succeeds))
    silent = _script(tmp_path / "silent",
                     'case "$1" in --version) echo "fake version 1.0";; *) exit 1;; esac')
    with pytest.raises(validate.Invalid, match=r"exited 1 with no message$"):
        runtimes.check(str(silent))


def test_a_binary_that_hangs_is_refused_after_the_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(runtimes, "CHECK_TIMEOUT_S", 0.3)
    hangs = _script(tmp_path / "hangs", "exec sleep 30")
    with pytest.raises(validate.Invalid, match=r"`--version` did not exit within 0.3 s$"):
        runtimes.check(str(hangs))


@pytest.mark.parametrize("name", ["crun", "runc", "ours", "process", "libvirt"])
def test_a_built_in_backends_name_is_refused_before_the_binary_is_run(name, tmp_path):
    ran = tmp_path / "ran"
    spy = _script(tmp_path / "spy", f"touch {ran}; exec crun \"$@\"")
    with pytest.raises(validate.Invalid) as error:
        runtimes.declare(name, str(spy))
    assert str(error.value) == f"{name!r} is a built-in backend, give the runtime another name"
    assert not ran.exists()
    assert registry.info(name).args == ()


@pytest.mark.parametrize("name", ["MyCrun", "9crun", "my.crun", "a" * 33, "my/crun"])
def test_a_malformed_name_is_refused(name, tmp_path):
    with pytest.raises(validate.Invalid, match=r"^expected a runtime name \(a lowercase letter"):
        runtimes.declare(name, str(copy_of_crun(tmp_path)))
    assert name not in registry.names()


def test_a_declared_runtime_is_a_container_backend_of_the_oci_class(tmp_path):
    mine = copy_of_crun(tmp_path)
    assert runtimes.declare("mycrun", "cvbench-crun2/mycrun", base=tmp_path) == str(mine)
    entry = registry.info("mycrun")
    assert entry.family == registry.CONTAINER and not entry.floor
    assert entry.target == "harness.backends.oci.backend:OciBackend"
    assert entry.args == ("mycrun", str(mine))
    assert entry.sweeper == registry.info("crun").sweeper  # `cvbench clean` sweeps it
    # crun's needs with the crun binary's check replaced by one of this path
    assert entry.needs == tuple("runtime mycrun" if need == "crun" else need
                                for need in registry.info("crun").needs)
    assert registry.user_runtimes() == {"mycrun": str(mine)}
    assert registry.floor_of("mycrun") == "process"
    registry.NAME.check("mycrun")  # --backend and a file's backends take it now
    backend = create("mycrun")
    assert type(backend) is OciBackend
    assert (backend.name, backend.runtime, backend.binary) == ("mycrun", "mycrun", str(mine))
    assert backend.flavor == "crun"  # a copy of crun takes crun's options, by its --version
    assert backend._argv("state", "x")[1:] == [
        "--root", str(runtimes.states_dir() / "mycrun"), "--cgroup-manager=cgroupfs",
        "state", "x"]
    with pytest.raises(BackendError, match="its binary is the path it was declared with"):
        create("mycrun", binary="/usr/bin/crun")


def test_declaring_a_name_again_replaces_its_path(tmp_path):
    first = copy_of_crun(tmp_path / "a")
    second = copy_of_crun(tmp_path / "b")
    runtimes.declare("mycrun", str(first))
    runtimes.declare("mycrun", str(second))
    assert registry.user_runtimes() == {"mycrun": str(second)}


def test_a_plug_ins_name_is_refused(tmp_path, fake_backends):
    with pytest.raises(validate.Invalid, match="^'fake' is already a backend"):
        runtimes.declare("fake", str(copy_of_crun(tmp_path)))


def test_a_runc_like_runtime_gets_runcs_options(tmp_path):
    runc = shutil.which("runc")
    assert runc is not None
    renamed = tmp_path / "myrunc"
    shutil.copy2(runc, renamed)
    assert runtimes.flavor(str(renamed)) == "runc"
    assert runtimes.flavor(str(copy_of_crun(tmp_path, "anything"))) == "crun"


def test_records_name_the_binary_the_sweep_deletes_with(state, tmp_path):
    mine = copy_of_crun(tmp_path)
    assert set(runtimes.known()) == {"crun", "runc"}
    assert runtimes.known()["crun"] == shutil.which("crun")
    runtimes.record("mycrun", str(mine))
    assert runtimes.known()["mycrun"] == str(mine)
    mine.unlink()  # the binary is gone: its state directory is still swept, without it
    (runtimes.states_dir() / "mycrun").mkdir()
    assert runtimes.known()["mycrun"] is None
    runtimes.forget("mycrun")
    assert runtimes.known()["mycrun"] is None  # the state directory alone still names it
    (runtimes.states_dir() / "mycrun").rmdir()
    assert set(runtimes.known()) == {"crun", "runc"}


def test_an_older_cvbenchs_launcher_records_are_no_runtime(state):
    """The gate runs its baseline's code, whose launchers were recorded in
    ``oci-state/launchers/``: the sweep removes that directory as what it is, not as a
    runtime named "launchers"."""
    from harness.backends.oci import sweeper

    old = runtimes.states_dir() / runtimes.OLD_LAUNCHER_RECORDS
    old.mkdir(parents=True)
    (old / "oci-123.json").write_text('{"pid": 123}')
    assert set(runtimes.known()) == {"crun", "runc"}
    assert sweeper.remove_old_launcher_records() == [
        f"oci launcher records of an older cvbench (1): {old}"]
    assert not old.exists()
    assert sweeper.remove_old_launcher_records() == []
