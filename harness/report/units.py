"""Numbers in human units and three significant figures: ``1.02 ms``, ``2.16 s``,
``0.452 MiB``, ``4.12×``, never ``2.035e+07``."""

from __future__ import annotations

import math
from typing import Any

MIB = 1024 * 1024
GIB = 1024 * MIB
SIGNIFICANT = 3
MINUS = "\u2212"  # a real minus sign, as a reader expects it in a table


def sig(value: float, digits: int = SIGNIFICANT) -> str:
    """``value`` rounded to ``digits`` significant figures, without an exponent, with
    thousands separators and the trailing zeros that carry precision (``15.0``)."""
    if value is None or not math.isfinite(value):
        return "-" if value is None or math.isnan(value) else ("∞" if value > 0 else f"{MINUS}∞")
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = digits - 1 - magnitude
    rounded = round(value, decimals)
    if rounded != 0 and math.floor(math.log10(abs(rounded))) > magnitude:  # 999.6 -> 1000
        decimals -= 1
        rounded = round(value, decimals)
    text = f"{rounded:,.{max(decimals, 0)}f}"
    return text.replace("-", MINUS)


def seconds(value: float) -> str:
    """A duration: µs below 1 ms, ms below 1 s, else s."""
    if value is None or not math.isfinite(value):
        return sig(value)
    size = abs(value)
    if size == 0:
        return "0 s"
    if size < 1e-3:
        return f"{sig(value * 1e6)} µs"
    if size < 1:
        return f"{sig(value * 1e3)} ms"
    return f"{sig(value)} s"


def mebibytes(value: float) -> str:
    """An amount of memory in MiB (GiB from 10 GiB on: host-wide counters)."""
    if value is None or not math.isfinite(value):
        return sig(value)
    if abs(value) >= 10 * GIB:
        return f"{sig(value / GIB)} GiB"
    return f"{sig(value / MIB)} MiB"


def count(value: float, unit: str = "") -> str:
    if value is None or not math.isfinite(value):
        return sig(value)
    text = f"{value:,.0f}".replace("-", MINUS) if float(value).is_integer() else sig(value)
    return f"{text} {unit}".rstrip()


def ratio(value: float) -> str:
    """``4.12×``; ``-`` when there is none."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{sig(value)}×"


def interval(low: float, high: float) -> str:
    """A confidence interval of a ratio: ``3.90–4.40``."""
    if any(v is None or not math.isfinite(v) for v in (low, high)):
        return ""
    return f"{sig(low)}–{sig(high)}"


def human(value: Any, unit: str) -> str:
    """A value of ``unit`` (as samples.csv names units) in human units."""
    if value is None:
        return "-"
    value = float(value)
    if unit == "s":
        return seconds(value)
    if unit == "bytes":
        return mebibytes(value)
    if unit == "ratio":
        return ratio(value)
    if unit in ("count", ""):
        return count(value)
    return count(value, unit)


def scale(unit: str, values: Any) -> tuple[float, str]:
    """A factor and a unit name to draw ``values`` of ``unit`` with on one axis."""
    import numpy as np

    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite)]
    typical = float(np.median(finite)) if len(finite) else 0.0
    if unit == "s":
        return (1.0, "s") if typical >= 1 else (1e3, "ms")
    if unit == "bytes":
        return 1 / MIB, "MiB"
    return 1.0, unit
