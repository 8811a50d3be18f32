"""``cvbench ctr run|ls|stop|rm``: our container runtime by hand (:mod:`runtime.cli`).

The runtime is a library usable without the harness, so its command line lives with it and
reports its own errors (one line, exit 2 for bad input); this module only plugs it in.
"""

from __future__ import annotations

import argparse

from harness.commands.base import Subparsers


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    from runtime import cli

    return cli.register(subparsers)
