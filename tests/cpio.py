"""The newc cpio reader the initramfs tests check archives with."""

from __future__ import annotations


def read_cpio(data: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """Parse a newc archive into {name: (mode, data, (rdevmajor, rdevminor))}."""
    entries, offset = {}, 0
    while True:
        assert data[offset:offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i: offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        rmajor, rminor = fields[9], fields[10]
        name_start = offset + 110
        name = data[name_start:name_start + namesize - 1].decode()
        body = name_start + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[body:body + size], (rmajor, rminor))
        offset = body + size + (-size % 4)
