"""Device-cgroup rules: which device nodes a container may create and open.

A container gets its spec's ``linux.resources.devices`` (cvbench's spec: deny everything,
``{"allow": false, "access": "rwm"}``) followed by the runtime's default allow list, as crun
and runc do. Read from ``devices.list`` of running containers on a cgroup v1 host, given
only the deny-all rule: crun 1.8 allows mknod of any character or block device (still refused
without CAP_MKNOD), then null, random, full, tty, zero, urandom, console (``c 5:1``), the
pseudo-terminals and ptmx; runc 1.1 the same but ``/dev/net/tun`` (``c 10:200``) instead of
the console. :data:`DEFAULT_ALLOW` is the union of the two lists, and the OCI backends write
exactly ``ours``' rules (:func:`container_rules` of the spec) into every ``config.json``
(``harness.backends.oci.bundle.device_rules``); each runtime appends its own list, a subset,
so crun, runc and ``ours`` containers get the very same ``devices.list``.

On cgroup v1 the rules are lines written to ``devices.deny``/``devices.allow`` of the
container's ``devices`` cgroup (:meth:`DeviceRule.v1_line`). On cgroup v2 there is no such
file: crun and runc attach an eBPF program (``BPF_CGROUP_DEVICE``) made from the same rules,
and so does ``ours`` (:mod:`runtime.device_filter`, the program crun generates), so every
runtime filters devices on every kind of host and CAP_MKNOD stays in the default set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DeviceRule:
    """One OCI ``linux.resources.devices`` entry: ``type`` a (all), c or b; None = any number."""

    allow: bool
    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    def v1_line(self) -> str:
        """The rule as a v1 ``devices.allow``/``devices.deny`` line, e.g. ``c 1:3 rwm``."""
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"

    def v1_file(self) -> str:
        return "devices.allow" if self.allow else "devices.deny"

    def describe(self) -> str:
        return f"{'allow' if self.allow else 'deny'} {self.v1_line()}"

    def to_oci(self) -> dict[str, Any]:
        data: dict[str, Any] = {"allow": self.allow}
        if self.type != "a":
            data["type"] = self.type
        if self.major is not None:
            data["major"] = self.major
        if self.minor is not None:
            data["minor"] = self.minor
        data["access"] = self.access
        return data

    @classmethod
    def from_oci(cls, data: dict[str, Any]) -> DeviceRule:
        kind = data.get("type") or "a"
        if kind not in ("a", "c", "b"):
            raise ValueError(f"device type {kind!r} is not one of a, c, b")
        access = data.get("access") or "rwm"
        if not access or set(access) - set("rwm"):
            raise ValueError(f"device access {access!r} is not made of r, w, m")
        return cls(bool(data["allow"]), kind, data.get("major"), data.get("minor"), access)


DENY_ALL = DeviceRule(allow=False)


def _char(major: int, minor: int | None) -> DeviceRule:
    return DeviceRule(True, "c", major, minor, "rwm")


DEFAULT_ALLOW: tuple[DeviceRule, ...] = (
    DeviceRule(True, "c", None, None, "m"),
    DeviceRule(True, "b", None, None, "m"),
    _char(1, 3),  # /dev/null
    _char(1, 8),  # /dev/random
    _char(1, 7),  # /dev/full
    _char(5, 0),  # /dev/tty
    _char(1, 5),  # /dev/zero
    _char(1, 9),  # /dev/urandom
    _char(5, 1),  # /dev/console (crun's default)
    _char(136, None),  # /dev/pts/*
    _char(5, 2),  # /dev/ptmx
    _char(10, 200),  # /dev/net/tun (runc's default)
)


def container_rules(spec_rules: Sequence[DeviceRule]) -> tuple[DeviceRule, ...]:
    """What a container's device cgroup gets: the spec's rules, then the default allow list."""
    return (*spec_rules, *DEFAULT_ALLOW)


def v1_list(rules: Sequence[DeviceRule]) -> list[str] | None:
    """The sorted ``devices.list`` lines a v1 devices cgroup shows after ``rules`` (which must
    start with a deny-all rule; None otherwise: then it depends on the parent's list)."""
    if not rules or rules[0] != DENY_ALL:
        return None
    allowed: list[str] = []
    for rule in rules[1:]:
        line = rule.v1_line()
        if rule.allow and line not in allowed:
            allowed.append(line)
        elif not rule.allow and line in allowed:
            allowed.remove(line)
    return sorted(allowed)
