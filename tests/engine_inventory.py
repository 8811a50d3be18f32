"""What the engine backends' integration tests share: which engines this host offers, and an
inventory of every engine object cvbench could leave (containers, images, networks, helper
processes), to prove clean-up and `cvbench clean` leave none."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from harness import doctor
from hostkit.paths import PREFIX

ENGINES = ("docker", "podman", "lxc", "docker-ours", "podman-ours")


def require(name: str) -> None:
    """Skip unless the host offers engine backend ``name`` (its engine's doctor check passes,
    and for docker-ours and podman-ours the installed cvbench-runtime's)."""
    engine = name.removesuffix("-ours")
    for check_name in (engine, "cvbench-runtime") if engine != name else (engine,):
        check = doctor.CHECKS[check_name]()
        if not check.ok:
            pytest.skip(f"{name}: {check.detail}")


def docker_objects() -> frozenset[str]:
    from harness.backends.engines.docker.service import sdk_client

    try:
        client = sdk_client(timeout=30)
    except Exception:  # no dockerd: nothing of cvbench's can be there either
        return frozenset()
    api = client.api
    try:
        found = {f"container {n.lstrip('/')}" for c in api.containers(all=True)
                 for n in c.get("Names") or [] if n.lstrip("/").startswith(PREFIX)}
        found |= {f"network {n['Name']}" for n in api.networks() if n["Name"].startswith(PREFIX)}
        found |= {f"image {t}" for i in api.images() for t in i.get("RepoTags") or []
                  if t.startswith(PREFIX)}
    finally:
        client.close()
    return frozenset(found)


def podman_objects() -> frozenset[str]:
    import shutil

    if shutil.which("podman") is None:
        return frozenset()
    from harness.backends.engines.podman.service import Service, client

    service = Service("runc", f"{PREFIX}inventory-{os.getpid()}")
    service.start()
    try:
        api = client(service.socket).api
        found = {f"container {n}" for c in api.get("/containers/json", params={"all": "true"}
                                                   ).json() or []
                 for n in c.get("Names") or [] if n.startswith(PREFIX)}
        found |= {f"network {n['name']}" for n in api.get("/networks/json").json() or []
                  if n["name"].startswith(PREFIX)}
        found |= {f"image {t}" for i in api.get("/images/json").json() or []
                  for t in i.get("RepoTags") or [] if t.startswith(f"localhost/{PREFIX}")}
    finally:
        service.stop()
    return frozenset(found)


def runtime_states() -> frozenset[str]:
    """The containers' state directories of the OCI runtimes under the engines: the shim's
    runtime root under dockerd (runc, crun and cvbench-runtime alike), cvbench-runtime's
    default root (Podman gives it no --root), half-made ones too."""
    from harness.backends.engines.docker.config import RUNTIME_ROOT
    from runtime.oci.state import DEFAULT_ROOT

    return frozenset(f"state {root / entry}" for root in (RUNTIME_ROOT, DEFAULT_ROOT)
                     if root.is_dir() for entry in os.listdir(root))


def lxc_objects(state_dir: Path) -> frozenset[str]:
    """LXC's containers under the state dir, and its helpers' records (hostkit.helper)."""
    directory, records = state_dir / "lxc", state_dir / "helpers"
    found = {f"lxc {entry.name}" for entry in directory.iterdir()
             if entry.name.startswith(PREFIX)} if directory.is_dir() else set()
    found |= {f"helper record {entry.name}" for entry in records.glob("lxc-*.json")}
    return frozenset(found)


def engine_processes() -> frozenset[str]:
    """Our podman services and LXC helpers, and container inits (pid 1 of a pid namespace)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read()
            with open(f"/proc/{entry}/status", "rb") as handle:
                nspid = next((line.split() for line in handle if line.startswith(b"NSpid:")), [])
        except OSError:
            continue
        if f"{PREFIX}lxc-helper".encode() in argv or (
                b"system\0service" in argv and b"/podman/" + PREFIX.encode() in argv):
            program = argv.split(b"\0")[0].decode(errors="replace")
            found.add(f"{program} {entry}")
        elif len(nspid) > 2 and nspid[-1] == b"1":
            found.add(f"container init {entry}")
    return frozenset(found)


@dataclass(frozen=True)
class EngineInventory:
    docker: frozenset[str]
    podman: frozenset[str]
    lxc: frozenset[str]
    processes: frozenset[str]
    runtime_states: frozenset[str]

    @classmethod
    def take(cls, state_dir: Path) -> EngineInventory:
        return cls(docker_objects(), podman_objects(), lxc_objects(state_dir),
                   engine_processes(), runtime_states())

    def leftovers(self, before: EngineInventory) -> dict[str, list[str]]:
        extra = {}
        for field in fields(self):
            added = getattr(self, field.name) - getattr(before, field.name)
            if added:
                extra[field.name] = sorted(added)[:10]
        return extra


def count_container_inits() -> int:
    return sum(1 for item in engine_processes() if item.startswith("container init"))
