"""The one container spec ``ours``, crun and runc run: an imported image's process in it."""

from __future__ import annotations

from dataclasses import replace

from harness.backends.base import InstanceSpec
from harness.backends.containers import container_spec
from harness.backends.launch import Launch
from runtime.spec import DEFAULT_ENV, Spec

IMPORTED = Launch(entrypoint=("/bin/sh", "-c"), cmd=("echo READY",),
                  env=("PATH=/bin", "FOO=bar"), workdir="/tmp", uid=1000, gid=100)


def test_an_imported_image_runs_its_process_in_the_spec(built_image) -> None:
    spec = InstanceSpec(name="cvbench-u-1", image=built_image, launch=IMPORTED,
                        env=("FOO=baz", "CVBENCH_TOKEN=t"))
    oci = container_spec(spec)
    assert oci.process.args == ["/bin/sh", "-c", "echo READY"]
    assert oci.process.env == ["PATH=/bin", "HOME=/root", "FOO=baz", "CVBENCH_TOKEN=t"]
    assert (oci.process.cwd, oci.process.uid, oci.process.gid) == ("/tmp", 1000, 100)
    process = oci.to_oci()["process"]  # crun's and runc's config.json
    assert process["user"]["uid"] == 1000 and process["user"]["gid"] == 100
    assert process["cwd"] == "/tmp" and process["args"] == ["/bin/sh", "-c", "echo READY"]
    again = Spec.from_oci(oci.to_oci()).process
    assert (again.uid, again.gid, again.cwd) == (1000, 100, "/tmp")
    other = container_spec(replace(spec, command=("echo other",)))
    assert other.process.args == ["/bin/sh", "-c", "echo other"]


def test_an_image_cvbench_built_runs_its_init_as_root(built_image) -> None:
    oci = container_spec(InstanceSpec(name="cvbench-u-1", image=built_image, env=("A=1",)))
    assert oci.process.args == ["/init"]
    assert oci.process.env == [*DEFAULT_ENV, "A=1"]
    assert (oci.process.cwd, oci.process.uid, oci.process.gid) == ("/", 0, 0)
