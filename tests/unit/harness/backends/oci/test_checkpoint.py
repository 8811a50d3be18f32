"""runc's restore variant without runc or CRIU: the responder, the container shape a
checkpoint serves, the copies of its writable state, CRIU's error line, the refusals and
where the variant is offered."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from harness.backends import restorable
from harness.backends.base import COLD, RESTORE, WARM, BackendError, InstanceSpec
from harness.backends.crun import CrunBackend
from harness.backends.oci import checkpoint
from harness.backends.oci.bundle import Bundle, build_config
from harness.backends.runc import RuncBackend
from imagestore.image import Image

BUSYBOX = Path("/bin/busybox")


def _image(tmp_path: Path, shell: bool = True) -> Image:
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    if shell:
        (rootfs / "bin" / "sh").write_text("")
    return Image(name="default", digest="0" * 64, rootfs=rootfs)


def test_the_config_runs_the_workload_behind_the_responder(tmp_path) -> None:
    spec = InstanceSpec(name="cvbench-unit-r", image=_image(tmp_path))
    bundle = Bundle("cvbench-unit-r", tmp_path / "bundle")
    config = checkpoint.restorable_config(spec, spec.image.rootfs, bundle)
    plain = build_config(spec)
    assert config["process"]["args"] == [checkpoint.SHELL, "-c", checkpoint.RESPONDER,
                                         checkpoint.RESPONDER_NAME, *plain["process"]["args"]]
    assert config["annotations"].pop("org.criu.config") == str(tmp_path / "bundle/criu.conf")
    config["process"]["args"] = plain["process"]["args"]
    plain.setdefault("annotations", {})
    assert config == plain  # nothing else differs from a cold container's
    bundle.make({})
    checkpoint.write_criu_config(bundle)
    assert (bundle.dir / "criu.conf").read_text() == ""  # the dump's: runc's options
    checkpoint.write_criu_config(bundle, "/cvbench-oci/shard-1/cvbench-unit-r")
    assert (bundle.dir / "criu.conf").read_text() == \
        "manage-cgroups=soft\ncgroup-root=/cvbench-oci/shard-1/cvbench-unit-r\n"
    without = InstanceSpec(name="cvbench-unit-r", image=_image(tmp_path / "x", shell=False))
    with pytest.raises(ValueError, match="no /bin/sh"):
        checkpoint.restorable_config(without, without.image.rootfs, bundle)


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs Debian's busybox-static")
def test_the_responder_answers_each_ping_and_runs_the_workload() -> None:
    process = subprocess.Popen(
        [str(BUSYBOX), "sh", "-c", checkpoint.RESPONDER, checkpoint.RESPONDER_NAME,
         str(BUSYBOX), "sh", "-c", "echo workload; ls /proc/$$/fd; sleep 1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    time.sleep(0.2)
    for line in (b"other\n", checkpoint.PING_LINE, checkpoint.PING_LINE):
        process.stdin.write(line)
    process.stdin.close()
    out = process.stdout.read().decode().split()
    assert process.wait(5) == 0
    assert out.count("READY") == 2 and "workload" in out
    assert "3" not in out[:out.index("workload") + 5]  # fd 3 not handed to the workload


def test_one_checkpoint_serves_every_name_of_a_shape(tmp_path) -> None:
    image = _image(tmp_path)
    one = checkpoint.shape(InstanceSpec(name="cvbench-unit-a", image=image))
    assert one == checkpoint.shape(InstanceSpec(name="cvbench-unit-b", image=image))
    assert one != checkpoint.shape(InstanceSpec(name="cvbench-unit-a", image=image,
                                                memory_limit_mib=64))
    assert one != checkpoint.shape(InstanceSpec(name="cvbench-unit-a", image=image,
                                                env=("A=1",)))


def test_refusal_of_a_network_or_a_volume(tmp_path) -> None:
    image = _image(tmp_path)
    assert checkpoint.refusal(InstanceSpec(name="cvbench-unit-a", image=image)) is None
    bridged = checkpoint.refusal(InstanceSpec(name="cvbench-unit-a", image=image,
                                              network="bridge"))
    assert bridged and bridged.startswith('restore takes network = "none", not \'bridge\'')
    volume = checkpoint.refusal(InstanceSpec(name="cvbench-unit-a", image=image,
                                             volume=tmp_path))
    assert volume and volume.startswith("restore takes no volume")


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod and chown need root")
def test_copy_state_keeps_the_upper_as_overlayfs_wrote_it(tmp_path) -> None:
    saved = Bundle("cvbench-unit-saved", tmp_path / "saved")
    saved.make({})
    (saved.upper / "etc").mkdir()
    (saved.upper / "etc" / "file").write_text("written")
    os.chown(saved.upper / "etc" / "file", 1000, 1000)
    (saved.upper / "etc" / "file").chmod(0o640)
    os.mknod(saved.upper / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # a whiteout
    (saved.upper / "opaque").mkdir()
    os.setxattr(saved.upper / "opaque", "trusted.overlay.opaque", b"y")
    (saved.upper / "link").symlink_to("etc/file")
    images = saved.dir / checkpoint.IMAGES
    images.mkdir()
    (images / "inventory.img").write_bytes(b"\x01\x02")
    shot = checkpoint.Checkpoint(saved)
    shot.seal()
    assert stat.S_IMODE((images / "inventory.img").stat().st_mode) == 0o444

    bundle = Bundle("cvbench-unit-r", tmp_path / "r")
    bundle.make({})
    copied = checkpoint.copy_state(shot, bundle)
    assert (copied / "inventory.img").read_bytes() == b"\x01\x02"
    (copied / "restore.log").write_text("CRIU logs here")  # the copy is writable
    file = bundle.upper / "etc" / "file"
    assert file.read_text() == "written"
    assert (file.stat().st_uid, stat.S_IMODE(file.stat().st_mode)) == (1000, 0o640)
    gone = (bundle.upper / "gone").stat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(bundle.upper / "opaque", "trusted.overlay.opaque") == b"y"
    assert os.readlink(bundle.upper / "link") == "etc/file"
    shot.remove()
    assert not saved.dir.exists()


def test_criu_error_is_criu_s_first_error_line(tmp_path) -> None:
    (tmp_path / "restore.log").write_text(
        "(00.001) Warn  (criu/kerndat.c:1250): Can't keep kdat cache\n"
        "(00.020) Error (criu/files-reg.c:2079): File etc/x has bad size 1 (expect 2)\n"
        "(00.021) Error (criu/cr-restore.c:1480): 12 killed by signal 9\n")
    assert checkpoint.criu_error(tmp_path, "runc: criu failed") == \
        "criu: (00.020) Error (criu/files-reg.c:2079): File etc/x has bad size 1 (expect 2)"
    assert checkpoint.criu_error(tmp_path / "none", "a\nruntime's last line\n") == \
        "runtime's last line"
    assert checkpoint.criu_error(tmp_path / "none", "") == "no output"


def test_drain_reads_what_a_pipe_holds_without_waiting() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    try:
        assert checkpoint.drain(read_fd) == "no output"
        os.write(write_fd, b"first\nlast line\n")
        assert checkpoint.drain(read_fd) == "last line"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_runc_offers_restore_only_where_criu_check_passes(monkeypatch) -> None:
    monkeypatch.setattr(restorable, "criu_problem", lambda: "criu is not installed")
    assert RuncBackend().variants == (COLD, WARM)
    assert "restore" not in RuncBackend().describe()["method"]["variants"]
    monkeypatch.setattr(restorable, "criu_problem", lambda: None)
    runc = RuncBackend()
    assert runc.variants == (COLD, WARM, RESTORE)
    assert CrunBackend(binary="/nonexistent/crun").variants == (COLD, WARM)
    before, inside = runc.describe()["method"]["variants"]["restore"].values()
    assert "runc checkpoint --image-path" in before
    assert "runc restore --detach --image-path <copy>" in inside
    assert checkpoint.CACHE_NOTE in inside


def test_a_bridged_restore_is_refused_before_anything_is_made(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(restorable, "criu_problem", lambda: None)
    runc = RuncBackend()
    spec = InstanceSpec(name="cvbench-unit-r", image=_image(tmp_path), network="bridge")
    with pytest.raises(BackendError, match='cvbench-unit-r: restore takes network = "none"'):
        runc.create(spec, RESTORE)
    assert not runc.live and runc._launcher is None
