"""The OCI peer backend: our image as an OCI bundle, run by an OCI runtime binary.

Every runtime command goes through the backend's one launcher process (``launcher.py``);
``crun.py`` and ``runc.py`` only name the binary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from harness.backends.base import BackendError, Instance, InstanceSpec, MemorySample
from harness.backends.oci import cgroup
from harness.backends.oci import netns as oci_netns
from harness.backends.oci.bundle import Bundle, build_config, bundles_dir, runtime_root
from harness.backends.oci.launcher import Launcher, Overlay
from harness.backends.readiness import close_ready, wait_then_close
from hostkit.procs import running, wait_exit
from imagestore.image import Image
from runtime.cgroups import CgroupError
from runtime.network import NetworkError

GRACE_S = 10.0  # SIGTERM → SIGKILL


@dataclasses.dataclass
class OciHandle:
    bundle: Bundle
    pid: int
    ready_fd: int | None  # closed once READY was read
    netns: oci_netns.Netns | None = None  # network = "bridge": released by remove()


class OciBackend:
    """A peer backend driving an OCI runtime binary (``crun``, ``runc``) through bundles."""

    name = "oci"
    runtime = "crun"  # the binary's name; subclasses set both

    def __init__(self, *, binary: str | None = None, grace_s: float = GRACE_S) -> None:
        self.binary = binary or shutil.which(self.runtime) or self.runtime
        self.grace_s = grace_s
        self.mode = cgroup.host_mode()
        self.cgroups = cgroup.driver(self.mode)
        self.live: dict[str, Instance] = {}
        self._launcher: Launcher | None = None
        self._lock = threading.Lock()

    @property
    def root(self) -> Path:
        return runtime_root(self.runtime)

    def launcher(self) -> Launcher:
        """The backend's launcher, started on first use (and again if it died)."""
        with self._lock:
            if self._launcher is None or not self._launcher.alive():
                self._launcher = Launcher(cgroup.needs_private_view(self.binary, self.mode),
                                          label=self.runtime)
            return self._launcher

    # Backend protocol

    def prepare(self, image: Image) -> None:
        if shutil.which(self.binary) is None:
            raise BackendError(f"{self.runtime} not found on PATH")
        if not (image.rootfs / image.init.lstrip("/")).exists():
            raise BackendError(f"image {image.name} has no {image.init}")
        self.root.mkdir(parents=True, exist_ok=True)
        bundles_dir().mkdir(parents=True, exist_ok=True)
        self.launcher()  # start it now, not during the first measured start

    def start(self, spec: InstanceSpec) -> Instance:
        bridge = spec.network == "bridge"
        config = build_config(spec, netns="(checked)" if bridge else None)
        bundle = Bundle.for_name(spec.name)
        launcher = self.launcher()
        try:
            bundle.dir.mkdir(parents=True)
        except FileExistsError:
            raise BackendError(f"{spec.name}: bundle {bundle.dir} already exists") from None
        self.root.mkdir(parents=True, exist_ok=True)
        read_fd = None
        netns = None
        try:
            for directory in (bundle.upper, bundle.work, bundle.rootfs):
                directory.mkdir()
            if bridge:  # a namespace on cvbench0 first, joined by the container
                try:
                    netns = oci_netns.create(str(bundle.dir))
                except NetworkError as error:
                    raise BackendError(f"{spec.name}: {error}") from None
                config = build_config(spec, netns=netns.path)
            bundle.config.write_text(json.dumps(config))
            read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
            log_fd = os.open(bundle.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC)
            null_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                argv = self._argv("run", "-d", "--pid-file", str(bundle.pid_file),
                                  "--bundle", str(bundle.dir), spec.name)
                overlay = Overlay(spec.image.rootfs, bundle.upper, bundle.work, bundle.rootfs)
                rc = launcher.spawn(argv, null_fd, write_fd, log_fd, overlay)
            finally:
                for fd in (write_fd, log_fd, null_fd):
                    os.close(fd)
            if rc != 0:
                raise BackendError(f"{self.runtime} run {spec.name} failed: "
                                   f"{bundle.last_log_line()}")
            pid = int(bundle.pid_file.read_text())
        except BaseException:
            if read_fd is not None:
                os.close(read_fd)
            self._teardown(bundle)
            if netns is not None:
                netns.release()
            raise
        if netns is not None:
            netns.close()  # the container holds its namespace now
        instance = Instance(spec.name, self.name, OciHandle(bundle, pid, read_fd, netns), [pid])
        self.live[spec.name] = instance
        return instance

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        wait_then_close(instance.handle, timeout, instance.name)

    def stop(self, instance: Instance) -> None:
        handle: OciHandle = instance.handle
        close_ready(handle)
        if running(handle.pid):
            self.launcher().run(self._argv("kill", instance.name, "TERM"))
            if not wait_exit(handle.pid, self.grace_s):
                self.launcher().run(self._argv("kill", instance.name, "KILL"))
                wait_exit(handle.pid, self.grace_s)

    def remove(self, instance: Instance) -> None:
        try:
            self._teardown(instance.handle.bundle)
        finally:
            self.live.pop(instance.name, None)
            if instance.handle.netns is not None:
                instance.handle.netns.release()
                instance.handle.netns = None

    def memory(self, instance: Instance) -> MemorySample:
        from harness import metrics

        # The container's cgroup lists its processes: no scan of every host process for
        # children (psutil's recursive children() reads all of /proc once per instance).
        path = cgroup.path(instance.name)
        pids = self.cgroups.procs(path)
        sample = (metrics.process_memory(pids, include_children=False) if pids
                  else metrics.process_memory(instance.pids))
        return dataclasses.replace(sample, cgroup=self.cgroups.memory_usage(path))

    def cleanup(self) -> None:
        for instance in list(self.live.values()):
            with contextlib.suppress(BackendError):
                self.stop(instance)
                self.remove(instance)
        with self._lock:
            if self._launcher is not None:
                self._launcher.close()
                self._launcher = None
        self.cgroups.remove_parent(cgroup.PARENT)  # unless other containers still use it

    def describe(self) -> dict[str, Any]:
        try:
            out = subprocess.run(
                [self.binary, "--version"], capture_output=True, text=True, check=False
            ).stdout
        except OSError:
            out = ""
        first = out.splitlines()[0] if out else ""
        return {
            "runtime": self.runtime,
            "version": first.split()[-1] if first else "unknown",
            "cgroup_mode": self.mode,
            "private_cgroup_view": cgroup.needs_private_view(self.binary, self.mode),
            "launcher": "subreaper in a private mount namespace, overlay per container namespace",
        }

    # internals

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def _teardown(self, bundle: Bundle) -> None:
        """Delete the container, then its bundle and cgroup; tolerate partial states."""
        result = self.launcher().run(self._argv("delete", "-f", bundle.name))
        if result.returncode != 0 and (self.root / bundle.name).exists():
            raise BackendError(f"{self.runtime} delete {bundle.name}: {result.stderr.strip()}")
        shutil.rmtree(bundle.dir, ignore_errors=True)
        with contextlib.suppress(CgroupError):  # the runtime removed it already, normally
            self.cgroups.remove(cgroup.path(bundle.name))
