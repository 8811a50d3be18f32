"""The ``runc`` peer backend: the same image, limits and readiness signal, run by runc."""

from __future__ import annotations

from harness.backends.oci.backend import OciBackend


class RuncBackend(OciBackend):
    """runc (Go, the reference runtime), cold (``run -d``) or warm (``create``, then
    ``start``); works on hybrid cgroup hosts as it is."""

    name = "runc"
    runtime = "runc"
