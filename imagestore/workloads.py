"""The ``workloads`` image: busybox, sysbench, fio, iperf3, sockperf and redis from Debian.

Built by ``cvbench image build workloads``: the tools' packages are fetched with apt (cached,
see :mod:`imagestore.debian`) and unpacked; each tool's shared libraries are resolved from its
ELF headers (loader, DT_NEEDED, run path) among the unpacked packages, fetching the packages
the needing package depends on until every library is found; then only the tools, their
libraries and the loader are copied into the rootfs, with busybox's applets, ``/etc`` basics,
the ``/init`` and the agent scripts below. The image is identified by the digest of its
manifest like the default image. A recipe (package versions and the scripts' hash) is kept
next to the manifest: a second build with the same recipe returns the image at once.

Inside an instance, ``/init`` prints READY and then runs the agent: it connects to the harness
at ``$CVBENCH_CONTROL`` (``host:port``, always the host's loopback or the ``cvbench0`` bridge
address), says ``HELLO <token> <root>`` and runs each command line it is sent, streaming its
output and ending it with ``@@cvbench-end <id> <exit code>`` (see ``harness/workloads/agent.py``).
Without ``CVBENCH_CONTROL`` it just idles like the default image. The ``process`` backend runs
the same ``/init`` on the host from the image directory: it then runs the tools through the
image's own loader and libraries (``tool``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from imagestore import debian, elf, scratch
from imagestore.image import Image, ImageError, digest_of, manifest, refs, write_ref

NAME = "workloads"
FORMAT = "w1"  # bump when the layout below changes
PACKAGES = ("busybox-static", "sysbench", "fio", "iperf3", "sockperf", "redis-server",
            "redis-tools")
TOOLS = ("/bin/busybox", "/usr/bin/sysbench", "/usr/bin/fio", "/usr/bin/iperf3",
         "/usr/bin/sockperf", "/usr/bin/redis-server", "/usr/bin/redis-benchmark",
         "/usr/bin/redis-cli")
# The loader's own search directories on Debian amd64 (no ld.so.cache in the image).
SYSTEM_LIB_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                   "/lib", "/usr/lib")
LOADER = "/lib64/ld-linux-x86-64.so.2"
LIBEXEC = "/usr/libexec/cvbench"
LIBRARY_PATH_FILE = f"{LIBEXEC}/library-path"
DIRECTORIES = ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var", "var/tmp", "mnt",
               "data", "usr", "usr/bin", "usr/libexec", LIBEXEC.lstrip("/"))
MAX_ROUNDS = 12

INIT_SCRIPT = """#!/bin/sh
# cvbench workloads image: announce readiness, then serve the harness (agent) or idle.
# $0 is /init in an instance; the process backend runs <image>/rootfs/init on the host.
root=$(cd "$(dirname "$0")" && pwd)
if [ "$root" = / ]; then root=; else export CVBENCH_ROOT="$root"; fi
export PATH="$root/usr/libexec/cvbench:$root/usr/bin:$root/bin"
export HOME="${HOME:-/root}"
if [ "$$" = 1 ] && [ ! -e /proc/self ]; then
    mount -t proc proc /proc 2>/dev/null
    mount -t sysfs sys /sys 2>/dev/null
fi
trap 'kill $! 2>/dev/null; exit 0' TERM INT
if [ -n "${CVBENCH_CONTROL:-}" ]; then
    "$root/bin/sh" "$root/usr/libexec/cvbench/connect" &
else
    sleep 2147483647 &
