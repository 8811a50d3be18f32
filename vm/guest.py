"""Guest artifacts: the kernel, an initramfs per image digest, disks and a disk-boot initramfs.

The kernel is Debian's cloud kernel, extracted by ``scripts/setup.sh`` into
``cache_dir()/guest/vmlinuz``, with its modules tree in ``cache_dir()/guest/modules/``. The
initramfs is an uncompressed ``newc`` cpio archive of the same image rootfs the containers run
(busybox + ``/init``) plus ``/dev/console``, written in Python (no ``cpio`` binary, no
``mknod``), reproducible, and cached by the image digest.

Disks: one read-only ext4 base image per digest (``mkfs.ext4 -d rootfs``, converted to
qcow2) in the cache, and a thin qcow2 overlay per VM on top of it: the VM analogue of the
containers' overlayfs (a read-only lower layer and a private upper). A disk-booted guest gets
:func:`boot_initramfs` instead of the image's: busybox, the kernel modules the disk and the
network need (virtio_pci, or virtio_mmio on the microVM machine, virtio_blk, virtio_net and
their dependencies, from the same kernel package; the filesystem too, unless built in) and an
``/init`` that loads them, mounts
``/dev/vda`` as root (and ``/dev/vdb`` on ``/data`` when the guest has a volume), configures
``eth0`` from ``CVBENCH_IP`` when asked, and switches to the disk's ``/init`` (or to
``/.cvbench/init`` where the disk has one: an imported image's, below). A volume is a raw ext4
file (:func:`volume_disk`). Everything is left readable by QEMU's ``libvirt-qemu`` user.

An imported image (``cvbench image import``) has no ``/init`` of cvbench's and perhaps no
shell: it boots from its disk (:func:`base_disk_for` with a :class:`GuestLaunch`), which is the
image's rootfs plus a directory of cvbench's own, :data:`LAUNCH_DIR` (``/.cvbench``, replacing
any the image has): a static busybox (the host's ``/bin/busybox``) and an ``init`` script
(:meth:`GuestLaunch.init_script`) that the disk boot switches to, and ``exec``, a static exec
helper set-up builds from ``vm/guest_exec.c`` (:func:`exec_helper`). The script, PID 1 on the
image's root, mounts ``/proc``, ``/sys`` and ``/dev`` where the disk boot did not move them
(and ``/dev/pts``, ``/dev/shm``), changes to the image's working directory and execs the
helper, which drops the supplementary groups, takes the launch's gid and uid and execs the
image's process with exactly the launch's environment, found on that environment's ``PATH``
(busybox cannot: its ``setpriv`` sets no uid, and its ``env`` runs its own applet for a name
like ``sh``). The process becomes PID 1, as in a container, with the console as stdin, stdout
and stderr, so its readiness line is read there. The disk's cache
key holds the launch and those files, so two launches never share a disk. The disk also gets
``dev``, ``proc`` and ``sys`` directories where the image has none (the mount points).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hostkit.files import atomic_write_with
from hostkit.paths import cache_dir
from imagestore import elf
from imagestore.image import Image

FORMAT = "v1"  # bump when the initramfs layout changes, so stale caches are not reused
DISK_FORMAT = "v2"  # bump when the base disk changes (v2: sized to the image, no lazy init)
LAUNCH_FORMAT = "l1"  # bump when an imported image's /.cvbench (GuestLaunch) changes
LAUNCH_DIR = ".cvbench"  # cvbench's own directory on an imported image's disk
LAUNCH_INIT = f"/{LAUNCH_DIR}/init"  # what the disk boot switches to when the disk has it
BOOT_FORMAT = "b2"  # bump when the disk-boot initramfs changes
BASE_DISK_MIB = 64  # the least size of a base disk
DISK_FREE_MIB = 1024  # free room on a base disk: the guest's own files (a sparse qcow2 costs none)
VOLUME_DISK_MIB = 2048  # a volume's raw disk (sparse)
VOLUME_FILE = "cvbench-volume.img"
# The disk boot's modules by virtio transport (vm.domain.DomainSpec.virtio_transport): PCI on
# pc and q35, virtio-mmio on the microVM machine (whose ACPI tables list its transports, so the
# driver finds them when loaded).
BOOT_MODULES = {"pci": ("virtio_pci", "virtio_blk", "virtio_net", "ext4"),
                "mmio": ("virtio_mmio", "virtio_blk", "virtio_net", "ext4")}
BUSYBOX = Path("/bin/busybox")
# Inode tables and the journal written by mkfs, not by the guest's ext4lazyinit thread while
# a benchmark runs.
MKFS_EXT4 = ("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0")


class GuestError(Exception):
    """A guest artifact is missing or could not be built."""



def guest_dir() -> Path:
    return cache_dir() / "guest"


def kernel_path() -> Path:
    """The guest kernel; raise :class:`GuestError` if set-up has not extracted it."""
    path = Path(os.environ.get("CVBENCH_GUEST_KERNEL", guest_dir() / "vmlinuz"))
    if not path.is_file() or path.stat().st_size == 0:
        raise GuestError(f"guest kernel {path} missing: run scripts/setup.sh")
    return path


def _public_dirs(path: Path) -> None:
    """Make ``path`` and its parents up to the cache root searchable by libvirt-qemu."""
    path.mkdir(parents=True, exist_ok=True)
    root = cache_dir()
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if mode & 0o005 != 0o005:
            directory.chmod(stat.S_IMODE(mode) | 0o755)
        if directory == root or directory == Path("/"):
            break


# --- cpio (newc) ---------------------------------------------------------------------------


def _cpio_entry(out: BinaryIO, ino: int, name: str, mode: int, data: bytes = b"",
                rdev: tuple[int, int] = (0, 0)) -> None:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    out.write(header + encoded)
    out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def _walk(rootfs: Path) -> Iterator[tuple[str, Path]]:
    for directory, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(directory) / name
            yield str(path.relative_to(rootfs)), path


def write_cpio(rootfs: Path, out: BinaryIO) -> None:
    """Write ``rootfs`` as a newc archive, plus ``/dev/console`` (char 5,1) and ``/dev/null``."""
    ino = 1
    names: set[str] = set()
    for relative, path in _walk(rootfs):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            data = os.readlink(path).encode()
        elif stat.S_ISREG(info.st_mode):
            data = path.read_bytes()
        elif stat.S_ISDIR(info.st_mode):
            data = b""
        else:
            continue  # no device nodes or sockets from the image itself
        _cpio_entry(out, ino, relative, info.st_mode, data)
        names.add(relative)
        ino += 1
    if "dev" not in names:
        _cpio_entry(out, ino, "dev", stat.S_IFDIR | 0o755)
        ino += 1
    for name, rdev in (("dev/console", (5, 1)), ("dev/null", (1, 3))):
        if name not in names:
            _cpio_entry(out, ino, name, stat.S_IFCHR | 0o600, rdev=rdev)
            ino += 1
    _cpio_entry(out, 0, "TRAILER!!!", 0)


def initramfs_for(image: Image) -> Path:
    """The initramfs of ``image``, built on first use and cached by the image digest."""
    target = guest_dir() / "initramfs" / f"{image.digest}-{FORMAT}.cpio"
    if target.is_file():
        return target
    if not image.rootfs.is_dir():
        raise GuestError(f"image rootfs {image.rootfs} missing")
    _public_dirs(target.parent)  # libvirt-qemu reads it
    atomic_write_with(target, lambda handle: write_cpio(image.rootfs, handle), fsync=False)
    return target


# --- a guest made to be restored ------------------------------------------------------------

RESTORE_FORMAT = "r1"  # bump when the responder changes
RESPONDER = "/cvbench-restore"  # the kernel's rdinit of a guest booted to be saved
PING = b"cvbench-ping"  # the host's question to a restored guest; the answer is a READY line
# PID 1 of a guest booted to be saved and restored (vm.snapshot): it starts a console
# responder, then becomes the image's own /init (same pid, so the image's init is unchanged).
# The responder answers each "cvbench-ping" line from the host with READY, which is how a
# restored guest proves that it runs again: the READY the image printed at boot is in the
# past of the snapshot. Cold and warm guests never boot it (no rdinit, no extra process).
RESPONDER_INIT = """#!/bin/sh
while read -r line; do
    case "$line" in cvbench-ping*) echo READY ;; esac
