"""``cvbench image import`` of what Podman itself writes: ``podman save`` as a docker-archive,
an OCI archive and an OCI directory, of an image Podman built here with no network.

Podman runs with a private store (``--root``/``--runroot`` under the test's directory, the
vfs driver): it imports the default image's rootfs, then builds two layers on it with
``--isolation chroot`` (no runtime, no network; ``--pull=never``): one deletes a file (a
whiteout), one replaces a directory's contents. All three archives must become the same
image, with the deletion and the replacement applied and the config kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness import cli
from imagestore import image as images
from imagestore import imageconfig

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

CONTAINERFILE = """FROM localhost/cvbench-base:1
RUN rm /etc/passwd && mkdir -p /opt/d && echo old > /opt/d/a
RUN rm -rf /opt/d && mkdir /opt/d && echo new > /opt/d/b
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo READY"]
"""
FORMATS = {"docker-archive": "two.tar", "oci-archive": "two-oci.tar", "oci-dir": "two-oci"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, built_image) -> Path:
    """The three archives of an image Podman built offline on the default image."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed")
    work = tmp_path_factory.mktemp("podman")
    podman = ["podman", "--root", str(work / "root"), "--runroot", str(work / "run"),
              "--storage-driver", "vfs"]
    with tarfile.open(work / "base.tar", "w") as archive:
        archive.add(built_image.rootfs, arcname=".")
    subprocess.run([*podman, "import", str(work / "base.tar"), "localhost/cvbench-base:1"],
                   check=True, capture_output=True)
    (work / "Containerfile").write_text(CONTAINERFILE)
    subprocess.run([*podman, "build", "--isolation", "chroot", "--pull=never",
                    "-t", "localhost/cvbench-two:1", str(work)],
                   check=True, capture_output=True)
    for kind, name in FORMATS.items():
        subprocess.run([*podman, "save", "--format", kind, "-o", str(work / name),
                        "localhost/cvbench-two:1"], check=True, capture_output=True)
    return work


def test_podman_archives_import_as_one_image(saved, built_image, tmp_path, monkeypatch,
                                             capsys) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path / "state"))
    digests = set()
    for kind, name in FORMATS.items():
        assert cli.main(["image", "import", str(saved / name), "--name", kind]) == 0
        digests.add(capsys.readouterr().out.split()[1])
    (digest,) = digests
    image = images.resolve("docker-archive")
    images.verify(image)
    assert image.digest == digest
    assert not (image.rootfs / "etc/passwd").exists()  # the whiteout
    assert os.listdir(image.rootfs / "opt/d") == ["b"]
    assert (image.rootfs / "opt/d/b").read_text() == "new\n"
    assert (image.rootfs / "init").read_bytes() == (built_image.rootfs / "init").read_bytes()
    config = imageconfig.load(image)
    assert config is not None and config.argv == ("/bin/sh", "-c", "echo READY")
    # the docker-archive carries the repo tag: the default name is made from it
    assert cli.main(["image", "import", str(saved / FORMATS["docker-archive"])]) == 0
    assert capsys.readouterr().out.split()[:2] == ["cvbench-two-1", digest]
