"""hostkit.validate: one validator of numbers and names, for options and scenario keys alike.

The command-line side (every option of every subcommand refused in one line, exit 2, before
anything starts) is in test_cli.py; this file checks the validator itself, and that the
scenario loader goes through it with the same bounds as the options of the same quantity.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing

import pytest

from harness import scenario
from harness.backends import registry
from harness.kinds import registry as kinds
from harness.params import ScenarioError
from hostkit import validate
from hostkit.validate import Bounds, Invalid, Names, Text

# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("bounds", "value", "message"),
    [
        (Bounds(1, 10, integer=True), 0, "expected a value >= 1, got 0"),
        (Bounds(1, 10, integer=True), 11, "expected a value <= 10, got 11"),
        (Bounds(1, 10, integer=True), 2.0, "expected an integer, got 2.0"),
        (Bounds(1, 10, integer=True), True, "expected an integer, got True"),
        (Bounds(0, 1), "0.5", "expected a number, got '0.5'"),
        (Bounds(0, 1), math.nan, "expected a number, got nan"),
        (Bounds(0, 1), math.inf, "expected a value <= 1, got inf"),
        (Bounds(0), math.inf, "expected a finite number, got inf"),
        (validate.ALPHA, 0, "expected a value > 0, got 0"),
        (validate.ALPHA, 1.0, "expected a value < 1, got 1.0"),
        (validate.SEED, 2**32, "expected a value <= 4294967295, got 4294967296"),
        (validate.TIMEOUT_S, 0.0001, "expected a value >= 0.001, got 0.0001"),
    ],
)
def test_bounds_refuse_in_one_line(bounds: Bounds, value: object, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        bounds.check(value)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("bounds", "value"),
    [(Bounds(1, 10, integer=True), 1), (Bounds(1, 10, integer=True), 10), (Bounds(0, 1), 0),
     (Bounds(0, 1), 1), (Bounds(0, 1), 0.5), (validate.ALPHA, 0.01), (validate.SEED, 0)],
)
def test_bounds_keep_what_they_allow(bounds: Bounds, value: object) -> None:
    assert bounds.check(value) == value


@pytest.mark.parametrize(
    ("bounds", "text", "message"),
    [
        (validate.TIMEOUT_S, "-1", "expected a value >= 0.001, got -1"),
        (validate.TIMEOUT_S, "1e999", "expected a value <= 86400, got 1e999"),
        (validate.TIMEOUT_S, "nan", "expected a number, got nan"),
        (validate.TIMEOUT_S, "ten", "expected a number, got 'ten'"),
        (validate.TIMEOUT_S, "", "expected a number, got ''"),
        (validate.PIDS, "1.5", "expected an integer, got '1.5'"),
        (validate.PIDS, "9" * 5000, "expected an integer, got '999999"),  # no int() limit
    ],
)
def test_bounds_parse_command_line_text(bounds: Bounds, text: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        bounds.parse(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200
    with pytest.raises(argparse.ArgumentTypeError, match="^expected "):
        bounds(text)


def test_bounds_parse_valid_text() -> None:
    assert validate.PIDS("64") == 64 and isinstance(validate.PIDS("64"), int)
    assert validate.CPUS("0.5") == 0.5 and validate.TIMEOUT_S("10") == 10.0


def test_bounds_describe_themselves_for_help_texts() -> None:
    assert validate.TIMEOUT_S.describe() == "0.001 to 86400 s"
    assert validate.ALPHA.describe() == "> 0 and < 1"
    assert validate.SEED.describe() == "0 to 4294967295"


# ---------------------------------------------------------------- names and text


def test_names_of_a_known_set() -> None:
    network = Names(("none", "bridge"))
    assert network.check("none") == "none"
    with pytest.raises(Invalid, match=r"^expected one of none, bridge, got 'wifi'$"):
        network.check("wifi")
    with pytest.raises(Invalid, match="^expected a name, got 3$"):
        network.check(3)


def test_names_read_a_changing_set_when_checked() -> None:
    known = ["a"]
    names = Names(lambda: known, what="thing")
    with pytest.raises(Invalid, match="^unknown thing 'b', expected one of a$"):
        names.check("b")
    known.append("b")
    assert names.check("b") == "b"
    known.clear()
    with pytest.raises(Invalid, match="^unknown thing 'b', there is none$"):
        names.check("b")


def test_names_list_few_of_many_known() -> None:
    names = Names(tuple(f"n{i}" for i in range(1000)), what="container")
    with pytest.raises(Invalid) as caught:
        names.check("x")
    assert str(caught.value).endswith("n19, ... (1000 in all)")


def test_names_of_a_pattern_and_lists() -> None:
    names = Names(pattern=r"[a-z]+", meaning="lower-case letters")
    assert names("abc") == "abc"
    with pytest.raises(argparse.ArgumentTypeError, match="lower-case letters, got 'a/b'"):
        names("a/b")
    backends = registry.NAME_LIST
    assert backends.split(" ours, crun ,") == ("ours", "crun")
    assert backends("ours,crun") == "ours,crun"  # the command's own parsing is unchanged
    with pytest.raises(Invalid, match="^unknown backend 'vbox', expected one of process, "):
        backends.split("ours,vbox")
    with pytest.raises(Invalid, match="^expected a ','-separated list of backends, got ' , '"):
        backends.split(" , ")


@pytest.mark.parametrize("text", ["", "x" * (validate.MAX_TEXT + 1), "a\0b", None])
def test_text_is_not_empty_nor_huge(text: object) -> None:
    with pytest.raises(Invalid, match="^expected a path"):
        Text().check(text)


# ---------------------------------------------------------------- scenario keys: the same way


def _numeric_keys() -> list[tuple[type, dataclasses.Field[typing.Any], typing.Any]]:
    found = []
    for cls in (scenario.Scenario, *(kind.params for kind in kinds.KINDS)):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            annotation = hints[field.name]
            base = next((a for a in typing.get_args(annotation) if a is not type(None)),
                        annotation)
            if base in (int, float):
                found.append((cls, field, base))
    return found


@pytest.mark.parametrize(("cls", "field", "base"), _numeric_keys(),
                         ids=lambda x: getattr(x, "name", getattr(x, "__name__", "")))
def test_every_numeric_scenario_key_has_finite_bounds(cls, field, base) -> None:
    """A new key cannot escape: its range is declared, with a maximum."""
    bounds = field.metadata.get("check")
    assert isinstance(bounds, Bounds), f"{cls.__name__}.{field.name}: param() has no bounds"
    assert math.isfinite(bounds.minimum) and math.isfinite(bounds.maximum)
    assert bounds.minimum >= 0
    assert not bounds.integer or base is int  # a float key's bounds take floats


@pytest.mark.parametrize(("cls", "field", "base"), _numeric_keys(),
                         ids=lambda x: getattr(x, "name", getattr(x, "__name__", "")))
def test_scenario_keys_are_refused_beyond_their_bounds(cls, field, base) -> None:
    bounds = field.metadata["check"]
    kind = "startup" if cls is scenario.Scenario else next(
        k.name for k in kinds.KINDS if k.params is cls)
    too_big = base(bounds.maximum) + 1
    with pytest.raises(ScenarioError) as caught:
        scenario.loads(f"[[scenario]]\nkind = '{kind}'\n{field.name} = {too_big!r}\n", "b.toml")
    assert str(caught.value) == (f"b.toml: [[scenario]] #1: key '{field.name}': "
                                 f"{bounds.problem(too_big)}, got {too_big!r}")
    at_most = base(bounds.maximum)
    suite = scenario.loads(f"[[scenario]]\nkind = '{kind}'\n{field.name} = {at_most!r}\n")
    assert suite.scenarios


def _ctr_run_option(option: str) -> argparse.Action:
    from harness import cli

    parser = cli.build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    (ctr_commands,) = [a for a in commands.choices["ctr"]._actions
                       if isinstance(a, argparse._SubParsersAction)]
    return next(a for a in ctr_commands.choices["run"]._actions if option in a.option_strings)


@pytest.mark.parametrize(("option", "key"), [("--timeout", "timeout_s"),
                                             ("--memory", "memory_limit_mib"),
                                             ("--pids", "pids_limit"), ("--cpus", "cpu_limit"),
                                             ("--network", "network")])
def test_a_quantity_is_bounded_alike_as_an_option_and_as_a_scenario_key(option, key) -> None:
    """``cvbench ctr run --memory`` and a scenario's ``memory_limit_mib`` cannot disagree."""
    field = next(f for f in dataclasses.fields(scenario.Scenario) if f.name == key)
    assert _ctr_run_option(option).type == field.metadata["check"]


def test_the_suite_seed_and_image_are_checked_too() -> None:
    with pytest.raises(ScenarioError, match=r"^s.toml: \[suite\]: key 'seed': expected a value "
                                            r">= 0, got -1$"):
        scenario.loads("[suite]\nseed = -1\n[[scenario]]\nkind = 'startup'\n", "s.toml")
    with pytest.raises(ScenarioError, match="key 'image': expected an image name or digest"):
        scenario.loads("[suite]\nimage = '../x'\n[[scenario]]\nkind = 'startup'\n", "s.toml")
