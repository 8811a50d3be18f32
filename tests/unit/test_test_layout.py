"""The test tree's own rule: a module's tests are found by the module's name.

- A unit test module mirrors the module it tests: ``tests/unit/harness/gate/test_confirm.py``
  tests ``harness/gate/confirm.py``, and ``tests/unit/harness/test_report.py`` the package
  ``harness/report/__init__.py`` as a whole; a C program built by set-up is a module too
  (``tests/unit/vm/test_guest_exec.py`` tests ``vm/guest_exec.c``). Only the few
  cross-cutting files in :data:`CROSS_CUTTING` sit outside that rule, each with its reason.
- An integration test module sits in the directory of the package whose code it drives
  (``tests/integration/runtime/test_rootfs.py``), named after the module when it drives one,
  after its topic otherwise (docs/testing.md).

pytest imports test modules by path (``--import-mode=importlib``), so two of them may share a
basename (``tests/unit/vm/test_sweep.py``, ``tests/integration/vm/test_sweep.py``).
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPOSITORY = TESTS.parent
UNIT = TESTS / "unit"
INTEGRATION = TESTS / "integration"
# The source trees tests mirror: the packages, and scripts/ for its importable scripts.
SOURCES = ("harness", "runtime", "vm", "hostkit", "imagestore", "scripts")

# Unit test modules that test no one module, relative to tests/unit, and why.
CROSS_CUTTING = {
    "test_docs.py": "the docs against every package: each name they give exists",
    "test_imports.py": "the import layers between all the packages",
    "test_notebook.py": "notebooks/analysis.ipynb, a notebook rather than a module",
    "test_harness_share.py": "one figure followed through the startup kind, report and gate",
    "test_test_layout.py": "the test tree's own rule (this file)",
}


def source_of(test: Path) -> Path | None:
    """The module (or package) a test module mirrors, both relative to their roots; None if
    no such module exists."""
    *directories, name = test.parts
    if not (name.startswith("test_") and name.endswith(".py")):
        return None
    stem = Path(*directories, name[len("test_"):-len(".py")])
    if stem.parts[0] not in SOURCES:
        return None
    for candidate in (stem.with_suffix(".py"), stem / "__init__.py", stem.with_suffix(".c")):
        if (REPOSITORY / candidate).is_file():
            return candidate
    return None


def unit_tests() -> list[Path]:
    return sorted(path.relative_to(UNIT) for path in UNIT.rglob("test_*.py"))


def test_every_unit_test_module_mirrors_a_source_module() -> None:
    tests = unit_tests()
    assert len(tests) > 40  # the tree was found
    strays = [str(test) for test in tests
              if source_of(test) is None and str(test) not in CROSS_CUTTING]
    assert not strays, f"unit test modules that mirror no source module: {strays}"


def test_the_cross_cutting_list_names_only_files_that_exist_and_mirror_nothing() -> None:
    stale = [name for name in CROSS_CUTTING if not (UNIT / name).is_file()]
    mirroring = [name for name in CROSS_CUTTING if source_of(Path(name)) is not None]
    assert not stale, f"listed as cross-cutting but gone: {stale}"
    assert not mirroring, f"listed as cross-cutting but mirror a module: {mirroring}"


def test_every_integration_test_module_sits_in_a_package_it_drives() -> None:
    tests = sorted(path.relative_to(INTEGRATION) for path in INTEGRATION.rglob("test_*.py"))
    assert len(tests) > 20  # the tree was found
    strays = [str(test) for test in tests
              if test.parts[0] not in SOURCES or not (REPOSITORY / test.parent).is_dir()]
    assert not strays, f"integration test modules outside a source package's directory: {strays}"


def test_source_of_maps_modules_and_packages_and_refuses_the_rest() -> None:
    assert source_of(Path("harness/gate/test_confirm.py")) == Path("harness/gate/confirm.py")
    assert source_of(Path("harness/test_report.py")) == Path("harness/report/__init__.py")
    assert source_of(Path("test_hostkit.py")) == Path("hostkit/__init__.py")
    assert source_of(Path("vm/test_accel.py")) == Path("vm/accel.py")
    assert source_of(Path("vm/test_domain_accel.py")) is None  # no vm/domain_accel.py
    assert source_of(Path("test_domain.py")) is None  # a module's tests sit in its package
    assert source_of(Path("harness/gate/confirm.py")) is None  # not a test module
    assert source_of(Path("notebooks/test_analysis.py")) is None  # not a source tree
