"""Who can start from a snapshot (the ``restore`` variant), and the one line that refuses a
scenario asking for it where that cannot be done: checked by the runner once the backends
are made and before any of them is prepared, so nothing has started (exit code 2).

- VM backends: ``qemu`` restores any guest without a volume (each restore gets its own tap
  and disk copy), a local ``libvirt`` guests with ``network = "none"`` and no disk
  (:func:`guest_refusal`; :mod:`harness.backends.vm_restore` says why).
- Container backends: ``runc`` restores through CRIU (:mod:`harness.backends.oci.checkpoint`)
  where ``criu check`` passes on the host (:func:`criu_problem`); where it fails (Debian's
  criu 3.17 on recent kernels: "vdso: Unexpected rt vDSO area bounds") or criu is missing,
  the line names the host's reason (:func:`criu_reason`). ``ours`` has no restore: CRIU
  would restore it less isolated than it starts cold (:data:`NO_RESTORE`); crun has none
  either (``docs/findings/restore.md`` says why). A restore takes ``network = "none"`` and no
  volume there.
- Any other backend without the variant: "it has no restore start".
- An imported image on any backend: a restore proves itself by a ping that cvbench's own
  workload answers (a responder in front of its ``/init``), which an imported image lacks.

No libvirt import here: container-only runs load this module too.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from typing import Any

from harness.backends import registry
from harness.backends.base import RESTORE, Backend
from harness.backends.ready_rule import DEFAULT as DEFAULT_READY

CRIU_CHECK_TIMEOUT_S = 60.0


def guest_refusal(network: str, disk: bool, *, devices: bool = False,
                  volume: bool = False) -> str | None:
    """Why a restore of a guest with this network and disk is refused (None: it is not).
    ``devices``: the backend restores the saved guest's tap and disk (bare QEMU)."""
    if volume:
        return "restore takes no volume (the saved guest's volume disk is the host's)"
    if devices:
        return None
    if network != "none" or disk:
        return ('restore takes network = "none" and disk = false here: restored guests '
                "would share the saved guest's tap and disk")
    return None


def first_error(output: str) -> str:
    """The first line of a tool's output that says ``Error`` (else its first line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[0]


def criu_problem(criu: str | None = None) -> str | None:
    """Why CRIU cannot checkpoint and restore on this host, in a few words; None where
    ``criu check`` passes. ``criu`` is the binary (default: ``criu`` on PATH)."""
    criu = criu or shutil.which("criu")
    if criu is None:
        return "criu is not installed"
    return _criu_check(criu)


@functools.cache
def _criu_check(criu: str) -> str | None:
    """``criu check`` once per binary and process (it takes a moment; the host's kernel
    does not change under a run)."""
    try:
        result = subprocess.run([criu, "check"], capture_output=True, text=True,
                                timeout=CRIU_CHECK_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"criu check cannot run: {error}"
    output = f"{result.stderr}\n{result.stdout}"
    if result.returncode != 0 or "Error" in output:
        return f"criu check fails on this host: {first_error(output)}"
    return None


# Why a container backend has no restore where ``criu check`` passes, by backend name.
NO_RESTORE = {
    "ours": ("a CRIU restore would run ours with less isolation than its cold start (CRIU "
             "before 3.19 restores no no_new_privs; CRIU gives a restored process the "
             "restorer's session keyring), so ours has no restore (docs/findings/restore.md)"),
}


def criu_reason(criu: str | None = None, backend: str = "") -> str:
    """Why container ``backend`` gives no restore on this host, in a few words: the host's
    CRIU problem first, then the backend's own reason (:data:`NO_RESTORE`)."""
    return criu_problem(criu) or NO_RESTORE.get(backend) or (
        "criu check passes, but cvbench restores runc's containers only "
        "(docs/findings/restore.md)")


def refusal(name: str, backend: Backend, scenario: Any, *, imported: bool = False
            ) -> str | None:
    """The line refusing ``scenario`` on backend ``name``, if it asks for a restore that
    backend cannot make; None otherwise. A restore takes the default readiness rule only:
    a restored guest proves it runs by answering a ping with READY (its workload's own
    readiness lies before the snapshot); and an image cvbench built (not ``imported``): the
    saved guest is booted with cvbench's console responder, which ends in the image's own
    ``/init``, where an imported image's guest runs its own process (vm.guest.GuestLaunch)."""
    plan = scenario.for_backend(name)
    if RESTORE not in getattr(plan.params, "variants", ()):
        return None
    where = f"scenario {scenario.name!r}: backend {name!r} cannot restore"
    if getattr(scenario, "ready", str(DEFAULT_READY)) != str(DEFAULT_READY):
        return (f"{where}: ready = {scenario.ready!r}: a restored guest answers a ping with "
                f"READY, so a restore takes the default rule ({DEFAULT_READY}) only")
    if RESTORE not in getattr(backend, "variants", ()):
        reason = (criu_reason(backend=name) if registry.family(name) == registry.CONTAINER
                  else "it has no restore start")
        return f"{where}: {reason}"
    if imported:
        return (f"{where}: an imported image (its guest execs the image's process, not "
                "cvbench's /init with the restore's console responder)")
    if registry.family(name) == registry.VM:
        refused = guest_refusal(plan.network, plan.disk,
                                devices=bool(getattr(backend, "restores_devices", False)))
    else:
        refused = container_refusal(plan.network, getattr(plan, "volume", None) is not None)
    return f"{where}: {refused}" if refused else None


def container_refusal(network: str, volume: bool) -> str | None:
    """Why a restore of a container with this network (and a volume) is refused (None: it
    is not): the network namespace and the volume would be the host's, not the
    checkpoint's."""
    if network != "none":
        return (f'restore takes network = "none", not {network!r}: a restored container '
                "would need the checkpointed one's network namespace")
    if volume:
        return "restore takes no volume (the checkpointed container's volume is the host's)"
    return None
