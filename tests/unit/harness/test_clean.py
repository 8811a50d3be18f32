"""``cvbench clean``'s order: shared objects are swept after the backends that own them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import clean
from runtime import network


def test_a_lease_whose_owner_a_later_sweeper_removes_is_freed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leases = tmp_path / "leases"
    leases.mkdir()
    monkeypatch.setenv("CVBENCH_NET_LEASES", str(leases))
    bundle = tmp_path / "oci" / "cvbench-x-1"  # an OCI bundle that owns an address
    bundle.mkdir(parents=True)
    (leases / "10.213.0.9").write_text(str(bundle))

    def oci_sweeper() -> list[str]:
        shutil.rmtree(bundle)
        return [f"bundle {bundle}"]

    from runtime.sweep import sweep_network

    sweepers = {"ours": lambda: [], "oci": oci_sweeper}
    sweepers.update({target: sweep_network for target in clean.SHARED_SWEEPERS})
    monkeypatch.setattr(clean, "_sweeper", lambda target: sweepers.get(target, lambda: []))
    monkeypatch.setattr(clean.registry, "sweepers", lambda: ("ours", "oci"))
    monkeypatch.setattr(network, "remove_bridge_if_unused", lambda: False)

    lines = clean.clean_all(force=True)

    assert f"bundle {bundle}" in lines
    assert "address lease 10.213.0.9" in lines
    assert not (leases / "10.213.0.9").exists()
