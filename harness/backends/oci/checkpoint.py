"""The ``restore`` variant of an OCI runtime that checkpoints through CRIU (runc): a
checkpoint of a started, READY container, made once per run and container shape before any
clock, and restores from it.

Before the clock (``create(spec, RESTORE)``): the first restore of a container shape (its
``config.json`` but for the name) starts a container whose workload runs behind a responder
(:data:`RESPONDER`: a shell that answers each ``cvbench-ping`` line on its stdin with READY on
its stdout, then execs the workload, as the VMs' console responder does), waits for the
workload's READY and checkpoints it (``runc checkpoint --image-path``: CRIU dumps it and runc
deletes the container). The container's bundle, with its overlay ``upper`` as it was at the
checkpoint and the CRIU images beside it, becomes the :class:`Checkpoint`; its files are made
read-only and only ever copied afterwards. The instance is then :class:`Staged`: nothing of it
exists yet.

Inside the clock (``resume``): a bundle of the instance's own (its ``config.json`` with its own
cgroup path), a copy of the checkpoint's ``upper`` and of its images (CRIU writes its log
into the image directory, and a restored container writes into its upper: no restore ever
sees another's writable state), then ``runc restore --detach --image-path <copy>`` with fresh
pipes as the container's stdin and stdout (runc hands them to CRIU as ``--inherit-fd`` for
the saved pipes), the overlay mounted by the launcher as for ``run``; then a ping on stdin.
READY is the restored responder's answer.

The checkpointed container's three stdio descriptors are pipes (a regular file would be
reopened by path, its size checked against the dump's, and written to by every restore).
CRIU is given the restored container's cgroup as its cgroup root (:func:`write_criu_config`).
CRIU before 3.19 does not restore ``no_new_privs`` (:data:`NO_NEW_PRIVS_NOTE`): the only part
of the isolation profile a restored container lacks (the integration test compares it with a
cold one's). A restore takes ``network = "none"`` and no volume (:func:`refusal`): a network
namespace or a host directory is the host's, not the checkpoint's. One restored instance of a
checkpoint lives at a time (restore is a startup variant), though each has its own PID
namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.backends.base import InstanceSpec
from harness.backends.oci.bundle import Bundle, build_config
from harness.backends.restorable import container_refusal
from hostkit.paths import PREFIX
from vm.guest import PING

# The checkpointed container's process: the responder in the background on a copy of stdin
# (an asynchronous list's stdin is /dev/null unless redirected), then the workload exec'd.
RESPONDER = ('exec 3<&0; while read -r line; do case "$line" in cvbench-ping*) echo READY '
             ';; esac; done <&3 3<&- & exec "$@" 3<&-')
RESPONDER_NAME = f"{PREFIX}responder"  # the shell's $0
SHELL = "/bin/sh"
IMAGES = "images"  # the CRIU images, in a checkpoint's bundle and in a restore's
DUMP_WORK = "dump-work"  # CRIU's log of the dump (beside the images, not among them)
PING_LINE = PING + b"\n"
CRIU_CONFIG = "criu.conf"  # in the bundle; runc hands it to CRIU (the annotation below)
CRIU_CONFIG_ANNOTATION = "org.criu.config"
NO_NEW_PRIVS_NOTE = ("CRIU before 3.19 does not restore no_new_privs (Debian 12's 3.17 runs the "
                     "restored processes without it; the rest of the profile is restored)")
CACHE_NOTE = ("the checkpoint's files are read through the host's page cache, which is not "
              "dropped (after the first restore they are in memory)")


def refusal(spec: InstanceSpec) -> str | None:
    """Why ``spec`` cannot be restored from a checkpoint (None: it can)."""
    return container_refusal(spec.network, spec.volume is not None)


def restorable_config(spec: InstanceSpec, image_root: Path, bundle: Bundle
                      ) -> dict[str, Any]:
    """``spec``'s ``config.json`` with its process behind :data:`RESPONDER` and CRIU told to
    leave cgroups alone (:func:`write_criu_config`, in ``bundle``); ValueError if the image
    has no :data:`SHELL` to run it."""
    if not (image_root / SHELL.lstrip("/")).exists():
        raise ValueError(f"image has no {SHELL} for the restore's responder")
    config = build_config(spec)
    config["process"]["args"] = [SHELL, "-c", RESPONDER, RESPONDER_NAME,
                                 *config["process"]["args"]]
    config.setdefault("annotations", {})[CRIU_CONFIG_ANNOTATION] = str(criu_config(bundle))
    return config


def criu_config(bundle: Bundle) -> Path:
    return bundle.dir / CRIU_CONFIG


def write_criu_config(bundle: Bundle, cgroup_root: str | None = None) -> None:
    """CRIU's options for this container's dump (none) or restore (``cgroup_root``: the
    restored container's cgroup, ``/cvbench-oci/<shard>/<name>``), which override runc's.
    runc 1.1 on a cgroup v2 host gives CRIU no cgroup root, so CRIU would put a restored
    container back into the checkpointed container's cgroup (made again, without its limits,
    shared by every restore, left behind); with its root given, CRIU restores the container's
    cgroup and cgroup namespace under the one runc made for it, limits and all (``soft``: a
    cgroup CRIU did not make keeps its settings)."""
    lines = [] if cgroup_root is None else ["manage-cgroups=soft", f"cgroup-root={cgroup_root}"]
    criu_config(bundle).write_text("".join(f"{line}\n" for line in lines))


def shape(spec: InstanceSpec) -> str:
    """What makes two specs restorable from one checkpoint: their ``config.json`` but for
    the name (and the cgroup path made from it)."""
    config = build_config(replace(spec, name=f"{PREFIX}shape"))
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A checkpointed container's bundle: its ``upper`` at the checkpoint and the CRIU
    images (read-only; removed by :meth:`remove`, or by ``cvbench clean`` as a bundle)."""

    bundle: Bundle

    @property
    def images(self) -> Path:
        return self.bundle.dir / IMAGES

    @property
    def upper(self) -> Path:
        return self.bundle.upper

    def seal(self) -> None:
        """Make the images read-only: restores only copy them."""
        for entry in self.images.iterdir():
            entry.chmod(0o444)

    def remove(self) -> None:
        shutil.rmtree(self.bundle.dir, ignore_errors=True)


