"""What the container backends (``ours``, crun, runc) share: the one container spec they run,
and the isolation profile it gives, as every backend reports it in ``describe()``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from harness.backends import launch as launches
from harness.backends.base import VOLUME_PATH, BackendError, InstanceSpec
from harness.backends.oci import profile as oci_profile
from runtime.spec import (
    SECCOMP_PROFILE_ANNOTATION,
    SECCOMP_SHA256_ANNOTATION,
    Mount,
    Spec,
    SpecError,
    default_spec,
)


def container_spec(spec: InstanceSpec, **extra: Any) -> Spec:
    """The OCI-shaped container spec of ``spec``: the one ``ours``, crun and runc all run
    (the image's /init or ``spec.command``, namespaces, mounts, limits, device rules, seccomp;
    ``spec.env`` added to the environment, the ``spec.volume`` directory bind-mounted at
    ``VOLUME_PATH``; an imported image's entrypoint, cmd, env, workdir and user as
    :mod:`harness.backends.launch` says). Bad limits or a missing seccomp profile raise
    BackendError."""
    try:
        oci = default_spec(
            spec.image,
            spec.name,
            memory_limit_mib=spec.memory_limit_mib,
            pids_limit=spec.pids_limit,
            cpu_limit=spec.cpu_limit,
            network=spec.network,
            args=list(launches.argv(spec)) if spec.launch else list(spec.command) or None,
            **extra,
        )
        oci.process.env = launches.environment(spec, oci.process.env)
        if spec.launch is not None:
            oci.process.cwd = spec.launch.workdir
            oci.process.uid, oci.process.gid = spec.launch.uid, spec.launch.gid
        if spec.volume is not None:
            oci.mounts.append(Mount(VOLUME_PATH, "bind", str(spec.volume), ["rbind", "rw"]))
            oci.validate()
        return oci
    except SpecError as error:
        raise BackendError(f"{spec.name}: {error}") from None


def security(spec: Spec) -> dict[str, Any]:
    """The isolation profile of ``spec`` for ``describe()["security"]``: what
    :func:`harness.backends.oci.profile.security` reports for the spec's ``config.json``
    (namespaces, capabilities, masked and read-only paths, no_new_privileges, the seccomp
    section's sha256, default action and rule count), the same dict for every container
    backend, plus the seccomp profile's file and its sha256."""
    profile = oci_profile.security(spec.to_oci())
    if profile["seccomp"] is not None:
        profile["seccomp"] = {
            **profile["seccomp"],
            "profile": spec.annotations.get(SECCOMP_PROFILE_ANNOTATION),
            "profile_sha256": spec.annotations.get(SECCOMP_SHA256_ANNOTATION),
        }
    return profile


def default_security() -> dict[str, Any]:
    """:func:`security` of the default container spec (network ``none``, no limits); with
    ``{"error": ...}`` in place of the profile when the seccomp profile is missing."""
    stand_in = SimpleNamespace(rootfs="/", digest="")
    try:
        return security(default_spec(stand_in, "cvbench-describe"))
    except SpecError as error:
        return {**security(default_spec(stand_in, "cvbench-describe", seccomp=False)),
                "seccomp": {"error": str(error)}}
