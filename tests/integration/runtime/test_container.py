"""Lifecycle: create/start/READY/stop/destroy, SIGKILL after the grace period, readiness
failures, bad input that starts nothing, no descriptor kept per live container."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import pytest
from containers import container_name

from imagestore.image import Image
from runtime.container import ContainerError, NotReadyError, Runtime
from runtime.scopes import cgroup_parent, container_cgroup
from runtime.spec import default_spec

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def name() -> str:
    return container_name("life")


def test_start_ready_stop_destroy(runtime, built_image):
    container = runtime.create(default_spec(built_image, "a"), name())
    assert container.state == "created" and container.pid is None
    pid = runtime.start(container)
    assert container.state == "running" and os.path.exists(f"/proc/{pid}")
    runtime.wait_ready(container, 10)
    assert container.ready_fd is None
    assert [c.name for c in runtime.list()].count(container.name) == 1
    info = runtime.stop(container)
    assert info.code == 0 and not info.oom_killed  # /init traps SIGTERM and exits 0
    assert not os.path.exists(f"/proc/{pid}") or _is_other_process(pid)
    runtime.destroy(container)
    assert not container.directory.exists()
    assert not runtime.cgroups.exists(container.cgroup)


def _is_other_process(pid: int) -> bool:
    try:
        return "init" not in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return True


def test_sigkill_after_grace(runtime, built_image):
    spec = default_spec(
        built_image,
        "k",
        args=["/bin/sh", "-c", "trap '' TERM; echo READY; while :; do sleep 1; done"],
    )
    container = runtime.run(spec, name())
    info = runtime.stop(container, grace=0.2)
    assert info.signal == signal.SIGKILL
    runtime.destroy(container)


def test_exit_before_ready_and_bad_command(runtime, built_image):
    with pytest.raises(NotReadyError, match="exited before READY.*bye"):
        runtime.run(default_spec(built_image, "e", args=["/bin/sh", "-c", "echo bye"]), name())
    with pytest.raises(NotReadyError, match="launch failed: .*No such file"):
        runtime.run(default_spec(built_image, "e", args=["/no/such/program"]), name())
    with pytest.raises(NotReadyError, match="no READY within"):
        runtime.run(default_spec(built_image, "e", args=["/bin/sleep", "5"]), name(), timeout=0.3)
    assert not runtime.containers


def _nothing_left(runtime: Runtime, container_name: str) -> None:
    assert not (runtime.root / container_name).exists()
    assert not runtime.cgroups.exists(container_cgroup(cgroup_parent(), container_name))


def test_bad_input_starts_nothing(runtime, built_image, tmp_path):
    clash = name()
    first = runtime.run(default_spec(built_image, "c"), clash)
    with pytest.raises(ContainerError, match="already exists"):
        runtime.create(default_spec(built_image, "c"), clash)
    assert first.running
    runtime.destroy(first)

    unknown = Image("nosuch", "00" * 32, tmp_path / "missing" / "rootfs")
    n = name()
    with pytest.raises(ContainerError, match="unknown image"):
        runtime.create(default_spec(unknown, "u"), n)
    _nothing_left(runtime, n)

    tampered_dir = tmp_path / "tampered"
    shutil.copytree(built_image.rootfs.parent, tampered_dir, symlinks=True)
    (tampered_dir / "rootfs" / "init").write_text("#!/bin/sh\necho pwned\n")
    tampered = Image("t", built_image.digest, tampered_dir / "rootfs")
    n = name()
    with pytest.raises(ContainerError, match="does not match its digest"):
        runtime.create(default_spec(tampered, "t"), n)
    _nothing_left(runtime, n)

    spec = default_spec(built_image, "x")
    spec.linux.resources.memory_limit = 1024
    n = name()
    with pytest.raises(ContainerError, match="below the minimum"):
        runtime.create(spec, n)
    _nothing_left(runtime, n)

    with pytest.raises(ContainerError, match="invalid container name"):
        runtime.create(default_spec(built_image, "x"), "../escape")


def test_no_descriptor_kept_per_live_container(runtime, built_image):
    runtime.server.start()
    before = len(os.listdir("/proc/self/fd"))
    started = [runtime.run(default_spec(built_image, "f"), name()) for _ in range(5)]
    assert len(os.listdir("/proc/self/fd")) == before
    server_fds = len(os.listdir(f"/proc/{runtime.server.pid}/fd"))
    assert server_fds < 10
    for container in started:
        runtime.destroy(container)
    assert len(os.listdir("/proc/self/fd")) == before


def test_container_found_by_a_second_runtime(state_dir, built_image):
    n = name()
    with Runtime() as first:
        container = first.run(default_spec(built_image, "s"), n)
        first.containers.clear()  # hand it over
        first.close()
        second = Runtime()
        try:
            found = second.get(n)
            assert found.running and found.pid == container.pid
            info = second.stop(found)
            assert not found.running and info is not None
            second.destroy(found)
            assert not (second.root / n).exists()
        finally:
            second.close()


def test_a_cold_start_compiles_its_own_seccomp_program(runtime, built_image, monkeypatch):
    """Cold: the host compiles the program from create() on, on the compiler's thread, once
    per container (nothing kept between containers, as crun and runc), and start() sends it;
    if libseccomp refuses it the start fails with one line naming it, and the child waiting
    for the program is gone."""
    from runtime import seccomp

    compiled = []
    real = seccomp.compile_bpf

    def counted(section):
        compiled.append(threading.current_thread())
        return real(section)

    monkeypatch.setattr(seccomp, "compile_bpf", counted)
    for _ in range(2):
        container = runtime.create(default_spec(built_image, "s"), name())
        assert container.plan is not None and container.plan.seccomp_follows
        assert not container.plan.seccomp  # not in the plan: it follows on the channel
        assert container.program is not None  # submitted by create()
        runtime.start(container)
        assert container.program is None  # sent
        assert compiled and compiled[0] is not threading.main_thread()
        runtime.wait_ready(container, 10)
        assert len(compiled) == 1
        runtime.stop(container, grace=0)
        runtime.destroy(container)
        compiled.clear()

    def refuse(section):
        raise seccomp.SeccompError("seccomp rule 7 (SCMP_ACT_ALLOW for read) rejected")

    monkeypatch.setattr(seccomp, "compile_bpf", refuse)
    container = runtime.create(default_spec(built_image, "s"), name())
    with pytest.raises(ContainerError, match="rule 7 .* rejected"):
        runtime.start(container)
    assert container.pid is not None and not os.path.exists(f"/proc/{container.pid}")
    runtime.destroy(container)
