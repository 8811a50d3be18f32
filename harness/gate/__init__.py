"""The regression gate: is a candidate run worse than its baseline?

One job per module, each importing only those above it:

- :mod:`~harness.gate.errors`: ``CompareError`` (the runs cannot be compared).
- :mod:`~harness.gate.verdicts`: which way is worse for a metric, the rule it is judged by
  (rank or tolerance, by sample size), and the verdict on a change.
- :mod:`~harness.gate.thresholds`: relative thresholds and their TOML file.
- :mod:`~harness.gate.stats`: sample frames → one :class:`~harness.gate.stats.Row` per metric
  (medians, rule, Mann-Whitney U where it applies, verdict).
- :mod:`~harness.gate.compare`: two run directories (or a directory of baselines per machine
  kind) → a :class:`~harness.gate.compare.Comparison`.
- :mod:`~harness.gate.reference`: the baseline's commit exported and its suite run here.
- :mod:`~harness.gate.confirm`: the verdict: the screen, then the same-machine pairs (A/B in
  ratios and absolute figures) and why each metric passed or failed.
- :mod:`~harness.gate.render`: a comparison as a terminal table (rich), Markdown or HTML; the
  gate's verdict per metric.

The command (``cvbench compare``) is :mod:`harness.commands.compare`; thresholds that would
not flake on run-to-run noise come from ``cvbench thresholds`` (:mod:`harness.spread`).
"""
