"""The isolation probe (``tests/isolation_probe.sh`` with the compiled checks) inside Docker and
Podman with cvbench-runtime (the ``docker-ours`` and ``podman-ours`` backends) and inside the
same engines with crun (``docker`` and ``podman`` with ``runtime = "crun"``), through the
backends as a run drives them (root, real engines).

Each engine hands its runtime its own ``config.json`` (Docker: its default mounts, the
libnetwork ``prestart`` hook, its device rules; Podman: its sysctl, mounts, cgroup parent),
the same for both runtimes, with the reference profile the backends ask for (capabilities,
masked and read-only paths, no_new_privs, seccomp profile, limits). Inside Docker+ours every
check passes that passes inside Docker+crun, and so for Podman, check by check; the verdicts
cover the same checks (the probe ran to its end in both); what fails is the profile's shared
findings and the engine's own doing (Docker: ``groups``, the image's supplementary groups it
gives root), alike for both runtimes; the workload runs with the reference capability sets
and its own hostname. Once the container is removed, nothing of it
is left in cvbench-runtime's state (the shim's runtime root under Docker, the default root
under Podman) or its cgroup. Where ours is stricter the test prints it (seen on a hybrid host,
under both engines: ``cgroup-mkdir``, as ours binds the container's own cgroup directories
read-only where crun's view lets the workload make one).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from engine_inventory import require
from isolation import PROBE, build_probe, probe_results

from harness import backends
from harness.backends.base import InstanceSpec
from harness.backends.containers import container_spec
from harness.backends.engines.docker.config import RUNTIME_ROOT
from runtime import caps, cgroups
from runtime.oci.state import DEFAULT_ROOT

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(300)]

# engine -> (backend, options) with crun, then with ours
PAIRS = {"docker": (("docker", {"runtime": "crun"}), ("docker-ours", {})),
         "podman": (("podman", {"runtime": "crun"}), ("podman-ours", {}))}
# Checks every runtime fails alike under the profile they share (test_isolation_probe.py in
# the directory above: SHARED_FINDINGS), and those the engines' own config.json decides
# alike for both runtimes
SHARED = {"userns", "userns-mount", "userns-chroot"}
# Checks an engine's own config.json fails for every runtime under it (so with crun too)
ENGINE_FINDINGS: dict[str, dict[str, str]] = {
    "docker": {"groups": "Docker gives the container's root the supplementary groups the "
                         "image's /etc/group lists for root (process.user.additionalGids)"},
    "podman": {"groups": "Podman, given the image's user, gives the container's root the "
                         "supplementary groups the image's /etc/group lists for root"},
}


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory) -> Path:
    try:
        return build_probe(tmp_path_factory.mktemp("probe-binary"))
    except RuntimeError as error:
        pytest.fail(str(error))


def _run(name: str, options: dict, image, volume: Path
         ) -> tuple[dict[str, tuple[str, str]], InstanceSpec, dict, list[str]]:
    """The probe's results in one container of backend ``name``, its spec, the backend's
    describe(), and what was left of the container once removed."""
    require(name)
    backend = backends.create(name, **options)
    spec = InstanceSpec(name=f"cvbench-test-enprobe-{uuid.uuid4().hex[:8]}", image=image,
                        command=("/bin/sh", "-c", PROBE), volume=volume, memory_limit_mib=64,
                        pids_limit=64)
    try:
        backend.prepare(image)
        instance = backend.start(spec)
        try:
            backend.wait_ready(instance, 60)
            init = backend._init(instance.handle)
            assert init, f"{name}: no init found"
            results = probe_results(init)
            described = backend.describe()
        finally:
            backend.stop(instance)
            backend.remove(instance)
        container = instance.handle.id
        left = [str(root / container) for root in (RUNTIME_ROOT, DEFAULT_ROOT)
                if (root / container).exists()]
        if cgroups.driver().exists(instance.handle.cgroup):
            left.append(f"cgroup {instance.handle.cgroup}")
        return results, spec, described, left
    finally:
        backend.cleanup()


@pytest.mark.parametrize("engine", sorted(PAIRS))
def test_isolation_probe_passes_in_the_engine_with_ours_as_with_crun(state_dir, built_image,
                                                                     probe_dir, engine):
    (crun_name, crun_options), (ours_name, ours_options) = PAIRS[engine]
    seen = {}
    for label, name, options in (("crun", crun_name, crun_options),
                                 ("ours", ours_name, ours_options)):
        results, spec, described, left = _run(name, options, built_image, probe_dir)
        assert described["oci_runtime"] == ("crun" if label == "crun" else "cvbench-runtime")
        assert described["oci_runtime_version"], described
        assert left == [], f"{name}: left after removal: {left}"
        oci = container_spec(spec).process.capabilities
        assert int(results["cap-effective"][1], 16) == caps.mask(oci.effective), label
        assert int(results["cap-bounding"][1], 16) == caps.mask(oci.bounding), label
        assert results["hostname"][1] == spec.name, label
        seen[label] = {check: verdict for check, (verdict, _) in results.items()
                       if verdict != "info"}
    assert len(seen["ours"]) > 30, seen["ours"]  # the probe ran to its end
    assert seen["ours"].keys() == seen["crun"].keys()
    weaker = sorted(check for check, verdict in seen["crun"].items()
                    if verdict == "ok" and seen["ours"][check] != "ok")
    assert not weaker, f"{engine}+ours fails what {engine}+crun passes: {weaker}"
    failed = sorted(check for check, verdict in seen["ours"].items() if verdict != "ok")
    print(f"{engine}: failed with ours {failed}, with crun "
          f"{sorted(c for c, v in seen['crun'].items() if v != 'ok')}")
    assert set(failed) <= SHARED | set(ENGINE_FINDINGS[engine]), \
        f"{engine}+ours: failed checks {failed}"
    for check in ENGINE_FINDINGS[engine]:  # the engine's doing: alike for both runtimes
        assert seen["crun"][check] == seen["ours"][check], check
    for check in ("pid-namespace", "host-files", "mount", "network", "no-new-privs", "seccomp",
                  "chroot-escape", "open-by-handle", "bpf", "perf-event-open", "devices",
                  "mknod", "kcore-masked", "proc-sys-ro"):
        assert seen["ours"][check] == "ok", f"{engine}+ours: {check}"
    stronger = sorted(check for check, verdict in seen["ours"].items()
                      if verdict == "ok" and seen["crun"][check] != "ok")
    print(f"{engine}+ours refuses what {engine}+crun allows: {stronger or 'nothing'}")
