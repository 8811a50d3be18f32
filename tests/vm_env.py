"""A private environment for tests that boot VMs through libvirt."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagestore import image as images
from vm import sweep as vm_sweep


@contextmanager
def private_vm_state(tag: str) -> Iterator[tuple[images.Image, str]]:
    """A short private state dir (traversable by libvirt-qemu), the image, a name prefix.

    On exit, the VMs named with the prefix are swept and the state dir removed.
    """
    state = Path(tempfile.mkdtemp(prefix=f"cvbench-{tag}"))
    state.chmod(0o755)
    previous = os.environ.get("CVBENCH_STATE_DIR")
    os.environ["CVBENCH_STATE_DIR"] = str(state)
    prefix = f"cvbench-{tag}-{uuid.uuid4().hex[:6]}-"
    try:
        yield images.build(), prefix
    finally:
        vm_sweep.sweep(prefix=prefix)
        if previous is None:
            os.environ.pop("CVBENCH_STATE_DIR", None)
        else:
            os.environ["CVBENCH_STATE_DIR"] = previous
        shutil.rmtree(state, ignore_errors=True)
