"""Guest artifacts: the initramfs cpio (layout, /dev/console, cache by digest), overlays."""

from __future__ import annotations

import io
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from cpio import read_cpio

from vm import guest


@dataclass(frozen=True)
class FakeImage:
    digest: str
    rootfs: Path


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF" + b"x" * 5)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "init").write_text("#!/bin/sh\necho READY\n")
    (root / "init").chmod(0o755)
    return root


def test_cpio_holds_the_rootfs_and_a_console(rootfs: Path) -> None:
    out = io.BytesIO()
    guest.write_cpio(rootfs, out)
    assert len(out.getvalue()) % 4 == 0
    entries = read_cpio(out.getvalue())
    mode, data, _ = entries["init"]
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o755 and data.endswith(b"READY\n")
    assert stat.S_ISLNK(entries["bin/sh"][0]) and entries["bin/sh"][1] == b"busybox"
    assert stat.S_ISDIR(entries["dev"][0])
    console_mode, _, rdev = entries["dev/console"]
    assert stat.S_ISCHR(console_mode) and rdev == (5, 1)
    assert entries["dev/null"][2] == (1, 3)


def test_cpio_is_reproducible(rootfs: Path) -> None:
    first, second = io.BytesIO(), io.BytesIO()
    guest.write_cpio(rootfs, first)
    (rootfs / "init").touch()  # mtimes do not matter
    guest.write_cpio(rootfs, second)
    assert first.getvalue() == second.getvalue()


def test_initramfs_is_cached_by_digest_and_world_readable(rootfs, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = guest.initramfs_for(FakeImage("d" * 64, rootfs))
    assert path.name.startswith("d" * 64)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert all(p.stat().st_mode & 0o005 == 0o005 for p in (path.parent, path.parent.parent))
    before = path.stat().st_mtime_ns
    assert guest.initramfs_for(FakeImage("d" * 64, rootfs)) == path
    assert path.stat().st_mtime_ns == before
    other = guest.initramfs_for(FakeImage("e" * 64, rootfs))
    assert other != path and other.read_bytes() == path.read_bytes()


def test_restore_initramfs_is_the_image_then_the_responder(rootfs, tmp_path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    initrd = guest.initramfs_for(FakeImage("d" * 64, rootfs))
    restore = guest.restore_initramfs(initrd)
    data = restore.read_bytes()
    first = initrd.read_bytes()
    assert data.startswith(first)  # the image's archive unchanged, a second one after it
    assert stat.S_IMODE(restore.stat().st_mode) == 0o644
    second = read_cpio(data[len(first):])
    assert list(second) == ["cvbench-restore"]
    mode, script, _ = second["cvbench-restore"]
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o755
    assert b"cvbench-ping" in script and b"echo READY" in script
    assert script.rstrip().endswith(b"exec /init")  # then the image's own init, as PID 1
    assert guest.restore_initramfs(initrd) == restore  # cached beside the image's


def test_missing_kernel_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("CVBENCH_GUEST_KERNEL", raising=False)
    with pytest.raises(guest.GuestError, match="setup.sh"):
        guest.kernel_path()


@pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("qemu-img")),
                    reason="needs e2fsprogs and qemu-utils")
def test_overlay_on_shared_base(rootfs, tmp_path, monkeypatch) -> None:
    import json
    import subprocess

    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    base = guest.base_disk_for(FakeImage("f" * 64, rootfs))
    assert guest.base_disk_for(FakeImage("f" * 64, rootfs)) == base
    overlay = guest.create_overlay(base, tmp_path / "vm" / "disk.qcow2")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(overlay)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["backing-filename"] == str(base)
    assert overlay.stat().st_size < 1 << 20  # thin: the data stays in the base


LAUNCH = guest.GuestLaunch(argv=("/bin/sh", "-c", "echo \"$FOO it's\"; echo READY"),
                           env=("PATH=/bin", "FOO=bar baz", "NOVALUE"), workdir="/work dir",
                           uid=1000, gid=1001)


@pytest.fixture
def helper(tmp_path, monkeypatch) -> Path:
    """A stand-in for the exec helper set-up builds, in a private cache directory."""
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "cache" / "bin" / "cvbench-guest-exec"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x7fELF helper")
    return path


