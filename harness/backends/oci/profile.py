"""The isolation profile a ``config.json`` asks for, as run metadata (pure: reads a dict).

What the container backends must share to be compared (DESIGN.md, "Same work"): namespaces,
capabilities, masked and read-only paths, no_new_privs and the seccomp filter, identified by
the digest of its ``linux.seccomp`` section.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def security(config: dict[str, Any]) -> dict[str, Any]:
    """``describe()["security"]`` of an OCI ``config.json`` dict."""
    process, linux = config.get("process", {}), config.get("linux", {})
    capabilities = process.get("capabilities") or {}
    return {
        "namespaces": sorted(entry["type"] for entry in linux.get("namespaces", [])),
        "capabilities": {kind: sorted(capabilities.get(kind, []))
                         for kind in ("bounding", "effective", "permitted", "inheritable")},
        "masked_paths": sorted(linux.get("maskedPaths", [])),
        "readonly_paths": sorted(linux.get("readonlyPaths", [])),
        "no_new_privileges": bool(process.get("noNewPrivileges", False)),
        "seccomp": seccomp_summary(linux.get("seccomp")),
    }


def seccomp_summary(section: dict[str, Any] | None) -> dict[str, Any] | None:
    """Digest (sha256 of the section as canonical JSON), default action and rule count of a
    ``linux.seccomp`` section; None if there is none."""
    if not section:
        return None
    canonical = json.dumps(section, sort_keys=True, separators=(",", ":")).encode()
    return {"sha256": hashlib.sha256(canonical).hexdigest(),
            "default_action": section.get("defaultAction"),
            "rules": len(section.get("syscalls") or [])}
