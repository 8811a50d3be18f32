"""Helpers for tests that drive ``cvbench-runtime`` (runtime/oci/): its command line, an
executable wrapper for engines, and an OCI bundle of cvbench's own image."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.backends.base import InstanceSpec
from harness.backends.oci.backend import OciBackend
from harness.backends.oci.bundle import Bundle, build_config
from hostkit import syscalls as sc
from runtime import rootfs

REPOSITORY = Path(__file__).resolve().parents[1]


def command() -> list[str]:
    """``cvbench-runtime`` as this checkout runs it (the console script of an installed
    package is ``runtime.oci.cli:main`` too)."""
    return [sys.executable, "-m", "runtime.oci.cli"]


def environment() -> dict[str, str]:
    """The environment the command runs in: this checkout first on the module path."""
    return {**os.environ, "PYTHONPATH": str(REPOSITORY)}


def run(root: Path, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """``cvbench-runtime --root ROOT ARGS``, its output captured (unless ``stdout`` given:
    ``create`` hands its stdout and stderr to the container, whose init holds them open)."""
    options.setdefault("capture_output", "stdout" not in options)
    return subprocess.run([*command(), "--root", str(root), *args], text=True,
                          env=environment(), timeout=60, check=False, **options)


def wrapper(directory: Path) -> Path:
    """An executable ``cvbench-runtime`` in ``directory`` running this checkout's, for an
    engine's ``--runtime`` (what the installed console script is)."""
    path = directory / "cvbench-runtime"
    path.write_text(f"#!/bin/sh\nPYTHONPATH={REPOSITORY} exec {sys.executable} "
                    '-m runtime.oci.cli "$@"\n')
    path.chmod(0o755)
    return path


class CvbenchRuntimeBackend(OciBackend):
    """The OCI backend driving ``cvbench-runtime`` (give it ``binary=wrapper(...)``): the same
    bundle, launcher and overlay as crun's."""

    name = "cvbench-runtime"
    runtime = "cvbench-runtime"


@contextlib.contextmanager
def bundle(directory: Path, image, name: str, **spec: Any) -> Iterator[tuple[Bundle, dict]]:
    """A bundle of ``image`` as the OCI backends make it (:mod:`harness.backends.oci.bundle`:
    ``config.json`` of the reference spec, cgroupsPath under ``cvbench-oci``), its ``rootfs``
    an overlay of the image mounted on the host; unmounted and removed after. ``spec``:
    :class:`InstanceSpec` fields (``command``, ``memory_limit_mib``, ...)."""
    made = Bundle(name, directory / name)
    config = build_config(InstanceSpec(name=name, image=image, **spec))
    made.make(config)
    mount = rootfs.overlay_mount(f"lowerdir={image.rootfs},upperdir={made.upper},"
                                 f"workdir={made.work}")
    try:
        sc.attach_mount(mount, str(made.rootfs))
    finally:
        os.close(mount)
    try:
        yield made, config
    finally:
        sc.umount2(str(made.rootfs), sc.MNT_DETACH)
        made.remove()


def rewrite(made: Bundle, change: dict[str, Any]) -> None:
    """Merge ``change`` into the bundle's ``config.json`` (a key set to None is dropped)."""
    config = json.loads(made.config.read_text())
    _merge(config, change)
    made.config.write_text(json.dumps(config))


def _merge(target: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
