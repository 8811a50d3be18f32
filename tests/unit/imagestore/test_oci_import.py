"""``cvbench image import``: OCI layouts and docker-archives made here, into the image store.

Every input is written by :mod:`image_archives` from busybox and small files (no network):
two layers, the second deleting a file of the first (a whiteout) and replacing a directory's
contents (an opaque directory). Bad inputs are one line, exit code 2, and leave the image
store exactly as it was.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from image_archives import Entry, ImageSpec, layer_tar, sha256, write_docker, write_oci

from harness import cli
from imagestore import image as images
from imagestore import imageconfig, layers
from imagestore.imageconfig import ImageConfig

BUSYBOX = Path("/bin/busybox")
CONFIG = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo READY; sleep 1"],
          "Env": ["PATH=/bin", "GREETING=hi"], "WorkingDir": "/opt", "User": "1000:1000"}

BASE = [
    Entry("bin", "dir", mode=0o755),
    Entry("bin/busybox", data=BUSYBOX.read_bytes() if BUSYBOX.exists() else b"\x7fELF",
          mode=0o755),
    Entry("bin/sh", "symlink", target="busybox"),
    Entry("bin/ls", "symlink", target="/bin/busybox"),  # absolute, inside the image
    Entry("etc", "dir", mode=0o755),
    Entry("etc/hostname", data=b"one\n"),
    Entry("etc/gone", data=b"deleted by the second layer\n"),
    Entry("etc/hostname.link", "hardlink", target="etc/hostname"),
    Entry("opt", "dir", mode=0o755),
    Entry("opt/old", data=b"old"),
    Entry("opt/sub", "dir", mode=0o755),
    Entry("opt/sub/older", data=b"older"),
    Entry("dev", "dir", mode=0o755),
    Entry("dev/null", "chardev", mode=0o666),  # left out: runtimes make /dev
    Entry("usr/bin/helper", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000),
]
TOP = [
    Entry("etc", "dir", mode=0o755),
    Entry("etc/.wh.gone"),
    Entry("etc/hostname", data=b"two\n"),
    Entry("opt", "dir", mode=0o755),
    Entry("opt/.wh..wh..opq"),
    Entry("opt/new", data=b"new"),
]


def _spec(**changes) -> ImageSpec:
    return ImageSpec(layers=[layer_tar(BASE), layer_tar(TOP)], config=dict(CONFIG), **changes)


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """A private state directory (the image store is its images/)."""
    directory = tmp_path / "state"
    directory.mkdir()
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(directory))
    return directory


@pytest.fixture
def oci(tmp_path) -> Path:
    return write_oci(_spec(), tmp_path / "oci")


@pytest.fixture
def docker(tmp_path) -> Path:
    return write_docker(_spec(), tmp_path / "image.tar")


def _import(capsys, *args: str) -> list[str]:
    assert cli.main(["image", "import", *args]) == 0
    return capsys.readouterr().out.split()


def _store(state: Path) -> dict[str, bytes | None]:
    """Everything under the image store (paths, file contents), and any leftover scratch."""
    found: dict[str, bytes | None] = {
        str(path.relative_to(state)): None for path in state.glob("cvbench-*")}
    for path in sorted((state / "images").rglob("*")):
        regular = path.is_file() and not path.is_symlink()
        found[str(path.relative_to(state))] = path.read_bytes() if regular else None
    return found


# ---------------------------------------------------------------- a good image


def test_layers_are_applied_with_whiteouts_and_opaque_directories(state, oci, capsys) -> None:
    assert cli.main(["image", "import", str(oci)]) == 0
    captured = capsys.readouterr()
    name, digest, rootfs_text = captured.out.split()
    (warning,) = captured.err.splitlines()  # the device node, named
    assert "left out 1 device node(s) (runtimes make /dev): /dev/null" in warning
    rootfs = Path(rootfs_text)
    assert (name, rootfs) == ("demo-1.0", state / "images" / digest / "rootfs")
    assert not (rootfs / "etc/gone").exists()  # the whiteout
    assert sorted(os.listdir(rootfs / "opt")) == ["new"]  # opaque: the lower contents hidden
    assert (rootfs / "etc/hostname").read_bytes() == b"two\n"
    assert (rootfs / "etc/hostname.link").read_bytes() == b"one\n"  # linked to the first one
    assert os.readlink(rootfs / "bin/ls") == "/bin/busybox"
    assert os.readlink(rootfs / "bin/sh") == "busybox"
    assert (rootfs / "bin/busybox").read_bytes()[:4] == b"\x7fELF"
    assert not (rootfs / "dev/null").exists()  # a device node is left out
    helper = (rootfs / "usr/bin/helper").stat()
    assert stat.S_IMODE(helper.st_mode) == 0o4755
    if os.geteuid() == 0:
        assert (helper.st_uid, helper.st_gid) == (1000, 1000)
    assert not any(path.name.startswith(".wh.") for path in rootfs.rglob("*"))


def test_the_config_is_kept_beside_the_rootfs(state, oci, capsys) -> None:
    name, _, _ = _import(capsys, str(oci))
    config = imageconfig.load(images.resolve(name))
    assert config == ImageConfig(entrypoint=("/bin/sh", "-c"), cmd=("echo READY; sleep 1",),
                                 env=("PATH=/bin", "GREETING=hi"), workdir="/opt",
                                 user="1000:1000")
    assert config.argv == ("/bin/sh", "-c", "echo READY; sleep 1")


def test_an_image_cvbench_builds_has_no_config(tmp_path) -> None:
    (tmp_path / "rootfs").mkdir()
    assert imageconfig.load(images.Image("default", "0" * 64, tmp_path / "rootfs")) is None


def test_the_digest_is_stable_and_the_same_from_either_format(state, oci, docker,
                                                               capsys) -> None:
    first = _import(capsys, str(oci))
    again = _import(capsys, str(oci), "--name", "again")
    from_docker = _import(capsys, str(docker), "--name", "docker")
    assert first[1] == again[1] == from_docker[1]
    assert len(os.listdir(state / "images")) == 2  # one image directory and refs.json
    assert images.refs() == {"demo-1.0": first[1], "again": first[1], "docker": first[1]}


def test_an_uncompressed_oci_layout_and_a_tar_of_it_import_alike(state, tmp_path, oci,
                                                                  capsys) -> None:
    import tarfile

    plain = write_oci(_spec(), tmp_path / "plain", compress=False)
    archive = tmp_path / "oci.tar"
    with tarfile.open(archive, "w") as handle:
        handle.add(plain, arcname=".")
    digests = {_import(capsys, str(path), "--name", name)[1]
               for name, path in (("gz", oci), ("plain", plain), ("archive", archive))}
    assert len(digests) == 1


def test_verify_and_ls_know_an_imported_image(state, docker, capsys) -> None:
    name, digest, _ = _import(capsys, str(docker))
    assert cli.main(["image", "verify", name]) == 0
    assert capsys.readouterr().out == f"{digest} ok\n"
    assert cli.main(["image", "ls"]) == 0
    assert f"{name}\t{digest}" in capsys.readouterr().out.splitlines()
    images.verify(images.resolve(digest[:16]))


@pytest.mark.parametrize("change", ["content", "config"])
def test_a_tampered_import_fails_verify(state, docker, capsys, change) -> None:
    name, digest, rootfs = _import(capsys, str(docker))
    if change == "content":
        (Path(rootfs) / "opt/new").write_bytes(b"changed")
    else:
        config = Path(rootfs).parent / "config.json"
        config.write_text(config.read_text().replace("echo READY", "echo HACKED"))
    assert cli.main(["image", "verify", name]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"cvbench: error: image {digest[:12]} does not match its digest")


def test_a_name_is_taken_from_the_tag_or_asked_for(state, tmp_path, capsys) -> None:
    untagged = write_docker(_spec(tag=None), tmp_path / "untagged.tar")
    assert cli.main(["image", "import", str(untagged)]) == 2
    assert "give it one with --name NAME" in capsys.readouterr().err
    assert _import(capsys, str(untagged), "--name", "mine")[0] == "mine"
    latest = write_docker(_spec(tag="docker.io/library/nginx:latest"), tmp_path / "n.tar")
    assert _import(capsys, str(latest))[0] == "nginx"


# ---------------------------------------------------------------- bad input


def _replace_layer(oci: Path, data: bytes) -> None:
    """Put other bytes where the first layer's blob is (its digest no longer matches)."""
    manifest_digest = json.loads((oci / "index.json").read_text())["manifests"][0]["digest"]
    manifest = json.loads((oci / "blobs/sha256" / manifest_digest[7:]).read_text())
    blob = oci / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    blob.write_bytes(data.ljust(blob.stat().st_size, b"\0")[:blob.stat().st_size])


