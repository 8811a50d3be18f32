"""Relative thresholds per metric, and the TOML file they are kept in.

Thresholds file::

    default = 0.10
    [metrics]
    "ours.cold.start_to_ready_s" = 0.15   # backend.variant.metric beats backend.metric
    "ours.cold.start_to_ready_s_vs_process" = 0.25  # the ratio to the floor: its own entry
    "libvirt.launch_s" = 0.20             # beats metric beats default
    start_to_ready_s = 0.25
    [across_kinds]                        # against a baseline of another machine kind
    default = 0.25
    [across_kinds.metrics]
    "ours.cold.start_to_ready_s" = 0.60

A key names a metric as compared: the absolute figure (``start_to_ready_s``) and its ratio to
the family floor (``start_to_ready_s_vs_process``) have entries of their own, since in a
same-machine A/B (which judges both) the absolute figures drift less than the ratios, whose
floor adds its own noise; a ratio without an entry takes its raw metric's. ``cvbench thresholds``
(:mod:`harness.spread`) writes the file from repeated runs.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.gate.errors import CompareError
from harness.normalize import base_metric

DEFAULT_THRESHOLD = 0.10
_KEYS = {"default", "metrics", "across_kinds"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """Relative thresholds: ``backend.variant.metric``, ``backend.metric``, ``metric``, then
    ``default`` (a ``*_vs_<floor>`` ratio without an entry takes its raw metric's).
    ``across_kinds`` (the file's ``[across_kinds]`` table) applies when the baseline
    was made on another machine kind (CPU model): its figures are the differences seen
    between kinds.
    """

    default: float = DEFAULT_THRESHOLD
    metrics: Mapping[str, float] = field(default_factory=dict)
    across_kinds: Thresholds | None = None

    def for_kinds(self, same_kind: bool) -> Thresholds:
        """These thresholds, or those across machine kinds when the kinds differ."""
        return self if same_kind or self.across_kinds is None else self.across_kinds

    def lookup(self, backend: str, metric: str, variant: str = "") -> float:
        """The threshold of ``metric`` of ``backend`` in ``variant``: the metric's own entry
        first, then (for a ``*_vs_<floor>`` ratio) its raw metric's."""
        names = [metric] if metric == base_metric(metric) else [metric, base_metric(metric)]
        for name in names:
            keys = [f"{backend}.{variant}.{name}"] if variant else []
            for key in (*keys, f"{backend}.{name}", name):
                if key in self.metrics:
                    return self.metrics[key]
        return self.default

    @classmethod
    def load(cls, path: Path | str) -> Thresholds:
        """Read a thresholds file; CompareError naming the file and key if it is wrong."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as error:
            raise CompareError(f"{path}: cannot read thresholds: {error}") from None
        except tomllib.TOMLDecodeError as error:
            raise CompareError(f"{path}: not valid TOML: {error}") from None
        unknown = set(data) - _KEYS
        if unknown:
            raise CompareError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                "expected 'default', a [metrics] table and an [across_kinds] table"
            )
        across = data.get("across_kinds")
        if across is not None and not isinstance(across, dict):
            raise CompareError(f"{path}: 'across_kinds' must be a table")
        across_kinds = _from_table(path, across, "across_kinds.") if across else None
        thresholds = _from_table(path, data, "", across_kinds)
        log.info("thresholds from %s: default %g, %d per metric, %s", path,
                 thresholds.default, len(thresholds.metrics),
                 f"across kinds default {across_kinds.default:g}, "
                 f"{len(across_kinds.metrics)} per metric" if across_kinds
                 else "none across kinds")
        return thresholds


def _from_table(path: Path, data: dict[str, Any], where: str,
                across_kinds: Thresholds | None = None) -> Thresholds:
    unknown = set(data) - {"default", "metrics"}
    if where and unknown:
        raise CompareError(f"{path}: unknown key(s) "
                           f"{', '.join(sorted(where + k for k in unknown))}")
    default = _threshold(path, f"{where}default", data.get("default", DEFAULT_THRESHOLD))
    table = data.get("metrics", {})
    if not isinstance(table, dict):
        raise CompareError(f"{path}: '{where}metrics' must be a table of metric = fraction")
    metrics = {key: _threshold(path, f"{where}metrics.{key}", value)
               for key, value in _flatten(table).items()}
    return Thresholds(default=default, metrics=metrics, across_kinds=across_kinds)


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ours": {"start_to_ready_s": 0.2}}`` (unquoted dotted key) -> ``ours.start_to_ready_s``.
    """
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat |= _flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def _threshold(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise CompareError(
            f"{path}: {key} = {value!r}: expected a non-negative fraction such as 0.10"
        )
    return float(value)
