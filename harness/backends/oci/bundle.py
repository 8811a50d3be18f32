"""Where an OCI container's files live, and its ``config.json`` (pure: nothing is started).

Container ``<name>`` gets a bundle under ``state_dir()/oci/<name>/``: a ``config.json`` made
from the :class:`InstanceSpec` (what ``ours`` runs) and a ``rootfs`` mount point for an overlay
of the shared read-only image plus the bundle's private ``upper`` and ``work`` directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError, InstanceSpec
from harness.backends.containers import container_spec
from harness.backends.oci.cgroup import cgroups_path
from harness.backends.oci.runtimes import states_dir
from hostkit.paths import PREFIX, state_dir
from runtime import devices
from runtime import spec as runtime_spec

RUNTIMES = ("crun", "runc")


def bundles_dir() -> Path:
    return state_dir() / "oci"


def runtime_root(runtime: str) -> Path:
    """The runtime's ``--root`` state directory."""
    return states_dir() / runtime


@dataclass(frozen=True)
class Bundle:
    """Paths of one container's bundle."""

    name: str
    dir: Path

    @classmethod
    def for_name(cls, name: str) -> Bundle:
        return cls(name, bundles_dir() / name)

    @property
    def config(self) -> Path:
        return self.dir / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    @property
    def log(self) -> Path:
        return self.dir / "stderr.log"

    def make(self, config: dict[str, Any]) -> None:
        """Create the bundle: its directory (BackendError if it exists), the overlay's
        ``upper``, ``work`` and ``rootfs`` mount point, and ``config.json``."""
        try:
            self.dir.mkdir()
        except FileExistsError:
            raise BackendError(f"{self.name}: bundle {self.dir} already exists") from None
        except FileNotFoundError:  # no prepare() made the bundles' directory
            self.dir.mkdir(parents=True)
        try:
            for directory in (self.upper, self.work, self.rootfs):
                directory.mkdir()
            self.config.write_text(json.dumps(config))
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def remove(self) -> None:
        """Remove the bundle: what :meth:`make`, the runtime and the overlay put there, by
        name (no walk of the tree); the whole tree where anything else is left (files the
        container wrote in ``upper``)."""
        try:
            for file in (self.config, self.pid_file, self.log):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file)
            for directory in (self.work / "work", self.work, self.upper, self.rootfs, self.dir):
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(directory)
        except OSError:
            shutil.rmtree(self.dir, ignore_errors=True)

    def last_log_line(self) -> str:
        """The runtime's last line of complaint, or ``no log``."""
        try:
            text = self.log.read_text(errors="replace").strip()
        except OSError:
            return "no log"
        return text.splitlines()[-1] if text else "no log"


def build_config(spec: InstanceSpec, netns: str | None = None) -> dict[str, Any]:
    """The OCI runtime-spec ``config.json`` for ``spec`` (rootfs at ``<bundle>/rootfs``).

    It is ``runtime.spec.default_spec`` (what ``ours`` runs) with the root made bundle-relative,
    a ``cvbench-`` cgroups path and :func:`device_rules`: same namespaces, mounts,
    capabilities, masked paths, device rules and limits as ``ours``. ``network = "bridge"``
    needs ``netns``, the path of a network namespace cvbench wired to the bridge
    (:mod:`.netns`), which the container joins.
    """
    if not spec.name.startswith(PREFIX):
        raise BackendError(f"container name {spec.name!r} must start with {PREFIX!r}")
    if spec.network not in ("none", "host", "bridge"):
        raise BackendError(f"network {spec.network!r} not supported by the OCI backends")
    if spec.network == "bridge" and netns is None:
        raise BackendError("network bridge needs the path of a wired network namespace")
    oci_spec = container_spec(spec)
    oci_spec.root = runtime_spec.Root("rootfs", readonly=False)  # the overlay, bundle-relative
    oci_spec.linux.cgroups_path = cgroups_path(spec.name)
    config = oci_spec.to_oci()
    config["linux"]["resources"]["devices"] = device_rules(oci_spec)
    memory = config["linux"]["resources"].get("memory")
    if memory is not None:
        # Swap as ours applies it (runtime/cgroups.py): none. OCI's memory.swap is memory+swap
        # (v1 memsw = limit); on v2 crun and runc write memory.swap.max = swap - limit = 0.
        memory["swap"] = memory["limit"]
    if spec.network == "bridge":
        for namespace in config["linux"]["namespaces"]:
            if namespace["type"] == "network":
                namespace["path"] = netns
    return config


def device_rules(spec: runtime_spec.Spec) -> list[dict[str, Any]]:
    """``linux.resources.devices`` of ``config.json``: exactly the rules ``ours`` applies to a
    container of ``spec`` (:func:`runtime.devices.container_rules`: the spec's rules, deny
    all, then ours' default allow list), in ours' order.

    crun and runc then append their own default lists (crun's has ``/dev/console``, runc's
    ``/dev/net/tun``), each a subset of ours', so every runtime ends up allowing the same set
    (``devices.list`` of a running container on v1: ``describe()["devices"]``).
    """
    return [rule.to_oci() for rule in devices.container_rules(spec.linux.resources.devices)]
