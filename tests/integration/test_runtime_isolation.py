"""Isolation, proven from inside containers of our runtime (root, real kernel objects)."""

from __future__ import annotations

import os
import select

import pytest
from containers import container_name, run_script

from imagestore.image import verify
from runtime import caps
from runtime.spec import default_spec

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]


def test_pid_1_and_no_host_process(runtime, built_image):
    out, info = run_script(runtime, built_image, "echo pid=$$; ls /proc | grep -E '^[0-9]+$'")
    lines = out.split()
    assert lines[0] == "pid=1"
    pids = [int(p) for p in lines[1:]]
    assert 1 in pids and len(pids) <= 4 and max(pids) < 10
    assert info.code == 0


def test_no_host_files_and_old_root_detached(runtime, built_image, tmp_path):
    marker = tmp_path / "host-only-marker"
    marker.write_text("secret")
    script = f"test -e {marker} && echo VISIBLE || echo HIDDEN; cat /proc/self/mountinfo"
    out, _ = run_script(runtime, built_image, script)
    assert out.splitlines()[0] == "HIDDEN"
    mounts = out.splitlines()[1:]
    assert mounts[0].split()[4] == "/" and " - overlay " in mounts[0]
    assert not any(" - ext4 " in line or "/sys/fs/cgroup" in line for line in mounts)
    assert not any(line.split()[4].startswith(str(tmp_path)) for line in mounts)


def test_only_its_own_interfaces(runtime, built_image):
    out, _ = run_script(runtime, built_image, "cat /proc/net/dev")
    devices = [line.split(":")[0].strip() for line in out.splitlines() if ":" in line]
    assert devices == ["lo"]
    out, _ = run_script(runtime, built_image, "ls /sys/class/net", sysfs=True)
    assert out.split() == ["lo"]


def test_cannot_write_the_image(runtime, built_image):
    script = (
        "echo changed > /etc/hostname && echo new > /bin/cvbench-new && rm /bin/ls && "
        "echo WROTE; cat /etc/hostname"
    )
    out, _ = run_script(runtime, built_image, script)
    assert out.split() == ["WROTE", "changed"]  # the writes land in the private upper layer
    assert (built_image.rootfs / "etc/hostname").read_text() == "cvbench\n"
    assert not (built_image.rootfs / "bin/cvbench-new").exists()
    assert (built_image.rootfs / "bin/ls").is_symlink()
    verify(built_image)
    out, _ = run_script(runtime, built_image, "touch /x 2>&1 || echo DENIED", readonly=True)
    assert "DENIED" in out and "Read-only file system" in out


def test_writes_are_private_to_each_container(runtime, built_image):
    writer = runtime.create(
        default_spec(built_image, "w", args=["/bin/sh", "-c",
                     "echo secret > /tmp/shared; echo secret2 > /root/x; echo READY; "
                     "exec sleep 1000"]),
        container_name("iso"),
    )  # fmt: skip
    runtime.start(writer)
    runtime.wait_ready(writer, 10)
    out, _ = run_script(runtime, built_image, "ls /tmp /root; cat /tmp/shared 2>&1")
    assert "secret" not in out.replace("/tmp/shared", "")
    assert "No such file" in out
    runtime.destroy(writer)


def test_hostname_capabilities_and_no_new_privs(runtime, built_image):
    out, _ = run_script(runtime, built_image, "hostname; grep -E '^(CapBnd|CapEff|NoNewPrivs)' "
                        "/proc/self/status")  # fmt: skip
    lines = out.splitlines()
    fields = dict(line.split(":\t") for line in lines[1:])
    expected = caps.mask(list(default_spec(built_image, "x").process.capabilities.bounding))
    assert int(fields["CapBnd"], 16) == expected
    assert int(fields["CapEff"], 16) == expected
    assert not int(fields["CapBnd"], 16) & (1 << caps.NUMBERS["CAP_SYS_ADMIN"])
    assert fields["NoNewPrivs"].strip() == "1"


def test_minimal_dev_and_masked_paths(runtime, built_image):
    script = (
        "touch /dev/shm/x && echo SHM-OK; ls /dev | tr '\\n' ' '; echo; "
        "echo acpi=$(ls /proc/acpi 2>/dev/null | wc -l) timers=$(wc -c < /proc/timer_list); "
        "(echo 1 > /proc/sys/kernel/domainname) 2>/dev/null || echo SYSCTL-RO"
    )
    out, _ = run_script(runtime, built_image, script, sysfs=True)
    lines = out.splitlines()
    assert lines[0] == "SHM-OK"
    assert set(lines[1].split()) >= {"null", "zero", "full", "random", "urandom", "tty", "pts",
                                     "shm", "ptmx", "fd", "stdin", "stdout", "stderr"}  # fmt: skip
    assert lines[2] == "acpi=0 timers=0"
    assert lines[3] == "SYSCTL-RO"


def test_device_nodes_can_be_made_but_not_opened(runtime, built_image):
    """CAP_MKNOD is held (the OCI default set) and the device rules allow mknod of any node,
    but opening one outside the allow list is refused (the v1 devices cgroup, or on v2 the
    eBPF program: tests/integration/test_device_filter.py)."""
    out, _ = run_script(runtime, built_image, "mknod /dev/disk b 8 0 && echo MADE; "
                        "head -c 1 /dev/disk 2>&1 || echo OPEN-REFUSED")  # fmt: skip
    assert out.split()[0] == "MADE"
    assert "Operation not permitted" in out and "OPEN-REFUSED" in out


def test_hostname_is_the_specs(runtime, built_image):
    spec = default_spec(built_image, "cvbench-host-x", args=["/bin/hostname"])
    container = runtime.create(spec, container_name("iso"))
    runtime.start(container)
    fd, container.ready_fd = container.ready_fd, None
    select.select([fd], [], [], 10)
    out = os.read(fd, 100)
    os.close(fd)
    runtime.destroy(container)
    assert out.strip() == b"cvbench-host-x"


def test_host_mount_table_is_untouched(runtime, built_image):
    before = open("/proc/self/mountinfo").read().count("\n")
    container = runtime.run(default_spec(built_image, "m"), container_name("iso"))
    during = open("/proc/self/mountinfo").read()
    assert str(container.directory) not in during
    runtime.destroy(container)
    assert abs(during.count("\n") - before) <= 2  # other tests may mount meanwhile
