"""The seccomp filter the kernel holds is read back from running containers of ours (cold and
warm), crun and runc, and compared: what each runtime installs for the one default profile,
and what the methodology says about it (root, real containers).

Found on Debian 12 (libseccomp 2.5.4 for all three: pyseccomp loads the library crun and runc
link): ours cold, ours warm and crun install the same program, byte for byte (1 filter, 1,125
instructions for the containers/Docker default profile). runc 1.1 installs libseccomp's same
program preceded by its own ENOSYS stub (libcontainer/seccomp/patchbpf): 14 instructions that
return ERRNO(ENOSYS) for syscall numbers above the highest the profile names, per
architecture, in Go map order, so the stub's bytes vary between runc containers.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import backends, methodology
from harness.backends.base import Instance, launch
from harness.backends.base import InstanceSpec as Spec
from hostkit import seccomp_readback
from hostkit.seccomp_readback import Filter

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

RET = 0x06  # BPF_RET|BPF_K
ERRNO_ENOSYS = 0x00050000 | 38  # SECCOMP_RET_ERRNO | ENOSYS
STUB = 14  # runc's stub for x86_64, x32 and i386


@contextmanager
def running(name: str, image, variant: str) -> Iterator[Instance]:
    """One default container of backend ``name`` (cold or warm) that printed READY."""
    assert name == "ours" or shutil.which(name), f"{name} is not installed"
    backend = backends.create(name)
    backend.prepare(image)
    spec = Spec(name=f"cvbench-test-filter-{uuid.uuid4().hex[:8]}", image=image)
    try:
        instance = launch(backend, spec, variant)
        backend.wait_ready(instance, 20)
        yield instance
        backend.stop(instance)
        backend.remove(instance)
    finally:
        backend.cleanup()


def filters_of(name: str, image, variant: str) -> tuple[Filter, ...]:
    with running(name, image, variant) as instance:
        return seccomp_readback.read_filters(instance.pids[0])


def instructions(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack_from("<HBBI", program, at) for at in range(0, len(program), 8)]


@pytest.fixture(scope="module")
def found(built_image) -> dict[str, tuple[Filter, ...]]:
    return {f"{name} {variant}": filters_of(name, built_image, variant)
            for name, variant in (("ours", "cold"), ("ours", "warm"), ("crun", "cold"),
                                  ("crun", "warm"), ("runc", "cold"), ("runc", "warm"))}


def test_ours_and_crun_install_the_same_program(found) -> None:
    [ours] = found["ours cold"]
    assert ours.instructions > 1000 and ours.flags == 0  # the default profile, no flags
    for other in ("ours warm", "crun cold", "crun warm"):
        assert seccomp_readback.difference(found["ours cold"], found[other]) is None, other


def test_runc_prepends_its_enosys_stub_to_the_same_program(found) -> None:
    [ours] = found["ours cold"]
    for variant in ("runc cold", "runc warm"):
        [runc] = found[variant]
        assert runc.flags == 0
        assert runc.instructions == ours.instructions + STUB
        stub, rest = runc.program[: STUB * 8], runc.program[STUB * 8:]
        assert rest == ours.program  # libseccomp's program, untouched
        codes = instructions(stub)
        # it loads the architecture first, and every verdict it returns is ERRNO(ENOSYS)
        assert codes[0] == (0x20, 0, 0, 4)
        assert [k for code, _, _, k in codes if code == RET] == [ERRNO_ENOSYS]
        assert seccomp_readback.difference(found["ours cold"], found[variant]).endswith(
            f"the second ends with all {ours.instructions} instructions of the other, "
            f"after {STUB} of its own")


def test_every_runtime_uses_the_same_libseccomp() -> None:
    """The shared program is not a coincidence of versions: pyseccomp (ours) loads the very
    library file crun and runc are linked with."""
    import pyseccomp  # noqa: F401  (loads libseccomp.so.2)

    loaded = {Path(line.split()[-1]).resolve() for line in Path("/proc/self/maps").read_text()
              .splitlines() if "libseccomp.so" in line}
    for runtime in ("crun", "runc"):
        ldd = subprocess.run(["ldd", shutil.which(runtime) or runtime], capture_output=True,
                             text=True, check=True).stdout
        linked = {Path(line.split("=>")[1].split()[0]).resolve()
                  for line in ldd.splitlines() if "libseccomp.so" in line}
        assert linked == loaded, runtime


def test_describe_records_it_and_the_methodology_says_so(built_image) -> None:
    metadata: dict = {"backends": {}}
    for name in ("ours", "crun", "runc"):
        backend = backends.create(name)
        backend.prepare(built_image)
        try:
            metadata["backends"][name] = backend.describe()
        finally:
            backend.cleanup()
    recorded = {name: facts["security"]["kernel_filter"]
                for name, facts in metadata["backends"].items()}
    assert set(recorded["ours"]) >= {"cold", "warm"} and "cold" in recorded["crun"]
    ours = recorded["ours"]["cold"]
    assert ours["filters"] == 1 and recorded["ours"]["warm"]["sha256"] == ours["sha256"]
    assert recorded["crun"]["cold"]["sha256"] == ours["sha256"]
    assert recorded["runc"]["cold"]["instructions"] == ours["instructions"] + STUB
    assert "ENOSYS stub" in recorded["runc"]["runtime_additions"]
    line = methodology.kernel_filters(metadata)
    assert line is not None and "same program: **no**" in line
    assert f"ours cold, ours warm, crun cold: 1 filter, {ours['instructions']} instructions" \
        in line
    assert (f"runc cold: 1 filter, {ours['instructions'] + STUB} instructions" in line
            and f"after {STUB} of its own; what runc adds: an ENOSYS stub" in line)
    assert line in methodology.section(metadata)
