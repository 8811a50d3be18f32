"""What the launched child does between fork and exec. Runs in the fork server's child.

It is already PID 1 of a new pid namespace. In order: unshare the other namespaces but the
cgroup one and bring loopback up, mount the overlay root (or attach the one the fork server
mounted as a detached mount), join the cgroups (unless born in its cgroup v2) and unshare the
cgroup namespace (so its root is the container's cgroup), wait for the host to wire the
network when asked, write its namespaces' sysctls, mount the rest and pivot into the root,
set the hostname, apply
rlimits, set the supplementary groups, mark every descriptor from 3 up close-on-exec, drop
capabilities, set no_new_privs, install the seccomp filter, exec. Before all that it joins a
session keyring of its own, named after the container. Any failure
is written as one ``cvbench-error: ...`` line (:data:`hostkit.readiness.ERROR_PREFIX`) on the
READY pipe and the child exits 127. Imports stay light: this module is loaded by the small
fork server.

A *spare* (:func:`spare`) is such a child forked ahead of time for one warm container, on
request (never on its own): it unshares that container's namespaces but the cgroup one, makes
its mounts private, brings loopback up, warms up the plan decoder, says so on its socket and
waits there for the container's plan, then does the rest (:func:`run` with ``prepared``).
"""

from __future__ import annotations

import binascii
import errno
import fcntl
import json
import os
import resource
import signal
import socket
import stat
import struct
from typing import NoReturn

