"""`cvbench doctor`: what the host offers, and what each backend still lacks (with the fix)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import hostinfo, hostkind
from harness.backends import registry
from hostkit import syscalls

SETUP = "run 'bash scripts/setup.sh' as root"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _root() -> Check:
    ok = os.geteuid() == 0
    return Check("root", ok, "running as root" if ok else f"uid {os.geteuid()}", "run as root")


def _namespaces() -> Check:
    flags = 0
    for kind in ("mount", "uts", "ipc", "network", "pid", "cgroup"):
        flags |= syscalls.NAMESPACE_FLAGS[kind]
    pid = os.fork()
    if pid == 0:  # the child tries, so the doctor's own namespaces stay untouched
        try:
            syscalls.unshare(flags)
            os._exit(0)
        except OSError:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    ok = os.waitstatus_to_exitcode(status) == 0
    return Check("namespaces", ok, "pid mount uts ipc net cgroup" if ok else "unshare failed",
                 "run as root on a kernel with namespaces enabled")


def _overlay() -> Check:
    ok = "overlay" in Path("/proc/filesystems").read_text()
    return Check("overlayfs", ok, "available" if ok else "not in /proc/filesystems",
                 "modprobe overlay")


def _cgroups() -> Check:
    """The cgroup mode, where the hierarchies are, and the init system (harness.hostkind)."""
    kind = hostkind.inspect()
    return Check("cgroups", kind.problem is None, kind.problem or kind.summary(),
                 "mount cgroup2 on /sys/fs/cgroup with memory, pids and cpu")


def _ksm() -> Check:
    ok = Path("/sys/kernel/mm/ksm/run").exists()
    return Check("ksm", ok, "available" if ok else "missing", "kernel built with CONFIG_KSM")


def _version(binary: str, name: str | None = None) -> Check:
    name = name or binary
    path = shutil.which(binary)
    if not path:
        return Check(name, False, f"{binary} not installed", SETUP)
    output = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return Check(name, True, output.splitlines()[0] if output else path)


def _microvm() -> Check:
    """microvm support in the installed QEMU: ``-machine help`` lists the microvm machine."""
    from vm import bare_qemu

    if not shutil.which(bare_qemu.QEMU):
        return Check("microvm", False, f"{bare_qemu.QEMU} not installed", SETUP)
    ok = "microvm" in bare_qemu.machine_types(bare_qemu.QEMU)
    return Check("microvm", ok, "QEMU's microvm machine (virtio-mmio, qboot firmware)" if ok
                 else f"{bare_qemu.QEMU} -machine help does not list microvm",
                 "install a QEMU built with the microvm machine (Debian's qemu-system-x86)")


def _libvirtd() -> Check:
    try:
        import libvirt
    except ImportError:
        return Check("libvirtd", False, "libvirt-python missing", SETUP)
    uri = os.environ.get("CVBENCH_LIBVIRT_URI", "qemu:///system")
    try:
        connection = libvirt.open(uri)
    except libvirt.libvirtError as error:
        message = str(error).splitlines()[0]
        return Check("libvirtd", False, f"{uri}: {message}", "start it: libvirtd -d; virtlogd -d")
    try:
        version = connection.getLibVersion()
        return Check("libvirtd", True, f"{uri} (libvirt {version // 1000000}."
                     f"{version // 1000 % 1000}.{version % 1000})")
    finally:
        connection.close()


def _accel() -> Check:
    choice = hostinfo.accel()
    return Check("accel", choice["accel"] in ("kvm", "tcg"),
                 f"{choice['accel']}: {choice['reason']}", "install qemu-system-x86")


def _guest_kernel() -> Check:
    from vm import guest

    try:
        return Check("guest kernel", True, str(guest.kernel_path()))
    except guest.GuestError as error:
        return Check("guest kernel", False, str(error), SETUP)


def _kvm_device() -> Check:
    """A /dev/kvm the QEMU user cannot open makes libvirt re-probe QEMU at every start."""
    from vm import probe

    problem = probe.kvm_device_problem()
    if problem:
        return Check("kvm device", False, problem, probe.FIX)
    why = "no /dev/kvm" if not Path("/dev/kvm").exists() else "QEMU's user can open /dev/kvm"
    return Check("kvm device", True, f"libvirt's QEMU capability cache stays valid ({why})")


def libvirt_create_probe() -> Check:
    """Two paused throw-away domains: the second createXML must be fast (``--probe``)."""
    import libvirt

    from imagestore import image
    from vm import guest, hypervisor, probe

    try:
        conn = hypervisor.connect()
    except libvirt.libvirtError as error:
        return Check("libvirt create", False, str(error).splitlines()[0],
                     "start it: libvirtd -d; virtlogd -d")
    try:
        initrd = guest.initramfs_for(image.resolve())
        times = probe.timed_creates(conn, guest.kernel_path(), initrd)
    except (libvirt.libvirtError, guest.GuestError, image.ImageError) as error:
        return Check("libvirt create", False, str(error).splitlines()[0], SETUP)
    finally:
        conn.close()
    detail = "createXML of a paused domain: " + ", ".join(f"{t:.2f} s" for t in times)
    if times[-1] > probe.SLOW_CREATE_S:
        return Check("libvirt create", False, detail + " (libvirt re-probes QEMU every time)",
                     probe.FIX)
    return Check("libvirt create", True, detail)


def _image() -> Check:
    from imagestore import image

    try:
        found = image.resolve()
    except image.ImageError as error:
        return Check("image", False, str(error), "cvbench image build")
    return Check("image", True, f"default {found.short_digest}")


def _seccomp_profile() -> Check:
    from runtime import seccomp

    try:
        profile = seccomp.load_profile()
    except seccomp.SeccompError as error:
        return Check("seccomp profile", False, str(error), SETUP)
    return Check("seccomp profile", True, f"{profile.path} ({len(profile.data.get('syscalls', []))}"
                 f" rules, default {profile.data.get('defaultAction')})")


def _docker() -> Check:
    """dockerd: installed, answering, and started as set-up starts it (no iptables, crun)."""
    if not shutil.which("dockerd"):
        return Check("docker", False, "docker.io not installed", SETUP)
    try:
        from harness.backends.engines.docker import service as engine
    except ImportError as error:
        return Check("docker", False, f"Docker SDK for Python missing: {error}", SETUP)
    try:
        client = engine.sdk_client(timeout=10)  # asks dockerd for its API version
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return Check("docker", False, f"dockerd does not answer at {engine.SOCKET}: {message}",
                     f"{SETUP} (it starts dockerd)")
    try:
        version, info = client.api.version(), client.api.info()
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return Check("docker", False, f"dockerd does not answer at {engine.SOCKET}: {message}",
                     f"{SETUP} (it starts dockerd)")
    finally:
        client.close()
    flags = engine.daemon_flags(engine.dockerd_pid(engine.SOCKET))
    components = {c.get("Name"): c.get("Version") for c in version.get("Components", [])}
    detail = (f"dockerd {version.get('Version')} (API {version.get('ApiVersion')}), containerd "
              f"{components.get('containerd')}, runtimes {', '.join(info.get('Runtimes', {}))}, "
              f"cgroup driver {info.get('CgroupDriver')}")
    if "--iptables=false" not in flags:
        detail += "; dockerd manages iptables (not started by set-up)"
    missing = [name for name in engine.DAEMON_RUNTIMES if name not in info.get("Runtimes", {})]
    if missing:  # docker with crun, docker-ours: their prepare() refuses
        detail += (f"; no {', '.join(missing)} runtime (dockerd not started as set-up starts "
                   "it: run it again)")
    return Check("docker", True, detail)


def _podman() -> Check:
    """podman: installed, and a service of ours answers (started and stopped here)."""
    if not shutil.which("podman"):
        return Check("podman", False, "podman not installed", SETUP)
    try:
        from harness.backends.engines.podman import service as engine
    except ImportError as error:
        return Check("podman", False, f"podman Python package missing: {error}", SETUP)
    service = engine.Service("runc", f"cvbench-doctor-{os.getpid()}")
    try:
        service.start()
        client = engine.client(service.socket)
        try:
            version = client.api.get("/version").json()
            info = client.api.get("/info").json()
        finally:
            client.close()
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        return Check("podman", False, f"podman system service does not answer: {message}", SETUP)
    finally:
        service.stop()
    host = info.get("host", {})
    conmon = host.get("conmon", {}).get("version", "?").split(",")[0].split()[-1]
    return Check("podman", True, f"podman {version.get('Version')} (libpod API, a service per "
                 f"backend), conmon {conmon}, network backend {host.get('networkBackend')}")


def _cvbench_runtime() -> Check:
    """cvbench-runtime as installed with cvbench (the console script the engines run)."""
    from harness.backends.engines import common

    binary = common.ours_runtime()
    if not os.access(binary, os.X_OK):
        return Check("cvbench-runtime", False, f"{binary} missing",
                     f"{SETUP} (it installs cvbench into its virtualenv)")
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return Check("cvbench-runtime", False, f"{binary}: {error}", SETUP)
    first = out.strip().splitlines()[0] if out.strip() else ""
    if not first:
        return Check("cvbench-runtime", False, f"{binary} --version printed nothing", SETUP)
    return Check("cvbench-runtime", True, f"{binary}: {first}")


def _lxc() -> Check:
    if not shutil.which("lxc-start"):
        return Check("lxc", False, "lxc not installed", SETUP)
    try:
        import lxc
    except ImportError as error:
        return Check("lxc", False, f"Python binding not importable: {error}",
                     f"{SETUP} (installs python3-lxc and links it into the virtualenv)")
    return Check("lxc", True, f"liblxc {lxc.version} (Python binding; no daemon: a helper "
                 "process per backend)")


CHECKS: dict[str, Callable[[], Check]] = {
    "root": _root,
    "namespaces": _namespaces,
    "overlayfs": _overlay,
    "cgroups": _cgroups,
    "ksm": _ksm,
    "crun": lambda: _version("crun"),
    "runc": lambda: _version("runc"),
    "libvirtd": _libvirtd,
    "kvm device": _kvm_device,
    "qemu": lambda: _version("qemu-system-x86_64", "qemu"),
    "microvm": _microvm,
    "accel": _accel,
    "guest kernel": _guest_kernel,
    "image": _image,
    "seccomp profile": _seccomp_profile,
    "docker": _docker,
    "podman": _podman,
    "cvbench-runtime": _cvbench_runtime,
    "lxc": _lxc,
}

def _runtime(name: str, path: str) -> Check:
    """A user-named OCI runtime's binary, checked again as it was declared
    (:func:`harness.backends.oci.runtimes.check`): it replaces crun's binary check."""
    from harness.backends.oci import runtimes
    from hostkit import validate

    try:
        runtimes.check(path)
    except validate.Invalid as error:
        return Check(registry.runtime_needs(name), False, str(error),
                     "give --runtime the path of an OCI runtime's binary")
    version = runtimes.version_output(path).strip().splitlines()[0]
    return Check(registry.runtime_needs(name), True, f"{path}: {version}")


def run_checks(probe: bool = False) -> list[Check]:
    """Every check, and one per user-named OCI runtime; with ``probe`` also the (slower)
    timed libvirt creates."""
    checks = [check() for check in CHECKS.values()]
    checks += [_runtime(name, path) for name, path in registry.user_runtimes().items()]
    if probe:
        checks.append(libvirt_create_probe())
    return checks


def missing_for(checks: list[Check], backends: tuple[str, ...]) -> list[tuple[str, Check]]:
    """(backend, failed check) pairs for what the requested backends need."""
    by_name = {check.name: check for check in checks}
    return [
        (backend, by_name[need])
        for backend in backends
        for need in registry.info(backend).needs
        if need in by_name and not by_name[need].ok  # checks not run (a probe) are skipped
    ]
