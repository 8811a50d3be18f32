"""``cvbench image build|verify|ls``: the workload images every backend starts."""

from __future__ import annotations

import argparse
import logging

from harness.commands.base import EXIT_OK, Subparsers, UsageError
from hostkit import validate
from imagestore.image import REFERENCE

ACTIONS = ("build", "verify", "ls")

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("image", help="build, verify or list workload images")
    # choices: only for the help's {build,verify,ls}; the type refuses anything else first
    parser.add_argument("action", type=validate.Names(ACTIONS), choices=ACTIONS)
    parser.add_argument("reference", nargs="?", default="default", type=REFERENCE,
                        help="name (build: default or workloads) or digest")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from imagestore import builders, image

    try:
        if args.action == "build":
            built = builders.build(args.reference)
            log.info("image %s built: %s", built.name, built.digest)
            if not args.quiet:
                print(f"{built.name} {built.digest} {built.rootfs}")
        elif args.action == "verify":
            found = image.resolve(args.reference)
            log.info("verifying %s (%s) at %s", args.reference, found.digest, found.rootfs)
            image.verify(found)
            print(f"{found.digest} ok")
        else:
            for name, digest in sorted(image.refs().items()):
                print(f"{name}\t{digest}")
    except image.ImageError as error:
        raise UsageError(str(error)) from None
    return EXIT_OK