from hostkit import syscalls as sc
from hostkit.readiness import ERROR_PREFIX
from runtime import rootfs
from runtime.handshake import PREPARED, START
from runtime.plan import CapSets, LaunchPlan, Mount, Rlimit, Rootfs

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """``ip link set lo up`` in the current netns, with two ioctls (no netlink library here)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def join_network_namespace(path: str) -> None:
    """Join the network namespace at ``path`` (an engine's, wired to its bridge), as crun and
    runc join a ``linux.namespaces`` entry with a path: before anything of the container's
    own is mounted or set (sysfs and ``net.*`` sysctls belong to the namespace they are
    made in)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(fd, sc.CLONE_NEWNET)
    finally:
        os.close(fd)


def drop_capabilities(keep: CapSets, last_cap: int, uid: int = 0, gid: int = 0) -> None:
    """Drop the bounding set (as root: it needs CAP_SETPCAP), become ``uid``:``gid`` (the
    kernel keeps the permitted set through PR_SET_KEEPCAPS, as crun does), then set the
    effective, permitted and inheritable sets; an exec as a non-root user keeps none of them
    (no ambient set), as under crun and runc."""
    for cap in range(last_cap + 1):
        if not keep.bounding >> cap & 1:
            sc.prctl(sc.PR_CAPBSET_DROP, cap)
    if uid or gid:
        sc.prctl(sc.PR_SET_KEEPCAPS, 1)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        sc.prctl(sc.PR_SET_KEEPCAPS, 0)
    sc.capset(keep.effective, keep.permitted, keep.inheritable)




def wait_for_start(channel: int | None, fifo: tuple[int, int] | None = None) -> None:
    """Say :data:`PREPARED` on the host channel and wait for :data:`START`: the line between a
    warm container's create and its start, where crun's init waits on its exec fifo. Exit
    quietly if the host closes the channel instead (the container was destroyed unstarted).

    ``fifo`` (:func:`open_start_fifo`): the START byte comes on that FIFO instead, so the host
    may hang up once it heard PREPARED (an OCI ``create`` exits; ``start`` writes the byte)."""
    if channel is None:
        raise RuntimeError("no host channel to wait for the start on")
    os.write(channel, PREPARED)
    if fifo is None:
        if os.read(channel, 1) != START:
            os._exit(0)
        return
    reader, writer = fifo
    said = os.read(reader, 1)  # our own writer keeps it from an end of file meanwhile
    os.close(reader)
    os.close(writer)
    if said != START:
        os._exit(0)


def open_start_fifo(path: str) -> tuple[int, int]:
    """Open the exec FIFO ``path`` (made by the host) for reading and for writing, both
    close-on-exec, before the root switch: the read end blocks in :func:`wait_for_start`, the
    write end keeps that read from an end of file until the host writes (it opens the FIFO
    with O_NONBLOCK for writing, which fails with ENXIO once this init is gone)."""
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    writer = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    os.set_blocking(reader, True)
    return reader, writer


def _reset_signals() -> None:
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


SPARE_READY = b"ready"


def spare(sock: socket.socket, last_cap: int, unshare: int, loopback: bool,
          overlay: tuple[str, str] | None) -> NoReturn:
    """Prepare the namespaces (``unshare``: CLONE_NEW* flags, the cgroup one excepted) and
    mount the overlay root (``overlay``: mount point and options), say :data:`SPARE_READY` on
    ``sock``, then wait for the plan and run it; never returns. The owner moves the spare into
    the container's cgroups once it is ready (after the overlay: see :func:`run`)."""
    try:
        _reset_signals()
        sc.unshare(unshare)
        rootfs.make_private()
        if overlay is not None:
            sc.mount("overlay", overlay[0], "overlay", 0, overlay[1])
        if loopback:
            loopback_up()
        _warm_up_decoder(unshare)
        sock.send(SPARE_READY)
        # close-on-exec from their first instant: only what run() hands over reaches exec
        data, fds, _flags, _addr = socket.recv_fds(sock, 1 << 20, 4, socket.MSG_CMSG_CLOEXEC)
    except BaseException:  # a broken spare just goes away
        os._exit(126)
    if not data or not fds:
        os._exit(0)  # discarded, or the server is gone
    sock.close()
    try:  # the launch request, forwarded by the server
        plan = LaunchPlan.from_dict(json.loads(data)["plan"])
    except BaseException as error:
        _fail(fds[0], error)
    run(plan, fds[0], fds[1] if len(fds) > 1 else None, last_cap, prepared=True)


def _warm_up_decoder(unshare: int) -> None:
    """Decode a sample plan once, so that the first touch of the decoder's objects in this
    freshly forked process (copy-on-write faults) happens now, before the clock, not on launch."""
    sample = LaunchPlan(
        new_pid=True,
        unshare=unshare,
        loopback=True,
        cgroup_procs=("/cgroup.procs",),
        cgroup_dir="",
        rootfs=Rootfs("/", "lowerdir=/", (Mount("/proc", "proc", "proc", 0, ""),), (), (), False,
                      False),
        hostname="",
        rlimits=(Rlimit(0, 0, 0),),
        caps=CapSets(0, 0, 0, 0),
        no_new_privs=True,
        seccomp="",
        cwd="/",
        args=("/init",),
        env=(),
        keyring="",
        groups=(),
        umask=0o022,
        uid=0,
        gid=0,
    )
    request = json.dumps({"op": "launch", "plan": sample.to_dict()}).encode()
    LaunchPlan.from_dict(json.loads(request)["plan"])


def run(
    plan: LaunchPlan, stdout_fd: int, channel: int | None, last_cap: int, prepared: bool = False,
    born_in_cgroup: bool = False, detached_overlay: int | None = None, *,
    stdin_fd: int | None = None, stderr_fd: int | None = None,
) -> NoReturn:
    """Set the container up and exec its process; never returns.

    ``channel``: the host channel (a stream socket), present when the plan says the host
    wires the network (``wire_network``: "n" when the netns exists, "g" back once wired),
    sends the seccomp program (``seccomp_follows``: :func:`receive_program`, read right before
    the filter is installed, so that the host compiles it while this child sets up) or starts
    a prepared warm container (``wait_for_start``: :func:`wait_for_start`, after everything
    crun 1.8's ``create`` has its init do, capabilities and no_new_privs included, and before
    what its ``start`` lets the init do: the seccomp filter, the descriptors, exec).

    ``prepared``: a spare already did the namespaces, private mounts, loopback and the overlay,
    and its owner moved it into the cgroups. ``detached_overlay``: the overlay root, already
    mounted by the fork server as a detached mount (:func:`runtime.rootfs.detached_overlay`), to
    attach in this child's new mount namespace (move_mount); None: mount it here with mount(2).
    ``born_in_cgroup``: the fork server cloned this child into the container's cgroup v2
    directory (clone3 with ``CLONE_INTO_CGROUP``, :func:`runtime.forkserver.clone_into`) in its
    new namespaces (the cgroup one excepted), so it unshares none of those and writes no
    ``cgroup.procs``; the server does so only with a detached overlay. Either way the overlay's
    superblock and the upper filesystem's ``work/work`` are made outside the container's memory
    cgroup: by the server (in its owner's cgroup), or here before joining.

    ``stdin_fd`` and ``stderr_fd`` (a ``stdio`` plan): the process's stdin and stderr, else
    /dev/null and ``stdout_fd``. A ``start_fifo`` is opened first, in the host's tree.
    """
    try:
        _stdio(stdin_fd, stdout_fd, stderr_fd)
        fifo = open_start_fifo(plan.start_fifo) if plan.start_fifo else None
        join_session_keyring(plan.keyring)
        if not prepared:
            _reset_signals()
            if not born_in_cgroup:  # else clone3 made them
                sc.unshare(plan.unshare & ~sc.CLONE_NEWCGROUP)
            if plan.loopback:
                loopback_up()
        if plan.netns:
            join_network_namespace(plan.netns)
        skeleton = rootfs.skeleton_fd()
        if not prepared:
            # The overlay before joining the cgroup (or made by the server outside it): the
            # kernel (re)creates work/work on the host filesystem, and pages charged to the
            # container's memcg would keep that memcg alive (a "dying" cgroup) long after the
            # container is gone.
            rootfs.mount_overlay(plan.rootfs, detached_overlay)
            if detached_overlay is not None:
                os.close(detached_overlay)  # attached: the mount is the namespace's now
            if not born_in_cgroup:
                join_cgroups(plan.cgroup_procs, 0)
        if plan.unshare & sc.CLONE_NEWCGROUP:
            sc.unshare(sc.CLONE_NEWCGROUP)  # after joining: its root is the container's cgroup
        if plan.wire_network:
            if channel is None:
                raise RuntimeError("no host channel to wire the network through")
            os.write(channel, b"n")  # our netns exists: the host may wire it now
            if os.read(channel, 1) != b"g":
                raise RuntimeError("the host did not finish wiring the network")
        for setting in plan.sysctl:  # /proc/sys/net, kernel.shm*, ...: of our namespaces
            write_sysctl(setting)
        rootfs.prepare(plan.rootfs, skeleton)
        os.close(skeleton)
        if plan.hostname:
            sc.sethostname(plan.hostname)
        os.setsid()
        for limit in plan.rlimits:
            resource.setrlimit(limit.resource, (limit.soft, limit.hard))
        if stdin_fd is None:
            null = os.open("/dev/null", os.O_RDONLY)
            if null != 0:
                os.dup2(null, 0)
                os.close(null)
        os.chdir(plan.cwd)
        env = dict(item.split("=", 1) for item in plan.env if "=" in item)
        os.setgroups(plan.groups)  # the spec's, or none: never the fork server's
        os.umask(plan.umask)  # the spec's, or 0022: never the starter's
        filtered = bool(plan.seccomp) or plan.seccomp_follows
        if filtered and not plan.no_new_privs:  # needs CAP_SYS_ADMIN then: before the drop
            sc.seccomp_set_filter(_program(plan, channel))
        drop_capabilities(plan.caps, last_cap, plan.uid, plan.gid)
        if plan.no_new_privs:
            sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
        program = find_program(plan.args[0], env)  # as the user it runs as, in its root
        # Warm: what crun's create does ends here, and its init waits on the exec fifo; what
        # crun's start lets it do follows (the seccomp filter, the descriptors, exec).
        if plan.wait_for_start:
            wait_for_start(channel, fifo)
        close_on_exec_from(3)
        if filtered and plan.no_new_privs:  # last: then only what the profile allows, exec too
            sc.seccomp_set_filter(_program(plan, channel))
        if channel is not None:
            os.close(channel)
        exec_program(program, plan.args, env)
    except BaseException as error:  # report anything, then die
        if plan.stdio and channel is not None:  # the host reads it there, and reports it
            _report(channel, error)
        _fail(1, error)


def find_program(name: str, env: dict[str, str]) -> str | None:
    """The file exec will run for ``name``: ``name`` itself if it has a slash, else the first
    regular file with an execute bit in ``env``'s ``PATH``. Looked up by the init before it
    waits for start, as crun's init looks its executable up before it waits on the exec fifo,
    so that start → exec searches nothing. None when there is none: :func:`exec_program`
    then searches, and fails, as exec would have."""
    if "/" in name:
        return name
    for directory in os.get_exec_path(env):
        candidate = os.path.join(directory, name)
        try:
            mode = os.stat(candidate).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & 0o111:
            return candidate
    return None


def exec_program(program: str | None, args: tuple[str, ...], env: dict[str, str]
                 ) -> NoReturn:
    """Exec ``program`` (:func:`find_program`'s answer); if that fails or there was none,
    search ``PATH`` as ``execvpe`` does, so what runs, or the error, is what a search at
    exec would give."""
    if program is not None:
        try:
            os.execve(program, args, env)
        except OSError:
            pass
    os.execvpe(args[0], args, env)


def _stdio(stdin_fd: int | None, stdout_fd: int, stderr_fd: int | None) -> None:
    """Put the launch's descriptors on 0, 1 and 2 and close the originals."""
    wanted = (stdin_fd, stdout_fd, stdout_fd if stderr_fd is None else stderr_fd)
    for target, fd in enumerate(wanted):
        if fd is not None and fd != target:
            os.dup2(fd, target)
    for fd in set(wanted):
        if fd is not None and fd > 2:
            os.close(fd)


def write_sysctl(setting: str) -> None:
    """Write one ``key=value`` kernel parameter (``net.ipv4.ping_group_range=0 0``) under
    /proc/sys: the kernel takes a namespaced parameter as the writer's namespace's."""
    key, _, value = setting.partition("=")
    fd = os.open("/proc/sys/" + key.replace(".", "/"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _program(plan: LaunchPlan, channel: int | None) -> bytes:
    """The seccomp program: from the plan, or (``seccomp_follows``) from the host channel."""
    if not plan.seccomp_follows:
        return binascii.a2b_base64(plan.seccomp)
    if channel is None:
        raise RuntimeError("no host channel to receive the seccomp program on")
    return receive_program(channel)


PROGRAM_LENGTH = struct.Struct("<I")  # the seccomp program's length on the host channel


def send_program(channel: socket.socket, program: bytes) -> None:
    """Send ``program`` (classic BPF) on the host channel: its length, then the bytes."""
    channel.sendall(PROGRAM_LENGTH.pack(len(program)) + program)


def receive_program(channel: int) -> bytes:
    """The seccomp program the host sent (:func:`send_program`); RuntimeError if the host
    closed the channel first (it could not compile the program: it reports why)."""
    header = _read_exactly(channel, PROGRAM_LENGTH.size)
    (length,) = PROGRAM_LENGTH.unpack(header)
    program = _read_exactly(channel, length)
    if not program or len(program) % 8:
        raise RuntimeError(f"the host sent a seccomp program of {len(program)} bytes")
    return program


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise RuntimeError("the host closed the channel before the seccomp program")
        data += chunk
    return data


def join_session_keyring(name: str) -> None:
    """Leave the inherited session keyring (the fork server's, i.e. its owner's) for a new
    one named ``name`` ("" : anonymous), as crun does for every container
    (``libcrun_create_keyring``, named after the container id) and runc in its init
    (``_ses.<id>``). A kernel without keyrings (ENOSYS) has no keyring to share: go on, as
    crun 1.8 and runc do."""
    try:
        sc.keyctl_join_session_keyring(name or None)
    except OSError as error:
        if error.errno != errno.ENOSYS:
            raise


def close_on_exec_from(first: int) -> None:
    """Mark every descriptor from ``first`` up close-on-exec, so that the container's process
    starts with 0-2 only (crun closes every descriptor from 3 before exec). What the runtime
    hands over is already on 0-2 (/dev/null, and the READY pipe as stdout and stderr); the
    rest (the sync socket, the skeleton's descriptor, anything a fork server or spare
    received or inherited) must not survive exec. close_range(CLOSE_RANGE_CLOEXEC) where the
    kernel has it (5.11+; one system call), else a sweep of /proc/self/fd. Close-on-exec
    rather than closed: an exec failure is still reported on fd 1, and nothing Python holds
    is pulled from under it before exec."""
    try:
        sc.close_range(first, sc.MAX_FD, sc.CLOSE_RANGE_CLOEXEC)
        return
    except OSError as error:
        if error.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        names = os.listdir(listing)
    finally:
        os.close(listing)
    for name in names:
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed since
                pass


def join_cgroups(files: tuple[str, ...], pid: int) -> None:
    """Write ``pid`` (``0``: the caller) into every file given (:meth:`Driver.join_files
    <runtime.cgroups.Driver.join_files>`: ``cgroup.procs``, or ``tasks`` for a cold init that
    moves itself). A warm spare is moved by the host ahead, in create(), as crun's and runc's
    create do."""
    for name in files:
        fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC)  # no O_CREAT: cgroupfs makes no file
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)


def _report(fd: int, error: BaseException) -> None:
    """Write ``error`` as one ERROR_PREFIX line to ``fd``, if it can."""
    try:
        os.write(fd, ERROR_PREFIX + f"{type(error).__name__}: {error}".encode() + b"\n")
    except OSError:
        pass


def _fail(fd: int, error: BaseException) -> NoReturn:
    """Write ``error`` as one ERROR_PREFIX line to ``fd`` (the READY pipe), exit 127."""
    _report(fd, error)
    os._exit(127)
