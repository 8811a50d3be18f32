"""The floor launcher's plan file: its layout, what each step puts in it, and the steps
option's validation."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from harness.backends.floor import plan as floor_plan
from hostkit import syscalls as sc
from hostkit import validate
from runtime.plan import CapSets, LaunchPlan, Mount, Rlimit, Rootfs

HOST = floor_plan.HostWorkload(args=("/img/bin/busybox", "sh", "/img/init"),
                               env=("PATH=/img/bin", "HOME=/"))
PROGRAM = bytes(range(16))  # two BPF instructions' worth


def launch_plan(**changes) -> LaunchPlan:
    fields = dict(
        new_pid=True,
        unshare=sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC | sc.CLONE_NEWNET
        | sc.CLONE_NEWCGROUP,
        loopback=True,
        cgroup_procs=(),
        rootfs=Rootfs("/", "lowerdir=/img", (
            Mount("/proc", "proc", "proc", 14, ""),
            Mount("/dev", "tmpfs", "tmpfs", 2, "mode=755"),
        ), ("/proc/kcore",), ("/proc/sys",), False, False),
        hostname="cvbench-x",
        rlimits=(Rlimit(7, 1024, -1),),
        caps=CapSets(bounding=0xA80425FB, effective=0xA80425FB, permitted=0xA80425FB,
                     inheritable=0),
        no_new_privs=True,
        seccomp="",
        cwd="/",
        args=("/init",),
        env=("PATH=/bin", "HOME=/root"),
        keyring="cvbench-x",
        groups=(5, 6),
        umask=0o022,
        uid=0,
        gid=0,
    )
    fields.update(changes)
    return LaunchPlan(**fields)


def encode(steps=floor_plan.STEPS, **changes) -> bytes:
    return floor_plan.encode(launch_plan(**changes), steps, PROGRAM, 40, HOST)


def strings(data: bytes, header: dict[str, int]) -> list[str]:
    numbers = 3 * header["rlimits"] + header["mounts"] + header["groups"]
    start = floor_plan.HEADER.size + 8 * numbers + header["seccomp_bytes"]
    return data[start:].decode().split("\0")[:-1]


def test_all_steps_carry_the_spec_in_the_documented_layout():
    data = encode()
    header = floor_plan.decode_header(data)
    assert header["clone"] == (sc.CLONE_NEWPID | sc.CLONE_NEWNS | sc.CLONE_NEWUTS
                               | sc.CLONE_NEWIPC | sc.CLONE_NEWNET)  # the cgroup ns after
    assert header["cgroupns"] == header["loopback"] == header["keyring"] == 1
    assert header["hostname"] == header["rootfs"] == header["caps"] == 1
    assert header["no_new_privs"] == 1 and header["last_cap"] == 40
    assert header["bounding"] == header["effective"] == 0xA80425FB
    assert (header["mounts"], header["masked"], header["readonly"]) == (2, 1, 1)
    assert header["seccomp_bytes"] == len(PROGRAM)
    offset = floor_plan.HEADER.size
    rlimit = struct.unpack_from("<3Q", data, offset)
    assert rlimit == (7, 1024, (1 << 64) - 1)  # RLIM_INFINITY as the kernel takes it
    flags = struct.unpack_from("<2Q", data, offset + 24)
    assert flags == (14, 2)
    assert struct.unpack_from("<2Q", data, offset + 40) == (5, 6)
    assert data[offset + 56:offset + 56 + len(PROGRAM)] == PROGRAM
    assert (header["uid"], header["gid"]) == (0, 0)  # the default: root
    assert strings(data, header) == [
        "/", "/proc", "proc", "proc", "", "/dev", "tmpfs", "tmpfs", "mode=755",
        "/proc/kcore", "/proc/sys", "/init", "/init", "PATH=/bin", "HOME=/root"]


def test_an_imported_images_process_is_carried_whole():
    """Its argv (spaces and all), env, workdir and user, and the executable found before
    the clock apart from argv[0] (busybox picks its applet by argv[0])."""
    args = ("sh", "-c", 'echo "$(pwd) $FOO"; echo READY')
    data = floor_plan.encode(
        launch_plan(args=args, env=("PATH=/bin", "FOO=a b"), cwd="/work", uid=1000, gid=1001),
        floor_plan.STEPS, PROGRAM, 40, HOST, "/bin/sh")
    header = floor_plan.decode_header(data)
    assert (header["uid"], header["gid"], header["args"], header["env"]) == (1000, 1001, 3, 2)
    assert strings(data, header)[0] == "/work"
    assert strings(data, header)[-6:] == ["/bin/sh", *args, "PATH=/bin", "FOO=a b"]


def test_the_executable_defaults_to_argv0_and_the_host_workload_keeps_its_own():
    header = floor_plan.decode_header(encode(args=("/bin/true", "x")))
    assert strings(encode(args=("/bin/true", "x")), header)[-5:-2] == [
        "/bin/true", "/bin/true", "x"]
    data = floor_plan.encode(launch_plan(), (), PROGRAM, 40, HOST, "/ignored")
    header = floor_plan.decode_header(data)
    assert strings(data, header) == ["/", HOST.args[0], *HOST.args, *HOST.env]


def test_no_step_leaves_a_plain_fork_of_the_host_workload():
    data = encode(steps=())
    header = floor_plan.decode_header(data)
    assert header["clone"] == 0
    for field in ("cgroupns", "loopback", "keyring", "hostname", "rootfs", "caps",
                  "no_new_privs", "mounts", "masked", "readonly", "seccomp_bytes"):
        assert header[field] == 0, field
    assert strings(data, header) == ["/", HOST.args[0], *HOST.args, *HOST.env]


@pytest.mark.parametrize("step", floor_plan.STEPS)
def test_each_step_off_leaves_out_only_its_own_part(step):
    on = [other for other in floor_plan.STEPS if other != step]
    header = floor_plan.decode_header(encode(steps=on))
    full = floor_plan.decode_header(encode())
    changed = {name for name in floor_plan.FIELDS if header[name] != full[name]}
    expected = {
        "namespaces": {"clone", "cgroupns", "loopback", "keyring", "hostname"},
        "rootfs": {"rootfs", "mounts", "masked", "readonly", "args"},  # the same env size
        "cgroups": set(),  # the join files are the launcher's arguments, not the plan's
        "caps": {"caps", "no_new_privs"},
        "seccomp": {"seccomp_bytes"},
    }[step]
    assert changed == expected
    if step == "namespaces":  # the overlay root still gets a mount namespace
        assert header["clone"] == sc.CLONE_NEWNS


def test_bad_programs_and_strings_are_refused():
    with pytest.raises(ValueError, match="not BPF"):
        floor_plan.encode(launch_plan(), floor_plan.STEPS, b"\0" * 7, 40, HOST)
    with pytest.raises(ValueError, match="NUL"):
        encode(args=("/in\0it",))
    with pytest.raises(ValueError, match="NUL"):
        floor_plan.encode(launch_plan(), floor_plan.STEPS, PROGRAM, 40, HOST, "/in\0it")
    with pytest.raises(ValueError, match="empty argv"):
        encode(args=())


@pytest.mark.parametrize("ids, message", [
    ({"uid": -1}, "uid -1 is not one"),
    ({"gid": (1 << 32) - 1}, "gid 4294967295 is not one"),
    ({"uid": 1 << 64}, "uid 18446744073709551616 is not one"),
])
def test_an_id_that_is_none_is_refused(ids, message):
    with pytest.raises(ValueError, match=message):
        encode(**ids)


def test_decode_refuses_another_file():
    with pytest.raises(ValueError, match="not a floor plan"):
        floor_plan.decode_header(b"X" * floor_plan.HEADER.size)


def test_launcher_reads_the_same_field_order():
    """launcher.c's enum lists the header's fields in FIELDS' order."""
    source = (Path(floor_plan.__file__).parent / "launcher.c").read_text()
    enum = source.split("enum {", 1)[1].split("}", 1)[0]
    names = [name.strip().lower().removeprefix("f_") for name in enum.split(",")]
    assert [name for name in names if name and name != "count"] == list(floor_plan.FIELDS)


@pytest.mark.parametrize("value, expected", [
    (["namespaces", "seccomp"], {"namespaces", "seccomp"}),
    ("namespaces, rootfs", {"namespaces", "rootfs"}),
    ([], set()),
    ("", set()),
    (list(floor_plan.STEPS), set(floor_plan.STEPS)),
])
def test_steps_are_checked(value, expected):
    assert floor_plan.check_steps(value) == expected


@pytest.mark.parametrize("value, message", [
    (["namespaces", "cgroupz"], "unknown floor step 'cgroupz', expected one of namespaces"),
    ("rootfs,caps,bogus", "unknown floor step 'bogus'"),
    (3, "expected a list of steps"),
    ([1], "expected a name, got 1"),
])
def test_bad_steps_are_one_line(value, message):
    with pytest.raises(validate.Invalid, match=message) as raised:
        floor_plan.check_steps(value)
    assert "\n" not in str(raised.value)
