"""Can a host take a cvbench run? Judged from its Ansible facts before anything is copied."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DISTRIBUTION = "Debian"
MAJOR_VERSION = "12"


def problem(facts: Mapping[str, Any] | str) -> str | None:
    """One line saying why the host cannot take a run, or None when it can.

    ``facts`` is what :func:`harness.fleet.engine.gather_facts` found for the host: a dict of
    facts, or a line saying why there are none (unreachable, no Python, ...).
    """
    if isinstance(facts, str):
        return facts
    distribution = str(facts.get("distribution", "unknown"))
    major = str(facts.get("distribution_major_version", ""))
    if distribution != DISTRIBUTION or major != MAJOR_VERSION:
        version = facts.get("distribution_version") or major or "?"
        return (f"not {DISTRIBUTION} {MAJOR_VERSION} but {distribution} {version}: cvbench's "
                "set-up is made for Debian 12")
    if str(facts.get("user_uid", "")) != "0":
        return (f"not root (logged in as {facts.get('user_id', '?')}): cvbench needs root; "
                "set ansible_user=root or ansible_become=true in the inventory")
    return None