done </dev/console >/dev/console 2>&1 &
exec /init
"""


def restore_initramfs(initrd: Path) -> Path:
    """``initrd`` followed by a second archive holding :data:`RESPONDER` (the kernel unpacks
    both), built on first use beside it; boot it with ``rdinit=/cvbench-restore``."""
    target = initrd.with_name(f"{initrd.stem}-restore-{RESTORE_FORMAT}.cpio")
    if target.is_file():
        return target

    def write(out: BinaryIO) -> None:
        out.write(initrd.read_bytes())
        _cpio_entry(out, 1, RESPONDER.lstrip("/"), stat.S_IFREG | 0o755,
                    RESPONDER_INIT.encode())
        _cpio_entry(out, 0, "TRAILER!!!", 0)

    atomic_write_with(target, write, fsync=False)
    return target


# --- disks ---------------------------------------------------------------------------------


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise GuestError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def _tree_mib(rootfs: Path) -> int:
    total = 0
    for directory, _dirnames, filenames in os.walk(rootfs):
        for name in filenames:
            total += os.lstat(os.path.join(directory, name)).st_size
    return total >> 20


@dataclass(frozen=True)
class GuestLaunch:
    """The process an imported image's guest runs, as :mod:`harness.backends.launch` resolved
    it: the argv, the whole environment (``NAME=value`` items), the working directory and the
    user; rendered into the disk's :data:`LAUNCH_INIT` by :meth:`init_script`."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    workdir: str = "/"
    uid: int = 0
    gid: int = 0

    def init_script(self) -> str:
        """PID 1 on the image's root: mounts, working directory, then exec of the process
        through the exec helper (:func:`exec_helper`: user, groups, environment, PATH
        lookup); a failure is one ``cvbench-boot:`` line on the console, then a reboot, as in
        the disk boot's own init."""
        own = f"/{LAUNCH_DIR}"
        env = "".join(f" {shlex.quote(item)}" for item in self.env if "=" in item)
        argv = " ".join(shlex.quote(arg) for arg in self.argv)
        exec_line = (f"exec {own}/exec {self.uid} {self.gid}{env} -- {argv}" if self.argv
                     else 'fail "the image has no entrypoint and no cmd"')
        workdir = shlex.quote(self.workdir)
        return f"""#!{own}/busybox sh
B={own}/busybox
fail() {{ echo "cvbench-boot: $*"; $B sleep 1; $B reboot -f; exec $B sleep 2147483647; }}
[ -e /proc/self ] || $B mount -t proc proc /proc || fail "cannot mount /proc"
[ -e /sys/kernel ] || $B mount -t sysfs sys /sys || fail "cannot mount /sys"
[ -e /dev/null ] || $B mount -t devtmpfs dev /dev || fail "cannot mount /dev"
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts || fail "cannot mount /dev/pts"
$B mount -t tmpfs -o mode=1777 shm /dev/shm || fail "cannot mount /dev/shm"
cd {workdir} || fail "no working directory {workdir}"
{exec_line}
"""

    def key(self) -> str:
        """What a disk with this launch is cached by: the script, busybox, the exec helper
        and the format."""
        digest = hashlib.sha256(LAUNCH_FORMAT.encode() + self.init_script().encode())
        for path in (BUSYBOX, exec_helper()):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]


