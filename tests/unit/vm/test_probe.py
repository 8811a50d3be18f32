"""``vm.probe``: will libvirt re-probe QEMU at every start because of /dev/kvm's mode?"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

import pytest

from vm import probe


@pytest.fixture
def qemu_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "qemu.conf"
    conf.write_text('#user = "someone"\nuser = "nobody"\n')
    return conf


def _device(tmp_path: Path, mode: int, gid: int) -> Path:
    device = tmp_path / "kvm"
    device.write_text("")
    os.chown(device, 0, gid)
    device.chmod(mode)
    return device


def test_qemu_user_from_qemu_conf(qemu_conf: Path, tmp_path: Path) -> None:
    assert probe.qemu_user(qemu_conf) == "nobody"
    assert probe.qemu_user(tmp_path / "missing.conf") == probe.DEFAULT_QEMU_USER


def test_no_device_means_no_reprobe(tmp_path: Path, qemu_conf: Path) -> None:
    assert probe.kvm_device_problem(tmp_path / "none", qemu_conf) is None


@pytest.mark.root
def test_root_only_device_is_a_problem_and_names_the_user(tmp_path, qemu_conf) -> None:
    problem = probe.kvm_device_problem(_device(tmp_path, 0o600, 0), qemu_conf)
    assert problem and "0600" in problem and "nobody" in problem and "re-probes" in problem


@pytest.mark.root
def test_group_access_counts_when_the_user_is_in_the_group(tmp_path, qemu_conf) -> None:
    nobody = pwd.getpwnam("nobody")
    own_group = grp.getgrgid(nobody.pw_gid).gr_gid  # nobody's primary group: nogroup
    assert probe.kvm_device_problem(_device(tmp_path, 0o660, own_group), qemu_conf) is None
    assert probe.kvm_device_problem(_device(tmp_path, 0o600, own_group), qemu_conf)
    assert probe.kvm_device_problem(_device(tmp_path, 0o666, 0), qemu_conf) is None
