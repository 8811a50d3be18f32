"""The runtime's errors carry their message."""

from __future__ import annotations

from runtime.errors import ContainerError


def test_container_error_is_an_exception_with_a_message():
    assert str(ContainerError("a container named 'x' already exists")).startswith("a container")
