"""The one helper-process layer (hostkit.helper): serve's answers and errors, the client's
concurrency, a reaper's late answers, the record ``cvbench clean`` reads."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest

from hostkit import helper
from hostkit.procs import wait_exit

pytestmark = pytest.mark.timeout(30)


def _serving(handlers):
    """serve() in a thread on one end of a socketpair; the other end for the test."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    thread = threading.Thread(target=helper.serve, args=(theirs, handlers), daemon=True)
    thread.start()
    return ours, thread


def test_serve_says_ready_then_answers_each_request_by_id_and_closes_its_fds() -> None:
    seen: list[int] = []

    def hold(request: helper.Request) -> dict:
        seen.extend(request.fds)
        if request.message.get("fail"):
            raise LookupError("nothing here")
        return {"got": request.message["value"]}

    ours, thread = _serving({"hold": hold})
    assert json.loads(ours.recv(4096)) == {"id": helper.READY_ID, "pid": os.getpid()}
    read_fd, write_fd = os.pipe()
    socket.send_fds(ours, [json.dumps({"id": 7, "op": "hold", "value": 3}).encode()],
                    [write_fd])
    assert json.loads(ours.recv(4096)) == {"id": 7, "got": 3}
    ours.send(json.dumps({"id": 8, "op": "hold", "fail": True}).encode())
    assert json.loads(ours.recv(4096)) == {"id": 8, "error": "LookupError: nothing here"}
    ours.send(json.dumps({"id": 9, "op": "nope"}).encode())
    assert json.loads(ours.recv(4096)) == {"id": 9, "error": "ValueError: unknown op 'nope'"}
    with pytest.raises(OSError):
        os.fstat(seen[0])  # the helper's copy was closed once answered
    os.close(write_fd)
    assert os.read(read_fd, 1) == b""  # so no writer is left
    ours.close()
    thread.join(5)
    assert not thread.is_alive()  # the owner hung up: the helper is done
    os.close(read_fd)


def _client_without_process(sock: socket.socket) -> helper.Client:
    client = object.__new__(helper.Client)
    client.name = "test helper"
    client._ids = iter(range(1, 1000))
    client._lock, client._send_lock = threading.Lock(), threading.Lock()
    client._pending, client._dead, client._reading = {}, False, False
    client._sock = sock
    return client


def test_the_client_routes_answers_to_their_threads_in_any_order() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client = _client_without_process(ours)
    results: dict[int, dict] = {}
    threads = [threading.Thread(target=lambda n=n: results.update(
        {n: client.request({"op": "x", "n": n}, timeout=10)})) for n in range(5)]
    for thread in threads:
        thread.start()
    requests = [json.loads(theirs.recv(4096)) for _ in threads]
    for request in reversed(sorted(requests, key=lambda r: r["n"])):  # last asked first
        theirs.send(json.dumps({"id": request["id"], "n2": request["n"] * 2}).encode())
    for thread in threads:
        thread.join(10)
    assert {n: answer["n2"] for n, answer in results.items()} == {n: 2 * n for n in range(5)}
    assert not client._pending and not client._reading
    theirs.send(json.dumps({"id": 999, "late": True}).encode())  # given up on: dropped
    theirs.close()
    with pytest.raises(helper.HelperError, match="test helper: Broken pipe"):
        client.request({"op": "x"}, timeout=5)
    with pytest.raises(helper.HelperError, match="test helper is not running"):
        client.request({"op": "x"}, timeout=5)
    ours.close()


def test_a_refusal_and_a_silence_are_errors() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client = _client_without_process(ours)

    def refuse() -> None:
        request = json.loads(theirs.recv(4096))
        theirs.send(json.dumps({"id": request["id"], "error": "KeyError: 'x'"}).encode())

    threading.Thread(target=refuse).start()
    with pytest.raises(helper.Refused, match="KeyError: 'x'"):
        client.request({"op": "x"}, timeout=5)
    began = time.monotonic()
    with pytest.raises(helper.HelperError, match="no answer in time"):
        client.request({"op": "x"}, timeout=0.2)
    assert time.monotonic() - began < 2
    ours.close()
    theirs.close()


