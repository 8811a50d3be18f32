"""redis-benchmark ``--csv`` output: requests per second and latency percentiles per test."""

from __future__ import annotations

import csv
import io

from harness.workloads import Figure, ParseError, positive

MS = 1e-3


def parse(text: str, test: str) -> list[Figure]:
    """The row of ``test`` (``GET``, ``SET``): ``ops_per_s`` (ops/s), ``latency_p50_s`` and
    ``latency_p99_s`` (s)."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    row = next((r for r in rows if r.get("test", "").upper() == test.upper()), None)
    if row is None:
        raise ParseError(f"redis-benchmark: no CSV row for {test}")
    try:
        rps = float(row["rps"])
        p50, p99 = float(row["p50_latency_ms"]), float(row["p99_latency_ms"])
    except (KeyError, TypeError, ValueError):
        raise ParseError(f"redis-benchmark: the {test} row lacks rps or p50/p99") from None
    return [Figure("ops_per_s", positive(rps, "requests per second"), "ops/s"),
            Figure("latency_p50_s", positive(p50, "p50 latency") * MS, "s"),
            Figure("latency_p99_s", positive(p99, "p99 latency") * MS, "s")]
