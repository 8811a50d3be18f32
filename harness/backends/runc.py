"""The ``runc`` peer backend: the same image, limits and readiness signal, run by runc."""

from __future__ import annotations

from harness.backends.oci.backend import OciBackend


class RuncBackend(OciBackend):
    """runc (Go, the reference runtime), cold (``run -d``) or warm (``create``, then
    ``start``), and restore (``checkpoint`` once, then ``restore``, through CRIU) where
    ``criu check`` passes; works on hybrid cgroup hosts as it is."""

    name = "runc"
    runtime = "runc"
    checkpoints = True
    filter_additions = (
        "an ENOSYS stub before libseccomp's program (runc 1.1 libcontainer/seccomp/patchbpf, "
        "generateEnosysStub): ERRNO(ENOSYS) for a syscall number above the highest the profile "
        "names, per architecture (x86_64, x32, i386), so that a syscall newer than the profile "
        "fails with ENOSYS whatever the default action; its architecture sections come in Go "
        "map order, so the stub's bytes (not its verdicts) vary from one container to the next")
