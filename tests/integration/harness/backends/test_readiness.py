"""Each readiness rule on the backends that honour it (harness.backends.readiness): ours,
crun, runc, process and floor run ``InstanceSpec.command`` (the image's busybox) that prints
a line of its own, exits, or listens on a TCP port after a pause; wait_ready must return only
once the rule holds, and fail with NotReady when it never does."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from harness import backends as registry
from harness.backends.base import COLD, WARM, Backend, BackendError, InstanceSpec, NotReady
from harness.backends.ready_rule import EXIT, LINE, TCP, ReadyRule
from imagestore.image import Image

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

PAUSE_S = 0.3  # the workload waits this long before the rule can hold
PORT = 18080
# Which backends honour which kinds, as this test expects them (their ready_kinds say it).
HONOURED = {"ours": (LINE, EXIT, TCP), "crun": (LINE, TCP), "runc": (LINE, TCP),
            "process": (LINE, EXIT, TCP), "floor": (LINE, EXIT)}


def _name() -> str:
    return f"cvbench-test-ready-{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=sorted(HONOURED))
def backend(request, state_dir, built_image) -> Iterator[Backend]:
    made = registry.create(request.param)
    made.prepare(built_image)
    yield made
    made.cleanup()


def _spec(image: Image, rule: str, script: str, network: str = "none") -> InstanceSpec:
    return InstanceSpec(name=_name(), image=image, network=network,
                        ready=ReadyRule.parse(rule), command=("/bin/sh", "-c", script))


def _ready_after(backend: Backend, spec: InstanceSpec, variant: str = COLD,
                 timeout: float = 20.0) -> float:
    """Seconds from the start (or resume) request until wait_ready returned; the instance
    is stopped and removed after."""
    instance = backend.create(spec, variant) if variant == WARM else None
    began = time.monotonic()
    if instance is None:
        instance = backend.start(spec)
    else:
        backend.resume(instance)
    try:
        backend.wait_ready(instance, timeout)
        return time.monotonic() - began
    finally:
        backend.stop(instance)
        backend.remove(instance)


def _skip_unless(backend: Backend, kind: str) -> None:
    assert tuple(backend.ready_kinds) == HONOURED[backend.name]  # type: ignore[attr-defined]
    if kind not in HONOURED[backend.name]:
        pytest.skip(f"{backend.name} does not honour {kind} rules (refused: test_refused)")


def test_line_of_its_own(backend, built_image) -> None:
    spec = _spec(built_image, "line:Listening now",
                 f"echo READY; sleep {PAUSE_S}; echo '  Listening now '; exec sleep 60")
    assert _ready_after(backend, spec) >= PAUSE_S  # the READY line does not count


def test_line_never_printed(backend, built_image) -> None:
    spec = _spec(built_image, "line:Listening", "echo READY; exec sleep 60")
    began = time.monotonic()
    with pytest.raises(NotReady, match="no Listening within"):
        _ready_after(backend, spec, timeout=0.5)
    assert time.monotonic() - began < 10
    spec = _spec(built_image, "line:Listening", "echo READY")
    with pytest.raises(NotReady, match="exited before Listening"):
        _ready_after(backend, spec)


@pytest.mark.parametrize("variant", [COLD, WARM])
def test_exit(backend, built_image, variant) -> None:
    _skip_unless(backend, EXIT)
    spec = _spec(built_image, "exit", f"echo working; sleep {PAUSE_S}; exit 0")
    assert _ready_after(backend, spec, variant) >= PAUSE_S
    assert not backend.live  # type: ignore[attr-defined]


def test_exit_with_a_failure(backend, built_image) -> None:
    _skip_unless(backend, EXIT)
    with pytest.raises(NotReady, match="exited with status 3"):
        _ready_after(backend, _spec(built_image, "exit", "echo oops; exit 3"))
    with pytest.raises(NotReady, match="still runs after"):
        _ready_after(backend, _spec(built_image, "exit", "exec sleep 60"), timeout=0.5)


def test_tcp(backend, built_image) -> None:
    _skip_unless(backend, TCP)
    spec = _spec(built_image, f"tcp:{PORT}", f"sleep {PAUSE_S}; exec nc -l -p {PORT}",
                 network="bridge")
    assert _ready_after(backend, spec) >= PAUSE_S


def test_tcp_never_listening(backend, built_image) -> None:
    _skip_unless(backend, TCP)
    began = time.monotonic()
    with pytest.raises(NotReady, match="accepted no connection within"):
        _ready_after(backend, _spec(built_image, f"tcp:{PORT}", "exec sleep 60",
                                    network="bridge"), timeout=0.5)
    assert time.monotonic() - began < 10
    with pytest.raises(NotReady, match="exited before port"):  # dies: ends the wait at once
        _ready_after(backend, _spec(built_image, f"tcp:{PORT}", "exit 0", network="bridge"))


def test_refused(backend, built_image) -> None:
    """A kind the backend does not honour is refused before anything is made."""
    for kind, rule in ((EXIT, "exit"), (TCP, f"tcp:{PORT}")):
        if kind in HONOURED[backend.name]:
            continue
        with pytest.raises(BackendError, match=f"cannot wait for ready = '{rule}'"):
            backend.start(_spec(built_image, rule, "exit 0"))
        assert not backend.live  # type: ignore[attr-defined]
