"""Each readiness rule on the backends that honour it (harness.backends.readiness): ours,
crun, runc, process and floor run ``InstanceSpec.command`` (the image's busybox) that prints
a line of its own, exits, or listens on a TCP port after a pause; wait_ready must return only
once the rule holds, and fail with NotReady when it never does."""

from __future__ import annotations

import re
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


def _attempt(backend: Backend, spec: InstanceSpec, variant: str = COLD,
             timeout: float = 20.0) -> tuple[float, NotReady | None]:
    """Seconds from the start (or resume) request until wait_ready returned or failed, and
    its NotReady if it failed; the instance is stopped and removed after (not timed: a
    runtime's stop of a ``sleep`` that ignores TERM takes its grace time)."""
    instance = backend.create(spec, variant) if variant == WARM else None
    began = time.monotonic()
    if instance is None:
        instance = backend.start(spec)
    else:
        backend.resume(instance)
    try:
        backend.wait_ready(instance, timeout)
        return time.monotonic() - began, None
    except NotReady as error:
        return time.monotonic() - began, error
    finally:
        backend.stop(instance)
        backend.remove(instance)


def _ready_after(backend: Backend, spec: InstanceSpec, variant: str = COLD,
                 timeout: float = 20.0) -> float:
    """Seconds until the rule held; its NotReady raised if it did not."""
    elapsed, error = _attempt(backend, spec, variant, timeout)
    if error is not None:
        raise error
    return elapsed


def _not_ready(backend: Backend, spec: InstanceSpec, match: str, timeout: float = 20.0
               ) -> float:
    """Seconds until wait_ready failed with a NotReady matching ``match``."""
    elapsed, error = _attempt(backend, spec, timeout=timeout)
    assert error is not None, "wait_ready returned"
    assert re.search(match, str(error)), str(error)
    assert "\n" not in str(error)
    return elapsed


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
    assert 0.5 <= _not_ready(backend, spec, "no Listening within 0.5 s", timeout=0.5) < 5
    spec = _spec(built_image, "line:Listening", "echo READY")
    assert _not_ready(backend, spec, "exited before Listening") < 10


@pytest.mark.parametrize("variant", [COLD, WARM])
def test_exit(backend, built_image, variant) -> None:
    _skip_unless(backend, EXIT)
    spec = _spec(built_image, "exit", f"echo working; sleep {PAUSE_S}; exit 0")
    assert _ready_after(backend, spec, variant) >= PAUSE_S
    assert not backend.live  # type: ignore[attr-defined]


def test_exit_with_a_failure(backend, built_image) -> None:
    _skip_unless(backend, EXIT)
    _not_ready(backend, _spec(built_image, "exit", "echo oops; exit 3"),
               r"exited with status 3 \(output: 'oops'\)")
    assert _not_ready(backend, _spec(built_image, "exit", "exec sleep 60"),
                      "still runs after 0.5 s", timeout=0.5) < 5


def test_tcp(backend, built_image) -> None:
    _skip_unless(backend, TCP)
    spec = _spec(built_image, f"tcp:{PORT}", f"sleep {PAUSE_S}; exec nc -l -p {PORT}",
                 network="bridge")
    assert _ready_after(backend, spec) >= PAUSE_S


def test_tcp_never_listening(backend, built_image) -> None:
    _skip_unless(backend, TCP)
    assert 0.5 <= _not_ready(backend, _spec(built_image, f"tcp:{PORT}", "exec sleep 60",
                                            network="bridge"),
                             f"port {PORT} on .* accepted no connection within 0.5 s",
                             timeout=0.5) < 5
    # a workload that dies ends the wait at once, not at its timeout
    assert _not_ready(backend, _spec(built_image, f"tcp:{PORT}", "exit 0", network="bridge"),
                      f"exited before port {PORT}", timeout=20) < 10


def test_refused(backend, built_image) -> None:
    """A kind the backend does not honour is refused before anything is made."""
    for kind, rule in ((EXIT, "exit"), (TCP, f"tcp:{PORT}")):
        if kind in HONOURED[backend.name]:
            continue
        with pytest.raises(BackendError, match=f"cannot wait for ready = '{rule}'"):
            backend.start(_spec(built_image, rule, "exit 0"))
        assert not backend.live  # type: ignore[attr-defined]
