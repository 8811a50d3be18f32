"""OCI hooks that run in the runtime's namespaces: ``prestart`` and ``createRuntime`` (by
``create``, once the init's namespaces exist), ``poststart`` (by ``start``) and ``poststop``
(by ``delete``). Docker gives every container a ``prestart`` hook (libnetwork's
``libnetwork-setkey``). Hooks that would run inside the container's namespaces
(``createContainer``, ``startContainer``) are refused by :func:`check`.

Each hook gets the container's state JSON on its stdin, its ``args`` (``args[0]`` as its
name), its ``env`` only, and its ``timeout`` in seconds. A failing ``prestart`` or
``createRuntime`` hook fails ``create`` (nothing is left); a failing ``poststart`` or
``poststop`` hook is a warning, as the runtime spec says.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

HOST_STAGES = ("prestart", "createRuntime", "poststart", "poststop")
CONTAINER_STAGES = ("createContainer", "startContainer")
DEFAULT_TIMEOUT_S = 30.0


class HookError(Exception):
    """A hook failed; the message is one line naming it."""


def check(hooks: Any) -> dict[str, list[dict[str, Any]]]:
    """The hooks of ``config.json``, by stage; ValueError naming what cannot be run."""
    if not hooks:
        return {}
    if not isinstance(hooks, dict):
        raise ValueError("hooks: not an object")
    for stage in CONTAINER_STAGES:
        if hooks.get(stage):
            raise ValueError(f"hooks.{stage}: hooks in the container's namespaces are not "
                             "supported")
    checked: dict[str, list[dict[str, Any]]] = {}
    for stage, entries in hooks.items():
        if stage not in HOST_STAGES + CONTAINER_STAGES:
            raise ValueError(f"hooks.{stage}: unknown hook stage")
        for index, hook in enumerate(entries or []):
            where = f"hooks.{stage}[{index}]"
            if not isinstance(hook, dict) or not str(hook.get("path", "")).startswith("/"):
                raise ValueError(f"{where}: needs an absolute path")
            timeout = hook.get("timeout")
            if timeout is not None and (not isinstance(timeout, int) or timeout <= 0):
                raise ValueError(f"{where}: timeout must be a positive integer")
        if entries:
            checked[stage] = list(entries)
    return checked


def run(stage: str, hooks: dict[str, list[dict[str, Any]]], state: dict[str, Any]) -> None:
    """Run the hooks of ``stage`` in order, ``state`` on their stdin; HookError on the first
    that fails (exits non-zero, cannot start, or outlives its timeout)."""
    payload = json.dumps(state)
    for hook in hooks.get(stage, []):
        path = hook["path"]
        args = list(hook.get("args") or [path])
        env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
        try:
            result = subprocess.run(args, executable=path, input=payload, env=env, text=True,
                                    capture_output=True, check=False,
                                    timeout=hook.get("timeout") or DEFAULT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise HookError(f"{stage} hook {path}: timed out") from None
        except OSError as error:
            raise HookError(f"{stage} hook {path}: {error.strerror}") from None
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip().splitlines()
            raise HookError(f"{stage} hook {path} exited with {result.returncode}"
                            + (f": {said[-1]}" if said else ""))
