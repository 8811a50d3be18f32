"""The runtime's errors: one line each, meant for a human."""

from __future__ import annotations


class ContainerError(Exception):
    """Bad input or a failed operation; the message is one line meant for a human."""


class NotReadyError(ContainerError):
    """The workload did not print READY in time, or died before it did."""
