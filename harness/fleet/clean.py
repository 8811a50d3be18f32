"""``cvbench fleet clean INVENTORY``: leave every host as ``cvbench clean`` would.

Ends the cvbench runs a fleet run started there (one whose controller was killed, say),
runs ``cvbench clean``, removes the runs' work directories; ``purge`` also removes the
cache directory (the copy of the repository and its virtualenv).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from harness.fleet import engine


def clean_fleet(inventory_path: Path, purge: bool = False, remote_dir: str | None = None,
                out: TextIO = sys.stdout) -> dict[str, str | None]:
    """Host → None when clean, else one line saying what went wrong."""
    inventory = engine.load_inventory(inventory_path)
    extravars: dict[str, Any] = {"cvbench_purge": purge}
    if remote_dir:
        extravars["cvbench_fleet_dir"] = remote_dir
    with tempfile.TemporaryDirectory(prefix="cvbench-fleet-clean-") as private:
        outcome = engine.run(Path(private), inventory, playbook="stop.yml",
                             extravars=extravars, forks=len(inventory.hosts))
    found: dict[str, str | None] = {}
    for host in inventory.hosts:
        found[host] = "no answer from Ansible"
        for event in outcome.events.get(host, []):
            data = event.get("event_data", {})
            result = data.get("res", {})
            if event.get("event") == "runner_on_ok":
                found[host] = None
                for line in str(result.get("stdout", "")).splitlines():
                    if line.strip():
                        print(f"{host}: {line.strip()}", file=out)
            elif event.get("event") == "runner_on_unreachable":
                found[host] = f"unreachable: {engine.one_line(result)}"
            elif event.get("event") == "runner_on_failed":
                found[host] = engine.one_line(result)
    return found
