"""Accel detection: kvm only with vmx/svm and a usable /dev/kvm; forced choices say so."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from vm.accel import detect_accel, host_tsc_khz
from vm.hypervisor import detect_accel_for


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


def test_no_vmx_svm_means_tcg_even_with_dev_kvm(tmp_path: Path) -> None:
    modules = tmp_path / "module"
    (modules / "kvm_pvm").mkdir(parents=True)
    kvm = tmp_path / "kvm"
    kvm.write_text("")
    choice = detect_accel(cpuinfo=_cpuinfo(tmp_path, "lm"), kvm_device=kvm, modules=modules)
    assert choice.accel == "tcg"
    assert "neither vmx nor svm" in choice.reason and "PVM" in choice.reason


def test_vmx_without_usable_device_means_tcg(tmp_path: Path) -> None:
    choice = detect_accel(cpuinfo=_cpuinfo(tmp_path, "vmx"), kvm_device=tmp_path / "none",
                          modules=tmp_path)
    assert choice.accel == "tcg"
    assert "vmx" in choice.reason and "not usable" in choice.reason


def test_vmx_with_a_device_that_is_not_kvm_means_tcg(tmp_path: Path) -> None:
    choice = detect_accel(cpuinfo=_cpuinfo(tmp_path, "svm"), kvm_device=Path("/dev/null"),
                          modules=tmp_path)
    assert choice.accel == "tcg"
    assert "KVM_GET_API_VERSION" in choice.reason


@pytest.mark.parametrize("force", ["kvm", "tcg"])
def test_forced_choice_keeps_the_detection_in_the_reason(tmp_path: Path, force: str) -> None:
    choice = detect_accel(force, cpuinfo=_cpuinfo(tmp_path, ""), kvm_device=tmp_path / "none",
                          modules=tmp_path)
    assert choice.accel == force
    assert choice.reason.startswith(f"forced to {force}") and "detection: tcg" in choice.reason
    assert choice.as_dict() == {"accel": force, "accel_reason": choice.reason}


def test_unknown_force_is_refused() -> None:
    with pytest.raises(ValueError):
        detect_accel("hvf")


def test_this_host_answers_at_once() -> None:
    started = time.monotonic()
    choice = detect_accel()
    assert time.monotonic() - started < 1.0
    flags = Path("/proc/cpuinfo").read_text()
    if " vmx" not in flags and " svm" not in flags:
        assert choice.accel == "tcg"


class FakeRemote:
    def __init__(self, features: list[str], types: list[str]) -> None:
        feats = "".join(f"<feature name='{name}'/>" for name in features)
        doms = "".join(f"<domain type='{kind}'/>" for kind in types)
        self.caps = (f"<capabilities><host><cpu><arch>x86_64</arch>{feats}</cpu></host>"
                     f"<guest><arch name='x86_64'>{doms}</arch></guest></capabilities>")

    def getURI(self) -> str:  # noqa: N802 - libvirt's spelling
        return "qemu+ssh://far/system"

    def getCapabilities(self) -> str:  # noqa: N802
        return self.caps


@pytest.mark.parametrize(("features", "types", "accel", "words"), [
    (["vmx", "ss"], ["qemu", "kvm"], "kvm", "vmx"),
    (["ss"], ["qemu", "kvm"], "tcg", "neither"),  # a PVM host lists kvm too
    (["svm"], ["qemu"], "tcg", "no kvm"),
])
def test_remote_hosts_are_judged_by_their_capabilities(features, types, accel, words) -> None:
    choice = detect_accel_for(FakeRemote(features, types))
    assert choice.accel == accel and words in choice.reason and choice.reason.startswith("far")
    assert detect_accel_for(FakeRemote(features, types), "tcg").accel == "tcg"


def test_host_tsc_khz_only_where_the_tsc_rate_is_known_and_constant(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\ncpu MHz\t\t: 2596.140\n"
                       "flags\t\t: fpu tsc constant_tsc nonstop_tsc tsc_known_freq\n")
    assert host_tsc_khz(cpuinfo) == 2596140
    scaled = tmp_path / "cpuinfo-scaled"  # another file: the reading is cached by path
    scaled.write_text("processor\t: 0\ncpu MHz\t\t: 1800.000\nflags\t\t: fpu tsc constant_tsc\n")
    assert host_tsc_khz(scaled) is None  # a frequency-scaled CPU's MHz is not its TSC's
