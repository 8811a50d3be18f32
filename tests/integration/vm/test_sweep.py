"""`sweep` after the harness was SIGKILLed mid-run: no cvbench- domain or file survives."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

from imagestore import image as images
from vm import hypervisor
from vm import sweep as vm_sweep

pytestmark = [pytest.mark.root, pytest.mark.vm,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root and libvirtd")]

# The doomed harness: one VM that outlives its connection (autodestroy off, with an overlay
# disk) and one that libvirtd destroys when the connection drops; then it waits to be killed.
HARNESS = """
import sys, time
from imagestore import image
from harness.backends.base import InstanceSpec
from harness.backends.libvirt import LibvirtBackend
img = image.resolve()
kept = LibvirtBackend(autodestroy=False).start(
    InstanceSpec(name=sys.argv[1] + "kept", image=img, disk=True))
auto = LibvirtBackend().start(InstanceSpec(name=sys.argv[1] + "auto", image=img))
print(kept.pids[0], auto.pids[0], flush=True)
time.sleep(600)
"""


@pytest.mark.timeout(120)
def test_sweep_after_sigkill(monkeypatch) -> None:
    state = Path(tempfile.mkdtemp(prefix="cvbench-vt"))
    state.chmod(0o755)
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(state))
    prefix = f"cvbench-test-vm-{uuid.uuid4().hex[:6]}-"
    images.build()
    root = Path(__file__).resolve().parents[3]
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, prefix], cwd=root,
                               stdout=subprocess.PIPE, text=True)
    conn = hypervisor.connect()
    try:
        line = harness.stdout.readline()
        assert line, "the harness died before starting its VMs"
        pids = [int(pid) for pid in line.split()]
        os.kill(harness.pid, signal.SIGKILL)
        harness.wait()

        kept = conn.lookupByName(prefix + "kept")
        assert kept.isActive()
        kept_dir = hypervisor.vms_dir() / (prefix + "kept")
        assert (kept_dir / "disk.qcow2").exists() and (kept_dir / "console.sock").exists()
        assert (hypervisor.vms_dir() / (prefix + "auto")).exists()  # nobody removed it

        done = vm_sweep.sweep(prefix=prefix)
        assert f"destroyed domain {prefix}kept" in done
        assert f"removed {kept_dir}" in done
        assert not any(d.name().startswith(prefix) for d in conn.listAllDomains())
        assert not any(p.name.startswith(prefix) for p in hypervisor.vms_dir().iterdir())
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                       for pid in pids)
        assert vm_sweep.sweep(prefix=prefix) == []
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        vm_sweep.sweep(prefix=prefix)
        conn.close()
        shutil.rmtree(state, ignore_errors=True)
