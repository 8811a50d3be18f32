"""What the container backends (``ours``, crun, runc) share: the one container spec they run."""

from __future__ import annotations

from typing import Any

from harness.backends.base import VOLUME_PATH, BackendError, InstanceSpec
from runtime.spec import Mount, Spec, SpecError, default_spec


def container_spec(spec: InstanceSpec, **extra: Any) -> Spec:
    """The OCI-shaped container spec of ``spec``: the one ``ours``, crun and runc all run
    (image's /init, namespaces, mounts, limits; ``spec.env`` added to the environment, the
    ``spec.volume`` directory bind-mounted at ``VOLUME_PATH``). Bad limits raise
    BackendError."""
    try:
        oci = default_spec(
            spec.image,
            spec.name,
            memory_limit_mib=spec.memory_limit_mib,
            pids_limit=spec.pids_limit,
            cpu_limit=spec.cpu_limit,
            network=spec.network,
            **extra,
        )
        oci.process.env += list(spec.env)
        if spec.volume is not None:
            oci.mounts.append(Mount(VOLUME_PATH, "bind", str(spec.volume), ["rbind", "rw"]))
            oci.validate()
        return oci
    except SpecError as error:
        raise BackendError(f"{spec.name}: {error}") from None