def exec_helper() -> Path:
    """The static exec helper set-up builds from ``vm/guest_exec.c`` (``/.cvbench/exec`` on
    an imported image's disk); GuestError if it has not."""
    path = cache_dir() / "bin" / "cvbench-guest-exec"
    if not path.is_file():
        raise GuestError(f"{path} missing (the imported images' guest exec helper): run "
                         "scripts/setup.sh")
    return path


def _launch_tree(rootfs: Path, root: Path, launch: GuestLaunch) -> None:
    """``root``: a copy of ``rootfs`` (hard links where it is on the same filesystem, so
    nothing of the image is read twice) with :data:`LAUNCH_DIR` of ``launch`` and the mount
    points ``dev``, ``proc`` and ``sys``."""
    same_fs = rootfs.stat().st_dev == root.parent.stat().st_dev
    _run(["cp", "-a", *(["--link"] if same_fs else []), f"{rootfs}/.", str(root)])
    own = root / LAUNCH_DIR
    if own.is_symlink() or own.is_file():
        own.unlink()
    elif own.exists():
        shutil.rmtree(own)
    own.mkdir(mode=0o755)
    shutil.copyfile(BUSYBOX, own / "busybox")
    shutil.copyfile(exec_helper(), own / "exec")
    (own / "init").write_text(launch.init_script())
    for name in ("busybox", "exec", "init"):
        (own / name).chmod(0o755)
    for name in ("dev", "proc", "sys"):
        if not (root / name).is_dir() and not (root / name).is_symlink():
            (root / name).mkdir(mode=0o755)


