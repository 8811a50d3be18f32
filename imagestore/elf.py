"""Just enough of ELF to assemble an image: a binary's loader, needed libraries, search path,
and a kernel module's ``.modinfo`` (its ``depends``).

64-bit little-endian files only (x86_64 Debian), read with :mod:`struct`: no ``ldd`` (which
would resolve against the host's libraries, not the image's), no binutils.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x7fELF"
PT_INTERP = 3
SHT_DYNAMIC = 6
DT_NEEDED, DT_RPATH, DT_RUNPATH = 1, 15, 29


class ElfError(ValueError):
    """Not an ELF file this reader understands."""


@dataclass(frozen=True)
class Dynamic:
    """What the dynamic loader needs to run a file."""

    interpreter: str | None  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2 (None: a library)
    needed: tuple[str, ...]  # DT_NEEDED sonames, in order
    runpath: tuple[str, ...]  # DT_RUNPATH (or DT_RPATH) entries, $ORIGIN unexpanded


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == MAGIC
    except OSError:
        return False


def _sections(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(type, offset, size, link, entsize) of every section header."""
    if data[:4] != MAGIC or data[4] != 2 or data[5] != 1:
        raise ElfError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = []
    for index in range(shnum):
        base = shoff + index * shentsize
        _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize = (
            struct.unpack_from("<IIQQQQIIQQ", data, base))
        sections.append((kind, offset, size, link, entsize))
    return sections


def _section_names(data: bytes) -> dict[str, tuple[int, int]]:
    """Section name -> (offset, size)."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    strtab_offset, = struct.unpack_from("<Q", data, shoff + shstrndx * shentsize + 0x18)
    names = {}
    for index in range(shnum):
        base = shoff + index * shentsize
        name_offset, = struct.unpack_from("<I", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        start = strtab_offset + name_offset
        names[data[start:data.index(b"\0", start)].decode()] = (offset, size)
    return names


def _string(data: bytes, offset: int) -> str:
    return data[offset:data.index(b"\0", offset)].decode()


def dynamic(path: Path) -> Dynamic:
    """The loader, DT_NEEDED and run path of ``path``; ElfError if it is not such an ELF."""
    data = Path(path).read_bytes()
    sections = _sections(data)
    interpreter = None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for index in range(phnum):
        kind, _flags, offset, _vaddr, _paddr, size = struct.unpack_from(
            "<IIQQQQ", data, phoff + index * phentsize)
        if kind == PT_INTERP:
            interpreter = data[offset:offset + size].rstrip(b"\0").decode()
    needed: list[str] = []
    runpath: list[str] = []
    for kind, offset, size, link, entsize in sections:
        if kind != SHT_DYNAMIC:
            continue
        strtab = sections[link][1]
        for entry in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == 0:
                break
            if tag == DT_NEEDED:
                needed.append(_string(data, strtab + value))
            elif tag in (DT_RPATH, DT_RUNPATH):
                runpath.extend(p for p in _string(data, strtab + value).split(":") if p)
    return Dynamic(interpreter, tuple(needed), tuple(runpath))


def modinfo(path: Path) -> dict[str, str]:
    """A kernel module's ``.modinfo`` strings (``depends``, ``name``, ...); the first value of
    each key."""
    data = Path(path).read_bytes()
    _sections(data)  # checks the header
    found = _section_names(data).get(".modinfo")
    if found is None:
        raise ElfError(f"{path}: no .modinfo section: not a kernel module")
    offset, size = found
    info: dict[str, str] = {}
    for item in data[offset:offset + size].split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep and key not in info:
            info[key] = value
    return info