fi
echo READY
wait
"""

# Connect to the harness and serve it; again after a lost connection (the harness may hang
# up on a command that ran too long, and take the agent back on its next connection).
CONNECT_SCRIPT = """#!/bin/sh
root=${CVBENCH_ROOT:-}
host=${CVBENCH_CONTROL%:*}
port=${CVBENCH_CONTROL##*:}
while :; do
    nc "$host" "$port" -e "$root/bin/sh" "$root/usr/libexec/cvbench/agent"
    sleep 0.2
done
"""

# One connection: stdin/stdout are the socket. Each line is "<id> <shell command>".
AGENT_SCRIPT = """#!/bin/sh
echo "HELLO ${CVBENCH_TOKEN:-none} ${CVBENCH_ROOT:-/}"
while IFS= read -r line; do
    id=${line%% *}
    sh -c "${line#* }" </dev/null 2>&1
    printf '\\n@@cvbench-end %s %s\\n' "$id" "$?"
done
"""

# tool NAME ARGS: one of the image's programs; on the host (process backend) through the
# image's own loader and libraries, so every backend runs the very same binaries.
TOOL_SCRIPT = """#!/bin/sh
name=$1
shift
root=${CVBENCH_ROOT:-}
if [ -z "$root" ]; then
    exec "/usr/bin/$name" "$@"
fi
path=
for directory in $(cat "$root/usr/libexec/cvbench/library-path"); do
    path="$path${path:+:}$root$directory"
done
exec "$root/lib64/ld-linux-x86-64.so.2" --library-path "$path" "$root/usr/bin/$name" "$@"
"""

SCRIPTS = {"/init": INIT_SCRIPT, f"{LIBEXEC}/connect": CONNECT_SCRIPT,
           f"{LIBEXEC}/agent": AGENT_SCRIPT, f"{LIBEXEC}/tool": TOOL_SCRIPT}


def recipe_hash() -> str:
    """What, besides the package versions, makes an image: the format and the scripts."""
    text = FORMAT + "".join(f"{path}\n{body}" for path, body in sorted(SCRIPTS.items()))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Unpacked:
    """Packages unpacked side by side (one directory each), searched as one merged tree."""

    root: Path
    packages: dict[str, debian.Package] = field(default_factory=dict)

    def add(self, package: debian.Package, deb: Path) -> None:
        debian.unpack(deb, self.root / package.name)
        self.packages[package.name] = package

    def owner(self, path: str) -> str | None:
        """The package holding ``path`` (file, link or directory), None if none does."""
        for name in self.packages:
            if os.path.lexists(self.root / name / path.lstrip("/")):
                return name
        return None

    def real(self, path: str) -> Path:
        owner = self.owner(path)
        if owner is None:
            raise FileNotFoundError(path)
        return self.root / owner / path.lstrip("/")

    def chain(self, path: str) -> list[str]:
        """``path`` and every link on the way to the file it names (image paths), file last.

        Links are followed in the merged tree, so one package's link may name another's file.
        """
        seen: list[str] = []
        current = str(PurePosixPath(path))
        for _ in range(40):
            parent = self._resolve_parents(current)
            if parent != current:
                current = parent
            if self.owner(current) is None:
                raise FileNotFoundError(path)
            seen.append(current)
            real = self.real(current)
            if not real.is_symlink():
                return seen
            target = os.readlink(real)
            current = os.path.normpath(os.path.join(os.path.dirname(current), target))
        raise ImageError(f"too many links resolving {path}")

    def _resolve_parents(self, path: str) -> str:
        """``path`` with links among its parent directories followed (e.g. ``/lib64``)."""
        parts = PurePosixPath(path).parts
        current = "/"
        for part in parts[1:-1]:
            candidate = os.path.join(current, part)
            owner = self.owner(candidate)
            real = self.root / owner / candidate.lstrip("/") if owner else None
            if real is not None and real.is_symlink():
                candidate = os.path.normpath(os.path.join(current, os.readlink(real)))
            current = candidate
        return os.path.join(current, parts[-1]) if len(parts) > 1 else path


@dataclass
class Closure:
    """What the tools need: image paths to copy, and what could not be found yet."""

    paths: set[str] = field(default_factory=set)
    libraries: set[str] = field(default_factory=set)  # files found as shared libraries
    missing: dict[str, set[str]] = field(default_factory=dict)  # soname -> needing paths


def _search_dirs(path: str, runpath: tuple[str, ...]) -> list[str]:
    origin = str(PurePosixPath(path).parent)
    expanded = [entry.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
                for entry in runpath]
    return [*expanded, *SYSTEM_LIB_DIRS]


def resolve(tree: Unpacked, roots: Iterable[str]) -> Closure:
    """Every file the ``roots`` need to run, following loader and DT_NEEDED recursively."""
    closure = Closure()
    queue: list[str] = []

    def take(path: str) -> str:
        links = tree.chain(path)
        closure.paths.update(links)
        return links[-1]

    for root in roots:
        try:
            queue.append(take(root))
        except FileNotFoundError:
            raise ImageError(f"{root} is in none of the packages {', '.join(PACKAGES)}") from None
    done: set[str] = set()
    while queue:
        path = queue.pop()
        if path in done:
            continue
        done.add(path)
        real = tree.real(path)
        if not elf.is_elf(real):
            continue
        try:
            info = elf.dynamic(real)
        except (elf.ElfError, ValueError) as error:
            raise ImageError(f"{path}: {error}") from None
        if info.interpreter:
            try:
                queue.append(take(info.interpreter))
            except FileNotFoundError:
                closure.missing.setdefault(info.interpreter, set()).add(path)
        for soname in info.needed:
            for directory in _search_dirs(path, info.runpath):
                candidate = f"{directory}/{soname}"
                try:
                    final = take(candidate)
                except FileNotFoundError:
                    continue
                closure.libraries.add(final)
                queue.append(final)
                break
            else:
                closure.missing.setdefault(soname, set()).add(path)
    return closure


def gather(work: Path) -> tuple[Unpacked, Closure]:
    """Fetch and unpack the tools' packages and, round by round, the dependencies that hold
    their missing libraries; ImageError naming a library no dependency provides."""
    wanted = debian.show(PACKAGES)
    absent = [name for name in PACKAGES if name not in wanted]
    if absent:
        raise ImageError(f"apt knows no package {', '.join(absent)}: check the host's apt "
                         "sources (apt-get update)")
    tree = Unpacked(work / "unpacked")
    new = list(wanted.values())
    for _ in range(MAX_ROUNDS):
        for name, deb in debian.fetch(new).items():
            tree.add(next(p for p in new if p.name == name), deb)
        closure = resolve(tree, TOOLS)
        if not closure.missing:
            return tree, closure
        needing = {tree.owner(path) for paths in closure.missing.values() for path in paths}
        candidates = {dep for name in needing if name for dep in tree.packages[name].depends}
        if not candidates - set(tree.packages):  # look one level further: any fetched one's
            candidates = {dep for package in tree.packages.values() for dep in package.depends}
        new = list(debian.show(candidates - set(tree.packages)).values())
        if not new:
            break
    soname, paths = sorted(closure.missing.items())[0]
    raise ImageError(f"{soname} (needed by {sorted(paths)[0]}) is in none of the packages "
                     "it depends on")


def _copy(tree: Unpacked, path: str, rootfs: Path) -> None:
    source = tree.real(path)
    target = rootfs / path.lstrip("/")
    if os.path.lexists(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
    else:
        shutil.copyfile(source, target)
        target.chmod(stat.S_IMODE(source.stat().st_mode))


def populate(rootfs: Path, tree: Unpacked, closure: Closure) -> None:
    """The rootfs: directories, the resolved files, busybox applets, /etc, scripts."""
    for name in DIRECTORIES:
        (rootfs / name).mkdir(mode=0o755, exist_ok=True)
    for directory in ("tmp", "var/tmp"):
        (rootfs / directory).chmod(0o1777)
    for path in sorted(closure.paths):
        _copy(tree, path, rootfs)
    for directory, _dirnames, _files in os.walk(rootfs):
        os.chmod(directory, 0o1777 if directory.endswith("tmp") else 0o755)
    busybox = tree.real("/bin/busybox")
    for applet in busybox_applets(busybox):
        link = rootfs / "bin" / applet
        if not os.path.lexists(link):
            link.symlink_to("busybox")
    (rootfs / "sbin").symlink_to("bin")
    (rootfs / "etc" / "hostname").write_text("cvbench\n")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\n")
    (rootfs / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    for path, body in SCRIPTS.items():
        target = rootfs / path.lstrip("/")
        target.write_text(body)
        target.chmod(0o755)
    directories = sorted({str(PurePosixPath(p).parent) for p in closure.libraries},
                         key=lambda d: (d not in SYSTEM_LIB_DIRS, d))
    (rootfs / LIBRARY_PATH_FILE.lstrip("/")).write_text("\n".join(directories) + "\n")


def busybox_applets(busybox: Path) -> list[str]:
    """The applet names of a static busybox (read from ``--list``)."""
    import subprocess

    listed = subprocess.run([str(busybox), "--list"], check=True, capture_output=True,
                            text=True).stdout.split()
    return sorted(set(listed) - {"busybox"})


def _existing(name: str) -> Image | None:
    """The image last built under ``name`` if its recipe still holds (same package versions
    in the host's index, same format and scripts)."""
    from hostkit.paths import images_dir

    digest = refs().get(name)
    if digest is None:
        return None
    directory = images_dir() / digest
    try:
        recipe = json.loads((directory / "recipe.json").read_text())
    except (OSError, ValueError):
        return None
    if recipe.get("recipe") != recipe_hash() or not (directory / "rootfs").is_dir():
        return None
    packages: dict[str, str] = recipe.get("packages", {})
    current = debian.show(packages)
    if {name: p.version for name, p in current.items()} != packages:
        return None
    return Image(name=name, digest=digest, rootfs=directory / "rootfs")


def build(name: str = NAME) -> Image:
    """Build the workloads image; return the existing one if its recipe is unchanged."""
    from hostkit.paths import images_dir

    found = _existing(name)
    if found is not None:
        return found
    root = images_dir()
    staging = scratch.make("image")
    try:
        try:
            tree, closure = gather(staging)
        except debian.DebianError as error:
            raise ImageError(f"image {name}: {error}") from None
        rootfs = staging / "rootfs"
        rootfs.mkdir()
        populate(rootfs, tree, closure)
        used = sorted({owner for path in closure.paths if (owner := tree.owner(path))})
        shutil.rmtree(tree.root)
        lines = manifest(rootfs)
        digest = digest_of(lines)
        (staging / "manifest.txt").write_text("\n".join(lines) + "\n")
        recipe = {"recipe": recipe_hash(), "format": FORMAT,
                  "packages": {p: tree.packages[p].version for p in sorted(tree.packages)},
                  "used": used}
        (staging / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
        target = root / digest
        if not target.exists():
            os.rename(staging, target)
        else:  # same content: refresh the recipe so the next build takes the quick path
            os.replace(staging / "recipe.json", target / "recipe.json")
        write_ref(name, digest)
        return Image(name=name, digest=digest, rootfs=target / "rootfs")
    finally:
        if staging.exists():
            shutil.rmtree(staging)
