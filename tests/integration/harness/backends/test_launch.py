"""One imported image, the same process on every backend that runs imported images
(the container backends, the floor, process, the Docker, Podman and LXC engines, and the VMs:
qemu, microvm and libvirt boot it from a disk made from its rootfs, whose init execs the
process; LXC gets the cmd, spaces and all, as start()'s argv:
harness.backends.engines.lxc.config.start_argv).

The image is an OCI layout written here (:mod:`image_archives`) from the default image's
busybox: entrypoint ``/bin/sh -c``, a cmd that prints its working directory, ``id -u:id -g``
and ``$FOO``, then READY; workdir ``/work`` (made in a layer of its own), user
``1000:1000``, env ``FOO=bar``. ``cvbench image import`` stores it in a private state
directory (removed afterwards, the imported image with it); the runner's
:func:`harness.runner.image_launch` resolves its config, and each backend must print the line
the config asks for: its readiness rule is that line, so a backend that ran the process in
another directory, as another user or without the image's env never becomes ready. The
process backend has no root of its own: its directory is the image's ``/work`` under the
rootfs. A VM boots in seconds, so it is not also asked to stay unready for a wrong line
(that wait would have to outlast a boot): its one line names the directory, ids and env.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_inventory import require
from image_archives import Entry, ImageSpec, layer_tar, write_oci

from harness import backends as registry
from harness import cli, runner
from harness.backends.base import InstanceSpec, NotReady
from harness.backends.ready_rule import ReadyRule
from imagestore import image as images

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

SCRIPT = 'echo "$(pwd) $(id -u):$(id -g) $FOO"; echo READY; exec sleep 30'
CONFIG = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": [SCRIPT], "WorkingDir": "/work",
          "User": "1000:1000", "Env": ["PATH=/bin", "FOO=bar"]}
BACKENDS = ("ours", "crun", "runc", "floor", "process", "docker", "podman", "lxc", "qemu",
            "microvm", "libvirt")
ENGINES = ("docker", "podman", "lxc")  # skipped where the engine is missing
VMS = ("qemu", "microvm", "libvirt")
VM_READY_S = 120.0  # a TCG guest's boot and the disk made at its first start


@pytest.fixture(scope="module")
def imported(built_image, tmp_path_factory) -> Iterator[images.Image]:
    """The image, imported into a private state directory that user 1000 may traverse (the
    process backend's workload reaches the rootfs through it); all of it removed after."""
    busybox = (built_image.rootfs / "bin" / "busybox").read_bytes()
    base = [Entry("bin", "dir", mode=0o755), Entry("bin/busybox", data=busybox, mode=0o755),
            *(Entry(f"bin/{applet}", "symlink", target="busybox")
              for applet in ("sh", "id", "sleep", "echo")),
            Entry("etc", "dir", mode=0o755),
            Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n")]
    work = [Entry("work", "dir", mode=0o755)]
    layout = write_oci(ImageSpec(layers=[layer_tar(base), layer_tar(work)], config=CONFIG,
                                 tag="example.org/cvbench/launch:1"),
                       tmp_path_factory.mktemp("oci") / "layout")
    state = Path(tempfile.mkdtemp(prefix="cvbench-test-launch-", dir="/tmp"))
    state.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CVBENCH_STATE_DIR", str(state))
        try:
            assert cli.main(["image", "import", str(layout), "--name", "launch"]) == 0
            yield images.resolve("launch")
        finally:
            shutil.rmtree(state)


def _line(backend: str, image: images.Image, ids: str = "1000:1000") -> str:
    workdir = f"{image.rootfs}/work" if backend == "process" else "/work"
    return f"{workdir} {ids} bar"


@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.vm] if name in VMS
                                                 else []) for name in BACKENDS])
def test_every_backend_runs_the_images_process(imported, name) -> None:
    launch = runner.image_launch(imported)
    assert launch is not None and (launch.workdir, launch.uid, launch.gid) == ("/work", 1000,
                                                                                1000)
    if name in ENGINES:
        require(name)
    backend = registry.create(name)
    try:
        backend.prepare(imported)
        rules = ((f"line:{_line(name, imported)}", True),
                 (f"line:{_line(name, imported, '0:0')}", False))  # as root
        for rule, ready in rules[:1] if name in VMS else rules:
            spec = InstanceSpec(name=f"cvbench-tl-{uuid.uuid4().hex[:8]}",
                                image=imported, ready=ReadyRule.parse(rule), launch=launch)
            instance = backend.start(spec)
            try:
                if ready:
                    backend.wait_ready(instance, VM_READY_S if name in VMS else 20.0)
                else:
                    with pytest.raises(NotReady):
                        backend.wait_ready(instance, 2.0)
            finally:
                backend.stop(instance)
                backend.remove(instance)
    finally:
        backend.cleanup()


@pytest.mark.vm
@pytest.mark.parametrize("name", ["qemu", "libvirt"])
def test_a_warm_vm_runs_the_images_process_too(imported, name) -> None:
    """Warm: the guest made paused before the clock (QEMU -S, createXML paused) boots the
    same disk once resumed."""
    backend = registry.create(name)
    try:
        backend.prepare(imported)
        spec = InstanceSpec(name=f"cvbench-tl-{uuid.uuid4().hex[:8]}", image=imported,
                            ready=ReadyRule.parse(f"line:{_line(name, imported)}"),
                            launch=runner.image_launch(imported))
        instance = backend.create(spec)
        try:
            backend.resume(instance)
            backend.wait_ready(instance, VM_READY_S)
        finally:
            backend.stop(instance)
            backend.remove(instance)
    finally:
        backend.cleanup()
