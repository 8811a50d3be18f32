"""The ``ours`` backend: cvbench's own container runtime (``runtime/``).

Containers are forked by the runtime's fork server; this adapter maps the harness's
InstanceSpec onto an OCI-subset Spec (the one crun and runc run too) and the runtime's
errors onto BackendError/NotReady. Cold (:meth:`OursBackend.start`): nothing of the container
exists before the call. Warm: :meth:`OursBackend.create` makes the directory, the cgroups and
a spare child with the container's namespaces; :meth:`OursBackend.resume` hands it the plan.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from harness.backends import launch as launches
from harness.backends import readiness, seccomp_probe
from harness.backends.base import (
    WARM,
    WARM_AFTER_CLOCK,
    BackendError,
    Instance,
    InstanceSpec,
    MemorySample,
    Method,
    NotReady,
)
from harness.backends.chores import Chores
from harness.backends.containers import container_spec, default_security
from harness.backends.ready_rule import EXIT, LINE, TCP
from hostkit.readiness import ERROR_PREFIX
from imagestore.image import Image, ImageError, verify
from runtime import cgroups, device_filter, devices, planner, scopes
from runtime.container import (
    GRACE_S,
    VERSION,
    Container,
    ContainerError,
    NotReadyError,
    Runtime,
)


class OursBackend(Chores):
    """Start/stop containers with cvbench's runtime; one fork server per backend."""

    name = "ours"
    ready_kinds = (LINE, EXIT, TCP)
    launch_fields = launches.FIELDS  # an imported image's workdir and user: the spec's

    def __init__(self, *, grace_s: float = GRACE_S, readonly_root: bool = False,
                 pivot_root: bool = False) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.readonly_root = readonly_root
        self.pivot_root = pivot_root  # else the move onto the skeleton root (runtime.rootfs)
        self._runtime: Runtime | None = None
        self._image: Image | None = None
        self._kernel_filter = seccomp_probe.EveryVariant(FILTER_ADDITIONS)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            if os.geteuid() != 0:
                raise BackendError("the ours backend needs root (namespaces, cgroups)")
            try:
                self._runtime = Runtime(pivot_root=self.pivot_root)
            except cgroups.CgroupError as error:
                raise BackendError(f"ours: {error}") from None
        return self._runtime

    def prepare(self, image: Image) -> None:
        try:
            verify(image)
        except ImageError as error:
            raise BackendError(str(error)) from None
        try:  # the cgroup parent and its shards now, as crun's and runc's get theirs
            self.runtime.prepare_cgroups()
        except cgroups.CgroupError as error:
            raise BackendError(f"ours: {error}") from None
        self.runtime.server.start()  # fork the server now, not during the first start
        # Compile the default seccomp section once now, so that a profile libseccomp refuses
        # fails the run before anything starts; nothing is kept: every container's start
        # compiles its own program, as crun's and runc's do (runtime.planner).
        probe = container_spec(InstanceSpec(name="cvbench-prepare", image=image))
        try:
            planner.seccomp_program(probe.linux.seccomp)
        except ValueError as error:
            raise BackendError(f"ours: {error}") from None
        self._image = image

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        return self._spare(spec) if variant == WARM else self._cold(spec)

    def _cold(self, spec: InstanceSpec) -> Instance:
        """Cold: spec, directory, cgroups, fork, namespaces, ... exec, all inside the call."""
        instance = Instance(spec.name, self.name, self._create(spec, spare=False))
        self._run(instance)
        return instance

    def _spare(self, spec: InstanceSpec) -> Instance:
        """Warm, before the clock: directory, cgroups and a spare with its namespaces ready."""
        return Instance(spec.name, self.name, self._create(spec, spare=True))

    def resume(self, instance: Instance) -> None:
        """Warm, inside the clock: the plan to the spare, which does the rest and execs."""
        self._run(instance)

    def _create(self, spec: InstanceSpec, spare: bool) -> Container:
        oci = container_spec(spec, readonly=self.readonly_root)
        try:
            return self.runtime.create(oci, spec.name, spare=spare)
        except ContainerError as error:
            raise BackendError(f"{spec.name}: {error}") from None

    def _run(self, instance: Instance) -> None:
        try:
            pid = self.runtime.start(instance.handle)
        except ContainerError as error:
            self._destroy(instance.handle)
            self.live.drop(instance)
            raise BackendError(str(error)) from None
        instance.pids = [pid]

    def wait_ready(self, instance: Instance, timeout: float) -> None:
        """The runtime's wait for the rule's line; for ``exit`` and ``tcp`` the output pipe
        is taken from the container and :func:`readiness.wait_rule` waits (the status from
        the fork server, which reaps the init; the address of the container's veth)."""
        rule = instance.ready
        container: Container = instance.handle
        if rule.kind == LINE:
            try:
                self.runtime.wait_ready(container, timeout, rule.marker)
            except NotReadyError as error:
                raise NotReady(str(error)) from None
            return
        fd, container.ready_fd = container.ready_fd, None
        if fd is None:
            return
        try:
            readiness.wait_rule(
                rule, fd, timeout, instance.name,
                exit_code=lambda waited: self._exit_code(container, waited),
                address=container.net.address if container.net is not None else None,
                pid=container.pid, error_prefix=ERROR_PREFIX)
        finally:
            os.close(fd)

    def _exit_code(self, container: Container, timeout: float) -> int | None:
        """The init's exit code once it exited within ``timeout`` (then the container is
        stopped: stop() has nothing left to do); None while it runs."""
        try:
            exit_info = self.runtime.wait(container, timeout)
        except ContainerError as error:
            raise NotReady(str(error)) from None
        if exit_info is None:
            return None
        if exit_info.status is None:
            raise NotReady(f"{container.name}: exited, but its status was lost")
        return os.waitstatus_to_exitcode(exit_info.status)

    def stop(self, instance: Instance) -> None:
        try:
            self.runtime.stop(instance.handle, grace=self.grace_s)
        except ContainerError as error:
            raise BackendError(str(error)) from None

    def _remove(self, instance: Instance) -> None:
        try:
            self.runtime.destroy(instance.handle)
        except ContainerError as error:
            raise BackendError(str(error)) from None

    def memory(self, instance: Instance) -> MemorySample:
        from harness import metrics

        container: Container = instance.handle
        pids = self.runtime.pids(container) or instance.pids
        sample = metrics.process_memory(pids, include_children=False)
        return dataclasses.replace(sample, cgroup=self.runtime.memory_usage(container))

    def _close(self) -> None:
        if self._runtime is not None:
            self._runtime.cleanup()
            self._runtime.close()
            self._runtime = None

    def describe(self) -> dict[str, Any]:
        try:
            mode = cgroups.detect_mode()
            driver: cgroups.Driver | None = cgroups.driver(mode)
        except cgroups.CgroupError:
            mode, driver = "none", None
        v2 = isinstance(driver, cgroups.V2Driver)
        rules = devices.container_rules([devices.DENY_ALL])  # the default spec's, then ours
        return {
            "runtime": "cvbench",
            "version": VERSION,
            "cgroup_mode": mode,
            "cgroup_manager": "cgroupfs",  # writes its cgroup directories itself, as crun's and
            # runc's cgroupfs managers do (harness.backends.oci.cgroup.MANAGER)
            "launcher": "fork server (python -S): unshare + fork (on v2: the server mounts the "
                        "overlay as a detached mount in its own cgroup, clones the init into "
                        "the container's cgroup, and the init attaches it), overlay inside the "
                        "container's mount ns",
            "method": _method(_SETUP if not self.pivot_root else _PIVOT_SETUP, v2).as_dict(),
            "cgroup_join": V2_JOIN if v2 else V1_JOIN,
            # the one layout of every container backend (runtime.scopes), made in prepare()
            "cgroup_layout": driver.layout(scopes.cgroup_parent()) if driver else None,
            "root_switch": "pivot_root(2), old root detached" if self.pivot_root else
            "move onto the fork server's empty skeleton root, host tree detached, chroot",
            # as crun's and runc's are observed: sorted hierarchies, sorted devices.list lines
            "cgroup_controllers": sorted(driver.controllers()) if driver else None,
            # the effective allow list (what a v1 devices.list shows) on every host kind
            "devices": devices.v1_list(rules) if driver else None,
            "device_filter": {"programs": [{
                "type": "cgroup_device",
                "name": "crun's generator (runtime.device_filter)",
                "instructions": len(device_filter.instructions(rules)),
                "attach": "BPF_PROG_ATTACH(BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI), "
                          "loaded per container"}]} if v2 else
            "v1 devices cgroup: devices.deny then devices.allow lines",
            "security": {**default_security(),
                         "kernel_filter": self._kernel_filter.of(self, self._image)},
        }

    def _destroy(self, container: Container) -> None:
        try:
            self.runtime.destroy(container)
        except ContainerError:
            pass


