"""`cvbench doctor`'s check of a user-named OCI runtime: it stands in crun's binary check for
that backend, and names what its binary lacks once it no longer is a runtime."""

from __future__ import annotations

import pytest
from oci_runtimes import copy_of_crun, forgetting_user_runtimes

from harness import doctor
from harness.backends.oci import runtimes


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
