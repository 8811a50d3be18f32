"""iperf3 ``-J`` client output: the receiver's throughput over the whole test."""

from __future__ import annotations

import json

from harness.workloads import Figure, ParseError, positive


def parse(text: str) -> list[Figure]:
    """``end.sum_received.bits_per_second`` -> ``throughput_mbit_s`` (Mbit/s)."""
    start = text.find("{")
    try:
        document = json.loads(text[start:]) if start >= 0 else None
        if document is None:
            raise ValueError("no JSON document")
    except ValueError as error:
        raise ParseError(f"iperf3: unreadable JSON output ({error})") from None
    if document.get("error"):
        raise ParseError(f"iperf3: {document['error']}")
    try:
        bits = float(document["end"]["sum_received"]["bits_per_second"])
    except (KeyError, TypeError, ValueError):
        raise ParseError("iperf3: no end.sum_received.bits_per_second") from None
    return [Figure("throughput_mbit_s", positive(bits / 1e6, "throughput"), "Mbit/s")]
