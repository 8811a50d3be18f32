"""What an imported image runs: its config turned into argv, env, workdir and user, the same
for every backend, and the one line a backend that cannot honour a field is refused with."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends import launch as launches
from harness.backends.base import InstanceSpec
from harness.backends.launch import Launch, LaunchError
from imagestore.image import Image
from imagestore.imageconfig import ImageConfig

PASSWD = """root:x:0:0:root:/root:/bin/sh
# a comment
app:x:1000:1001:app:/home/app:/bin/sh
broken:x:nope:1:
daemon:x:2:2::/:/bin/false
"""
GROUP = """root:x:0:
staff:x:50:app
app:x:1001:
"""


@pytest.fixture
def rootfs(tmp_path) -> Path:
    """An image root with /etc/passwd, /etc/group and a /work directory."""
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    (root / "work").mkdir()
    (root / "file").write_text("not a directory")
    return root


@pytest.mark.parametrize(("user", "expected"), [
    ("", (0, 0)),
    ("0", (0, 0)),
    ("1000", (1000, 1001)),  # a uid with a passwd line: its group
    ("4242", (4242, 0)),  # none: group 0, as Docker does
    ("1000:1000", (1000, 1000)),
    ("4242:7", (4242, 7)),
    ("app", (1000, 1001)),
    ("app:staff", (1000, 50)),
    ("app:7", (1000, 7)),
    ("daemon", (2, 2)),
    ("4242:staff", (4242, 50)),
])
def test_a_user_is_numeric_or_looked_up_in_the_image(rootfs, user, expected) -> None:
    assert launches.parse_user(user, rootfs) == expected


@pytest.mark.parametrize(("user", "line"), [
    ("nobody", "image user 'nobody' is not in the image's /etc/passwd"),
    ("broken", "image user 'broken' is not in the image's /etc/passwd"),
    ("app:wheel", "image group 'wheel' is not in the image's /etc/group"),
    ("app:", "image user 'app:': empty group"),
])
def test_an_unknown_user_or_group_is_one_line(rootfs, user, line) -> None:
    with pytest.raises(LaunchError) as refused:
        launches.parse_user(user, rootfs)
    assert str(refused.value) == line


def test_a_name_needs_the_image_s_passwd_file(tmp_path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").symlink_to("/etc/passwd")  # never followed out of the image
    assert launches.parse_user("1000:1000", tmp_path) == (1000, 1000)
    with pytest.raises(LaunchError, match="'root' is not in the image's /etc/passwd"):
        launches.parse_user("root", tmp_path)


def test_resolve_keeps_the_config_and_checks_the_workdir(rootfs) -> None:
    config = ImageConfig(entrypoint=("/bin/sh", "-c"), cmd=("echo READY",),
                         env=("FOO=bar",), workdir="/work", user="app")
    assert launches.resolve(config, rootfs) == Launch(
        entrypoint=("/bin/sh", "-c"), cmd=("echo READY",), env=("FOO=bar",),
        workdir="/work", uid=1000, gid=1001)
    assert launches.resolve(replace(config, workdir="", user=""), rootfs).workdir == "/"
    assert launches.resolve(replace(config, workdir="work/"), rootfs).workdir == "/work"
    for missing in ("/nowhere", "/file"):
        with pytest.raises(LaunchError) as refused:
            launches.resolve(replace(config, workdir=missing), rootfs)
        assert str(refused.value) == f"image workdir {missing!r} is no directory of the image"


def _spec(launch: Launch | None, **changes) -> InstanceSpec:
    image = Image("demo", "ab" * 32, Path("/images/ab/rootfs"))
    return InstanceSpec(name="cvbench-x", image=image, launch=launch, **changes)


IMPORTED = Launch(entrypoint=("/bin/sh", "-c"), cmd=("echo READY",),
                  env=("PATH=/bin", "FOO=bar", "KEEP=1"), workdir="/work", uid=1000, gid=1000)


def test_argv_keeps_the_entrypoint_and_a_command_replaces_the_cmd() -> None:
    assert launches.argv(_spec(IMPORTED)) == ("/bin/sh", "-c", "echo READY")
    assert launches.argv(_spec(IMPORTED, command=("echo other",))) == (
        "/bin/sh", "-c", "echo other")
    assert launches.argv(_spec(replace(IMPORTED, entrypoint=()))) == ("echo READY",)
    assert launches.argv(_spec(None)) == ("/init",)  # an image cvbench built
    assert launches.argv(_spec(None, command=("/bin/true",))) == ("/bin/true",)


def test_the_environment_is_base_then_image_then_spec_by_name() -> None:
    spec = _spec(IMPORTED, env=("FOO=baz", "NEW=2"))
    assert launches.environment(spec, ["PATH=/usr/bin:/bin", "HOME=/root"]) == [
        "PATH=/bin", "HOME=/root", "FOO=baz", "KEEP=1", "NEW=2"]
    assert launches.environment(_spec(None, env=("A=1",)), ("HOME=/root",)) == [
        "HOME=/root", "A=1"]


def test_fields_away_from_the_default() -> None:
    assert IMPORTED.fields() == ("workdir", "user")
    assert Launch(entrypoint=("/x",)).fields() == ()
    assert Launch(gid=5).fields() == ("user",)


def test_a_backend_that_cannot_honour_a_field_is_refused_in_one_line() -> None:
    nothing = SimpleNamespace()  # a backend without launch_fields
    assert launches.refusal("other", nothing, IMPORTED) == (
        "backend 'other' cannot run an imported image: it runs only /init")
    assert launches.refusal("other", nothing, None) is None  # an image cvbench built
    argv_only = SimpleNamespace(launch_fields=())
    assert launches.refusal("x", argv_only, IMPORTED) == (
        "backend 'x' cannot run the imported image's workdir '/work', user '1000:1000': "
        "it runs as root in /")
    assert launches.refusal("x", argv_only, replace(IMPORTED, workdir="/")) == (
        "backend 'x' cannot run the imported image's user '1000:1000': it runs as root in /")
    assert launches.refusal("x", argv_only, Launch(entrypoint=("/x",))) is None
    assert launches.refusal("x", SimpleNamespace(launch_fields=launches.FIELDS),
                            IMPORTED) is None


@pytest.fixture
def programs(tmp_path) -> Path:
    """An image root with busybox in /bin, its applets as links (relative and absolute), a
    file without an execute bit, /usr/bin a link to /bin, and a link loop."""
    root = tmp_path / "programs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_text("#!")
    (root / "bin" / "busybox").chmod(0o755)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "bin" / "id").symlink_to("/bin/busybox")
    (root / "bin" / "up").symlink_to("../../../bin/busybox")  # .. stops at the image's root
    (root / "bin" / "notes").write_text("plain")
    (root / "bin" / "loop").symlink_to("loop")
    (root / "usr").mkdir()
    (root / "usr" / "bin").symlink_to("/bin")
    (root / "sbin").mkdir()
    (root / "sbin" / "sh").write_text("not executable")
    return root


@pytest.mark.parametrize(("program", "env", "expected"), [
    ("/init", ("PATH=/bin",), "/init"),  # a slash: its own path, unchecked
    ("bin/sh", (), "bin/sh"),
    ("sh", ("PATH=/sbin:/bin",), "/bin/sh"),  # /sbin/sh has no execute bit
    ("id", ("PATH=/usr/bin",), "/usr/bin/id"),  # through /usr/bin -> /bin, then /bin/busybox
    ("up", ("PATH=/bin",), "/bin/up"),
    ("notes", ("PATH=/bin",), "notes"),  # nothing to run: execve fails as execvpe would
    ("loop", ("PATH=/bin",), "loop"),
    ("busybox", (), "/bin/busybox"),  # no PATH: os.defpath
    ("sh", ("PATH=",), "sh"),  # an empty entry is the working directory: no sh in /
    ("sh", ("PATH=:bin",), "/bin/sh"),  # relative to the working directory
])
def test_a_program_name_is_looked_up_in_the_image_as_execvpe_would(programs, program, env,
                                                                    expected) -> None:
    assert launches.executable(programs, program, env) == expected


def test_a_relative_path_entry_is_taken_from_the_working_directory(programs) -> None:
    assert launches.executable(programs, "sh", ["PATH=."], "/bin") == "/bin/sh"
    assert launches.executable(programs, "sh", ["PATH=."], "/usr") == "sh"