@dataclass(frozen=True)
class Staged:
    """A restore made ready before the clock: its spec and the checkpoint it starts from."""

    spec: InstanceSpec
    checkpoint: Checkpoint


def copy_tree(source: Path, target: Path) -> None:
    """Copy the contents of directory ``source`` into the existing directory ``target`` as an
    overlay upper holds them: regular files, directories, symlinks and the whiteouts'
    character devices, with owners, modes, times and extended attributes (opaque
    directories)."""
    for entry in os.scandir(source):
        path = target / entry.name
        info = entry.stat(follow_symlinks=False)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), path)
        elif entry.is_dir(follow_symlinks=False):
            path.mkdir()
            copy_tree(Path(entry.path), path)
        elif stat.S_ISREG(info.st_mode):
            shutil.copyfile(entry.path, path, follow_symlinks=False)
        else:  # a whiteout (0:0 character device), a fifo or another node
            os.mknod(path, info.st_mode, info.st_rdev)
        os.chown(path, info.st_uid, info.st_gid, follow_symlinks=False)
        if not entry.is_symlink():
            shutil.copystat(entry.path, path, follow_symlinks=False)


def copy_state(checkpoint: Checkpoint, bundle: Bundle) -> Path:
    """The checkpoint's writable state into ``bundle`` (made): its upper, and its images as
    ``bundle/images`` (writable: CRIU logs there). Returns the images' copy."""
    copy_tree(checkpoint.upper, bundle.upper)
    images = bundle.dir / IMAGES
    images.mkdir()
    for entry in checkpoint.images.iterdir():
        shutil.copyfile(entry, images / entry.name)
    return images


def ping(fd: int) -> None:
    """Ask the restored responder for READY (a pipe with room: the write does not block)."""
    os.write(fd, PING_LINE)


def close_fd(handle: Any, attribute: str) -> None:
    """Close ``handle.<attribute>`` once (forgotten first)."""
    fd = getattr(handle, attribute)
    setattr(handle, attribute, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def drain(fd: int, limit: int = 65536) -> str:
    """What a non-blocking pipe holds (a failed command's complaint), its last line."""
    try:
        data = os.read(fd, limit)
    except BlockingIOError:
        data = b""
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"


def criu_error(directory: Path, fallback: str) -> str:
    """CRIU's first error line in the logs of ``directory`` (``dump.log``, ``restore.log``),
    else ``fallback`` (the runtime's own complaint, its last line)."""
    for log in ("dump.log", "restore.log"):
        with contextlib.suppress(OSError):
            for line in (directory / log).read_text(errors="replace").splitlines():
                if "Error (" in line:
                    return f"criu: {line.strip()}"
    lines = fallback.strip().splitlines()
    return lines[-1] if lines else "no output"


def method(runtime: str, via: str) -> tuple[str, str]:
    """What a restore does before the clock and inside it (``describe()``'s method)."""
    return (f"once per run and container shape: a container started (`{runtime} run -d`, "
            "its stdin, stdout and stderr pipes) with its workload behind a shell responder, "
            f"READY, then `{runtime} checkpoint --image-path` (CRIU dumps it, {runtime} "
            "deletes it); its bundle's overlay upper and the images kept, made read-only; "
            "nothing of the instance",
            "a bundle and config.json of the instance's own, copies of the checkpoint's "
            "overlay upper and images (each restore its own writable state), "
            f"`{runtime} restore --detach --image-path <copy>` through {via} with fresh "
            "stdin and stdout pipes (CRIU --inherit-fd for the saved pipes; CRIU's cgroup "
            "root the instance's own cgroup, made by runc with the spec's limits; the overlay "
            "mounted by the launcher for the command's time), the pid file, a ping line on "
            "stdin; until the restored responder answers READY; the copies and the round "
            f"trip less the command recorded apart as `harness_s`; {CACHE_NOTE}; "
            f"{NO_NEW_PRIVS_NOTE}")
