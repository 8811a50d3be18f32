"""The regression gate: is a candidate run worse than its baseline?

One job per module, each importing only those above it:

- :mod:`~harness.gate.errors`: ``CompareError`` (the runs cannot be compared).
- :mod:`~harness.gate.verdicts`: which way is worse for a metric, and the verdict on a change.
- :mod:`~harness.gate.thresholds`: relative thresholds and their TOML file.
- :mod:`~harness.gate.stats`: sample frames → one :class:`~harness.gate.stats.Row` per metric
  (medians, Mann-Whitney U, verdict).
- :mod:`~harness.gate.compare`: two run directories (or a directory of baselines per machine
  kind) → a :class:`~harness.gate.compare.Comparison`.
- :mod:`~harness.gate.render`: a comparison as a terminal table (rich) or Markdown.

The command (``cvbench compare``) is :mod:`harness.commands.compare`; thresholds that would
not flake on run-to-run noise come from :mod:`harness.spread`.
"""
