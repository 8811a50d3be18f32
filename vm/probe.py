"""Will libvirt re-probe QEMU at every domain start? (It then takes seconds per createXML.)

libvirt probes QEMU's capabilities as root, where ``/dev/kvm`` opens; at every domain start it
checks that KVM is still usable *by the QEMU user*. Where the device is not accessible to that
user (``root:root 0600`` on hosts without udev), the check fails, libvirt logs "KVM was
enabled when probing ..., but it is not available now" and probes QEMU again: seconds per
start, even for TCG guests. Debian's udev rule (``root:kvm 0660``, the QEMU user in group
``kvm``) avoids it.

:func:`kvm_device_problem` reads modes and groups (instant); :func:`timed_creates` creates two
paused domains and times ``createXML``, the direct symptom.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import time
from dataclasses import replace
from pathlib import Path

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
DEFAULT_QEMU_USER = "libvirt-qemu"  # Debian's build default
FIX = "chgrp kvm /dev/kvm && chmod 0660 /dev/kvm (Debian's udev rule), or run scripts/setup.sh"
SLOW_CREATE_S = 1.5  # with a valid capabilities cache a paused createXML takes a fraction of
# a second; a re-probe of QEMU takes seconds


def qemu_user(conf: Path = QEMU_CONF) -> str:
    """The user libvirt runs QEMU as (``user = "..."`` in qemu.conf, else Debian's default)."""
    try:
        text = conf.read_text()
    except OSError:
        return DEFAULT_QEMU_USER
    match = re.search(r'^\s*user\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else DEFAULT_QEMU_USER


def _can_read_write(info: os.stat_result, user: str) -> bool:
    try:
        entry = pwd.getpwnam(user.lstrip("+"))
    except KeyError:
        return False
    if entry.pw_uid == 0:
        return True
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == entry.pw_uid:
        return mode & 0o600 == 0o600
    if info.st_gid in os.getgrouplist(entry.pw_name, entry.pw_gid):
        return mode & 0o060 == 0o060
    return mode & 0o006 == 0o006


def kvm_device_problem(device: Path = Path("/dev/kvm"), conf: Path = QEMU_CONF) -> str | None:
    """Why libvirt will re-probe QEMU at every start, or None if it will not."""
    try:
        info = device.stat()
    except FileNotFoundError:
        return None  # no KVM device: libvirt probes without KVM, the cache stays valid
    user = qemu_user(conf)
    if _can_read_write(info, user):
        return None
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    owner = pwd.getpwuid(info.st_uid).pw_name if info.st_uid == 0 else str(info.st_uid)
    return (f"{device} is {owner}:{group} {stat.S_IMODE(info.st_mode):04o}: QEMU's user {user} "
            "cannot open it, so libvirt re-probes QEMU at every domain start")


def timed_creates(conn, kernel: Path, initrd: Path, count: int = 2) -> list[float]:
    """Seconds of ``createXML`` for ``count`` paused throw-away domains (destroyed at once)."""
    import libvirt

    from vm.domain import DomainSpec, Owner, render

    spec = DomainSpec(name="", kernel=kernel, initrd=initrd, memory_mib=64,
                      owner=Owner.current())
    times = []
    for index in range(count):
        xml = render(replace(spec, name=f"cvbench-probe-{os.getpid()}-{index}"))
        started = time.perf_counter()
        domain = conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED
                                | libvirt.VIR_DOMAIN_START_AUTODESTROY)
        times.append(time.perf_counter() - started)
        domain.destroy()
    return times
