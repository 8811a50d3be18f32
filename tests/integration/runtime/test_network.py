"""Networking: ``none`` (loopback only, up) and ``bridge`` (veth into cvbench0, reachable
from the host); real pings and TCP connects, all within this machine."""

from __future__ import annotations

import socket

import pytest
from containers import container_name, run_script

from runtime import network
from runtime.spec import default_spec

pytestmark = [pytest.mark.root, pytest.mark.timeout(90)]


def test_none_has_loopback_up_and_working(runtime, built_image):
    script = (
        "ping -c 1 -W 2 127.0.0.1 >/dev/null && echo PING-OK; "
        "(echo hello | nc -l -p 7000 &) ; sleep 0.2; nc 127.0.0.1 7000 </dev/null; "
        "ip -o link | grep -c link/"
    )
    out, _ = run_script(runtime, built_image, script)
    lines = out.split()
    assert "PING-OK" in lines and "hello" in lines
    assert lines[-1] == "1"  # lo only


def test_bridge_reachable_from_host_and_host_from_container(runtime, built_image):
    script = (
        "echo hello-from-container > /tmp/index.html; httpd -p 8080 -h /tmp; "
        f"ping -c 1 -W 2 {network.GATEWAY} >/dev/null && echo PING-OK; echo READY; "
        "exec sleep 1000"
    )
    spec = default_spec(built_image, "b", network="bridge", args=["/bin/sh", "-c", script])
    container = runtime.create(spec, container_name("net"))
    runtime.start(container)
    fd = container.ready_fd
    runtime.wait_ready(container, 20)
    del fd
    attachment = container.net
    assert attachment is not None and attachment.veth.startswith("cvbench-")
    with socket.create_connection((attachment.address, 8080), timeout=5) as conn:
        conn.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
    assert b"hello-from-container" in reply
    runtime.destroy(container)
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=attachment.veth)
    assert not (network.leases_dir() / attachment.address).exists()


def test_bridge_container_ping_gateway(runtime, built_image):
    out, _ = run_script(
        runtime,
        built_image,
        f"ping -c 1 -W 2 {network.GATEWAY} >/dev/null && echo PING-OK; ip -o -4 addr show eth0",
        network="bridge",
    )
    assert "PING-OK" in out and "10.213." in out
