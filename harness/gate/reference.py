"""The baseline's own code, measured again on this machine: the gate's confirmation.

A committed baseline was measured on another machine. Ratios to the in-run floors remove most
of a machine's speed, not all of it (another CPU model moves the container runtimes' ratios to
``process`` by tens of percent with the same code), so a regression against the committed
baseline may be the machine, not the code. The regression is *confirmed* by the same suite run
with the code of the baseline's commit on this machine, now, then with the candidate's code
again, so both are measured under the same conditions (an A/B on one machine, as
Firecracker's performance tests do; the candidate's first run may have followed the test
suite, with the kernel still freeing what the tests made): the code got slower only if the
candidate's second run is worse than that reference too.

The reference tree is the commit exported with ``git archive`` into
``<state dir>/reference/<pid>-<start>-<commit>`` (removed afterwards; :func:`sweep` removes
the tree of a gate that was killed); it runs with this virtualenv's Python, its own modules
first.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import hostinfo, results
from hostkit import paths, procs

log = logging.getLogger(__name__)

_COMMIT = re.compile(r"^[0-9a-f]{7,40}$")
_TREE_NAME = re.compile(r"^(\d+)-(\d+)-[0-9a-f]+$")  # <pid>-<start time>-<commit>


class ReferenceError(Exception):
    """The baseline's code cannot be measured again here (the reason, in one line)."""


def reference_root() -> Path:
    return paths.state_dir() / "reference"


def commit_of(run_dir: Path) -> str:
    """The commit a run was made from; ReferenceError when unknown or made from a dirty tree."""
    commit = str(results.read_metadata(run_dir).get("git_commit", ""))
    if commit.endswith("-dirty"):
        raise ReferenceError(f"{run_dir.name} was made from uncommitted changes to "
                             f"{commit.removesuffix('-dirty')[:12]}: its code is not in git")
    if not _COMMIT.match(commit):
        raise ReferenceError(f"{run_dir.name} records no git commit ({commit or 'none'})")
    return commit


@contextmanager
def exported_tree(commit: str, repo: Path = hostinfo.REPO) -> Iterator[Path]:
    """The files of ``commit`` (from ``repo``'s history) in a directory removed afterwards.

    A shallow clone may lack the commit: it is then fetched from ``origin`` when that is a
    repository on this machine (never over a network)."""
    archive = _archive(commit, repo)
    if archive.returncode != 0 and _fetch_from_local_origin(commit, repo):
        archive = _archive(commit, repo)
    if archive.returncode != 0:
        why = archive.stderr.decode(errors="replace").strip().splitlines()
        raise ReferenceError(f"commit {commit[:12]} is not in {repo}'s history "
                             f"({why[-1] if why else 'git archive failed'}); "
                             "a shallow clone lacks it")
    pid = os.getpid()
    tree = reference_root() / f"{pid}-{procs.proc_start_time(pid)}-{commit[:12]}"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            # Our own history, so trusted; the filter argument is missing from Debian's 3.11.2.
            if hasattr(tarfile, "tar_filter"):
                tar.extractall(tree, filter="tar")
            else:
                tar.extractall(tree)
        yield tree
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def _archive(commit: str, repo: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit],
                          capture_output=True, timeout=120)


def _fetch_from_local_origin(commit: str, repo: Path) -> bool:
    """Fetch ``commit`` into ``repo`` from its ``origin`` if that is a local repository."""
    url = subprocess.run(["git", "-C", str(repo), "remote", "get-url", "origin"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    path = Path(url.removeprefix("file://"))
    if not path.is_absolute() or not path.exists():
        return False
    log.info("commit %s is not in %s: fetching it from origin (%s)", commit[:12], repo, path)
    done = subprocess.run(["git", "-C", str(repo), "fetch", "--quiet", "--depth", "1", "origin",
                           commit], capture_output=True, timeout=120)
    return done.returncode == 0


def run_suite(commit: str, suite: str, results_dir: Path, repo: Path = hostinfo.REPO) -> Path:
    """Run ``suite`` (a path inside the repository) with ``commit``'s code; its run directory.

    The run lands in ``results_dir`` beside the candidate. ReferenceError when the commit is
    not available or its run fails.
    """
    with exported_tree(commit, repo) as tree:
        if not (tree / suite).is_file():
            raise ReferenceError(f"commit {commit[:12]} has no {suite}")
        log.info("reference: %s at commit %s, in %s", suite, commit[:12], tree)
        return _run(tree, suite, results_dir, f"the reference run of commit {commit[:12]}")


def run_again(suite: str, results_dir: Path, repo: Path = hostinfo.REPO) -> Path:
    """Run ``suite`` again with this checkout's code (the candidate, under the reference's
    conditions); its run directory."""
    log.info("the candidate again: %s with the code of %s", suite, repo)
    return _run(repo, suite, results_dir, "the candidate's second run")


def _run(tree: Path, suite: str, results_dir: Path, what: str) -> Path:
    """``cvbench run suite`` with the code in ``tree`` (its own modules first on the path)."""
    command = [sys.executable, "-m", "harness.cli", "run", suite, "--quiet",
               "--results-dir", str(results_dir.resolve())]  # it runs in the tree
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("PYTHONSAFEPATH", None)
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    sys.stderr.write(done.stderr)  # its log, as a run of this checkout would show it
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = done.stderr.strip().splitlines()[-1:] or ["no output"]
        raise ReferenceError(f"{what} failed (exit {done.returncode}: {last[0]})")
    run_dir = Path(lines[-1])
    try:
        status = results.read_metadata(run_dir).get("status")
    except results.ResultsError as error:
        raise ReferenceError(str(error)) from None
    if status != "complete":
        raise ReferenceError(f"{what} ({run_dir}) is {status}, not complete")
    return run_dir


def sweep() -> list[str]:
    """Remove the reference trees of gates that are no longer running."""
    removed = []
    root = reference_root()
    for tree in sorted(root.iterdir()) if root.is_dir() else ():
        match = _TREE_NAME.match(tree.name)
        if match and procs.process_alive(int(match.group(1)), int(match.group(2))):
            continue
        shutil.rmtree(tree, ignore_errors=True)
        removed.append(f"reference tree {tree}")
    return removed
