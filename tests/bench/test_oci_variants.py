"""pytest-benchmark: crun and runc start → READY cold (``run -d``) and warm (``create``
untimed, then ``start``), and a batch started from one thread per instance
(run with --benchmark-enable)."""

from __future__ import annotations

import concurrent.futures
import itertools
import uuid
from collections.abc import Iterator

import pytest

from harness.backends.base import COLD, Instance, InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.runc import RuncBackend

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

BACKENDS = {"crun": CrunBackend, "runc": RuncBackend}
BATCH = 20


@pytest.fixture(params=sorted(BACKENDS))
def backend(request, state_dir, built_image):
    instance = BACKENDS[request.param]()
    instance.prepare(built_image)
    yield instance
    instance.cleanup()
    assert not instance.live


def _names(backend) -> Iterator[str]:
    prefix = f"cvbench-bench-{backend.runtime}-{uuid.uuid4().hex[:6]}-"
    return (f"{prefix}{index}" for index in itertools.count())


@pytest.mark.parametrize("variant", ["cold", "warm"])
def test_start_to_ready(benchmark, backend, built_image, variant):
    names = _names(backend)
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


def test_concurrent_batch_to_ready(benchmark, backend, built_image):
    """BATCH cold starts, one thread each, until all are READY (the density scenario's way)."""
    names = _names(backend)
    done: list[Instance] = []
    pool = concurrent.futures.ThreadPoolExecutor(BATCH)

    def up(spec: InstanceSpec) -> Instance:
        instance = backend.start(spec)
        backend.wait_ready(instance, timeout=60)
        return instance

    def down(instance: Instance) -> None:
        backend.stop(instance)
        backend.remove(instance)

    def setup():
        list(pool.map(down, done))
        done.clear()
        return ([InstanceSpec(name=next(names), image=built_image) for _ in range(BATCH)],), {}

    def batch(specs: list[InstanceSpec]) -> None:
        done.extend(pool.map(up, specs))

    try:
        benchmark.pedantic(batch, setup=setup, rounds=5, warmup_rounds=1)
        list(pool.map(down, done))
    finally:
        pool.shutdown()
