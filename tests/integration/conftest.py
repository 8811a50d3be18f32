"""Fixtures of the runtime's integration tests: a Runtime on the test's private state dir."""

from __future__ import annotations

import pytest

from runtime.container import Runtime


@pytest.fixture
def runtime(state_dir):
    with Runtime() as rt:
        yield rt
