"""Scratch directories of image builds and imports, and their sweep by ``cvbench clean``.

A build or an import works in a directory of its own and renames the result into the image
store only once it is complete, so a failure leaves no half image behind. A harness killed
with SIGKILL cannot remove that directory; its name carries the owner's pid, so that
:func:`sweep` removes the directories of processes that are gone and leaves those of a build or
import still running.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from hostkit.paths import PREFIX, images_dir, state_dir
from hostkit.procs import running

# kind -> where its scratch directories live
KINDS = {"image": images_dir, "import": state_dir}
_NAME = re.compile(rf"{re.escape(PREFIX)}(?:{'|'.join(KINDS)})-(\d+)-")


def make(kind: str) -> Path:
    """A new scratch directory of ``kind`` (``image``: a build, in the images directory, so
    that the finished image is renamed within one file system; ``import``: an import, in the
    state directory), named for this process."""
    parent = KINDS[kind]()
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-{os.getpid()}-", dir=parent))


def sweep() -> list[str]:
    """Remove the scratch directories whose owner is gone; one line per directory removed."""
    removed: list[str] = []
    for parent in {finder() for finder in KINDS.values()}:
        if not parent.is_dir():
            continue
        for entry in sorted(parent.iterdir()):
            match = _NAME.match(entry.name)
            if not match or not entry.is_dir() or running(int(match.group(1))):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(f"image scratch directory {entry}")
    return removed
