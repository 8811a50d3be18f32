"""fio ``--output-format=json``: one job; IOPS, bandwidth and completion-latency percentiles."""

from __future__ import annotations

import json
from typing import Any

from harness.workloads import Figure, ParseError, positive

NS = 1e-9


def _job(text: str) -> dict[str, Any]:
    start = text.find("{")  # fio may print notes before the JSON document
    if start < 0:
        raise ParseError("fio: no JSON document in the output")
    try:
        document = json.loads(text[start:])
        job = document["jobs"][0]
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise ParseError(f"fio: unreadable JSON output ({type(error).__name__}: {error})") from None
    if job.get("error"):
        raise ParseError(f"fio: the job failed with error {job['error']}")
    return job


def _side(job: dict[str, Any], direction: str) -> dict[str, Any]:
    try:
        side = job[direction]
        if not side["io_bytes"]:
            raise ParseError(f"fio: no {direction} I/O was done")
        return side
    except (KeyError, TypeError):
        raise ParseError(f"fio: no '{direction}' figures in the job") from None


def parse_random(text: str, direction: str) -> list[Figure]:
    """Small random I/O: ``iops`` (IOPS) and completion latency ``latency_p50_s``,
    ``latency_p99_s`` (s) of ``direction`` (``read`` or ``write``)."""
    side = _side(_job(text), direction)
    try:
        percentiles = side["clat_ns"]["percentile"]
        p50, p99 = float(percentiles["50.000000"]), float(percentiles["99.000000"])
        iops = float(side["iops"])
    except (KeyError, TypeError, ValueError):
        raise ParseError(f"fio: no {direction} IOPS or clat percentiles") from None
    return [Figure("iops", positive(iops, "IOPS"), "IOPS"),
            Figure("latency_p50_s", positive(p50, "p50 latency") * NS, "s"),
            Figure("latency_p99_s", positive(p99, "p99 latency") * NS, "s")]


def parse_sequential(text: str, direction: str) -> list[Figure]:
    """Large sequential I/O: ``bandwidth_mib_s`` (MiB/s) of ``direction``."""
    side = _side(_job(text), direction)
    try:
        bandwidth = float(side["bw_bytes"]) / (1 << 20)
    except (KeyError, TypeError, ValueError):
        raise ParseError(f"fio: no {direction} bandwidth") from None
    return [Figure("bandwidth_mib_s", positive(bandwidth, "bandwidth"), "MiB/s")]
