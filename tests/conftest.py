"""Fixtures shared by every test: a private state directory and the default image in it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from imagestore import image as images

# A shell starts background commands with SIGINT ignored, and an ignored signal stays ignored
# across exec: the harnesses these tests interrupt with SIGINT (Ctrl-C) would never see it
# when the test command runs in the background. Children get the default disposition.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def session_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private state directory (readable by other users, as libvirt-qemu needs)."""
    path = tmp_path_factory.mktemp("cvbench-state")
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def built_image(session_state_dir: Path) -> images.Image:
    previous = os.environ.get("CVBENCH_STATE_DIR")
    os.environ["CVBENCH_STATE_DIR"] = str(session_state_dir)
    try:
        return images.build()
    finally:
        if previous is None:
            del os.environ["CVBENCH_STATE_DIR"]
        else:
            os.environ["CVBENCH_STATE_DIR"] = previous


@pytest.fixture
def state_dir(session_state_dir: Path, built_image: images.Image, monkeypatch) -> Path:
    """CVBENCH_STATE_DIR pointing at the private state directory for this test."""
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(session_state_dir))
    return session_state_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``root``-marked tests make real kernel objects: skip them, saying why, when not root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (real namespaces, mounts, cgroups, VMs)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)
