"""start, kill and delete refuse what is not there or not in the right state; signals by
number, name or full name."""

from __future__ import annotations

import os
import signal

import pytest

from hostkit.procs import proc_start_time
from runtime.oci import lifecycle
from runtime.oci.state import Record, StateError, Store


@pytest.mark.parametrize(("text", "number"), [("9", 9), ("KILL", 9), ("SIGTERM", 15),
                                              ("term", 15), ("SIGRTMIN", signal.SIGRTMIN)])
def test_parse_signal(text, number):
    assert lifecycle.parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "65", "SIGNOPE", "-1"])
def test_bad_signals(text):
    with pytest.raises(ValueError):
        lifecycle.parse_signal(text)


def test_operations_on_a_missing_container(tmp_path):
    store = Store(tmp_path)
    for operation in (lambda: lifecycle.start(store, "nope"),
                      lambda: lifecycle.kill(store, "nope", 15),
                      lambda: lifecycle.delete(store, "nope")):
        with pytest.raises(StateError, match="^container nope does not exist$"):
            operation()


def test_start_refuses_a_running_one_and_delete_a_running_one_without_force(tmp_path):
    store = Store(tmp_path)
    record = Record(id="me", bundle="/b", pid=os.getpid(),
                    pid_start=proc_start_time(os.getpid()) or 0, cgroup="cvbench-runtime/me",
                    created="now", oci_version="1.0.2")
    store.commit(store.make("me"), record)
    os.unlink(store.fifo("me"))  # started: this process plays its init
    with pytest.raises(StateError, match="^container me is running, not created$"):
        lifecycle.start(store, "me")
    with pytest.raises(StateError, match="is running: kill it first, or --force"):
        lifecycle.delete(store, "me")
