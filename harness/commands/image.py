"""``cvbench image build|verify|ls|import``: the workload images every backend starts.

``build`` makes an image cvbench knows how to make (:mod:`imagestore.builders`); ``import``
takes someone else's, an OCI image layout or a ``docker save`` / ``podman save`` archive
(:mod:`imagestore.oci_import`); ``verify`` checks either kind against its digest.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from harness.commands.base import EXIT_OK, Subparsers, UsageError
from hostkit import validate
from imagestore.image import REFERENCE

ACTIONS = ("build", "verify", "ls", "import")

log = logging.getLogger(__name__)


def register(subparsers: Subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("image", help="build, import, verify or list workload images")
    actions = parser.add_subparsers(dest="action", required=True, metavar="{" + ",".join(
        ACTIONS) + "}")
    build = actions.add_parser("build", help="build an image cvbench makes itself")
    build.add_argument("reference", nargs="?", default="default", type=REFERENCE,
                       help="default or workloads")
    build.add_argument("--quiet", action="store_true")
    verify = actions.add_parser("verify", help="check an image against its digest")
    verify.add_argument("reference", nargs="?", default="default", type=REFERENCE,
                        help="name or digest")
    actions.add_parser("ls", help="list the images by name")
    imported = actions.add_parser(
        "import", help="import an OCI image layout or a docker-archive (docker/podman save)")
    imported.add_argument("path", type=validate.PATH,
                          help="an OCI image layout (a directory or a tar of one) or a "
                               "docker-archive tarball")
    imported.add_argument("--name", type=REFERENCE,
                          help="the name to store it under (default: from its repo tag)")
    parser.set_defaults(func=handle)
    return parser


def handle(args: argparse.Namespace) -> int:
    from imagestore import builders, image, oci_import

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
        elif args.action == "import":
            result = oci_import.import_image(Path(args.path), args.name)
            if result.skipped:
                log.warning("left out %d device node(s) (runtimes make /dev): %s",
                            len(result.skipped), ", ".join(result.skipped[:5]))
            print(f"{result.image.name} {result.image.digest} {result.image.rootfs}")
        else:
            for name, digest in sorted(image.refs().items()):
                print(f"{name}\t{digest}")
    except image.ImageError as error:
        raise UsageError(str(error)) from None
    return EXIT_OK