FILTER_ADDITIONS = ("none: libseccomp's program of the profile (runtime.seccomp.compile_bpf, rule "
                    "by rule as crun 1.8 builds it), installed as exported (seccomp(2), no flags)")


# How a cold init gets into its cgroups, per host kind, and what crun 1.8.1 and runc 1.1.5
# do (crun NEWS 1.7 and containers/crun#1042: "with cgroupfs use clone3 to join directly the
# target cgroup", falling back to clone and a cgroup.procs write; runc 1.1
# libcontainer/process_linux.go initProcess.start: os/exec starts `runc init`, then
# manager.Apply(pid) writes its pid into cgroup.procs before the bootstrap data is sent).
V2_JOIN = ("cgroup v2: the fork server clones the init straight into the container's cgroup "
           "(clone3 with CLONE_INTO_CGROUP; where the kernel refuses, fork and the init writes "
           "cgroup.procs itself), as crun 1.8 does with its cgroupfs manager (clone3 "
           "CLONE_INTO_CGROUP, falling back to clone + cgroup.procs); runc 1.1 starts `runc init` "
           "and writes its pid into cgroup.procs. The overlay root is made outside the "
           "container's memory cgroup on every path, as the harness's OCI launcher mounts "
           "crun's and runc's before exec'ing them: before the clone the fork server (in its "
           "owner's cgroup) mounts it as a detached mount (fsopen, fsconfig, fsmount), which "
           "the init attaches in its mount namespace (move_mount); where none can be made, the "
           "init is forked, mounts it, then joins")
