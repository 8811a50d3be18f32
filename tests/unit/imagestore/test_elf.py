"""The ELF reader: a program's loader and needed libraries, a kernel module's dependencies."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagestore import elf

LS = Path("/bin/ls")
MODULES = Path("/var/cache/cvbench/guest/modules")


def test_elf_reads_loader_and_needed_libraries() -> None:
    info = elf.dynamic(LS)
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert "libc.so.6" in info.needed
    assert elf.is_elf(LS) and not elf.is_elf(Path(__file__))
    with pytest.raises(elf.ElfError):
        elf.dynamic(Path(__file__))


def test_elf_reads_a_kernel_modules_dependencies() -> None:
    found = sorted(MODULES.glob("*/kernel/drivers/net/virtio_net.ko"))
    if not found:
        pytest.skip("no guest kernel modules (scripts/setup.sh extracts them)")
    info = elf.modinfo(found[0])
    assert info["name"] == "virtio_net"
    assert "virtio_ring" in info["depends"].split(",")
    with pytest.raises(elf.ElfError, match="modinfo"):
        elf.modinfo(LS)