def _bad_docker_layer(tmp_path: Path) -> Path:
    """A docker-archive whose first layer tar is not the one its config's diff_id names."""
    good, other = layer_tar(BASE), layer_tar([Entry("etc/other", data=b"x")])
    spec = _spec()
    document = spec.config_document()
    spec.config_document = lambda: document  # type: ignore[method-assign]
    spec.layers[0] = other
    path = write_docker(spec, tmp_path / "bad.tar")
    assert sha256(good) in document.decode() and sha256(other) not in document.decode()
    return path


def _with_top(tmp_path: Path, top: list[Entry], **changes) -> Path:
    spec = ImageSpec(layers=[layer_tar(BASE), layer_tar(top)], config=dict(CONFIG), **changes)
    return write_docker(spec, tmp_path / "case.tar")


CASES = {
    "a layer whose digest differs": (
        lambda tmp, oci: (_replace_layer(oci, layer_tar(TOP)), oci)[1],
        "the manifest says"),
    "a docker layer whose diff_id differs": (
        lambda tmp, oci: _bad_docker_layer(tmp), "diff_id says"),
    "a '..' member": (
        lambda tmp, oci: _with_top(tmp, [Entry("etc/../../escaped", data=b"x")]),
        "has a '..' component"),
    "an absolute member": (
        lambda tmp, oci: _with_top(tmp, [Entry("/etc/escaped", data=b"x")]),
        "has an absolute path"),
    "an absolute symlink escaping": (
        lambda tmp, oci: _with_top(tmp, [Entry("etc/shadow", "symlink",
                                               target="/../../etc/shadow")]),
        "symlink /etc/shadow -> /../../etc/shadow leaves the root"),
    "a relative symlink escaping": (
        lambda tmp, oci: _with_top(tmp, [Entry("etc/up", "symlink", target="../../..")]),
        "leaves the root"),
    "a member through a symlink": (
        lambda tmp, oci: _with_top(tmp, [Entry("etc/x", "symlink", target="/tmp"),
                                         Entry("etc/x/planted", data=b"x")]),
        "passes through the symlink /etc/x"),
    "a hard link escaping": (
        lambda tmp, oci: _with_top(tmp, [Entry("etc/h", "hardlink", target="../etc/passwd")]),
        "leaves the root"),
    "a config without entrypoint or cmd": (
        lambda tmp, oci: write_docker(ImageSpec(layers=[layer_tar(BASE)],
                                                config={"Env": ["A=1"]}), tmp / "noexec.tar"),
        "neither Entrypoint nor Cmd"),
    "not an image": (lambda tmp, oci: tmp, "neither an OCI image layout"),
    "a reserved name": (lambda tmp, oci: write_docker(_spec(tag="x/default:latest"),
                                                      tmp / "default.tar"),
                        "the name of an image cvbench builds"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_leaves_the_store_alone(state, tmp_path, capsys,
                                                                 case) -> None:
    _import(capsys, str(write_docker(_spec(), tmp_path / "first.tar")))  # a store to keep
    before = _store(state)
    make, message = CASES[case]
    (tmp_path / "case").mkdir()
    path = make(tmp_path / "case", write_oci(_spec(), tmp_path / "oci"))
    assert cli.main(["image", "import", str(path)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("cvbench: error: ") and message in line, line
    assert captured.out == ""
    assert _store(state) == before


def test_an_interrupted_import_leaves_nothing(state, oci, capsys, monkeypatch) -> None:
    before = _store(state)

    def interrupted(self, archive) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(layers.Rootfs, "apply", interrupted)
    assert cli.main(["image", "import", str(oci)]) == 130
    assert _store(state) == before == {}


# ---------------------------------------------------------------- the checks themselves


@pytest.mark.parametrize(("path", "target", "inside"), [
    ("bin/ls", "/bin/busybox", True),
    ("bin/sh", "busybox", True),
    ("a/b/c", "../../x", True),
    ("a/b/c", "../../../x", False),
    ("a", "/..", False),
    ("a/b", "/a/../../x", False),
    ("a/b", "./../b/../a", True),
])
def test_link_targets_are_read_from_the_image_root(path, target, inside) -> None:
    assert layers.link_stays_inside(path, target) is inside