def base_disk_for(image: Image, launch: GuestLaunch | None = None) -> Path:
    """A read-only qcow2 holding an ext4 filesystem of the image rootfs (with ``launch``: plus
    its :data:`LAUNCH_DIR`), cached by digest (and the launch's key); sized to the image plus
    :data:`DISK_FREE_MIB` of free room."""
    if launch is not None and not BUSYBOX.is_file():
        raise GuestError(f"{BUSYBOX} not found: install Debian's busybox-static")
    suffix = f"-{launch.key()}-{LAUNCH_FORMAT}" if launch is not None else ""
    target = guest_dir() / "disks" / f"{image.digest}{suffix}-{DISK_FORMAT}.qcow2"
    if target.is_file():
        return target
    if not image.rootfs.is_dir():
        raise GuestError(f"image rootfs {image.rootfs} missing")
    _public_dirs(target.parent)
    size = max(BASE_DISK_MIB, _tree_mib(image.rootfs) * 5 // 4 + DISK_FREE_MIB)
    with tempfile.TemporaryDirectory(prefix="cvbench-disk-", dir=target.parent) as work:
        raw = Path(work) / "rootfs.raw"
        qcow = Path(work) / "rootfs.qcow2"
        source = image.rootfs
        if launch is not None:
            source = Path(work) / "rootfs"
            _launch_tree(image.rootfs, source, launch)
        _run([*MKFS_EXT4, "-L", "cvbench", "-d", str(source), str(raw), f"{size}M"])
        _run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(qcow)])
        qcow.chmod(0o644)
        os.replace(qcow, target)
    return target


def create_overlay(base: Path, overlay: Path) -> Path:
    """A thin qcow2 overlay on ``base`` (the VM's private writable layer)."""
    overlay.parent.mkdir(parents=True, exist_ok=True)
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base),
          str(overlay)])
    overlay.chmod(0o644)
    return overlay


def volume_disk(directory: Path, size_mib: int = VOLUME_DISK_MIB) -> Path:
    """A raw ext4 disk file in ``directory`` (a host directory handed to a VM as its volume),
    made on first use; sparse, so it takes the room its files take."""
    path = Path(directory) / VOLUME_FILE
    if path.is_file():
        return path
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as handle:
        handle.truncate(size_mib << 20)
    try:
        _run([*MKFS_EXT4, "-L", "cvbench-volume", str(partial)])
        partial.chmod(0o644)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


# --- disk boot -----------------------------------------------------------------------------

# PID 1 of a disk-booted guest until it switches to the disk's /init. A failure is one line
# starting with "cvbench-boot:" on the console (vm.console.FAILURE: the wait for READY ends
# there, and the VM backends report the line), then a reboot.
BOOT_INIT = """#!/bin/sh
export PATH=/bin
fail() { echo "cvbench-boot: $*"; sleep 1; reboot -f; exec sleep 2147483647; }
wait_for() {
    i=0
    while [ ! -e "$1" ]; do i=$((i+1)); [ $i -gt 200 ] && return 1; sleep 0.05; done
}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for module in $(cat /modules.load); do
    insmod "/lib/modules/$module" || fail "insmod $module failed"
done
wait_for /dev/vda || fail "no disk: /dev/vda did not appear"
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda (the image disk) as root"
init=/init
[ -x /newroot{LAUNCH_INIT} ] && init={LAUNCH_INIT}
[ -x "/newroot$init" ] || fail "the image disk has no /init"
if [ -n "${CVBENCH_VOLUME:-}" ]; then
    wait_for /dev/vdb || fail "no volume: /dev/vdb did not appear"
    mkdir -p /newroot/data
    mount -t ext4 -o rw /dev/vdb /newroot/data || fail "cannot mount the volume /dev/vdb"
fi
ip link set lo up
if [ -n "${CVBENCH_IP:-}" ]; then
    wait_for /sys/class/net/eth0 || fail "no network: eth0 did not appear"
    ip addr add "$CVBENCH_IP" dev eth0 || fail "cannot address eth0 with $CVBENCH_IP"
    ip link set eth0 up || fail "cannot bring eth0 up"
fi
unset CVBENCH_IP CVBENCH_VOLUME
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot "$init"
""".replace("{LAUNCH_INIT}", LAUNCH_INIT)
BOOT_APPLETS = ("sh", "mount", "insmod", "ip", "mkdir", "sleep", "cat", "reboot", "switch_root")


