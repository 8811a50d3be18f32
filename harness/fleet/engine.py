"""Ansible, driven through ansible-runner's Python API: inventories, facts, playbooks.

Everything that touches Ansible is here, so the rest of :mod:`harness.fleet` deals in plain
dictionaries. ``ansible-playbook`` and ``ansible-inventory`` come from the same virtualenv as
cvbench (``pip install -e .[fleet]``; ``.[dev]`` includes it), which is put first on ``PATH``
for them whether or not the virtualenv is activated.

Settings cvbench imposes on every Ansible run (:func:`envvars`): pipelining (one SSH round
trip per task), no SSH connection sharing (``ControlMaster=no``: no master process outlives
a run on this machine), keep-alives (a host that vanishes mid-run fails within a minute),
no retry files, and silent interpreter discovery. Host keys are checked against the user's
``known_hosts`` (ansible-runner would turn that off; ``ANSIBLE_HOST_KEY_CHECKING=False`` in
the environment still does); the test passes a ``known_hosts`` of its own.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
# Facts kept per host in the fleet's metadata (of Ansible's ``min`` and ``hardware`` subsets).
FACTS = ("hostname", "fqdn", "nodename", "distribution", "distribution_version",
         "distribution_major_version", "distribution_release", "kernel", "kernel_version",
         "architecture", "processor", "processor_count", "processor_cores",
         "processor_threads_per_core", "processor_vcpus", "memtotal_mb", "swaptotal_mb",
         "virtualization_type", "virtualization_role", "user_id", "user_uid", "python_version",
         "service_mgr", "pkg_mgr")
SSH_ARGS = "-o ControlMaster=no -o ServerAliveInterval=15 -o ServerAliveCountMax=4"

Event = dict[str, Any]


class EngineError(Exception):
    """Ansible is missing, or an inventory cannot be read: one line, nothing started."""


def _runner() -> Any:
    try:
        import ansible_runner
    except ImportError:
        raise EngineError("cvbench fleet needs ansible-runner and ansible-core in cvbench's "
                          "virtualenv: pip install -e '.[fleet]' (or run scripts/setup.sh)"
                          ) from None
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join(filter(None, (bin_dir, path)))
    return ansible_runner


def versions() -> dict[str, str]:
    """The engine's versions, for the fleet's metadata."""
    import importlib.metadata

    found = {}
    for name in ("ansible-core", "ansible-runner"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def envvars(forks: int = 5) -> dict[str, str]:
    """The Ansible settings of every run (see the module's docstring)."""
    return {
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": SSH_ARGS,
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_SYSTEM_WARNINGS": "False",
        "ANSIBLE_FORKS": str(max(1, forks)),
        "ANSIBLE_TIMEOUT": "10",
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
        # ansible-runner turns host-key checking off unless told otherwise: keep it on
        "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True"),
    }


@dataclass(frozen=True)
class Inventory:
    """An inventory file as Ansible reads it: its hosts (in order) and their variables."""

    path: Path
    hosts: tuple[str, ...]
    hostvars: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def address(self, host: str) -> str:
        """Where Ansible connects for ``host`` (``ansible_host``, else the name itself)."""
        variables = self.hostvars.get(host, {})
        port = variables.get("ansible_port")
        address = str(variables.get("ansible_host", host))
        return f"{address}:{port}" if port else address


def load_inventory(path: Path | str) -> Inventory:
    """Parse an inventory file with Ansible itself; EngineError (one line) when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{path}: no such inventory file")
    runner = _runner()
    with tempfile.TemporaryDirectory(prefix="cvbench-fleet-inventory-") as private:
        out, err = runner.get_inventory(action="list", inventories=[str(path.resolve())],
                                        response_format="json", private_data_dir=private,
                                        quiet=True, envvars=envvars())
    if not isinstance(out, dict):
        raise EngineError(f"{path}: not an Ansible inventory: {_inventory_error(str(err))}")
    hosts = _hosts(out)
    if not hosts:
        raise EngineError(f"{path}: the inventory names no host")
    hostvars = out.get("_meta", {}).get("hostvars", {})
    log.info("%s: %d host(s): %s", path, len(hosts), ", ".join(hosts))
    return Inventory(path=path, hosts=tuple(hosts), hostvars=hostvars)


def _hosts(listing: dict[str, Any]) -> list[str]:
    """Every host of an ``ansible-inventory --list`` answer, in the order groups list them."""
    found: list[str] = []
    seen_groups: set[str] = set()

    def walk(group: str) -> None:
        if group in seen_groups:
            return
        seen_groups.add(group)
        entry = listing.get(group, {})
        for host in entry.get("hosts", []):
            if host not in found:
                found.append(host)
        for child in entry.get("children", []):
            walk(child)

    walk("all")
    return found


def _inventory_error(stderr: str) -> str:
    """The most telling line of ansible-inventory's complaint."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in ("Failed to parse inventory:", "[ERROR]:", "ERROR!"):
        for line in lines:
            if marker in line:
                return line.split(marker, 1)[1].strip() or line
    return lines[-1] if lines else "ansible-inventory gave no answer"


