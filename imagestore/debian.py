"""Debian packages for images: what apt knows of them, fetched once into a cache, unpacked.

Packages are fetched with ``apt-get download`` (the host's own sources and keys, so the
archive's signatures are checked by apt) into ``cache_dir()/apt/archives/`` and checked against
the SHA256 of the host's package index; a package already in the cache with that hash is
never fetched again. Unpacking is ``dpkg-deb -x``: nothing is installed on the host.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hostkit.files import sha256_of
from hostkit.paths import cache_dir


class DebianError(Exception):
    """apt does not know a package, or one could not be fetched or unpacked."""


@dataclass(frozen=True)
class Package:
    """One package as the host's apt index describes its candidate version."""

    name: str
    version: str
    architecture: str
    filename: str  # the .deb's name in the archive pool
    sha256: str
    depends: tuple[str, ...]  # Pre-Depends and Depends, first alternative of each, no versions

    @property
    def deb(self) -> str:
        return Path(self.filename).name


def archives_dir() -> Path:
    return cache_dir() / "apt" / "archives"


_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9+.-]*)")


def parse_depends(field: str) -> tuple[str, ...]:
    """``a (>= 1), b | c, d:any`` -> ``(a, b, d)``: the first alternative of each, bare name."""
    names = []
    for group in field.split(","):
        match = _NAME.match(group.split("|")[0])
        if match:
            names.append(match.group(1))
    return tuple(names)


def parse_show(text: str) -> dict[str, Package]:
    """``apt-cache show`` output (one stanza per package) -> name -> Package."""
    found: dict[str, Package] = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" not in fields or "Filename" not in fields:
            continue
        depends = ", ".join(filter(None, (fields.get("Pre-Depends"), fields.get("Depends"))))
        package = Package(fields["Package"], fields.get("Version", ""),
                          fields.get("Architecture", ""), fields["Filename"],
                          fields.get("SHA256", ""), parse_depends(depends))
        found.setdefault(package.name, package)
    return found


def show(names: Iterable[str]) -> dict[str, Package]:
    """The candidate version of each package apt knows (purely virtual names are left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    try:
        result = subprocess.run(["apt-cache", "show", "--no-all-versions", *wanted],
                                capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DebianError("apt-cache not found: images are built from Debian packages") from None
    return {name: package for name, package in parse_show(result.stdout).items()
            if name in wanted}



def cached(package: Package) -> Path | None:
    """The package's .deb in the cache if it is there and its hash is the index's."""
    path = archives_dir() / package.deb
    if path.is_file() and (not package.sha256 or sha256_of(path) == package.sha256):
        return path
    return None


def fetch(packages: Iterable[Package]) -> dict[str, Path]:
    """Each package's .deb, from the cache or downloaded into it (one apt-get call)."""
    directory = archives_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    missing: list[Package] = []
    for package in packages:
        path = cached(package)
        if path is None:
            missing.append(package)
        else:
            paths[package.name] = path
    if missing:
        partial = directory / "partial"
        partial.mkdir(exist_ok=True)
        result = subprocess.run(
            ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root",
             *(f"{p.name}={p.version}" for p in missing)],
            cwd=partial, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise DebianError("apt-get download failed: " + (lines[-1] if lines else "no output"))
        for package in missing:
            downloaded = partial / _download_name(package)
            if not downloaded.is_file():
                raise DebianError(f"apt-get download left no {package.deb}")
            if package.sha256 and sha256_of(downloaded) != package.sha256:
                downloaded.unlink()
                raise DebianError(f"{package.deb}: SHA256 differs from the package index")
            os.replace(downloaded, directory / package.deb)
            paths[package.name] = directory / package.deb
    return paths


def _download_name(package: Package) -> str:
    """The file name ``apt-get download`` gives a package (its epoch's colon escaped)."""
    version = package.version.replace(":", "%3a")
    return f"{package.name}_{version}_{package.architecture}.deb"


def unpack(deb: Path, target: Path) -> None:
    """``dpkg-deb -x``: the package's files under ``target`` (maintainer scripts not run)."""
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise DebianError(f"dpkg-deb -x {deb.name}: {result.stderr.strip()}")
