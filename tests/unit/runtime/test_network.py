"""Networking's pure parts: veth names and address leases (no root needed)."""

from __future__ import annotations

from runtime import network


def test_veth_names_fit_ifnamsiz():
    name = network.veth_name("/var/lib/cvbench/containers/cvbench-some-long-name-0001")
    assert name.startswith("cvbench-") and len(name) <= 15
    assert name == network.veth_name("/var/lib/cvbench/containers/cvbench-some-long-name-0001")


def test_address_leases_are_unique_and_released(tmp_path, monkeypatch):
    monkeypatch.setenv("CVBENCH_NET_LEASES", str(tmp_path / "leases"))
    owner = tmp_path / "c1"
    owner.mkdir()
    addresses = {network.allocate_address(str(owner)) for _ in range(50)}
    assert len(addresses) == 50
    assert network.GATEWAY not in addresses
    assert all(a.startswith("10.213.") for a in addresses)
    assert network.stale_leases() == []
    owner.rmdir()
    assert sorted(network.stale_leases()) == sorted(addresses)
    for address in addresses:
        network.release_address(address)
    assert not list((tmp_path / "leases").iterdir())
