"""The gate's one error."""

from __future__ import annotations


class CompareError(ValueError):
    """The runs cannot be compared (bad input); the message says why."""
