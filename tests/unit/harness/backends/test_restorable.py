"""Who may restore, and the one line refusing a restore that cannot be made."""

from __future__ import annotations

import pytest
from fakes import FakeBackend

from harness import scenario
from harness.backends import restorable

# `criu check` on Debian's criu 3.17.1 under kernel 6.18 (docs/findings/restore.md)
CRIU_OUTPUT = """\
Warn  (criu/kerndat.c:1250): Can't keep kdat cache
Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds
Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable
Error (criu/crtools.c:260): Could not initialize kernel features detection.
"""


def test_first_error_is_the_first_line_that_says_error() -> None:
    assert restorable.first_error(CRIU_OUTPUT) == \
        "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"
    assert restorable.first_error("\n  only this\nand this\n") == "only this"
    assert restorable.first_error("") == "no output"


@pytest.mark.parametrize(("network", "disk", "devices", "volume", "refused"), [
    ("none", False, False, False, None),
    ("bridge", False, False, False, 'restore takes network = "none" and disk = false here'),
    ("none", True, False, False, 'restore takes network = "none" and disk = false here'),
    ("bridge", True, True, False, None),  # bare QEMU: each restore its own tap and disk copy
    ("bridge", True, True, True, "restore takes no volume"),
])
def test_guest_refusal(network, disk, devices, volume, refused) -> None:
    line = restorable.guest_refusal(network, disk, devices=devices, volume=volume)
    assert (line is None) == (refused is None)
    if refused:
        assert line.startswith(refused)


def test_criu_reason_names_the_hosts_criu(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert restorable.criu_reason() == "criu is not installed"
    criu = tmp_path / "criu"
    criu.write_text(f"#!/bin/sh\n/bin/cat >&2 <<'END'\n{CRIU_OUTPUT}END\nexit 1\n")
    criu.chmod(0o755)
    assert restorable.criu_reason() == ("criu check fails on this host: Error "
                                        "(criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds")
    criu.write_text("#!/bin/sh\necho Looks good.\n")
    restorable._criu_check.cache_clear()  # once per binary and process
    assert restorable.criu_problem(str(criu)) is None
    assert restorable.criu_reason(str(criu)) == ("criu check passes, but cvbench restores "
                                                 "runc's containers only "
                                                 "(docs/findings/restore.md)")
    ours = restorable.criu_reason(str(criu), backend="ours")
    assert ours.startswith("a CRIU restore would run ours with less isolation")
    assert "no_new_privs" in ours and "session keyring" in ours
    assert restorable.criu_reason(str(criu), backend="crun").startswith("criu check passes")
    criu.unlink()  # the host's problem comes first, for ours too
    restorable._criu_check.cache_clear()
    assert restorable.criu_reason(backend="ours") == "criu is not installed"


def test_refusal_only_where_a_restore_is_asked_for(fake_backends, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    cold = scenario.make("startup", variants=("cold", "warm"))
    restore = scenario.make("startup", name="r", variants=("cold", "restore"))
    vm = FakeBackend(name="fakevm", restore=True)
    assert restorable.refusal("fake", FakeBackend(name="fake"), cold) is None
    assert restorable.refusal("fakevm", vm, restore) is None
    assert restorable.refusal("fake", FakeBackend(name="fake"), restore) == \
        "scenario 'r': backend 'fake' cannot restore: criu is not installed"
    assert restorable.refusal("fakevm", FakeBackend(name="fakevm"), restore) == \
        "scenario 'r': backend 'fakevm' cannot restore: it has no restore start"
    bridged = scenario.make("startup", name="b", variants=("restore",), disk=True)
    assert "restore takes network" in restorable.refusal("fakevm", vm, bridged)
    vm.restores_devices = True  # as bare QEMU's
    assert restorable.refusal("fakevm", vm, bridged) is None
    memory = scenario.make("memory")  # a kind without start variants
    assert restorable.refusal("fake", FakeBackend(name="fake"), memory) is None


def test_a_container_restore_takes_no_network_and_no_volume(fake_backends) -> None:
    assert restorable.container_refusal("none", False) is None
    assert restorable.container_refusal("host", False).startswith(
        'restore takes network = "none", not \'host\'')
    assert restorable.container_refusal("none", True).startswith("restore takes no volume")
    container = FakeBackend(name="fake", restore=True)
    bridged = scenario.make("startup", name="b", variants=("restore",), network="bridge")
    assert restorable.refusal("fake", container, bridged) == (
        "scenario 'b': backend 'fake' cannot restore: restore takes network = \"none\", not "
        "'bridge': a restored container would need the checkpointed one's network namespace")


def test_a_restore_takes_the_default_readiness_rule_only(fake_backends) -> None:
    vm = FakeBackend(name="fakevm", restore=True)
    line = scenario.make("startup", name="r", variants=("restore",), ready="line:go")
    assert restorable.refusal("fakevm", vm, line) == (
        "scenario 'r': backend 'fakevm' cannot restore: ready = 'line:go': a restored guest "
        "answers a ping with READY, so a restore takes the default rule (line:READY) only")
    cold = scenario.make("startup", name="c", variants=("cold",), ready="line:go")
    assert restorable.refusal("fakevm", vm, cold) is None


def test_an_imported_image_is_never_restored(fake_backends) -> None:
    vm = FakeBackend(name="fakevm", restore=True)
    restore = scenario.make("startup", name="r", variants=("cold", "restore"))
    assert restorable.refusal("fakevm", vm, restore, imported=False) is None
    assert restorable.refusal("fakevm", vm, restore, imported=True) == (
        "scenario 'r': backend 'fakevm' cannot restore: an imported image (its guest execs "
        "the image's process, not cvbench's /init with the restore's console responder)")
    cold = scenario.make("startup", name="c", variants=("cold", "warm"))
    assert restorable.refusal("fakevm", vm, cold, imported=True) is None