def modules_dir() -> Path:
    """``lib/modules/<release>/`` of the guest kernel (extracted by setup)."""
    root = guest_dir() / "modules"
    releases = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(releases) != 1:
        raise GuestError(f"guest kernel modules missing in {root} (expected one release): "
                         "run scripts/setup.sh")
    return releases[0]


def module_load_order(names: tuple[str, ...] = BOOT_MODULES["pci"],
                      directory: Path | None = None) -> list[Path]:
    """The module files ``names`` need, dependencies first, relative to ``directory``; names
    built into the kernel (``modules.builtin``) are left out."""
    directory = directory or modules_dir()
    builtin_file = directory / "modules.builtin"
    builtin = ({Path(line.strip()).name.removesuffix(".ko").replace("-", "_")
                for line in builtin_file.read_text().splitlines() if line.strip()}
               if builtin_file.is_file() else set())
    index = {path.name.removesuffix(".ko").replace("-", "_"): path
             for path in (directory / "kernel").rglob("*.ko")}
    order: list[Path] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in builtin or any(path == index.get(name) for path in order):
            return
        if name in trail:
            raise GuestError(f"kernel module dependency cycle: {' -> '.join((*trail, name))}")
        if name not in index:
            raise GuestError(f"kernel module {name} is neither built in nor in {directory}")
        try:
            depends = elf.modinfo(index[name]).get("depends", "")
        except (elf.ElfError, ValueError, OSError) as error:
            raise GuestError(f"kernel module {index[name]}: {error}") from None
        for dependency in filter(None, depends.split(",")):
            visit(dependency, (*trail, name))
        order.append(index[name])

    for name in names:
        visit(name, ())
    return [path.relative_to(directory) for path in order]


def _boot_tree(root: Path, directory: Path, modules: list[Path]) -> None:
    for name in ("bin", "dev", "proc", "sys", "newroot", "lib/modules"):
        (root / name).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUSYBOX, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    for applet in BOOT_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for module in modules:
        target = root / "lib" / "modules" / module
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(directory / module, target)
    (root / "modules.load").write_text("".join(f"{m}\n" for m in modules))
    (root / "init").write_text(BOOT_INIT)
    (root / "init").chmod(0o755)


def boot_initramfs(transport: str = "pci") -> Path:
    """The disk-boot initramfs (busybox, the boot modules of the virtio ``transport``, an
    /init that mounts the image disk as root), built on first use and cached by its content."""
    if not BUSYBOX.is_file():
        raise GuestError(f"{BUSYBOX} not found: install Debian's busybox-static")
    directory = modules_dir()
    modules = module_load_order(BOOT_MODULES[transport], directory=directory)
    key = hashlib.sha256(BOOT_FORMAT.encode() + BOOT_INIT.encode() + BUSYBOX.read_bytes())
    for module in modules:
        key.update(str(module).encode() + (directory / module).read_bytes())
    target = guest_dir() / "initramfs" / f"boot-{key.hexdigest()[:24]}-{BOOT_FORMAT}.cpio"
    if target.is_file():
        return target
    _public_dirs(target.parent)
    with tempfile.TemporaryDirectory(prefix="cvbench-boot-") as work:
        _boot_tree(Path(work), directory, modules)
        atomic_write_with(target, lambda handle: write_cpio(Path(work), handle), fsync=False)
    return target
