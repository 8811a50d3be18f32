"""Helpers for tests that run containers with our runtime."""

from __future__ import annotations

import uuid

from runtime.container import Runtime
from runtime.spec import default_spec


def container_name(tag: str) -> str:
    """A unique ``cvbench-test-<tag>-…`` container name."""
    return f"cvbench-test-{tag}-{uuid.uuid4().hex[:8]}"


def run_script(rt: Runtime, image, script: str, timeout: float = 20.0, tag: str = "run",
               **options):
    """Run ``sh -c script`` in a container; return (output, ExitInfo) once it has exited."""
    name = container_name(tag)
    spec = default_spec(image, name, args=["/bin/sh", "-c", script], **options)
    return rt.run_to_exit(spec, name, timeout)
