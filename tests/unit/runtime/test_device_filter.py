"""The cgroup v2 device filter's instructions, against bytes written out by hand.

Each expected instruction is the 8 bytes of a ``struct bpf_insn`` as the kernel reads them on
x86_64: opcode, ``src << 4 | dst``, a little-endian s16 offset, a little-endian s32 immediate.
Opcodes (linux/bpf_common.h): 0x61 ldx|mem|w, 0x54 alu32 and imm, 0x74 alu32 rsh imm,
0xbc alu32 mov reg, 0xb7 alu64 mov imm, 0x55 jne imm, 0x5d jne reg, 0x95 exit. Device types:
block 1, char 2; access bits: mknod 1, read 2, write 4 (struct bpf_cgroup_dev_ctx).
"""

from __future__ import annotations

import pytest

from runtime import device_filter
from runtime.devices import DEFAULT_ALLOW, DENY_ALL, DeviceRule, container_rules


def _hex(program: bytes) -> list[str]:
    return [program[i:i + 8].hex(" ") for i in range(0, len(program), 8)]


PROLOGUE = [
    "61 12 00 00 00 00 00 00",  # r2 = *(u32 *)(r1 + 0)
    "54 02 00 00 ff ff 00 00",  # w2 &= 0xffff            (type)
    "61 13 00 00 00 00 00 00",  # r3 = *(u32 *)(r1 + 0)
    "74 03 00 00 10 00 00 00",  # w3 >>= 16               (access)
    "61 14 04 00 00 00 00 00",  # r4 = *(u32 *)(r1 + 4)   (major)
    "61 15 08 00 00 00 00 00",  # r5 = *(u32 *)(r1 + 8)   (minor)
]
ALLOW = ["b7 00 00 00 01 00 00 00", "95 00 00 00 00 00 00 00"]  # r0 = 1; exit
DENY = ["b7 00 00 00 00 00 00 00", "95 00 00 00 00 00 00 00"]  # r0 = 0; exit


def test_deny_all_then_null():
    program = device_filter.encode(device_filter.instructions(
        [DENY_ALL, DeviceRule(True, "c", 1, 3, "rwm")]))
    assert _hex(program) == [
        *PROLOGUE,
        # c 1:3 rwm, checked first (the last rule wins); each jump lands after its verdict
        "55 02 04 00 02 00 00 00",  # if r2 != 2 (char) goto +4
        "55 04 03 00 01 00 00 00",  # if r4 != 1 goto +3
        "55 05 02 00 03 00 00 00",  # if r5 != 3 goto +2
        *ALLOW,
        # a *:* rwm deny: matches everything, so it ends the program
        *DENY,
    ]


def test_access_subset_check_and_wildcard_numbers():
    program = device_filter.encode(device_filter.instructions(
        [DeviceRule(True, "b", None, None, "m"), DeviceRule(False, "c", 136, None, "rw")]))
    assert _hex(program) == [
        *PROLOGUE,
        # deny c 136:* rw
        "55 02 06 00 02 00 00 00",  # if r2 != 2 goto +6
        "bc 31 00 00 00 00 00 00",  # w1 = w3
        "54 01 00 00 06 00 00 00",  # w1 &= 6 (read | write)
        "5d 31 03 00 00 00 00 00",  # if r1 != r3 goto +3 (asked for more than rw)
        "55 04 02 00 88 00 00 00",  # if r4 != 136 goto +2
        *DENY,
        # allow b *:* m
        "55 02 05 00 01 00 00 00",  # if r2 != 1 (block) goto +5
        "bc 31 00 00 00 00 00 00",
        "54 01 00 00 01 00 00 00",  # w1 &= 1 (mknod)
        "5d 31 02 00 00 00 00 00",  # if r1 != r3 goto +2
        *ALLOW,
        # no catch-all rule: refuse what nothing matched
        *DENY,
    ]


def test_a_catch_all_hides_the_rules_before_it():
    rules = [DeviceRule(True, "c", 1, 3, "rwm"), DeviceRule(True)]  # allow c 1:3, allow all
    assert _hex(device_filter.encode(device_filter.instructions(rules))) == [*PROLOGUE, *ALLOW]


def test_the_default_rules_program():
    rules = container_rules([DENY_ALL])
    program = device_filter.instructions(rules)
    # 6 prologue; "c *:* m" and "b *:* m" 6 each; nine "c M:m rwm" 5 each; "c 136:*" 4;
    # the deny-all verdict 2
    assert len(program) == 6 + 2 * 6 + 9 * 5 + 4 + 2 == 69
    assert len(DEFAULT_ALLOW) == 12
    first = device_filter.encode(program[6:11])  # the last default rule: /dev/net/tun
    assert _hex(first)[:3] == ["55 02 04 00 02 00 00 00", "55 04 03 00 0a 00 00 00",
                               "55 05 02 00 c8 00 00 00"]


@pytest.mark.parametrize("access", ["x", "rwx"])
def test_only_rwm_access_letters(access):
    with pytest.raises(ValueError):
        DeviceRule.from_oci({"allow": True, "type": "c", "access": access})
