"""Fixtures of the runtime's integration tests: a Runtime on the test's private state dir."""

from __future__ import annotations

import pytest

from runtime.container import Runtime


@pytest.fixture
def runtime(state_dir):
    with Runtime() as rt:
        yield rt


V2HOST_TIMINGS = pytest.StashKey[list[str]]()


@pytest.fixture(scope="session")
def v2host_timings(request: pytest.FixtureRequest) -> list[str]:
    """Where the systemd/cgroup-v2 VM part notes how long its steps took (printed at the end)."""
    return request.config.stash.setdefault(V2HOST_TIMINGS, [])


def pytest_terminal_summary(terminalreporter, config) -> None:
    timings = config.stash.get(V2HOST_TIMINGS, [])
    if timings:
        terminalreporter.write_line("v2 host (systemd, cgroup v2 only): " + "; ".join(timings))
