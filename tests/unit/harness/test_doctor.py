"""`cvbench doctor`'s checks of a backend's own binary or machine: a user-named OCI runtime's
binary stands in crun's binary check for that backend, and is named missing once it no longer
is a runtime; the microvm check is what the installed QEMU's ``-machine help`` lists."""


from __future__ import annotations

import pytest
from oci_runtimes import copy_of_crun, forgetting_user_runtimes

from harness import doctor
from harness.backends import registry
from harness.backends.oci import runtimes
from vm import bare_qemu


@pytest.fixture(autouse=True)
def _forget():
    with forgetting_user_runtimes():
        yield


def test_a_declared_runtimes_binary_is_checked_in_place_of_crun(tmp_path) -> None:
    mine = copy_of_crun(tmp_path)
    runtimes.declare("mycrun", str(mine))
    check = doctor._runtime("mycrun", str(mine))
    assert check.name == "runtime mycrun" and check.ok
    assert check.detail.startswith(f"{mine}: crun version ")
    crun_failed = doctor.Check("crun", False, "crun not installed")
    assert doctor.missing_for([check, crun_failed], ("mycrun",)) == []
    assert doctor.missing_for([check, crun_failed], ("crun",)) == [("crun", crun_failed)]


def test_a_binary_replaced_after_its_declaration_is_named_missing(tmp_path) -> None:
    mine = copy_of_crun(tmp_path)
    runtimes.declare("mycrun", str(mine))
    mine.write_text("#!/bin/sh\nexit 0\n")  # no longer a runtime
    check = doctor._runtime("mycrun", str(mine))
    assert not check.ok
    assert check.detail.startswith(f"{mine}: not an OCI runtime: `--version` printed ''")
    assert doctor.missing_for([check], ("mycrun",)) == [("mycrun", check)]
    assert "--runtime" in check.fix


@pytest.mark.parametrize("machines", [frozenset({"pc", "q35", "microvm"}), frozenset({"pc"})])
def test_the_microvm_check_follows_qemus_machine_list(monkeypatch, machines) -> None:
    monkeypatch.setattr(bare_qemu, "machine_types", lambda qemu=bare_qemu.QEMU: machines)
    check = doctor.CHECKS["microvm"]()
    assert check.name == "microvm" and check.ok == ("microvm" in machines)
    if not check.ok:
        assert "does not list microvm" in check.detail and check.fix
        assert doctor.missing_for([check], ("microvm", "qemu")) == [("microvm", check)]


def test_the_microvm_backend_needs_the_check() -> None:
    assert "microvm" in registry.info("microvm").needs
    assert registry.info("microvm").sweeper == registry.info("qemu").sweeper
    assert registry.floor_of("microvm") == "qemu"
