"""The test tree's own rule: no two test modules share a basename.

tests/ has no packages (helpers such as ``inventory`` are imported by name), so pytest imports
each test module by its basename: a unit and an integration module of the same name stop a
whole run at collection ("import file mismatch"), as happened twice. This says which pair,
whichever subset is run.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_basename() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        places[path.name].append(str(path.relative_to(TESTS)))
    assert len(places) > 50  # the tree was found
    shared = {name: paths for name, paths in places.items() if len(paths) > 1}
    assert not shared, shared
