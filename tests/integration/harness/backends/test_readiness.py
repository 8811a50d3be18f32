"""Each readiness rule on the backends that honour it (harness.backends.readiness): ours,
crun, runc, process, floor and the engines (Docker, Podman, LXC; skipped where the host has
no such engine) run ``InstanceSpec.command`` (the image's busybox) that prints a line of its
own, exits, or listens on a TCP port after a pause; wait_ready must return only once the
rule holds, and fail with NotReady when it never does."""

from __future__ import annotations

import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_inventory import require

from harness import backends as registry
from harness.backends.base import COLD, WARM, Backend, BackendError, InstanceSpec, NotReady
from harness.backends.ready_rule import EXIT, LINE, TCP, ReadyRule
from imagestore.image import Image

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

PAUSE_S = 0.3  # the workload waits this long before the rule can hold
PORT = 18080
# Which backends honour which kinds, as this test expects them (their ready_kinds say it).
EVERY = (LINE, EXIT, TCP)
HONOURED = {"ours": EVERY, "crun": EVERY, "runc": EVERY, "process": EVERY,
            "floor": EVERY, "docker": EVERY, "docker-ours": EVERY, "podman": EVERY,
            "podman-ours": EVERY, "lxc": EVERY}
ENGINES = ("docker", "docker-ours", "podman", "podman-ours", "lxc")


def _name() -> str:
    return f"cvbench-test-ready-{uuid.uuid4().hex[:8]}"


def _honouring(kind: str) -> list[str]:
    return [name for name in sorted(HONOURED) if kind in HONOURED[name]]


def _prepared(name: str, image: Image) -> Iterator[Backend]:
    if name in ENGINES:
        require(name)
    made = registry.create(name)
    assert tuple(made.ready_kinds) == HONOURED[name]  # type: ignore[attr-defined]
    try:
        made.prepare(image)
        yield made
    finally:  # also when a test's loop body raised: its engine's service must not outlive it
        made.cleanup()


@pytest.fixture(params=sorted(HONOURED))
def backend(request, state_dir, built_image) -> Iterator[Backend]:
    yield from _prepared(request.param, built_image)


@pytest.fixture(params=_honouring(EXIT))
def exit_backend(request, state_dir, built_image) -> Iterator[Backend]:
    yield from _prepared(request.param, built_image)


@pytest.fixture(params=_honouring(TCP))
def tcp_backend(request, state_dir, built_image) -> Iterator[Backend]:
    yield from _prepared(request.param, built_image)


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
def test_exit(exit_backend, built_image, variant) -> None:
    spec = _spec(built_image, "exit", f"echo working; sleep {PAUSE_S}; exit 0")
    assert _ready_after(exit_backend, spec, variant) >= PAUSE_S
    assert not exit_backend.live  # type: ignore[attr-defined]


def test_exit_with_a_failure(exit_backend, built_image) -> None:
    _not_ready(exit_backend, _spec(built_image, "exit", "echo oops; exit 3"),
               r"exited with status 3 \(output: 'oops'\)")
    assert _not_ready(exit_backend, _spec(built_image, "exit", "exec sleep 60"),
                      "still runs after 0.5 s", timeout=0.5) < 5


def test_tcp(tcp_backend, built_image) -> None:
    spec = _spec(built_image, f"tcp:{PORT}", f"sleep {PAUSE_S}; exec nc -l -p {PORT}",
                 network="bridge")
    assert _ready_after(tcp_backend, spec) >= PAUSE_S


def test_tcp_never_listening(tcp_backend, built_image) -> None:
    assert 0.5 <= _not_ready(tcp_backend, _spec(built_image, f"tcp:{PORT}", "exec sleep 60",
                                                network="bridge"),
                             f"port {PORT} on .* accepted no connection within 0.5 s",
                             timeout=0.5) < 5
    # a workload that dies ends the wait at once, not at its timeout
    assert _not_ready(tcp_backend, _spec(built_image, f"tcp:{PORT}", "exit 0",
                                         network="bridge"),
                      f"exited before port {PORT}", timeout=20) < 10


def test_podman_s_tcp_goes_over_its_internal_bridge_and_leaves_nothing(state_dir,
                                                                        built_image) -> None:
    """Podman's tcp rule: prepare() puts the network's gateway address on its bridge, so the
    connection goes over the bridge; the container still has no route out (the network is
    internal); cleanup takes the bridge away."""
    from pyroute2 import IPRoute

    from harness.backends.engines import common
    from harness.backends.engines.podman.config import BRIDGE, GATEWAY, SUBNET

    for backend in _prepared("podman", built_image):
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=BRIDGE)[0]
            addresses = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)]
        assert addresses == [GATEWAY]
        assert common.routed_via(SUBNET, BRIDGE)
        spec = _spec(built_image, f"tcp:{PORT}", f"sleep {PAUSE_S}; exec nc -l -p {PORT}",
                     network="bridge")
        instance = backend.start(spec)
        try:
            backend.wait_ready(instance, 20)
            init = backend._init(instance.handle)  # type: ignore[attr-defined]
            routes = Path(f"/proc/{init}/net/route").read_text().splitlines()[1:]
            destinations = [line.split()[1] for line in routes]
            assert destinations and "00000000" not in destinations  # no default route
        finally:
            backend.stop(instance)
            backend.remove(instance)
    with IPRoute() as ipr:
        assert ipr.link_lookup(ifname=BRIDGE) == []


