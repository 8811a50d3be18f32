"""pytest-benchmark: ``cvbench-runtime`` (ours behind the OCI command line) against crun, start
→ READY through the same OCI backend, bundle and launcher: cold (``run -d``, which for
cvbench-runtime is its create and start in one command) and warm (``create`` untimed, then
``start``). Run with --benchmark-enable; figures in docs/findings/oci-runtime.md."""

from __future__ import annotations

import itertools
import uuid

import oci_runtime
import pytest

from harness.backends.base import COLD, Instance, InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.oci.backend import OciBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]


@pytest.fixture(params=["crun", "cvbench-runtime"])
def backend(request, state_dir, built_image, tmp_path_factory):
    if request.param == "crun":
        made: OciBackend = CrunBackend()
    else:
        made = oci_runtime.CvbenchRuntimeBackend(binary=str(oci_runtime.wrapper(
            tmp_path_factory.mktemp("cvbench-runtime"))))
    made.prepare(built_image)
    yield made
    made.cleanup()
    assert not made.live


@pytest.mark.parametrize("variant", ["cold", "warm"])
def test_start_to_ready(benchmark, backend, built_image, variant):
    names = (f"cvbench-bench-{backend.runtime}-{uuid.uuid4().hex[:6]}-{index}"
             for index in itertools.count())
    done: list[Instance] = []

    def setup():
        for instance in done:  # the previous round's, outside the timing
            backend.stop(instance)
            backend.remove(instance)
        done.clear()
        spec = InstanceSpec(name=next(names), image=built_image)
        return ((spec if variant == COLD else backend.create(spec)),), {}

    def cycle(prepared) -> None:
        if variant == COLD:
            instance = backend.start(prepared)
        else:
            instance = prepared
            backend.resume(instance)
        backend.wait_ready(instance, timeout=20)
        done.append(instance)

    benchmark.pedantic(cycle, setup=setup, rounds=30, warmup_rounds=2)
    assert len(done) == 1  # the last round's READY was read
