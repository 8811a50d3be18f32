"""The containers under ``--root``: making, committing, loading and removing a state
directory, the status read from the host, and the state JSON of the OCI runtime spec."""

from __future__ import annotations

import os
import subprocess

import pytest

from hostkit.procs import proc_start_time
from runtime.oci.state import Record, StateError, Store, check_id


def record(container_id: str, pid: int, start: int | None) -> Record:
    return Record(id=container_id, bundle="/b", pid=pid, pid_start=start or 0,
                  cgroup=f"cvbench-runtime/{container_id}", created="2026-12-06T21:00:00Z",
                  oci_version="1.0.2", annotations={"a": "b"})


def test_make_commit_load_ids_remove(tmp_path):
    store = Store(tmp_path / "root")
    temporary = store.make("c1")
    assert sorted(p.name for p in temporary.iterdir()) == ["exec.fifo", "rootfs"]
    assert store.ids() == []  # not there until committed
    made = record("c1", os.getpid(), proc_start_time(os.getpid()))
    store.commit(temporary, made)
    assert store.ids() == ["c1"] and store.load("c1") == made
    with pytest.raises(StateError, match="container c1 already exists"):
        store.make("c1")
    store.remove("c1")
    assert not (tmp_path / "root" / "c1").exists() and store.ids() == []
    with pytest.raises(StateError, match="^container c1 does not exist$"):
        store.load("c1")


def test_status_and_state_json(tmp_path):
    store = Store(tmp_path)
    store.commit(store.make("live"), record("live", os.getpid(), proc_start_time(os.getpid())))
    created = store.state(store.load("live"))
    assert created == {"ociVersion": "1.0.2", "id": "live", "status": "created",
                       "pid": os.getpid(), "bundle": "/b", "annotations": {"a": "b"},
                       "created": "2026-12-06T21:00:00Z"}
    os.unlink(store.fifo("live"))  # what start does
    assert store.state(store.load("live"))["status"] == "running"
    gone = subprocess.Popen(["true"])
    start = proc_start_time(gone.pid)
    gone.wait()
    store.commit(store.make("gone"), record("gone", gone.pid, start))
    stopped = store.state(store.load("gone"))
    assert stopped["status"] == "stopped" and "pid" not in stopped


def test_a_reused_pid_is_not_the_container(tmp_path):
    store = Store(tmp_path)
    start = proc_start_time(os.getpid())
    assert start is not None
    store.commit(store.make("other"), record("other", os.getpid(), start + 1))
    assert store.status(store.load("other")) == "stopped"


@pytest.mark.parametrize("bad", ["", ".hidden", "a/b", "..", "x" * 129, "a b"])
def test_ids_that_cannot_name_a_container(bad):
    with pytest.raises(StateError, match="invalid container id"):
        check_id(bad)
    assert check_id("f" * 64) == "f" * 64  # Docker's and Podman's ids
