"""The backends' shared chores (harness.backends.chores): the live map, cold and warm, the
clean-up loop, discarding a half-made instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends import registry
from harness.backends.base import COLD, WARM, BackendError, Instance, InstanceSpec
from harness.backends.chores import Chores, SplitStart
from imagestore.image import Image

IMAGE = Image(name="unit", digest="0" * 64, rootfs=Path("/"))


class Recording(Chores):
    """A backend whose stop fails for the names in ``stubborn`` and whose removal fails for
    those in ``sticky``; it records every call."""

    name = "recording"

    def __init__(self, stubborn: tuple[str, ...] = (), sticky: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.stubborn, self.sticky = stubborn, sticky
        self.calls: list[tuple[str, str]] = []

    def _launch(self, spec: InstanceSpec, variant: str) -> Instance:
        self.calls.append((f"launch {variant}", spec.name))
        return Instance(spec.name, self.name)

    def stop(self, instance: Instance) -> None:
        self.calls.append(("stop", instance.name))
        if instance.name in self.stubborn:
            raise BackendError(f"{instance.name} will not stop")

    def _remove(self, instance: Instance) -> None:
        self.calls.append(("remove", instance.name))
        if instance.name in self.sticky:
            raise OSError(f"{instance.name} will not go")

    def _close(self) -> None:
        self.calls.append(("close", ""))


def spec(number: int) -> InstanceSpec:
    return InstanceSpec(name=f"cvbench-chore-{number}", image=IMAGE)


def test_cleanup_stops_then_removes_every_live_instance_past_errors() -> None:
    backend = Recording(stubborn=("cvbench-chore-2",), sticky=("cvbench-chore-3",))
    for number in (1, 2, 3, 4):
        backend.start(spec(number))
    backend.cleanup()
    names = [f"cvbench-chore-{n}" for n in (1, 2, 3, 4)]
    assert backend.calls[4:] == [
        ("stop", names[0]), ("remove", names[0]),
        ("stop", names[1]),  # would not stop: not removed, the next one is tried
        ("stop", names[2]), ("remove", names[2]),  # removal failed: forgotten all the same
        ("stop", names[3]), ("remove", names[3]),
        ("close", ""),
    ]
    assert list(backend.live) == [names[1]]  # the one that still runs, for a second try
    backend.stubborn = ()
    backend.cleanup()
    assert not backend.live


def test_start_and_create_track_what_they_made_with_its_variant() -> None:
    backend = Recording()
    cold, warm = backend.start(spec(1)), backend.create(spec(2))
    assert (cold.variant, warm.variant) == (COLD, WARM)
    assert backend.calls == [("launch cold", cold.name), ("launch warm", warm.name)]
    assert set(backend.live) == {cold.name, warm.name}
    backend.remove(cold)
    assert set(backend.live) == {warm.name}


def test_discard_removes_even_what_would_not_stop() -> None:
    backend = Recording(stubborn=("cvbench-chore-1",))
    instance = backend.create(spec(1))
    backend._discard(instance)  # errors are not raised
    assert backend.calls[1:] == [("stop", instance.name), ("remove", instance.name)]
    assert not backend.live


class Split(SplitStart, Recording):
    """An engine whose start step fails for the names in ``refused``."""

    name = "split"

    def __init__(self, refused: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.refused = refused

    def _create(self, spec: InstanceSpec) -> Instance:
        self.calls.append(("create", spec.name))
        return Instance(spec.name, self.name)

    def resume(self, instance: Instance) -> None:
        self.calls.append(("resume", instance.name))
        if instance.name in self.refused:
            raise BackendError(f"{instance.name}: start refused")


def test_a_split_start_is_create_then_resume_cold_and_create_alone_warm() -> None:
    backend = Split(refused=("cvbench-chore-3",))
    cold = backend.start(spec(1))
    warm = backend.create(spec(2))
    assert backend.calls == [("create", cold.name), ("resume", cold.name),
                             ("create", warm.name)]
    assert (cold.variant, warm.variant) == (COLD, WARM)
    with pytest.raises(BackendError, match="start refused"):
        backend.start(spec(3))
    assert backend.calls[-3:] == [("resume", "cvbench-chore-3"), ("stop", "cvbench-chore-3"),
                                  ("remove", "cvbench-chore-3")]
    assert set(backend.live) == {cold.name, warm.name}


def test_every_built_in_backend_uses_the_chores() -> None:
    from harness import backends

    for entry in registry.BACKENDS:
        assert issubclass(backends.backend_class(entry.name), Chores), entry.name
