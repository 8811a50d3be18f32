"""The default image: reproducible digest, READY-printing /init, tamper detection."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from imagestore import image as images


def test_build_is_reproducible_and_resolvable(state_dir, built_image) -> None:
    again = images.build()
    assert again.digest == built_image.digest
    assert images.resolve("default").digest == built_image.digest
    assert images.resolve(built_image.digest[:16]).digest == built_image.digest
    images.verify(built_image)


def test_init_prints_ready_and_stops_on_sigterm(built_image) -> None:
    rootfs = built_image.rootfs
    process = subprocess.Popen(
        [str(rootfs / "bin/busybox"), "sh", str(rootfs / "init")],
        stdout=subprocess.PIPE, env={"PATH": str(rootfs / "bin")}, start_new_session=True,
    )
    try:
        assert process.stdout.readline() == b"READY\n"
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):  # the idle child too, whatever happened
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.parametrize("change", ["content", "mode", "new_file"])
def test_verify_detects_any_change(state_dir, built_image, change) -> None:
    target = built_image.rootfs / "etc" / "hostname"
    original = target.read_bytes()
    extra = built_image.rootfs / "etc" / "extra"
    try:
        if change == "content":
            target.write_bytes(original.replace(b"c", b"C", 1))
        elif change == "mode":
            target.chmod(0o600)
        else:
            extra.write_text("x")
        with pytest.raises(images.ImageError, match="tampered"):
            images.load_verified("default")
    finally:
        target.write_bytes(original)
        target.chmod(0o644)
        extra.unlink(missing_ok=True)
    images.verify(built_image)


def test_unknown_image_is_a_clear_error(state_dir) -> None:
    with pytest.raises(images.ImageError, match="unknown image 'nope'"):
        images.resolve("nope")