@dataclass
class Outcome:
    """The end of one Ansible run: its status and every event, per host."""

    status: str  # ansible-runner's: successful, failed, canceled, timeout
    rc: int
    events: dict[str, list[Event]] = field(default_factory=dict)


def run(private_dir: Path, inventory: Inventory, *, playbook: str | None = None,
        module: str | None = None, module_args: str = "", limit: list[str] | None = None,
        extravars: dict[str, Any] | None = None, forks: int = 5,
        on_event: Callable[[Event], None] | None = None,
        cancel: threading.Event | None = None) -> Outcome:
    """Run a playbook of :data:`PLAYBOOKS` (or one module, ad hoc) and wait for its end.

    ``on_event`` sees every event as it comes (progress); ``cancel``, once set, stops the
    run: ansible-runner kills ``ansible-playbook`` and its SSH connections. Returns the
    events per host (``event_data.host``).
    """
    runner = _runner()
    private_dir.mkdir(parents=True, exist_ok=True)
    events: dict[str, list[Event]] = {}

    def handle(event: Event) -> bool:
        host = event.get("event_data", {}).get("host")
        if host:
            events.setdefault(host, []).append(event)
        if on_event is not None:
            on_event(event)
        return True  # keep the event in the artifacts directory

    kwargs: dict[str, Any] = dict(
        private_data_dir=str(private_dir), inventory=str(inventory.path.resolve()),
        envvars=envvars(forks), extravars=extravars or {}, quiet=True,
        event_handler=handle, settings={"pexpect_timeout": 1, "suppress_ansible_output": True},
        cancel_callback=(cancel.is_set if cancel is not None else lambda: False),
        forks=max(1, forks),
    )
    if limit is not None:
        kwargs["limit"] = ",".join(limit)
    if playbook is not None:
        kwargs["playbook"] = str(PLAYBOOKS / playbook)
    else:
        kwargs.update(module=module, module_args=module_args, host_pattern="all")
    result = runner.run(**kwargs)
    log.debug("ansible %s: %s (rc %s)", playbook or module, result.status, result.rc)
    return Outcome(status=str(result.status), rc=int(result.rc or 0), events=events)


def gather_facts(private_dir: Path, inventory: Inventory, hosts: list[str],
                 cancel: threading.Event | None = None) -> dict[str, dict[str, Any] | str]:
    """Each host's facts (the :data:`FACTS` subset), or one line saying why there are none."""
    outcome = run(private_dir, inventory, module="ansible.builtin.setup",
                  module_args="gather_subset=min,hardware gather_timeout=20", limit=hosts,
                  forks=len(hosts), cancel=cancel)
    found: dict[str, dict[str, Any] | str] = {}
    for host in hosts:
        found[host] = "no answer from Ansible (interrupted?)"
        for event in outcome.events.get(host, []):
            kind = event.get("event")
            data = event.get("event_data", {})
            if kind == "runner_on_ok":
                facts = data.get("res", {}).get("ansible_facts", {})
                found[host] = {key.removeprefix("ansible_"): value
                               for key, value in facts.items()
                               if key.removeprefix("ansible_") in FACTS}
            elif kind in ("runner_on_unreachable", "runner_on_failed"):
                why = "unreachable" if kind == "runner_on_unreachable" else "cannot read facts"
                found[host] = f"{why}: {one_line(data.get('res', {}))}"
    return found


_NOISE = ("Shared connection to ", "Connection to ", "+ ")


def one_line(result: Mapping[str, Any], limit: int = 300) -> str:
    """A task result's error as one line: the last telling line of stderr, else of stdout
    (a script's output, where a pty merges both), else msg."""
    for key in ("stderr", "stdout", "module_stderr", "module_stdout", "msg"):
        value = result.get(key)
        if not isinstance(value, str):
            continue
        lines = [line.strip() for line in value.splitlines()
                 if line.strip() and not line.strip().startswith(_NOISE)]
        if lines:
            line = lines[-1]
            if line.startswith("MODULE FAILURE") and len(lines) > 1:
                line = lines[0]
            line = line.removeprefix("Task failed: ")
            return line if len(line) <= limit else line[: limit - 1] + "…"
    rc = result.get("rc")
    return f"exit code {rc}" if rc is not None else "failed (no message)"
