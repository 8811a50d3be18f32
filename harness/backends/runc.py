"""The ``runc`` peer backend: the same image, limits and readiness signal, run by runc."""

from __future__ import annotations

from harness.backends.oci import GRACE_S, OciBackend


class RuncBackend(OciBackend):
    """runc (Go, the reference runtime); works on hybrid cgroup hosts as it is."""

    name = "runc"
    runtime = "runc"

    def __init__(self, *, binary: str | None = None, grace_s: float = GRACE_S) -> None:
        super().__init__(binary=binary, grace_s=grace_s)
