"""The ``crun`` peer backend: the same image, limits and readiness signal, run by crun."""

from __future__ import annotations

from harness.backends.oci import GRACE_S, OciBackend


class CrunBackend(OciBackend):
    """crun (C, fast); on a hybrid cgroup host it runs with a private, v1-only cgroup view."""

    name = "crun"
    runtime = "crun"

    def __init__(self, *, binary: str | None = None, grace_s: float = GRACE_S) -> None:
        super().__init__(binary=binary, grace_s=grace_s)
