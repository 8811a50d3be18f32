"""apt's package index, read with first alternatives and no versions."""

from __future__ import annotations

from imagestore import debian

SHOW = """Package: fio
Version: 3.33-3
Architecture: amd64
Pre-Depends: init-system-helpers (>= 1.51)
Depends: libaio1 (>= 0.3.93), libc6 (>= 2.34), libgcc-s1 | libgcc1,
 python3:any
Filename: pool/main/f/fio/fio_3.33-3_amd64.deb
SHA256: dc79

Package: busybox-static
Version: 1:1.35.0-4
Architecture: amd64
Filename: pool/main/b/busybox/busybox-static_1.35.0-4_amd64.deb
SHA256: 0123
"""


def test_the_package_index_is_read_with_first_alternatives_and_no_versions() -> None:
    found = debian.parse_show(SHOW)
    assert found["fio"].depends == ("init-system-helpers", "libaio1", "libc6", "libgcc-s1",
                                    "python3")
    assert found["fio"].deb == "fio_3.33-3_amd64.deb"
    assert found["busybox-static"].version == "1:1.35.0-4"
    assert debian._download_name(found["busybox-static"]) == \
        "busybox-static_1%3a1.35.0-4_amd64.deb"
