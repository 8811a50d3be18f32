"""sysbench 1.0 ``cpu`` and ``memory`` output (the human-readable report)."""

from __future__ import annotations

import re

from harness.workloads import Figure, ParseError, positive

_EVENTS = re.compile(r"events per second:\s*([0-9.]+)")
_MIB = re.compile(r"MiB transferred \(([0-9.]+) MiB/sec\)")


def parse_cpu(text: str) -> list[Figure]:
    """``events per second:`` -> ``events_per_s`` (events/s)."""
    match = _EVENTS.search(text)
    if not match:
        raise ParseError("sysbench cpu: no 'events per second' line")
    return [Figure("events_per_s", positive(float(match.group(1)), "events per second"),
                   "events/s")]


def parse_memory(text: str) -> list[Figure]:
    """``... MiB transferred (X MiB/sec)`` -> ``bandwidth_mib_s`` (MiB/s)."""
    match = _MIB.search(text)
    if not match:
        raise ParseError("sysbench memory: no 'MiB transferred (... MiB/sec)' line")
    return [Figure("bandwidth_mib_s", positive(float(match.group(1)), "MiB/sec"), "MiB/s")]
