"""Fixtures of the unit tests: the fake backends in the backend table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes import FAKE_BACKENDS

from harness.backends import registry


@pytest.fixture
def fake_backends() -> Iterator[None]:
    """``fake`` (a container) and ``fakevm`` (a VM) in the backend table for one test."""
    for info in FAKE_BACKENDS:
        registry.register(info)
    yield
    for info in FAKE_BACKENDS:
        registry.unregister(info.name)
