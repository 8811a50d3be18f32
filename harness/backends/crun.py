"""The ``crun`` peer backend: the same image, limits and readiness signal, run by crun."""

from __future__ import annotations

from harness.backends.oci.backend import OciBackend


class CrunBackend(OciBackend):
    """crun (C, fast), cold (``run -d``) or warm (``create``, then ``start``); on a hybrid
    cgroup host it runs with a private, v1-only cgroup view."""

    name = "crun"
    runtime = "crun"
    filter_additions = ("none: crun 1.8 installs libseccomp's program of config.json's section "
                        "as exported (libcrun_generate_seccomp, src/libcrun/seccomp.c)")