def test_the_launch_init_execs_the_helper_with_the_launch_quoted() -> None:
    import shlex

    script = LAUNCH.init_script()
    assert script.startswith("#!/.cvbench/busybox sh\n")
    last = script.rstrip("\n").splitlines()[-1]
    words = shlex.split(last)
    # uid, gid, exactly the items with a "=", then the argv, each one word as it was
    assert words == ["exec", "/.cvbench/exec", "1000", "1001", "PATH=/bin", "FOO=bar baz",
                     "--", *LAUNCH.argv]
    assert "cd '/work dir' ||" in script
    for mount in ("proc /proc", "sysfs sys /sys", "devtmpfs dev /dev", "devpts",
                  "tmpfs -o mode=1777 shm /dev/shm"):
        assert mount in script
    assert script.index("/dev/shm ||") < script.index("cd '/work dir'") < script.index(last)


def test_a_launch_without_a_program_fails_in_one_boot_line() -> None:
    script = guest.GuestLaunch(argv=()).init_script()
    assert "exec /.cvbench/exec" not in script
    assert 'fail "the image has no entrypoint and no cmd"' in script
    assert 'echo "cvbench-boot: $*"' in script  # vm.console.FAILURE ends the wait for READY


def test_the_launch_key_follows_the_launch_and_the_helper(helper) -> None:
    key = LAUNCH.key()
    assert key == LAUNCH.key()
    from dataclasses import replace

    assert replace(LAUNCH, uid=0).key() != key
    assert replace(LAUNCH, env=("PATH=/bin",)).key() != key
    helper.write_bytes(b"\x7fELF another helper")
    assert LAUNCH.key() != key


def test_no_helper_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_CACHE_DIR", str(tmp_path))
    with pytest.raises(guest.GuestError, match="setup.sh"):
        guest.exec_helper()


def _disk_file(disk: Path, tmp_path: Path, name: str) -> tuple[str, bytes]:
    """``(stat line, contents)`` of ``name`` in the ext4 of a qcow2 ``disk`` (debugfs)."""
    import subprocess

    raw = tmp_path / f"{disk.stem}.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(disk), str(raw)],
                   check=True)
    info = subprocess.run(["debugfs", "-R", f"stat {name}", str(raw)], check=True,
                          capture_output=True, text=True).stdout
    data = subprocess.run(["debugfs", "-R", f"cat {name}", str(raw)], check=True,
                          capture_output=True).stdout
    raw.unlink()
    return info, data


@pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("qemu-img")
                         and shutil.which("debugfs") and guest.BUSYBOX.is_file()),
                    reason="needs e2fsprogs, qemu-utils and busybox-static")
def test_an_imported_images_disk_holds_cvbench_s_init(rootfs, helper, tmp_path) -> None:
    (rootfs / ".cvbench").mkdir()
    (rootfs / ".cvbench" / "init").write_text("the image's own, replaced\n")
    before = sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*"))
    image = FakeImage("a" * 64, rootfs)
    plain = guest.base_disk_for(image)
    disk = guest.base_disk_for(image, LAUNCH)
    assert disk != plain and disk.name.startswith("a" * 64 + "-" + LAUNCH.key())
    assert guest.base_disk_for(image, LAUNCH) == disk  # cached
    from dataclasses import replace

    other = guest.base_disk_for(image, replace(LAUNCH, workdir="/"))
    assert other not in (disk, plain)  # another launch, another disk
    info, init = _disk_file(disk, tmp_path, "/.cvbench/init")
    assert init.decode() == LAUNCH.init_script() and "Mode:  0755" in info
    assert _disk_file(disk, tmp_path, "/.cvbench/exec")[1] == helper.read_bytes()
    assert _disk_file(disk, tmp_path, "/.cvbench/busybox")[1] == guest.BUSYBOX.read_bytes()
    assert _disk_file(disk, tmp_path, "/init")[1] == (rootfs / "init").read_bytes()
    assert "Type: directory" in _disk_file(disk, tmp_path, "/proc")[0]  # a mount point
    # the image's rootfs is left as it was (its .cvbench too: only the disk's is replaced)
    assert sorted(str(p.relative_to(rootfs)) for p in rootfs.rglob("*")) == before
    assert (rootfs / ".cvbench" / "init").read_text() == "the image's own, replaced\n"
    assert "/.cvbench/init" not in _disk_file(plain, tmp_path, "/.cvbench/init")[1].decode()
