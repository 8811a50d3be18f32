"""Container networking through pyroute2.

- ``none``: an empty netns with loopback up (done by the child itself, see runtime.child).
- ``bridge``: a veth pair; the host end ``cvbench-xxxxxxx`` joins the ``cvbench0`` bridge
  (``10.213.0.1/16``), the peer becomes ``eth0`` inside the container's netns with an address
  from ``10.213.0.0/16`` and a default route via the bridge. Nothing is routed off the host.
- ``host``: no netns at all.

VMs join the same bridge through a tap (:func:`open_tap`, or libvirt's own tap after
:func:`bridge_up`) and lease their guest's address here too.

Addresses are leased with one ``O_EXCL`` file per address under ``/run/cvbench-net`` (shared
by every state directory, since the bridge is), so allocation is O(1) on average.
pyroute2 is imported lazily: launching ``none`` containers never loads it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyroute2 import IPRoute

BRIDGE = "cvbench0"
SUBNET = ipaddress.ip_network("10.213.0.0/16")
GATEWAY = "10.213.0.1"
VETH_PREFIX = "cvbench-"
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000


class NetworkError(Exception):
    """A network could not be set up or torn down."""


def leases_dir() -> Path:
    return Path(os.environ.get("CVBENCH_NET_LEASES", "/run/cvbench-net"))


@dataclass(frozen=True)
class Attachment:
    """What one bridged container holds: its host-side veth and its address."""

    veth: str
    address: str


def veth_name(key: str) -> str:
    """A 15-byte interface name with the cvbench- prefix, stable for ``key``."""
    return VETH_PREFIX + hashlib.sha1(key.encode()).hexdigest()[:7]


def allocate_address(owner: str) -> str:
    """Lease a free host address of SUBNET for ``owner`` (a container directory path)."""
    directory = leases_dir()
    directory.mkdir(parents=True, exist_ok=True)
    hosts = SUBNET.num_addresses - 2
    start = int(hashlib.sha1(owner.encode()).hexdigest(), 16) % hosts
    base = int(SUBNET.network_address)
    for step in range(hosts):
        address = str(ipaddress.ip_address(base + 1 + (start + step) % hosts))
        if address == GATEWAY:
            continue
        try:
            fd = os.open(directory / address, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(owner + "\n")
        return address
    raise NetworkError(f"no free address left in {SUBNET}")


def release_address(address: str) -> None:
    (leases_dir() / address).unlink(missing_ok=True)


def stale_leases() -> list[str]:
    """Leases whose owner directory is gone (left by a crash)."""
    directory = leases_dir()
    if not directory.is_dir():
        return []
    stale = []
    for entry in os.scandir(directory):
        try:
            owner = Path(entry.path).read_text().strip()
        except OSError:
            continue
        if owner and not Path(owner).exists():
            stale.append(entry.name)
    return stale


def _ipr(**options: object) -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute(**options)


def _netlink_errno(error: Exception) -> int | None:
    """The errno of a pyroute2 NetlinkError (None for any other exception)."""
    from pyroute2 import NetlinkError

    return error.code if isinstance(error, NetlinkError) else None


def ensure_bridge(ipr: IPRoute, name: str = BRIDGE, address: str = GATEWAY,
                  prefixlen: int = SUBNET.prefixlen) -> int:
    """Index of bridge ``name`` (default ``cvbench0``), created if missing, with the host's
    ``address``/``prefixlen`` on it, and up."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        try:
            ipr.link("add", ifname=name, kind="bridge")
        except Exception as error:  # another process may have made it meanwhile
            if _netlink_errno(error) != errno.EEXIST:
                raise NetworkError(f"cannot create bridge {name}: {error}") from None
        found = ipr.link_lookup(ifname=name)
    index: int = found[0]
    addresses = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)]
    if address not in addresses:
        try:
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        except Exception as error:
            if _netlink_errno(error) != errno.EEXIST:
                raise NetworkError(f"cannot address bridge {name}: {error}") from None
    ipr.link("set", index=index, state="up")
    return index


def bridge_up() -> None:
    """Make sure ``cvbench0`` exists, is addressed and up (before libvirt puts a tap on it,
    or something listens on the gateway address)."""
    try:
        with _ipr() as ipr:
            ensure_bridge(ipr)
    except NetworkError:
        raise
    except Exception as error:
        raise NetworkError(f"cannot set up bridge {BRIDGE}: {error}") from None


def open_tap(name: str) -> int:
    """A tap ``name`` on ``cvbench0``, up; return its descriptor (close-on-exec).

    The tap is not persistent: it lives while this descriptor, or the copy handed to QEMU,
    is open, so it vanishes with QEMU and a crash leaves none behind. Opened with a virtio-net
    header, as libvirt opens the taps of virtio NICs.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(),
                                               IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        with _ipr() as ipr:
            bridge = ensure_bridge(ipr)
            index = ipr.link_lookup(ifname=name)[0]
            ipr.link("set", index=index, master=bridge, state="up")
    except Exception as error:
        os.close(fd)
        raise NetworkError(f"cannot make tap {name} on {BRIDGE}: {error}") from None
    return fd


def attach(pid: int, owner: str) -> Attachment:
    """Wire the netns of ``pid`` to the bridge; return what must be released later.

    ``owner`` (the container's directory) names the veth and owns the address lease.
    """
    veth = veth_name(owner)
    address = allocate_address(owner)
    try:
        with _ipr() as ipr:
            bridge = ensure_bridge(ipr)
            ipr.link(
                "add",
                ifname=veth,
                kind="veth",
                peer={"ifname": "eth0", "net_ns_pid": pid},
            )
            index = ipr.link_lookup(ifname=veth)[0]
            ipr.link("set", index=index, master=bridge, state="up")
        with _ipr(netns=f"/proc/{pid}/ns/net", flags=0) as inside:
            eth0 = inside.link_lookup(ifname="eth0")[0]
            inside.addr("add", index=eth0, address=address, prefixlen=SUBNET.prefixlen)
            inside.link("set", index=eth0, state="up")
            inside.route("add", dst="0.0.0.0/0", gateway=GATEWAY)
    except Exception as error:  # undo, then report in one line
        detach(Attachment(veth, address))
        raise NetworkError(f"cannot wire bridge network for pid {pid}: {error}") from None
    return Attachment(veth, address)


def delete_link(name: str) -> bool:
    """Delete interface ``name`` if it exists; True if it did."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except Exception as error:
            if _netlink_errno(error) == errno.ENODEV:  # gone meanwhile (its netns died)
                return False
            raise
        return True


def detach(attachment: Attachment) -> None:
    """Remove the host end (the peer goes with it) and free the address."""
    try:
        delete_link(attachment.veth)
    finally:
        release_address(attachment.address)


def remove_bridge_if_unused() -> bool:
    """Delete ``cvbench0`` when no interface is enslaved to it; True if deleted."""
    with _ipr() as ipr:
        found = ipr.link_lookup(ifname=BRIDGE)
        if not found:
            return False
        if any(link.get_attr("IFLA_MASTER") == found[0] for link in ipr.get_links()):
            return False
        ipr.link("del", index=found[0])
        return True
