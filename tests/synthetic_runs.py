"""Synthetic run directories with known shifts, written through the real ``RunWriter``.

``make_run(results_dir, "base")`` writes a complete quick-suite-shaped run (startup, density,
memory on every backend) with seeded log-normal noise; ``shifts`` multiplies chosen metrics
(``{"start_to_ready_s": 1.3}`` or ``{("ours", "start_to_ready_s"): 1.3}``) and ``speed``
multiplies every latency of every backend, the floors included (a slower machine);
``vm_speed``, if given, does so for the VM family instead (a host that emulates slower).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from harness.results import RunWriter, Sample

MIB = 1024 * 1024
CONTAINERS = ("process", "ours", "crun", "runc")
VMS = ("qemu", "libvirt")
BACKENDS = (*CONTAINERS, *VMS)
START_S = {"process": 0.001, "ours": 0.004, "crun": 0.011, "runc": 0.026, "qemu": 1.8,
           "libvirt": 2.0}
STOP_S = {"process": 0.0005, "ours": 0.002, "crun": 0.008, "runc": 0.015, "qemu": 0.005,
          "libvirt": 0.2}
PSS = {"process": 0.3, "ours": 0.45, "crun": 0.65, "runc": 0.7, "qemu": 140.0,
       "libvirt": 141.0}  # MiB
DIGEST = "sha256:" + "ab" * 32

Shifts = Mapping[str | tuple[str, str], float]


def _factor(shifts: Shifts, backend: str, metric: str) -> float:
    return shifts.get((backend, metric), shifts.get(metric, 1.0))


def make_run(
    results_dir: Path,
    run_id: str,
    *,
    started_at: str = "2026-11-27T10:00:00+00:00",
    shifts: Shifts | None = None,
    speed: float = 1.0,
    vm_speed: float | None = None,
    noise: float = 0.03,
    seed: int = 0,
    repetitions: int = 20,
    backends: tuple[str, ...] = BACKENDS,
    accel: str = "tcg",
    image_digest: str = DIGEST,
    hostname: str = "host-a",
    cpu_model: str = "Test CPU",
    kinds: tuple[str, ...] = ("startup", "density", "memory"),
) -> Path:
    """Write ``results_dir/run_id`` and return it."""
    shifts = shifts or {}
    rng = np.random.default_rng(seed)
    metadata = {"suite": "quick", "scenarios": list(kinds),
                "backends": {b: {"accel": accel if b in VMS else "none"} for b in backends},
                "host": {"hostname": hostname, "cpus": 2, "kernel": "6.1.0",
                         "cpu_model": cpu_model},
                "accel": {"accel": accel}, "git_commit": f"commit-{run_id}",
                "image": {"name": "default", "digest": image_digest}}
    writer = RunWriter.create(Path(results_dir), run_id, metadata)
    writer.metadata["started_at"] = started_at

    def sample(backend: str, kind: str, metric: str, value: float, unit: str, **dims) -> Sample:
        is_vm = backend in VMS
        family_speed = vm_speed if is_vm and vm_speed is not None else speed
        scale = _factor(shifts, backend, metric) * (family_speed if unit == "s" else 1.0)
        return Sample(run_id=run_id, scenario=kind, kind=kind, backend=backend, metric=metric,
                      value=float(value) * scale, unit=unit,
                      accel=accel if is_vm else "none", network="none",
                      guest_memory_mib=128 if is_vm else "", image_digest=image_digest, **dims)

    def noisy(center: float, size: int | None = None):
        return center * rng.lognormal(0.0, noise, size)

    for backend in backends:
        if "startup" in kinds:
            n = min(repetitions, 5) if backend in VMS else repetitions
            for rep in range(n):
                writer.add([
                    sample(backend, "startup", "start_to_ready_s", noisy(START_S[backend]), "s",
                           repetition=rep),
                    sample(backend, "startup", "stop_s", noisy(STOP_S[backend]), "s",
                           repetition=rep),
                ])
        if "density" in kinds:
            writer.add(_density(backend, sample, noisy))
        if "memory" in kinds:
            writer.add(_memory(backend, sample, noisy))
    writer.finish("complete")
    return writer.directory


def _density(backend, sample, noisy) -> list[Sample]:
    total, batch = (4, 2) if backend in VMS else (100, 10)
    per_instance = PSS[backend] * MIB
    out: list[Sample] = []
    for step, alive in enumerate(range(batch, total + 1, batch), start=1):
        per_launch = noisy(START_S[backend] * (1 + alive / 200))
        used = noisy(per_instance * alive)
        out += [
            sample(backend, "density", "batch_launch_s", per_launch * batch, "s", step=step),
            sample(backend, "density", "launch_s", per_launch, "s", step=step),
            sample(backend, "density", "instances_alive", alive, "count", step=step),
            sample(backend, "density", "host_mem_used_bytes", used, "bytes", step=step),
            sample(backend, "density", "host_mem_available_bytes", 20e9 - used, "bytes",
                   step=step),
            sample(backend, "density", "ksm_pages_sharing", 0, "pages", step=step),
        ]
    out += [
        sample(backend, "density", "teardown_s", noisy(STOP_S[backend] * total), "s"),
        sample(backend, "density", "max_instances_alive", total, "count"),
    ]
    return out


def _memory(backend, sample, noisy) -> list[Sample]:
    instances = 3 if backend in VMS else 8
    variants = ("ksm=off", "ksm=on") if backend in VMS else ("ksm=off",)
    out: list[Sample] = []
    for variant in variants:
        pss = PSS[backend] * MIB * (0.8 if variant == "ksm=on" else 1.0)
        out += [
            sample(backend, "memory", "mem_host_delta_per_instance_bytes", noisy(pss * 1.1),
                   "bytes", variant=variant),
            sample(backend, "memory", "ksm_pages_sharing", 0, "pages", variant=variant),
        ]
        for index in range(1, instances + 1):
            views = {"mem_pss_bytes": pss, "mem_uss_bytes": pss * 0.9,
                     "mem_rss_bytes": pss * 1.4}
            if backend in VMS:
                views |= {"mem_guest_ram_bytes": 128 * MIB, "mem_vmm_overhead_bytes": pss * 0.2}
            else:
                views["mem_cgroup_bytes"] = pss * 1.2
            for metric, value in views.items():
                out.append(sample(backend, "memory", metric, noisy(value), "bytes",
                                  instance=str(index), variant=variant))
    return out
