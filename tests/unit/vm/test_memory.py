"""Guest-RAM mapping detection and the memory views (synthetic smaps, this process)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import psutil
import pytest

from vm import memory

MIB = 1 << 20


def _map(start: int, size: int, perms: str = "rw-p", path: str = "[anon]", pss: int = 0):
    return SimpleNamespace(addr=f"{start:x}-{start + size:x}", perms=perms, path=path,
                           rss=pss, pss=pss)


class FakeProcess:
    maps = [
        _map(0x1000_0000, 4 * MIB, "r-xp", "/usr/bin/qemu-system-x86_64", pss=3 * MIB),
        _map(0x2000_0000, 1024 * MIB, "rwxp", pss=30 * MIB),  # TCG translation cache
        _map(0x7000_0000, 16 * MIB, pss=16 * MIB),
        _map(0x8000_0000, 128 * MIB, pss=90 * MIB),  # guest RAM
        _map(0x9000_0000, 130 * MIB, pss=1 * MIB),
    ]

    def __init__(self, _pid: int) -> None:
        pass

    def memory_maps(self, grouped: bool = True):
        assert not grouped
        return self.maps

    def memory_full_info(self):
        return SimpleNamespace(pss=140 * MIB, uss=138 * MIB, rss=150 * MIB)


@pytest.fixture
def fake_process(monkeypatch):
    monkeypatch.setattr(memory.psutil, "Process", FakeProcess)


def test_guest_ram_is_the_guest_sized_anonymous_mapping(fake_process) -> None:
    assert memory.guest_ram_mapping(1, 128 * MIB).pss == 90 * MIB
    usage = memory.qemu_memory(1, 128)
    assert (usage.pss, usage.uss, usage.rss) == (140 * MIB, 138 * MIB, 150 * MIB)
    assert usage.guest_ram == 90 * MIB and usage.vmm_overhead == 50 * MIB


def test_closest_larger_mapping_when_none_is_exact(fake_process) -> None:
    assert memory.guest_ram_mapping(1, 120 * MIB).pss == 90 * MIB  # not the rwx TB cache
    assert memory.guest_ram_mapping(1, 2048 * MIB) is None
    assert memory.qemu_memory(1, 2048).vmm_overhead is None


def test_real_process_views_are_consistent() -> None:
    usage = memory.qemu_memory(os.getpid(), 1 << 20)  # no 1 TiB mapping here
    assert usage.guest_ram is None
    assert 0 < usage.uss <= usage.pss <= usage.rss
    with pytest.raises(psutil.NoSuchProcess):
        memory.qemu_memory(2**22 + 1, 128)


def test_mem_available_is_positive() -> None:
    from hostkit.meminfo import mem_available

    assert mem_available() > 0
