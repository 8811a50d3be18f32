"""Run metadata's accel: of this host, or of the remote libvirt host CVBENCH_LIBVIRT_URI names."""

from __future__ import annotations

import libvirt

from harness import hostinfo
from vm import hypervisor


def test_local_accel_is_detected_without_libvirt(monkeypatch) -> None:
    monkeypatch.delenv("CVBENCH_LIBVIRT_URI", raising=False)
    found = hostinfo.accel()
    assert found["accel"] in ("kvm", "tcg") and found["reason"]


def test_remote_accel_comes_from_the_remote_capabilities(monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_LIBVIRT_URI", "qemu+ssh://far.invalid/system")
    monkeypatch.setattr(hypervisor, "is_local", lambda uri: False)
    monkeypatch.setattr(hypervisor, "connect", lambda uri=None: libvirt.open("test:///default"))
    found = hostinfo.accel()
    assert found["uri"] == "qemu+ssh://far.invalid/system"
    assert found["accel"] == "tcg"  # the test driver's host shows no vmx/svm


def test_unreachable_remote_is_reported_not_raised(monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_LIBVIRT_URI", "qemu+ssh://far.invalid/system")
    monkeypatch.setattr(hypervisor, "is_local", lambda uri: False)

    def refuse(uri=None):
        raise libvirt.libvirtError("cannot connect")

    monkeypatch.setattr(hypervisor, "connect", refuse)
    found = hostinfo.accel()
    assert found["accel"] == "unknown" and "unreachable" in found["reason"]
