"""Podman with ``cvbench-runtime`` as its OCI runtime (``podman --runtime PATH``), beside Podman
with crun (root, real engine): cvbench's image imported with no network into a Podman store of
the test's own, a container run that prints READY, the isolation probe inside both, and
nothing left of ours (state directory, cgroup) once Podman removed the container.

Podman passes its own config.json (its sysctl, cgroup mount, /etc/hosts binds, /dev/shm,
cgroupsPath under ``libpod_parent``): what ``cvbench-runtime`` must honour from a real engine.
The probe's verdicts inside Podman+ours must be no weaker than inside Podman+crun (check by
check); both run Podman's default profile (no no_new_privileges, its capability set), so the
two are compared, not held to the reference spec's verdicts. Where ours is stricter the test
prints it (on a hybrid host: ``cgroup-mkdir``, as ours binds the container's own cgroup
directories read-only where crun's view of the hierarchy lets the workload make one)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import oci_runtime
import pytest
from isolation import PROBE, build_probe, probe_results

from harness.backends.engines import common
from runtime import cgroups
from runtime.oci.state import DEFAULT_ROOT

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(300)]

IMAGE = "localhost/cvbench-test-ociruntime:probe"


class Podman:
    """``podman`` on a store of the test's own, cgroupfs, file events, one OCI runtime."""

    def __init__(self, directory: Path, runtime: Path) -> None:
        runroot = (directory / "runroot").read_text()  # podman wants it short: in /tmp
        self.argv = ["podman", "--root", str(directory / "store"),
                     "--runroot", runroot, "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime", str(runtime)]

    def __call__(self, *args: str, timeout: float = 60, **options) -> str:
        result = subprocess.run([*self.argv, *args], capture_output=True, text=True,
                                timeout=timeout, check=False, **options)
        assert result.returncode == 0, f"podman {args[0]}: {result.stderr.strip()}"
        return result.stdout.strip()

    def wait_ready(self, container: str, timeout: float = 30) -> str:
        """Follow the container's log until its READY line (blocking reads, no polling)."""
        follow = subprocess.Popen([*self.argv, "logs", "-f", container], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert follow.stdout is not None
            seen = []
            for line in follow.stdout:
                seen.append(line)
                if line.startswith("READY"):
                    return "".join(seen)
            raise AssertionError(f"no READY from {container}: {''.join(seen)!r}")
        finally:
            follow.kill()
            follow.wait(timeout)


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory, built_image) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("podman-ociruntime")
    runroot = tempfile.mkdtemp(prefix="cvbench-test-pd")
    (directory / "runroot").write_text(runroot)
    tarball = directory / "image.tar"
    tarball.write_bytes(common.image_tarball(built_image))
    podman = Podman(directory, oci_runtime.wrapper(directory))
    podman("import", "--change", f'CMD ["{built_image.init}"]', str(tarball), IMAGE)
    yield directory
    subprocess.run([*podman.argv, "rm", "--all", "--force"], capture_output=True, timeout=60,
                   check=False)
    subprocess.run([*podman.argv, "rmi", "--all", "--force"], capture_output=True, timeout=60,
                   check=False)
    shutil.rmtree(runroot, ignore_errors=True)


def _runtimes(directory: Path) -> dict[str, Path]:
    return {"ours": oci_runtime.wrapper(directory), "crun": common.engine_crun()}


def _probe(podman: Podman, volume: Path) -> tuple[dict[str, tuple[str, str]], str]:
    name = f"cvbench-test-podman-{uuid.uuid4().hex[:8]}"
    container = podman("run", "-d", "--name", name, "--network", "none",
                       "-v", f"{volume}:/data:ro", IMAGE, "/bin/sh", "-c", PROBE)
    try:
        podman.wait_ready(container)
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", container))
        return probe_results(pid), container
    finally:
        podman("rm", "--force", container)


def _left(container: str) -> list[str]:
    """What is left of ``container`` in ours' state and in the cgroups Podman named."""
    found = []
    if (DEFAULT_ROOT / container).exists():
        found.append(f"state {DEFAULT_ROOT / container}")
    cgroup = f"libpod_parent/libpod-{container}"
    if cgroups.driver().exists(cgroup):
        found.append(f"cgroup {cgroup}")
    return found


def test_podman_runs_cvbench_image_with_ours(engine_dir, state_dir):
    podman = Podman(engine_dir, _runtimes(engine_dir)["ours"])
    output = podman("run", "--rm", "--network", "none", IMAGE, "/bin/sh", "-c",
                    "echo READY; cat /proc/sys/net/ipv4/ping_group_range; hostname")
    lines = output.splitlines()
    assert lines[0] == "READY"
    assert lines[1].split() == ["0", "0"]  # Podman's namespaced sysctl, set by ours
    container = podman("create", "--network", "none", IMAGE)
    podman("start", container)
    assert podman.wait_ready(container).splitlines()[-1] == "READY"
    state = podman("inspect", "--format", "{{.State.Status}} {{.OCIRuntime}}", container)
    assert state.split()[0] == "running"
    assert state.split()[1].endswith("cvbench-runtime")
    podman("stop", "--time", "5", container)
    podman("rm", container)
    assert _left(container) == []


def test_isolation_probe_in_podman_ours_as_in_podman_crun(engine_dir, state_dir,
                                                          tmp_path_factory):
    volume = build_probe(tmp_path_factory.mktemp("probe-binary"))
    seen = {}
    for name, runtime in _runtimes(engine_dir).items():
        results, container = _probe(Podman(engine_dir, runtime), volume)
        seen[name] = {check: verdict for check, (verdict, _) in results.items()
                      if verdict != "info"}
        if name == "ours":
            assert _left(container) == []
    assert len(seen["ours"]) > 30  # the probe ran to its end
    weaker = {check for check, verdict in seen["crun"].items()
              if verdict == "ok" and seen["ours"].get(check) != "ok"}
    assert not weaker, f"Podman+ours fails what Podman+crun passes: {sorted(weaker)}"
    assert seen["ours"].keys() == seen["crun"].keys()
    stronger = sorted(check for check, verdict in seen["ours"].items()
                      if verdict == "ok" and seen["crun"][check] != "ok")
    print(f"Podman+ours refuses what Podman+crun allows: {stronger or 'nothing'}")
