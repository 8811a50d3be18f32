"""The VM restore helpers that need no VM: the one-line failure, staging refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends import vm_restore
from harness.backends.base import BackendError, Instance, InstanceSpec
from imagestore.image import Image

LIBVIRT_FAILURE = """operation failed: job 'restore' failed: load of migration failed
2026-12-06T21:42:25.259483Z qemu-system-x86_64: error while loading state section id 3(ram)
2026-12-06T21:42:25.259514Z qemu-system-x86_64: load of migration failed: Invalid argument"""


def test_one_line_keeps_the_first_line_and_qemus_last_without_its_timestamp() -> None:
    assert vm_restore.one_line(LIBVIRT_FAILURE) == (
        "operation failed: job 'restore' failed: load of migration failed ... "
        "qemu-system-x86_64: load of migration failed: Invalid argument")
    assert vm_restore.one_line("just this\n") == "just this"
    assert vm_restore.one_line("") == ""


@pytest.mark.parametrize(("devices", "changes", "refused"), [
    (False, {"network": "bridge"}, 'restore takes network = "none"'),
    (False, {"disk": True}, 'restore takes network = "none"'),
    (True, {"disk": True, "volume": Path("/srv")}, "restore takes no volume"),
])
def test_a_guest_the_backend_cannot_restore_is_not_staged(devices, changes, refused) -> None:
    image = Image("default", "0" * 64, Path("/nonexistent"))
    spec = InstanceSpec(name="cvbench-r-1", image=image, **changes)
    saves: list[str] = []
    snapshots = vm_restore.Snapshots(devices=devices)
    with pytest.raises(BackendError, match=f"cvbench-r-1: {refused}"):
        snapshots.stage(spec, "qemu", saves.append)
    assert saves == [] and snapshots.made == {}


def test_only_a_staged_instance_is_staged() -> None:
    assert not vm_restore.staged(Instance("cvbench-r-1", "qemu", handle=object()))
    with pytest.raises(BackendError, match="not staged for a restore"):
        vm_restore.qemu_restore(Instance("cvbench-r-1", "qemu", handle=None), "qemu")
