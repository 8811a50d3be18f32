"""Labelled backend names (``floor:namespaces``): the same backend a second time in one run,
its own series everywhere, its backend's entry for everything the table says."""

from __future__ import annotations

import pytest

from harness import backends
from harness.backends import registry
from harness.backends.floor.backend import FloorBackend
from hostkit import validate


def test_a_labelled_name_is_its_backends_entry() -> None:
    assert registry.base("floor:namespaces") == "floor"
    assert registry.label("floor:namespaces") == "namespaces"
    assert registry.base("ours") == "ours" and registry.label("ours") == ""
    assert registry.info("floor:namespaces") is registry.info("floor")
    assert registry.family("libvirt:acpi") == registry.VM
    assert registry.floor_of("floor:namespaces") == "process"
    assert registry.floor_of("libvirt:acpi") == "qemu"
    # a labelled floor is a member of its family, compared with the plain floor
    assert not registry.is_floor("process:other") and registry.is_floor("process")
    assert backends.backend_class("floor:bare") is FloorBackend
    made = backends.create("floor:bare", steps=[])
    assert isinstance(made, FloorBackend) and made.steps == frozenset()


def test_labelled_names_sort_beside_their_backend() -> None:
    names = registry.names()
    assert registry.rank("floor:caps") == registry.rank("floor") == names.index("floor")
    assert registry.rank("ours") < registry.rank("floor:caps") < registry.rank("qemu")
    assert registry.rank("nosuch") == registry.rank("nosuch:x") == len(names)


@pytest.mark.parametrize(("name", "message"), [
    ("vbox:x", "unknown backend 'vbox'"),
    ("floor:", "backend 'floor:': expected a label"),
    ("floor:Caps", "backend 'floor:Caps': expected a label"),
    ("floor:a:b", "backend 'floor:a:b': expected a label"),
    ("floor:" + "x" * 33, "expected a label"),
])
def test_bad_labelled_names_are_refused_in_one_line(name: str, message: str) -> None:
    with pytest.raises(validate.Invalid, match=message) as raised:
        registry.NAME.check(name)
    assert "\n" not in str(raised.value)


def test_lists_of_names_take_labelled_ones() -> None:
    assert registry.NAME_LIST.split("process,floor:bare, floor") == (
        "process", "floor:bare", "floor")
    assert registry.NAME.check("floor:rung-1.a_b") == "floor:rung-1.a_b"
