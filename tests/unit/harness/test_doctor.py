"""`cvbench doctor`'s microvm check: what the installed QEMU's ``-machine help`` lists."""

from __future__ import annotations

import pytest

from harness import doctor
from harness.backends import registry
from vm import bare_qemu


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
