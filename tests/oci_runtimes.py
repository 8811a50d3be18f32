"""A second OCI runtime for tests: a copy of crun under another name and path, and the
clean-up of the backend table's user-named runtimes after a test that declared some."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.backends import registry


def copy_of_crun(directory: Path, name: str = "mycrun") -> Path:
    """``<directory>/cvbench-crun2/<name>``: the host's crun binary, copied (not linked, so
    that its path and file name are its own)."""
    found = shutil.which("crun")
    assert found is not None, "crun is not installed (scripts/setup.sh installs it)"
    target = directory / "cvbench-crun2" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(found, target)
    return target


@contextmanager
def forgetting_user_runtimes() -> Iterator[None]:
    """Whatever runtimes the body declares leave the backend table afterwards."""
    before = set(registry.user_runtimes())
    try:
        yield
    finally:
        for name in set(registry.user_runtimes()) - before:
            registry.unregister(name)
