"""pytest-benchmark: start → READY → stop with crun and runc (run with --benchmark-enable)."""

from __future__ import annotations

import itertools
import uuid

import pytest

from harness.backends.base import InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.runc import RuncBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


@pytest.mark.parametrize("backend_class", [CrunBackend, RuncBackend], ids=["crun", "runc"])
def test_start_ready_stop(benchmark, backend_class, state_dir, built_image):
    backend = backend_class()
    backend.prepare(built_image)
    prefix = f"cvbench-bench-{backend.runtime}-{uuid.uuid4().hex[:6]}-"
    counter = itertools.count()

    def cycle() -> None:
        instance = backend.start(InstanceSpec(name=f"{prefix}{next(counter)}", image=built_image))
        backend.wait_ready(instance, timeout=20)
        backend.stop(instance)
        backend.remove(instance)

    try:
        benchmark.pedantic(cycle, rounds=50, iterations=1, warmup_rounds=2)
    finally:
        backend.cleanup()
    assert not backend.live