def test_every_backend_honours_every_kind() -> None:
    assert all(HONOURED[name] == EVERY for name in HONOURED), HONOURED


@pytest.mark.parametrize("rule", ["exit", f"tcp:{PORT}"])
def test_a_kind_a_backend_does_not_honour_is_refused(rule, state_dir, built_image) -> None:
    """Every built-in backend honours every kind; a plug-in may honour fewer (its
    ``ready_kinds``), and a kind it does not honour is refused before anything is made."""
    process = type(registry.create("process"))

    class LinesOnly(process):  # type: ignore[misc, valid-type]
        ready_kinds = (LINE,)

    backend = LinesOnly()
    backend.prepare(built_image)
    try:
        with pytest.raises(BackendError, match=f"cannot wait for ready = '{rule}'"):
            backend.start(_spec(built_image, rule, "exit 0", network="bridge"
                                if rule.startswith("tcp") else "none"))
        assert not backend.live
    finally:
        backend.cleanup()


# -- VMs: the tcp rule on a guest's bridge address ---------------------------------------------

GUEST_PAUSE_S = 4.0  # the guest's /init waits this long after BOOTED before it listens
GUEST_INIT = f"""#!/bin/sh
echo BOOTED
sleep {GUEST_PAUSE_S}
nc -l -p {PORT}
exec sleep 2147483647
"""


def _image_with_init(base: Image, script: str) -> Image:
    """``base``'s rootfs with another ``/init``, stored as an image of its own digest (a VM
    runs its image's /init: there is no per-instance command)."""
    from hostkit.paths import images_dir
    from imagestore import image as images

    staging = images_dir() / f"cvbench-staging-{uuid.uuid4().hex[:8]}"
    shutil.copytree(base.rootfs, staging / "rootfs", symlinks=True)
    init = staging / "rootfs" / "init"
    init.write_text(script)
    init.chmod(0o755)
    lines = images.manifest(staging / "rootfs")
    digest = images.digest_of(lines)
    (staging / "manifest.txt").write_text("\n".join(lines) + "\n")
    target = images_dir() / digest
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)
    return Image(name="listener", digest=digest, rootfs=target / "rootfs")


@pytest.mark.vm
@pytest.mark.timeout(600)
def test_tcp_on_a_vm_is_the_guests_listener_on_the_bridge() -> None:
    """A bare-QEMU guest whose /init prints BOOTED, then listens only after a pause: the
    tcp rule holds at least that pause after the line does (boot for boot), so it is the
    guest's listener on its bridge address that accepted, nothing earlier."""
    from vm_env import private_vm_state

    from harness.backends.qemu import QemuBackend

    with private_vm_state("rd") as (base, prefix):
        image = _image_with_init(base, GUEST_INIT)
        backend = QemuBackend(accel="tcg")
        backend.prepare(image)
        try:
            elapsed = {}
            for index, rule in enumerate(("line:BOOTED", f"tcp:{PORT}")):
                spec = InstanceSpec(name=f"{prefix}{index}", image=image, disk=True,
                                    network="bridge", ready=ReadyRule.parse(rule))
                elapsed[rule] = _ready_after(backend, spec, timeout=240)
            assert elapsed[f"tcp:{PORT}"] >= elapsed["line:BOOTED"] + GUEST_PAUSE_S / 2
        finally:
            backend.cleanup()


@pytest.mark.vm
@pytest.mark.timeout(600)
def test_exit_on_a_vm_is_the_guest_kernels_report_of_its_init() -> None:
    """A guest whose /init (its PID 1) prints BOOTED, pauses, then exits: the exit rule holds
    at least the pause after the line (boot for boot) with status 0, and a status of 3 is
    NotReady naming it: the kernel's "Attempted to kill init! exitcode=0x..." read right."""
    from vm_env import private_vm_state

    from harness.backends.qemu import QemuBackend

    with private_vm_state("rx") as (base, prefix):
        backend = QemuBackend(accel="tcg")
        try:
            elapsed = {}
            for index, (code, rule) in enumerate(((0, "line:BOOTED"), (0, "exit"),
                                                  (3, "exit"))):
                image = _image_with_init(base, f"#!/bin/sh\necho BOOTED\n"
                                               f"sleep {GUEST_PAUSE_S}\nexit {code}\n")
                backend.prepare(image)
                spec = InstanceSpec(name=f"{prefix}{index}", image=image,
                                    ready=ReadyRule.parse(rule))
                if code:
                    _not_ready(backend, spec, r"workload exited with status 3", timeout=240)
                else:
                    elapsed[rule] = _ready_after(backend, spec, timeout=240)
            assert elapsed["exit"] >= elapsed["line:BOOTED"] + GUEST_PAUSE_S / 2
        finally:
            backend.cleanup()
