"""OCI runtimes by configuration: a user's binary checked, entered as a backend, recorded.

A scenario file's ``[runtimes]`` table (``name = "path"``) and ``cvbench run --runtime
NAME=PATH`` name a binary that speaks the OCI runtime command line (create, start, state,
kill, delete). :func:`declare` checks it (:func:`check`) before anything starts and enters it
in :mod:`harness.backends.registry` as one more :class:`~harness.backends.oci.backend.OciBackend`
(crun's and runc's class), so it gets their bundle, profile, cgroup layout and clean-up.

Every OCI backend records its binary under the state directory when it prepares
(:func:`record`), so that ``cvbench clean`` after a crash deletes the containers with the
binary that made them (:func:`known`), a user-named one included.

The check, one :class:`hostkit.validate.Invalid` line each: the path exists, is an executable
file, ``PATH --version`` exits 0 with a first line naming a version (``<name> version X``, as
crun, runc, youki and runsc print; ``/bin/true`` and other coreutils print ``true (GNU
coreutils) 9.1``), and ``PATH --root <empty dir> state cvbench-nonexistent-<random>`` fails
as an OCI runtime fails for a container that does not exist: a non-zero exit and a message
(``/bin/true`` exits 0; ``/bin/false`` says nothing).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from harness.backends import registry
from hostkit import validate
from hostkit.paths import PREFIX, state_dir

CHECK_TIMEOUT_S = 10.0  # each of the check's two commands
BUILT_IN = ("crun", "runc")  # runtimes with a backend module of their own, found on PATH
VERSION_LINE = re.compile(r"\bversion\b", re.IGNORECASE)
# ``--runtime NAME=PATH``: its form (argparse ``type=``); the name is checked by declare()
OPTION = validate.Names(pattern=r"[^=\s]+=\S.*",
                        meaning="NAME=PATH (a runtime's name and the path of its binary)")


def parse(text: str) -> tuple[str, str]:
    """``NAME=PATH`` (``--runtime``) as its two parts; :class:`validate.Invalid` if malformed."""
    OPTION.check(text)
    name, path = text.split("=", 1)
    return name, path


def declare(name: str, path: str, base: Path | None = None) -> str:
    """Check runtime ``name`` at ``path`` (relative to ``base``, else to the working
    directory) and enter it in the backend table; return the binary's absolute path.
    :class:`validate.Invalid` (one line) if the name is malformed or a built-in backend's,
    or the binary is not an OCI runtime: nothing has started."""
    registry.check_runtime_name(name)  # the cheap check first
    binary = check(str((base or Path.cwd()) / path) if not os.path.isabs(path) else path)
    registry.add_runtime(name, binary)
    return binary


def check(path: str) -> str:
    """``path`` as an absolute path if it is an executable OCI runtime (see the module's
    docstring); :class:`validate.Invalid` saying what it lacks."""
    binary = os.path.abspath(path)
    if not os.path.exists(binary):
        raise validate.Invalid(f"{binary}: no such file")
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        raise validate.Invalid(f"{binary}: not an executable file")
    version = _answer(binary, ["--version"])
    first = version.stdout.strip().splitlines()[0] if version.stdout.strip() else ""
    if version.returncode != 0 or not VERSION_LINE.search(first):
        raise validate.Invalid(f"{binary}: not an OCI runtime: `--version` printed "
                               f"{first[:60]!r} (exit {version.returncode}), expected "
                               "'<name> version <x>'")
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}runtime-check-") as root:
        missing = f"{PREFIX}nonexistent-{uuid.uuid4().hex[:8]}"
        state = _answer(binary, ["--root", root, "state", missing])
    if state.returncode == 0 or not (state.stderr.strip() or state.stdout.strip()):
        raise validate.Invalid(f"{binary}: not an OCI runtime: `state {missing}` of a container "
                               f"that does not exist exited {state.returncode} with "
                               f"{'no message' if state.returncode else 'success'}")
    return binary


def _answer(binary: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """``binary args`` run to its end (stdin empty), or Invalid if it cannot be or hangs."""
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=CHECK_TIMEOUT_S,
                              errors="replace")
    except subprocess.TimeoutExpired:
        raise validate.Invalid(f"{binary}: not an OCI runtime: `{' '.join(args)}` did not "
                               f"exit within {CHECK_TIMEOUT_S:g} s") from None
    except OSError as error:
        raise validate.Invalid(f"{binary}: cannot run it: {error.strerror}") from None


def version_output(binary: str) -> str:
    """What ``binary --version`` prints (empty if it cannot be run)."""
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True,
                              check=False, stdin=subprocess.DEVNULL,
                              timeout=CHECK_TIMEOUT_S).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def flavor(binary: str) -> str:
    """Whose global options ``binary`` takes: ``crun`` (``--cgroup-manager``; a private
    cgroup view on hybrid hosts, :func:`harness.backends.oci.cgroup.needs_private_view`) if it
    is crun, by its file name or, for a copy under another name, by the first word of its
    ``--version``; else ``runc``, the reference runtime's, which youki and runsc share."""
    if Path(binary).name in BUILT_IN:
        return Path(binary).name
    words = version_output(binary).split()
    return "crun" if words and words[0].lower() == "crun" else "runc"


def states_dir() -> Path:
    """Where the runtimes' ``--root`` state directories and their records are."""
    return state_dir() / "oci-state"


def record_path(runtime: str) -> Path:
    """The file naming the binary of OCI backend ``runtime`` (beside its state directory)."""
    return states_dir() / f"{runtime}.binary"


def record(runtime: str, binary: str) -> None:
    """Write down ``runtime``'s binary for the sweep (done by ``prepare()``)."""
    states_dir().mkdir(parents=True, exist_ok=True)
    record_path(runtime).write_text(binary)


def forget(runtime: str) -> None:
    """Remove ``runtime``'s record (its backend cleaned up: nothing of it is left)."""
    with contextlib.suppress(FileNotFoundError):
        record_path(runtime).unlink()


# Where cvbench before hostkit.helper recorded its OCI launchers: not a runtime. The gate
# still runs such code (its baseline's commit), which leaves the directory behind.
OLD_LAUNCHER_RECORDS = "launchers"


def known() -> dict[str, str | None]:
    """Every OCI runtime with a state directory or a record under this state directory, and
    crun and runc: name -> the binary to delete its containers with (the recorded one while
    it is executable, else crun's or runc's on PATH; None if there is none)."""
    names = dict.fromkeys(BUILT_IN)
    if states_dir().is_dir():
        for entry in sorted(states_dir().iterdir()):
            if entry.name == OLD_LAUNCHER_RECORDS:
                continue
            if entry.is_dir() or entry.suffix == ".binary":
                names.setdefault(entry.name.removesuffix(".binary"))
    found: dict[str, str | None] = {}
    for name in names:
        recorded = None
        with contextlib.suppress(OSError):
            recorded = record_path(name).read_text().strip() or None
        if recorded is not None and not os.access(recorded, os.X_OK):
            recorded = None
        found[name] = recorded or (shutil.which(name) if name in BUILT_IN else None)
    return found