V1_JOIN = ("cgroup v1/hybrid: the cold init (a fresh fork, one thread) moves itself into each "
           "hierarchy after mounting its overlay, writing 0 into its tasks file: the same "
           "cgroups cgroup.procs would give it, without the kernel's global threadgroup lock "
           "and so without the RCU grace period a cgroup.procs write of another pid waits for "
           "(CLONE_INTO_CGROUP exists for v2 only); crun 1.8 and runc 1.1 write the init's pid "
           "into cgroup.procs on v1. A warm spare is moved by the host through cgroup.procs in "
           "create(), before the clock, as crun's and runc's create move theirs")

# What the init does inside the clock after the overlay and the cgroups (before it, cold;
# a warm spare has done both in create(), as crun's and runc's create do).
_PREPARED = "mounts the overlay root, joins the cgroups, "
_PREPARED_V2 = ("attaches the overlay root the fork server mounted (move_mount; it was born in "
                "its cgroup), ")
_SETUP = ("unshares the cgroup namespace, mounts "
          "/proc, /dev, /dev/pts, moves the root onto the skeleton root, detaches the host "
          "tree and chroots (no pivot_root walk over every host thread), masks and read-only "
          "paths, hostname, rlimits, groups, umask, drops capabilities, no_new_privs, looks its "
          "program up on PATH (crun's init does so before it waits on its exec fifo)")


def _method(setup: str, v2: bool = False) -> Method:
    inside = setup + ", installs the seccomp filter, exec; until READY"
    cgroups_made = ("a cgroup in the unified tree with memory, pids and cpu limits and the "
                    "device rules as an eBPF program (BPF_PROG_LOAD per container, attached "
                    "with BPF_F_ALLOW_MULTI, as crun and runc do)" if v2 else
                    "a cgroup in every v1 hierarchy with cpuset, device rules and limits")
    launch = ("the fork server mounts the overlay root as a detached mount (fsopen, fsconfig, "
              "fsmount: its superblock and work/work charged to the server's cgroup, the "
              "harness's, as crun's overlay is mounted by the harness's launcher), unshares a "
              "pid namespace and clones the init into the container's cgroup in new mount, "
              "uts, ipc and net namespaces (clone3 CLONE_INTO_CGROUP with the namespace flags, "
              "as crun 1.8 does, so the namespaces are charged to the caller; runc 1.1 writes "
              "cgroup.procs), closing its copy of the mount's descriptor; the init brings "
              "loopback up, " + _PREPARED_V2 if v2 else
              "the fork server unshares a pid namespace and forks the init, which unshares "
              "mount, uts, ipc and net namespaces, brings loopback up, " + _PREPARED)
    return Method(
        cold=("nothing of the container (the fork server runs; nothing is cached between "
              "containers: the seccomp program is compiled for each, as crun and runc do)",
              "spec and launch plan, container directory (overlay upper/work), " + cgroups_made
              + "; " + launch + inside + "; meanwhile, from the spec on, the harness compiles "
              "the container's seccomp program with libseccomp on a worker thread and sends it "
              "to the init, which waits for it right before installing it"),
        warm=("create(): spec and launch plan with the seccomp program compiled with "
              "libseccomp (as crun's create compiles it), container directory, "
              + cgroups_made + ", "
              "and a spare forked by the fork server as PID 1 of a new pid "
              "namespace that has unshared mount, uts, ipc and net namespaces, brought loopback "
              "up and mounted the overlay root; the harness moves it into the container's "
              "cgroups and hands it the plan, and the init " + setup + " (all that crun's "
              "create has its init do), then waits on the host channel as crun's init waits "
              "on its exec fifo",
              "resume(): one byte on the host channel; " + WARM_AFTER_CLOCK),
        stop="SIGTERM to the init through a pidfd, SIGKILL after the grace period; until the init "
             "(PID 1 of its pid namespace, so the last process) exited and the fork server reaped "
             "it",
        remove="removes the cgroup from every hierarchy, the container directory, and the veth and "
               "address lease of a bridged container",
    )


_PIVOT_SETUP = _SETUP.replace(
    "moves the root onto the skeleton root, detaches the host tree and chroots (no pivot_root "
    "walk over every host thread)", "pivot_root, detaches the old root")
METHOD = _method(_SETUP)
PIVOT_METHOD = _method(_PIVOT_SETUP)
