"""Every image cvbench can build, by name: ``cvbench image build [NAME]``."""

from __future__ import annotations

from collections.abc import Callable

from imagestore import image, workloads
from imagestore.image import Image, ImageError

BUILDERS: dict[str, Callable[[], Image]] = {
    image.DEFAULT_NAME: image.build,  # busybox and an /init that prints READY
    workloads.NAME: workloads.build,  # sysbench, fio, iperf3, sockperf, redis from Debian
}


def build(name: str = image.DEFAULT_NAME) -> Image:
    """Build image ``name`` (or return it if it is already there); ImageError if unknown."""
    builder = BUILDERS.get(name)
    if builder is None:
        raise ImageError(f"no image called {name!r} to build, expected one of "
                         f"{', '.join(BUILDERS)}")
    return builder()
