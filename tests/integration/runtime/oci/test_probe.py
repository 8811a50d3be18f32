"""The isolation probe in a container of ``cvbench-runtime`` and of crun, each started by the
same OCI backend from the same bundle of the reference spec (root, real kernel objects):
every check passes in ours but the findings every runtime shares (the profile's), and ours'
verdicts are crun's."""

from __future__ import annotations

import uuid

import oci_runtime
import pytest
from isolation import PROBE, build_probe, probe_results

from harness.backends.base import InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.oci.backend import OciBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def _probe(backend: OciBackend, image, volume) -> dict[str, tuple[str, str]]:
    backend.prepare(image)
    spec = InstanceSpec(name=f"cvbench-test-ociprobe-{uuid.uuid4().hex[:8]}", image=image,
                        command=("/bin/sh", "-c", PROBE), volume=volume)
    try:
        instance = backend.start(spec)
        backend.wait_ready(instance, 20)
        results = probe_results(instance.pids[0])
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()
    assert not backend.live
    return results


def test_the_probe_passes_in_cvbench_runtime_as_in_crun(state_dir, built_image,
                                                        tmp_path_factory):
    volume = build_probe(tmp_path_factory.mktemp("probe-binary"))
    ours = _probe(oci_runtime.CvbenchRuntimeBackend(
        binary=str(oci_runtime.wrapper(tmp_path_factory.mktemp("cvbench-runtime")))),
        built_image, volume)
    crun = _probe(CrunBackend(), built_image, volume)
    failed = {check: seen for check, (verdict, seen) in ours.items()
              if verdict == "no" and not seen.startswith("shared:")}
    assert not failed, f"cvbench-runtime fails {failed}"
    assert len(ours) > 30 and {"no-new-privs", "seccomp", "pid-namespace"} <= set(ours)
    verdicts = {check: verdict for check, (verdict, _) in ours.items() if verdict != "info"}
    assert verdicts == {check: verdict for check, (verdict, _) in crun.items()
                        if verdict != "info"}
    assert ours["cap-effective"] == crun["cap-effective"]
    assert ours["cap-bounding"] == crun["cap-bounding"]
