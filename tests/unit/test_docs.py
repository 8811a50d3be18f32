"""The docs name only what exists, and their links lead somewhere.

- Every module, file and attribute named in docs/architecture.md, in the guides (README.md and
  docs/*.md) and in each package's index (its ``__init__.py`` docstring) exists: a dotted name
  such as ``harness.gate.compare`` or ``runtime.cgroups.Driver.prepare_layout``, a path such as
  ``harness/gate/compare.py`` or ``scripts/setup.sh``, and in a package index the names it
  gives relative to the package (``- ``bundle``:``, ``:mod:`agent```, ``docker.py``).
  Findings (docs/findings/, docs/gate-power.md) are records of a commit's code and are left
  out of that check.
- Every relative link in README.md and docs/**/*.md points to a file that exists, and a
  ``#fragment`` to one of that page's headings (GitHub's anchors); every docs page the code,
  the scripts, the tests and the scenario files name (``docs/gate.md``) exists.

The checkers themselves are tested at the end, on text naming what does not exist.
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "runtime", "vm", "hostkit", "imagestore")
TOP_DIRECTORIES = (*PACKAGES, "scripts", "tests", "scenarios", "docs", "notebooks")
DOCS = REPOSITORY / "docs"
# Records of what a commit's code did: they may name what has since been renamed.
RECORDS = ("findings/", "gate-power.md")

_EDGE = r"(?<![\w./-])"  # not inside a longer name or path
_PACKAGE = "(?:" + "|".join(PACKAGES) + ")"
_TOP = "(?:" + "|".join(TOP_DIRECTORIES) + ")"
DOTTED = re.compile(_EDGE + "(" + _PACKAGE + r"(?:\.\w+)+)")  # harness.gate.compare
PATH = re.compile(_EDGE + "(" + _TOP + r"/[\w./-]*)(.?)")  # harness/gate/compare.py, and after
RELATIVE_MOD = re.compile(r":mod:`[~.]*(\w+)`")  # :mod:`agent`, :mod:`.cgroup`
LIST_ITEM = re.compile(r"^\s*- ``(\w+)``:", re.MULTILINE)  # "- ``bundle``: ..."
FILE_NAME = re.compile(r"``(\w+\.(?:py|sh|yml|c))``")  # ``docker.py``, in the package's dir
PLACEHOLDER = set("<*{[")  # docs/engines-*.png, results/<run-id>/: patterns, not paths


@dataclass(frozen=True)
class Name:
    """A name found in a text, and where."""

    where: str
    name: str


# ---------------------------------------------------------------- what is named


def named_in(text: str, where: str) -> list[Name]:
    """Every dotted module name and every repository path ``text`` names."""
    found = [Name(where, m.group(1)) for m in DOTTED.finditer(text)]
    for match in PATH.finditer(text):
        path, after = match.group(1).rstrip(".,:;"), match.group(2)
        if after in PLACEHOLDER or path.endswith("-"):
            continue
        found.append(Name(where, path))
    return found


def named_relative(package: str, docstring: str, where: str) -> list[Name]:
    """The names a package index gives relative to its package, made absolute."""
    directory = package.replace(".", "/")
    found = [Name(where, f"{package}.{m}") for m in RELATIVE_MOD.findall(docstring)
             if not m.startswith(PACKAGES)]
    found += [Name(where, f"{package}.{m}") for m in LIST_ITEM.findall(docstring)]
    found += [Name(where, f"{directory}/{m}") for m in FILE_NAME.findall(docstring)]
    return found


def package_indexes(root: Path) -> dict[str, str]:
    """Dotted package name -> its ``__init__.py`` docstring (empty if it has none)."""
    found = {}
    for package in PACKAGES:
        for init in sorted((root / package).rglob("__init__.py")):
            dotted = ".".join(init.parent.relative_to(root).parts)
            found[dotted] = ast.get_docstring(ast.parse(init.read_text())) or ""
    return found


def guides(root: Path) -> list[Path]:
    """README.md and the docs pages that teach (not the records of findings)."""
    docs = root / "docs"
    pages = [p for p in sorted(docs.rglob("*.md"))
             if not p.relative_to(docs).as_posix().startswith(RECORDS)]
    return [root / "README.md", *pages]


# ---------------------------------------------------------------- does it exist


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _has(owner: object, name: str) -> bool:
    if hasattr(owner, name):
        return True
    classes = getattr(owner, "__mro__", ())  # dataclass fields without a default, annotations
    return any(name in getattr(cls, "__dataclass_fields__", {})
               or name in getattr(cls, "__annotations__", {}) for cls in classes)


def missing(root: Path, names: list[Name]) -> list[str]:
    """One line per name that does not exist under ``root``: a path, a module, or an
    attribute of the longest module prefix of a dotted name (imported to look)."""
    problems = []
    for item in names:
        name = item.name
        if "/" in name:
            if not (root / name).exists():
                problems.append(f"{item.where}: {name}: no such file or directory")
            continue
        parts = name.split(".")
        cut = next((end for end in range(len(parts), 0, -1)
                    if _module_file(root, ".".join(parts[:end]))), 0)
        if cut == 0:
            problems.append(f"{item.where}: {name}: no such module")
            continue
        if cut == len(parts):
            continue
        module_name = ".".join(parts[:cut])
        if root != REPOSITORY:  # a scratch tree: its modules are not importable
            problems.append(f"{item.where}: {name}: no {parts[cut]!r} in {module_name}")
            continue
        owner: object = importlib.import_module(module_name)
        for part in parts[cut:]:
            if not _has(owner, part):
                problems.append(f"{item.where}: {name}: no {part!r} in {module_name}")
                break
            owner = getattr(owner, part, None)
            module_name = f"{module_name}.{part}"
            if owner is None:  # a field without a default: nothing further to look into
                break
    return problems


def test_architecture_names_only_what_exists() -> None:
    page = DOCS / "architecture.md"
    names = named_in(page.read_text(), "docs/architecture.md")
    assert len(names) > 30  # the page was read
    assert missing(REPOSITORY, names) == []


def test_package_indexes_name_only_what_exists() -> None:
    names: list[Name] = []
    for package, docstring in package_indexes(REPOSITORY).items():
        where = f"{package.replace('.', '/')}/__init__.py"
        names += named_in(docstring, where) + named_relative(package, docstring, where)
    assert len(names) > 40  # the indexes were read
    assert missing(REPOSITORY, names) == []


def test_guides_name_only_what_exists() -> None:
    names = [name for page in guides(REPOSITORY)
             for name in named_in(page.read_text(), str(page.relative_to(REPOSITORY)))]
    assert missing(REPOSITORY, names) == []


# ---------------------------------------------------------------- links

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    """``text`` without code blocks and code spans, where brackets are not links."""
    text = FENCE.sub("", text)
    text = re.sub(r"^(?: {4}|\t).*$", "", text, flags=re.MULTILINE)  # indented code
    return CODE_SPAN.sub("", text)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped but
    ``-`` and ``_``, spaces as ``-``; a repeated heading gets ``-1``, ``-2``, ..."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
        slug = re.sub(r"[^\w\- ]", "", plain.replace("`", "").strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(root: Path, pages: list[Path]) -> list[str]:
    """One line per relative link of ``pages`` whose file or heading does not exist."""
    problems = []
    for page in pages:
        text = page.read_text()
        for target in LINK.findall(_prose(text)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)}: {target}"
            if not file.exists():
                problems.append(f"{where}: no such file")
            elif fragment and file.suffix == ".md" and fragment not in anchors(file.read_text()):
                problems.append(f"{where}: no heading with that anchor")
    return problems


def test_relative_links_lead_somewhere() -> None:
    pages = [REPOSITORY / "README.md", *sorted(DOCS.rglob("*.md"))]
    assert len(pages) > 10
    assert broken_links(REPOSITORY, pages) == []


def code_files(root: Path) -> list[Path]:
    """The files outside docs/ that may name a docs page: code, scripts, tests, scenarios."""
    found = [root / "Makefile", root / "pyproject.toml"]
    for directory in (*PACKAGES, "scripts", "tests", "scenarios", "notebooks"):
        found += [path for path in sorted((root / directory).rglob("*"))
                  if path.is_file() and path.suffix in (".py", ".sh", ".toml", ".ipynb", ".c",
                                                        ".yml")]
    return [path for path in found if path != Path(__file__).resolve()]  # its own examples


def test_code_names_only_docs_pages_that_exist() -> None:
    names = [name for path in code_files(REPOSITORY)
             for name in named_in(path.read_text(errors="replace"),
                                  str(path.relative_to(REPOSITORY)))
             if name.name.startswith("docs/")]
    assert len(names) > 10  # the files were read
    assert missing(REPOSITORY, names) == []


# ---------------------------------------------------------------- the checkers themselves


@pytest.mark.parametrize("text, expected", [
    ("``harness.gate.compare``", []),
    ("``harness.gate.nosuch``", ["no 'nosuch' in harness.gate"]),
    (":mod:`~harness.gate.nosuch`", ["no 'nosuch' in harness.gate"]),
    ("``nosuch.gate``, ``hostkit/nosuch/``", ["no such file or directory"]),
    ("``vm.hypervisor.nosuch``", ["no 'nosuch' in vm.hypervisor"]),
    ("``runtime.cgroups.Driver.nosuch()``", ["no 'nosuch' in runtime.cgroups.Driver"]),
    ("``harness.scenario.Scenario.params``", []),  # a field without a default
    ("see harness/gate/compare.py.", []),
    ("see harness/gate/nosuch.py.", ["no such file or directory"]),
    ("``docs/engines-*.png``, ``results/<run-id>/``", []),
])
def test_a_name_that_does_not_exist_is_reported(text: str, expected: list[str]) -> None:
    problems = missing(REPOSITORY, named_in(text, "page"))
    assert len(problems) == len(expected), problems
    for problem, part in zip(problems, expected, strict=True):
        assert part in problem


def test_a_package_index_is_read_relative_to_its_package() -> None:
    docstring = ("- ``launcher``: the client.\n- ``nosuch``: gone.\n"
                 ":mod:`agent` and :mod:`absent`; ``backend.py`` and ``gone.py``.")
    names = named_relative("harness.backends.oci", docstring, "index")
    problems = missing(REPOSITORY, names)
    assert sorted(problems) == [
        "index: harness.backends.oci.absent: no 'absent' in harness.backends.oci",
        "index: harness.backends.oci.agent: no 'agent' in harness.backends.oci",
        "index: harness.backends.oci.nosuch: no 'nosuch' in harness.backends.oci",
        "index: harness/backends/oci/gone.py: no such file or directory",
    ]


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Its `second` part, again\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/page.md) [ok](docs/page.md#its-second-part-again) [ok](#top)\n"
        "[gone](docs/gone.md) [bad anchor](docs/page.md#nowhere) ![img](docs/x.png)\n"
        "[web](https://example.org/x) `[code](nowhere.md)`\n\n    [indented](nowhere.md)\n"
        "# Top\n")
    assert broken_links(tmp_path, [readme]) == [
        "README.md: docs/gone.md: no such file",
        "README.md: docs/page.md#nowhere: no heading with that anchor",
        "README.md: docs/x.png: no such file",
    ]
