"""Bridge networking for the OCI backends (``network = "bridge"``), wired as ``ours`` wires its
containers: a veth pair whose host end joins ``cvbench0`` and whose peer is ``eth0`` in the
container's network namespace, with an address of the private subnet (leased in
:mod:`runtime.network`), loopback up and a default route via the bridge.

cvbench makes the namespace before the runtime runs and the container joins it through
``linux.namespaces[].path``. The namespace is held by a descriptor of this process, not a bind
mount: the path handed to the runtime is ``/proc/<pid>/fd/<n>``, which resolves in the OCI
launcher's private mount namespace too. Once the container runs it holds the namespace itself
and the descriptor is closed, so nothing is left to unmount after a crash: the namespace, and
the veth pair with it, go when the container's last process exits. The address lease is owned
by the bundle directory, so ``cvbench clean`` frees it if a crash leaves it behind.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from hostkit import syscalls
from runtime import network


@dataclass
class Netns:
    """A network namespace wired to the bridge, until :meth:`release`."""

    fd: int | None
    attachment: network.Attachment

    @property
    def path(self) -> str:
        """The path a runtime opens to join the namespace (valid while ``fd`` is open)."""
        if self.fd is None:
            raise ValueError("the namespace descriptor is closed")
        return f"/proc/{os.getpid()}/fd/{self.fd}"

    @property
    def address(self) -> str:
        return self.attachment.address

    def close(self) -> None:
        """Drop this process's hold on the namespace (the container holds it now)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def release(self) -> None:
        """Close, remove the host end of the veth if it is still there, free the address."""
        self.close()
        network.detach(self.attachment)


def _new_namespace() -> int:
    """A descriptor of a new, empty network namespace (made by a short-lived thread, so this
    process's own namespace never changes)."""
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            syscalls.unshare(syscalls.CLONE_NEWNET)
            outcome["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            outcome["error"] = error

    thread = threading.Thread(target=body, name="cvbench-netns")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise network.NetworkError(f"cannot make a network namespace: {outcome['error']}")
    fd = outcome["fd"]
    assert isinstance(fd, int)
    return fd


def remove_bridge_if_unused() -> None:
    """At a backend's clean-up: ``cvbench0`` goes once nothing is attached to it (another
    backend's containers or guests keep it), as ours' and the VMs' clean-ups leave it."""
    try:
        network.remove_bridge_if_unused()
    except Exception as error:  # a clean-up goes on: cvbench clean removes it then
        logging.getLogger(__name__).warning("cannot remove %s: %s", network.BRIDGE, error)


def create(owner: str) -> Netns:
    """A network namespace wired to ``cvbench0``; ``owner`` (the bundle directory) names the
    veth and owns the address lease. NetworkError in one line if anything fails."""
    from pyroute2 import IPRoute

    fd = _new_namespace()
    veth = network.veth_name(owner)
    try:
        address = network.allocate_address(owner)
    except network.NetworkError:
        os.close(fd)
        raise
    netns = Netns(fd, network.Attachment(veth, address))
    try:
        with IPRoute() as ipr:
            bridge = network.ensure_bridge(ipr)
            ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
            index = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=index, master=bridge, state="up")
        with IPRoute(netns=netns.path, flags=0) as inside:
            inside.link("set", index=inside.link_lookup(ifname="lo")[0], state="up")
            eth0 = inside.link_lookup(ifname="eth0")[0]
            inside.addr("add", index=eth0, address=address, prefixlen=network.SUBNET.prefixlen)
            inside.link("set", index=eth0, state="up")
            inside.route("add", dst="0.0.0.0/0", gateway=network.GATEWAY)
    except Exception as error:
        netns.release()
        raise network.NetworkError(f"cannot wire bridge network: {error}") from None
    return netns
