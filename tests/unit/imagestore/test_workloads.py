"""The workloads image's recipe: the library resolver over unpacked packages, and the
recipe that makes a second build instant."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from imagestore import debian, elf, workloads
from imagestore.image import ImageError

LS = Path("/bin/ls")
HOST_LIB_DIRS = (Path("/lib/x86_64-linux-gnu"), Path("/usr/lib/x86_64-linux-gnu"))


def _host_file(soname: str) -> Path | None:
    return next((d / soname for d in HOST_LIB_DIRS if (d / soname).exists()), None)


def _packages_of_ls(root: Path) -> dict[str, str]:
    """Fake unpacked packages holding /bin/ls and, one package each, its libraries (copied
    from the host); soname -> package name."""
    (root / "tool" / "bin").mkdir(parents=True)
    shutil.copy2(LS, root / "tool" / "bin" / "ls")
    owners: dict[str, str] = {}
    queue = list(elf.dynamic(LS).needed)
    while queue:
        soname = queue.pop()
        if soname in owners:
            continue
        source = _host_file(soname)
        assert source is not None, soname
        package = f"pkg-{soname}"
        target = root / package / "lib" / "x86_64-linux-gnu" / soname
        target.parent.mkdir(parents=True)
        shutil.copy2(source.resolve(), target)
        owners[soname] = package
        queue += elf.dynamic(target).needed
    loader = root / "pkg-loader" / "lib64"
    loader.mkdir(parents=True)
    shutil.copy2(Path("/lib64/ld-linux-x86-64.so.2").resolve(),
                 root / "pkg-loader" / "lib64" / "ld.real")
    (loader / "ld-linux-x86-64.so.2").symlink_to("ld.real")
    return owners


def _tree(root: Path, names: list[str]) -> workloads.Unpacked:
    tree = workloads.Unpacked(root)
    for name in names:
        tree.packages[name] = debian.Package(name, "1", "amd64", f"{name}.deb", "", ())
    return tree


def test_the_resolver_follows_loader_links_and_needed_libraries(tmp_path) -> None:
    owners = _packages_of_ls(tmp_path)
    tree = _tree(tmp_path, ["tool", "pkg-loader", *owners.values()])
    closure = workloads.resolve(tree, ["/bin/ls"])
    assert not closure.missing
    assert {"/bin/ls", "/lib64/ld-linux-x86-64.so.2", "/lib64/ld.real",
            "/lib/x86_64-linux-gnu/libc.so.6"} <= closure.paths
    assert "/lib/x86_64-linux-gnu/libselinux.so.1" in closure.libraries


def test_a_library_no_package_holds_is_reported_with_who_needs_it(tmp_path) -> None:
    owners = _packages_of_ls(tmp_path)
    kept = [p for s, p in owners.items() if s != "libselinux.so.1"]
    closure = workloads.resolve(_tree(tmp_path, ["tool", "pkg-loader", *kept]), ["/bin/ls"])
    assert closure.missing == {"libselinux.so.1": {"/bin/ls"}}
    with pytest.raises(ImageError, match="/usr/bin/nothing is in none of the packages"):
        workloads.resolve(_tree(tmp_path, ["tool"]), ["/usr/bin/nothing"])


def test_runpath_with_origin_is_searched_first(tmp_path) -> None:
    assert workloads._search_dirs("/usr/lib/x/libfoo.so", ("$ORIGIN/ceph", "/opt/lib"))[:2] == [
        "/usr/lib/x/ceph", "/opt/lib"]


def test_an_unchanged_recipe_returns_the_built_image(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CVBENCH_STATE_DIR", str(tmp_path))
    digest = "ab" * 32
    directory = tmp_path / "images" / digest
    (directory / "rootfs").mkdir(parents=True)
    (tmp_path / "images" / "refs.json").write_text(json.dumps({"workloads": digest}))
    recipe = {"recipe": workloads.recipe_hash(), "packages": {"fio": "3.33-3"}}
    (directory / "recipe.json").write_text(json.dumps(recipe))
    index = {"fio": debian.Package("fio", "3.33-3", "amd64", "fio.deb", "", ())}
    monkeypatch.setattr(debian, "show", lambda names: {n: index[n] for n in names if n in index})
    assert workloads._existing("workloads").digest == digest
    index["fio"] = debian.Package("fio", "3.34-1", "amd64", "fio.deb", "", ())  # an update
    assert workloads._existing("workloads") is None
    os.remove(directory / "recipe.json")
    assert workloads._existing("workloads") is None
