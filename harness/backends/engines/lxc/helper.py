"""The harness's client of the LXC helper process (``helper_process.py``), which forks each
container's monitor so that monitors are copies of a small process, not of the harness.

The helper is recorded (:class:`hostkit.helper.Record`, tagged :data:`HELPER_TAG`) until it
exits (it outlives the client while monitors are left), so that ``cvbench clean`` ends one a
killed run left.
"""

from __future__ import annotations

import subprocess

from harness.backends.base import BackendError
from harness.backends.engines.lxc.config import lxcpath
from hostkit import helper
from hostkit.paths import PREFIX

HELPER_TAG = f"{PREFIX}lxc-helper"
HELPER_START_S = 30.0
REQUEST_TIMEOUT_S = 120.0


class HelperClient:
    """Starts containers through the helper process (``helper_process.py``); thread-safe."""

    def __init__(self) -> None:
        lxcpath().mkdir(parents=True, exist_ok=True)
        try:
            self._client = helper.Client(
                "harness.backends.engines.lxc.helper_process:main", tag=HELPER_TAG,
                label="lxc", name="lxc: helper", start_timeout=HELPER_START_S,
                stderr=subprocess.DEVNULL)
        except helper.HelperError as error:
            raise BackendError(str(error)) from None

    @property
    def pid(self) -> int:
        return self._client.pid

    def start(self, name: str, stdout: int, argv: tuple[str, ...] | None = None,
              timeout: float = REQUEST_TIMEOUT_S) -> int:
        """Have the helper fork the container's monitor with ``stdout``, its init running
        ``argv`` (None: ``lxc.init.cmd``); the monitor's pid."""
        message: dict[str, object] = {"op": "start", "name": name, "lxcpath": str(lxcpath())}
        if argv is not None:
            message["argv"] = list(argv)
        try:
            answer = self._client.request(message, [stdout], timeout)
        except helper.Refused as error:
            raise BackendError(f"{name}: lxc start failed: {error}") from None
        except helper.HelperError as error:
            raise BackendError(str(error)) from None
        return int(answer["pid"])

    def exit_code(self, monitor: int, timeout: float) -> int | None:
        """The exit code of a container's ``monitor`` (its init's: helper_process.end_as;
        negative: the signal), once it exited within ``timeout``; None if it still runs."""
        try:
            return self._client.exit_code(monitor, timeout)
        except helper.Refused as error:
            raise BackendError(f"lxc helper: exit status: {error}") from None

    def close(self) -> None:
        """Hang up. The helper exits once its last monitor is gone; it stays recorded for
        ``cvbench clean`` until then."""
        self._client.close(kill_after=None)
