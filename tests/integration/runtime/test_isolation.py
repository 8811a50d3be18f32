"""Isolation, proven from inside containers of our runtime (root, real kernel objects)."""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
from pathlib import Path

import pytest
from containers import container_name, run_script

from hostkit import syscalls as sc
from imagestore.image import verify
from runtime import caps, child, seccomp
from runtime.spec import Mount as SpecMount
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
    eBPF program: tests/integration/runtime/test_device_filter.py)."""
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


ROOT = Path(__file__).resolve().parents[3]
# Run by the host's Python in the container's process (chrooted into a read-only bind of the
# host's tree: same credentials, same session keyring): the session keyring's serial and
# description, through hostkit's keyctl binding.
SESSION_KEYRING = (
    "import sys; sys.path.insert(0, {root!r}); from hostkit import syscalls as sc; "
    "serial = sc.keyctl_session_keyring(); print(serial, sc.keyctl_describe(serial))"
)


def _container_output(runtime, spec, name: str) -> str:
    out, info = runtime.run_to_exit(spec, name, 30)
    assert info.status == 0, out
    return out


def test_a_session_keyring_of_its_own_named_after_the_container(runtime, built_image):
    """The init joins a new session keyring named after the container before exec, as crun
    does (named after the container id) and runc (``_ses.<id>``): the container no longer
    shares the harness's (here the user session keyring, ``_uid_ses.0``)."""
    name = container_name("keys")
    python = os.path.realpath(sys.executable)
    code = SESSION_KEYRING.format(root=str(ROOT))
    spec = default_spec(built_image, name, args=["/bin/chroot", "/mnt/host", python, "-S",
                                                  "-c", code])
    spec.mounts.append(SpecMount("/mnt/host", "bind", "/", ["rbind", "ro"]))
    serial, description = _container_output(runtime, spec, name).split()
    ours = sc.keyctl_session_keyring()
    assert int(serial) != ours, "the container shares the harness's session keyring"
    kind, uid, _gid, _perm, keyring_name = description.split(";", 4)
    assert (kind, uid, keyring_name) == ("keyring", "0", name)


def test_supplementary_groups_are_the_specs_never_the_runtimes(runtime, built_image):
    """setgroups to process.user.additionalGids (none when there are none), before the
    capabilities are dropped: the fork server's own groups (inherited from its owner) never
    reach a container."""
    saved = os.getgroups()
    os.setgroups([4242, 4343])  # the fork server starts with the first launch: it gets these
    try:
        out, _ = run_script(runtime, built_image, "grep '^Groups:' /proc/self/status")
        server = Path(f"/proc/{runtime.server.pid}/status").read_text()
        assert "\nGroups:\t4242 4343" in server  # what a container without setgroups inherits
        assert out.split(":", 1)[1].split() == []
        name = container_name("groups")
        spec = default_spec(built_image, name, args=["/bin/sh", "-c",
                                                     "grep '^Groups:' /proc/self/status"])
        spec.process.additional_gids = [10, 20]
        assert _container_output(runtime, spec, name).split(":", 1)[1].split() == ["10", "20"]
    finally:
        os.setgroups(saved)


def test_a_descriptor_handed_to_the_fork_server_never_reaches_the_workload(runtime,
                                                                          built_image):
    """The fork server receives descriptors close-on-exec (MSG_CMSG_CLOEXEC) and the child
    marks every descriptor from 3 close-on-exec before exec (close_range): a stray one sent
    with a launch request (a third descriptor, which no launch uses) is not in the
    workload, which holds 0-2 only."""
    name = container_name("fds")
    # listed by another shell into a file, as tests/isolation_probe.sh does: a pipeline's or
    # a redirection's descriptors in the listed shell itself would show
    spec = default_spec(built_image, name, network="none",
                        args=["/bin/sh", "-c", 'sh -c "ls /proc/$$/fd > /tmp/fds"; cat /tmp/fds'])
    container = runtime.create(spec, name)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stray_read, stray_write = os.pipe2(os.O_CLOEXEC)
    pid = 0
    try:
        pid = runtime.server.launch(container.plan, [write_fd, theirs.fileno(), stray_write])
        os.close(write_fd)
        theirs.close()
        os.close(stray_write)
        assert container.plan.seccomp_follows and not container.plan.wire_network
        # the host channel carries the program, as in Runtime.start's cold launch
        child.send_program(ours, seccomp.compile_bpf(spec.linux.seccomp.to_oci()))
        output = b""
        while chunk := os.read(read_fd, 4096):
            output += chunk
        assert output.decode().split() == ["0", "1", "2"]
        assert os.read(stray_read, 1) == b""  # no process holds the stray descriptor
    finally:
        if pid:
            runtime.server.reap(pid)
        ours.close()
        os.close(read_fd)
        os.close(stray_read)
        runtime.destroy(container)


@pytest.mark.parametrize("close_range", [True, False], ids=["close_range", "proc-sweep"])
def test_close_on_exec_from_3_leaves_0_to_2(monkeypatch, close_range):
    """runtime.child.close_on_exec_from: with close_range(CLOSE_RANGE_CLOEXEC), and with the
    /proc/self/fd sweep used where the kernel lacks it (ENOSYS, or EINVAL before 5.11)."""
    if not close_range:
        def missing(first: int, last: int = 0, flags: int = 0) -> None:
            raise OSError(errno.ENOSYS, "close_range: Function not implemented")

        monkeypatch.setattr(sc, "close_range", missing)
    read_fd, write_fd = os.pipe()
    inheritable = [os.open("/dev/null", os.O_RDONLY) for _ in range(3)]
    for fd in inheritable:
        os.set_inheritable(fd, True)
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write_fd, 1)
            child.close_on_exec_from(3)
            os.execv("/bin/ls", ["ls", "/proc/self/fd"])
        finally:
            os._exit(127)
    os.close(write_fd)
    output = b""
    while chunk := os.read(read_fd, 4096):
        output += chunk
    os.close(read_fd)
    for fd in inheritable:
        os.close(fd)
    assert os.waitpid(pid, 0)[1] == 0
    # ls's own directory descriptor is 3: every other descriptor from 3 up was closed by exec
    assert output.decode().split() in (["0", "1", "2", "3"], ["0", "1", "2"])
