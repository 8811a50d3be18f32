"""A fake ``qemu-system-x86_64`` for tests of what a host's QEMU offers: a script answering
``--version`` and ``-machine help`` with the machine types it is given."""

from __future__ import annotations

from pathlib import Path


def fake_qemu(directory: Path, machines: tuple[str, ...] = ("pc", "q35", "none")) -> Path:
    """An executable in ``directory`` listing ``machines`` on ``-machine help``."""
    listing = "\\n".join(f"{name:<20} a machine" for name in machines)
    path = directory / "qemu-system-x86_64"
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-machine" ] && [ "$2" = "help" ]; then\n'
        f"    printf 'Supported machines are:\\n{listing}\\n'; exit 0\n"
        "fi\n"
        "echo 'QEMU emulator version 7.2.0 (fake)'\n")
    path.chmod(0o755)
    return path