def test_a_reaper_answers_when_its_child_exits_and_is_recorded_until_gone(
        monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    client = helper.Client("tests.unit.helper_echo:main", args=(">",), tag="cvbench-echo",
                           label="unit", name="echo helper")
    try:
        (record,) = helper.records("cvbench-echo")
        assert record.pid == client.pid and record.running() and record.label == "unit"
        assert helper.records("cvbench-other") == []
        answers: dict[str, dict] = {}
        slow = threading.Thread(target=lambda: answers.update(slow=client.request(
            {"op": "sleep", "seconds": 0.5, "code": 3})))
        slow.start()
        time.sleep(0.1)
        began = time.monotonic()
        answer = client.request({"op": "echo", "text": "hi"}, [0])
        assert (answer["text"], answer["fds"]) == (">hi", 1)
        assert time.monotonic() - began < 0.3  # not behind the sleeping child
        slow.join(5)
        assert answers["slow"]["code"] == 3
    finally:
        client.close(kill_after=5)
    assert wait_exit(record.pid, 5) and not record.path.exists()
    assert not record.running()


def test_a_reaper_tells_an_orphans_exit_code_before_and_after_it_exited(
        monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    client = helper.Client("tests.unit.helper_echo:main", args=(">",), tag="cvbench-echo",
                           label="unit", name="echo helper")
    try:
        ask = {"op": helper.EXIT_STATUS}
        running = client.request({"op": "orphan", "seconds": 0.3, "code": 7})["pid"]
        began = time.monotonic()
        assert client.request({**ask, "pid": running})["code"] == 7  # answered at its exit
        assert time.monotonic() - began >= 0.2
        exited = client.request({"op": "orphan", "seconds": 0, "code": 5})["pid"]
        assert wait_exit(exited, 5)
        time.sleep(0.1)  # reaped by now, its status kept
        assert client.request({**ask, "pid": exited})["code"] == 5
        # told once: then its pid is no child of the reaper's, as any stranger's
        assert client.request({**ask, "pid": exited})["code"] is None
        assert client.request({**ask, "pid": os.getpid()})["code"] is None
        # the same through Client.exit_code: the code, None for a stranger or in no time
        again = client.request({"op": "orphan", "seconds": 0.2, "code": 9})["pid"]
        assert client.exit_code(again, timeout=0.05) is None  # still runs
        assert client.exit_code(again, timeout=5) == 9
        assert client.exit_code(os.getpid(), timeout=5) is None
    finally:
        client.close(kill_after=5)


def test_an_unreadable_record_is_listed_for_removal(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    helper.records_dir().mkdir(parents=True)
    (helper.records_dir() / "broken-1.json").write_text("{")
    (found,) = helper.records("cvbench-echo")
    assert found.pid == 0 and not found.running()
    found.remove()
    assert helper.records("cvbench-echo") == []


def test_close_reaps_a_helper_at_its_exit_or_kills_it_after_the_grace(monkeypatch,
                                                                       tmp_path) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))

    def echo_helper() -> helper.Client:
        return helper.Client("tests.unit.helper_echo:main", args=(">",), tag="cvbench-echo",
                             label="unit", name="echo helper")

    quick = echo_helper()
    quick.close(kill_after=5)
    assert quick.process.returncode == 0  # exited of itself once hung up, and reaped
    quick.close(kill_after=5)  # again: nothing to do
    assert helper.records("cvbench-echo") == []

    busy = echo_helper()  # a reaper waits for its child: it outlives the hang-up
    asked = threading.Thread(target=lambda: pytest.raises(
        helper.HelperError, busy.request, {"op": "sleep", "seconds": 1, "code": 0}))
    asked.start()
    time.sleep(0.2)
    busy.close(kill_after=0.2)
    asked.join(5)
    assert busy.process.returncode == -9  # killed once its grace ran out
