"""sockperf ``ping-pong --full-rtt`` output: round-trip time percentiles (microseconds)."""

from __future__ import annotations

import re

from harness.workloads import Figure, ParseError, positive

US = 1e-6
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PERCENTILE = re.compile(r"percentile\s+([0-9.]+)\s*=\s*([0-9.]+)")


def parse(text: str) -> list[Figure]:
    """``---> percentile 50.000 = X`` and ``99.000`` -> ``rtt_p50_s``, ``rtt_p99_s`` (s)."""
    found = {float(p): float(v) for p, v in _PERCENTILE.findall(_ANSI.sub("", text))}
    if 50.0 not in found or 99.0 not in found:
        raise ParseError("sockperf: no 'percentile 50.000' and 'percentile 99.000' lines")
    return [Figure("rtt_p50_s", positive(found[50.0], "p50 round trip") * US, "s"),
            Figure("rtt_p99_s", positive(found[99.0], "p99 round trip") * US, "s")]
