"""The cgroup v2 device filter: an eBPF ``BPF_PROG_TYPE_CGROUP_DEVICE`` program made from a
container's device rules (:mod:`runtime.devices`), attached to its cgroup directory.

cgroup v2 has no ``devices.allow``/``devices.deny`` files: the kernel runs the eBPF programs
attached to a cgroup (type ``BPF_CGROUP_DEVICE``) on every mknod and every open of a device
node by a member, with ``struct bpf_cgroup_dev_ctx`` (``u32 access_type`` = access bits << 16
| device type; ``u32 major``; ``u32 minor``) in R1; R0 = 1 allows, 0 refuses (EPERM).

The program is generated the way crun 1.8 does it (``src/libcrun/ebpf.c``,
``bpf_program_init_dev``/``bpf_program_append_dev``/``bpf_program_complete_dev``, called by
``write_devices_resources_v2_internal`` in ``cgroup-resources.c``), instruction for
instruction, so ``ours`` pays what crun pays per container and enforces the same thing:

- a prologue loads the type (R2), the access bits (R3), the major (R4) and the minor (R5);
- the rules are emitted **last first**, each as one block that returns its verdict when the
  request matches (the last matching rule wins, as on cgroup v1): a block checks the type
  (unless ``a``), that the requested access is a subset of the rule's (unless ``rwm``), the
  major and the minor (unless ``*``); a rule that matches everything (``a *:* rwm``) ends the
  program there, since no rule before it can be reached;
- if no such catch-all rule was met, the program ends in a refusal.

runc 1.1 (``libcontainer/cgroups/devices/devicefilter.go``, itself "based on crun's ebpf.c")
first reduces the rules through its v1 emulator, then emits the allow rules in list order after
the same prologue and ends in the default verdict: a different instruction order with the
same verdict for every request. crun and runc both load the program with
``BPF_PROG_LOAD`` and attach it with ``BPF_PROG_ATTACH(BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)``;
so does :func:`attach` (see there for what it leaves out and why).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from hostkit import syscalls as sc
from runtime.devices import DeviceRule

# instruction classes and fields (linux/bpf_common.h, linux/bpf.h)
BPF_LDX = 0x01
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_ALU64 = 0x07
BPF_W = 0x00
BPF_MEM = 0x60
BPF_K = 0x00
BPF_X = 0x08
BPF_AND = 0x50
BPF_RSH = 0x70
BPF_MOV = 0xB0
BPF_JNE = 0x50
BPF_EXIT = 0x90

# struct bpf_cgroup_dev_ctx values (linux/bpf.h)
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

ACCESS_BITS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
ALL_ACCESS = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE
LICENSE = "GPL"  # what crun passes (runc: "Apache"); the program calls no GPL-only helper


@dataclass(frozen=True)
class Insn:
    """One ``struct bpf_insn``: opcode, destination and source registers, offset, immediate."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        """The 8 bytes the kernel reads (x86_64, little-endian; dst in the low nibble)."""
        return struct.pack("<BBhi", self.code, self.dst | self.src << 4, self.off, self.imm)


def ldx_w(dst: int, src: int, off: int) -> Insn:
    """dst = *(u32 *)(src + off)"""
    return Insn(BPF_LDX | BPF_W | BPF_MEM, dst, src, off)


def alu32_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm)


def mov32_reg(dst: int, src: int) -> Insn:
    return Insn(BPF_ALU | BPF_MOV | BPF_X, dst, src)


def mov64_imm(dst: int, imm: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)


def jne_imm(dst: int, imm: int, off: int) -> Insn:
    return Insn(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)


def jne_reg(dst: int, src: int, off: int) -> Insn:
    return Insn(BPF_JMP | BPF_JNE | BPF_X, dst, src, off)


def exit_insn() -> Insn:
    return Insn(BPF_JMP | BPF_EXIT)


PROLOGUE = (
    ldx_w(2, 1, 0), alu32_imm(BPF_AND, 2, 0xFFFF),  # R2 = type
    ldx_w(3, 1, 0), alu32_imm(BPF_RSH, 3, 16),  # R3 = access bits
    ldx_w(4, 1, 4),  # R4 = major
    ldx_w(5, 1, 8),  # R5 = minor
)


def rule_block(rule: DeviceRule) -> tuple[list[Insn], bool]:
    """The block for one rule, and whether the rule matches every request (a catch-all)."""
    access = 0
    for letter in rule.access:
        access |= ACCESS_BITS[letter]
    has_type = rule.type != "a"
    has_access = access != ALL_ACCESS
    has_major = rule.major is not None
    has_minor = rule.minor is not None
    # each check jumps past the rest of the block and its two-instruction verdict
    remaining = has_type + 3 * has_access + has_major + has_minor + 1
    block: list[Insn] = []
    if has_type:
        kind = BPF_DEVCG_DEV_BLOCK if rule.type == "b" else BPF_DEVCG_DEV_CHAR
        block.append(jne_imm(2, kind, remaining))
        remaining -= 1
    if has_access:  # requested bits outside the rule's: not this rule
        block += [mov32_reg(1, 3), alu32_imm(BPF_AND, 1, access), jne_reg(1, 3, remaining - 2)]
        remaining -= 3
    if rule.major is not None:
        block.append(jne_imm(4, rule.major, remaining))
        remaining -= 1
    if rule.minor is not None:
        block.append(jne_imm(5, rule.minor, remaining))
    block += [mov64_imm(0, 1 if rule.allow else 0), exit_insn()]
    return block, not (has_type or has_access or has_major or has_minor)


def instructions(rules: Sequence[DeviceRule]) -> list[Insn]:
    """The program for ``rules`` (in spec order: the last matching rule wins)."""
    program = list(PROLOGUE)
    for rule in reversed(rules):
        block, catch_all = rule_block(rule)
        program += block
        if catch_all:
            return program
    return [*program, mov64_imm(0, 0), exit_insn()]


def encode(program: Sequence[Insn]) -> bytes:
    return b"".join(insn.encode() for insn in program)


def load(rules: Sequence[DeviceRule]) -> int:
    """Load the program for ``rules``; its descriptor (the caller closes it)."""
    return sc.bpf_prog_load(sc.BPF_PROG_TYPE_CGROUP_DEVICE, encode(instructions(rules)),
                            LICENSE)


def attach(directory: str | os.PathLike[str], rules: Sequence[DeviceRule]) -> None:
    """Load the program for ``rules`` and attach it to the cgroup v2 ``directory``; no
    descriptor is kept (the cgroup holds the program until it is removed).

    As crun and runc: ``BPF_PROG_LOAD`` per container (no program shared between containers),
    ``BPF_PROG_ATTACH`` with ``BPF_F_ALLOW_MULTI`` (further programs may be attached below or
    beside it; the kernel runs every attached program of the cgroup and its ancestors and a
    request needs all of them to allow it), no ``expected_attach_type`` (the kernel checks it
    only for socket program types; crun leaves it 0). Left out, because the directory was just
    made by us and nothing can be attached to it yet: the ``BPF_PROG_QUERY`` crun and runc do
    first to find (and replace or detach) programs already attached, which serves their
    ``update`` of a live container.
    """
    program = load(rules)
    try:
        cgroup = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sc.bpf_prog_attach(cgroup, program, sc.BPF_CGROUP_DEVICE, sc.BPF_F_ALLOW_MULTI)
        finally:
            os.close(cgroup)
    finally:
        os.close(program)


def attached(directory: str | os.PathLike[str]) -> list[int]:
    """Ids of the device programs attached to the cgroup ``directory`` itself."""
    cgroup = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return sc.bpf_prog_query(cgroup, sc.BPF_CGROUP_DEVICE)[1]
    finally:
        os.close(cgroup)
