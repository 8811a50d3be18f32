"""The one validator of the numbers and names cvbench takes in: options and scenario keys alike.

A :class:`Bounds` says what a number may be (an integer or not, its smallest and largest
value), a :class:`Names` what a name may be (one of a known set, read when checked, and/or
of a pattern), a :class:`Text` what a free-form value (a path, a run id) may be. Each is
an argparse ``type=``, so a bad option is refused while the command line is parsed: before
a command does anything, in one line, exit code 2. Each also checks a value that is
already typed (``check``): the scenario loader (:mod:`harness.params`) and the libraries
use that, so a quantity taken in two places (``cvbench ctr run --memory`` and a scenario's
``memory_limit_mib``) is checked one way and against the same bounds.

A problem is an :class:`Invalid` holding one line that says what was expected and what was
given, without the option's or key's name: the caller adds it (argparse's
``argument --timeout: ...``, the loader's ``file: key 'timeout_s': ...``).

The bounds of the quantities more than one place takes are defined here once (the
``*_S``, ``*_MIB`` and count constants below). Every maximum is a sane ceiling, not a host's
capacity: a scenario file may be run on another host, and the libraries still refuse what
this host cannot give (a memory limit above its RAM, a CPU quota above its CPUs).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

DAY_S = 86_400
WEEK_S = 7 * DAY_S
MAX_COUNT = 10_000  # instances (live, in a batch, measured together): the density cap
MAX_ROUNDS = 10_000_000  # repetitions, warm-ups, passes: each takes milliseconds at least, so
# this is days of work; a run meant to go on until interrupted (Ctrl-C) asks for a million
MAX_MEMORY_MIB = 16 << 20  # 16 TiB: more than any host cvbench is meant for
MAX_CPUS = 8_192  # the kernel's largest NR_CPUS
MAX_PIDS = 4_194_304  # the kernel's PID_MAX_LIMIT on 64-bit
MAX_TEXT = 4_096  # PATH_MAX: the longest path, run id or reference taken
SHOWN = 60  # the longest given value repeated in a message (the line stays readable)
LISTED = 20  # the most allowed names a message lists (a state directory may hold thousands)


class Invalid(ValueError):
    """A value outside what is allowed; the message is one line: what was expected, what came."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}..."


def _number(value: float) -> str:
    """A bound as written by hand: 86400, 0.001, 4294967295 (not 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def as_number(value: object, *, integer: bool) -> int | float:
    """``value`` (already typed: from TOML or code) if it is an integer (``integer``) or a
    number, not a boolean and not NaN; :class:`Invalid` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            integer and not isinstance(value, int)):
        raise Invalid(f"expected {'an integer' if integer else 'a number'}, got {_shown(value)}")
    if isinstance(value, float) and math.isnan(value):
        raise Invalid(f"expected a number, got {value!r}")
    return value


def parse_number(text: str, *, integer: bool) -> int | float:
    """A number typed on a command line; :class:`Invalid` if ``text`` is none (or NaN)."""
    try:
        value: int | float = int(text) if integer else float(text)
    except ValueError:
        raise Invalid(f"expected {'an integer' if integer else 'a number'}, "
                      f"got {_shown(text)}") from None
    return as_number(value, integer=integer)


@dataclass(frozen=True)
class Bounds:
    """What a number may be: an integer or any finite number, from ``minimum`` to ``maximum``
    (excluded where ``open_minimum``/``open_maximum``: a significance level is > 0 and < 1).

    An instance is an argparse ``type=`` (a command-line option's text, parsed and checked)
    and checks typed values (:meth:`check`).
    """

    minimum: float = -math.inf
    maximum: float = math.inf
    integer: bool = False
    open_minimum: bool = False
    open_maximum: bool = False
    unit: str = ""  # said in help texts (``describe``): "s", "MiB"

    def problem(self, value: int | float) -> str | None:
        """What is wrong with a number's size (``expected a value >= 1``), or None."""
        if value < self.minimum or (self.open_minimum and value == self.minimum):
            return f"expected a value {'>' if self.open_minimum else '>='} {_number(self.minimum)}"
        if value > self.maximum or (self.open_maximum and value == self.maximum):
            return f"expected a value {'<' if self.open_maximum else '<='} {_number(self.maximum)}"
        if isinstance(value, float) and math.isinf(value):  # bounds left open-ended
            return "expected a finite number"
        return None

    def check(self, value: object) -> int | float:
        """``value`` if it is a number of the right kind within the bounds; Invalid if not."""
        return self._within(as_number(value, integer=self.integer), _shown(value))

    def parse(self, text: str) -> int | float:
        """``text`` (a command line's) as a number within the bounds; Invalid if not."""
        return self._within(parse_number(text, integer=self.integer),
                            text if len(text) <= SHOWN else _shown(text))

    def _within(self, number: int | float, given: str) -> int | float:
        problem = self.problem(number)
        if problem:
            raise Invalid(f"{problem}, got {given}")
        return number

    def describe(self) -> str:
        """The range in words, for help texts: ``0.001 to 86400 s``, ``> 0 and < 1``."""
        unit = f" {self.unit}" if self.unit else ""
        if self.open_minimum or self.open_maximum:
            low = f"{'>' if self.open_minimum else '>='} {_number(self.minimum)}"
            high = f"{'<' if self.open_maximum else '<='} {_number(self.maximum)}"
            return f"{low} and {high}{unit}"
        return f"{_number(self.minimum)} to {_number(self.maximum)}{unit}"

    def __call__(self, text: str) -> int | float:
        try:
            return self.parse(text)
        except Invalid as error:
            raise argparse.ArgumentTypeError(str(error)) from None


Known = tuple[str, ...] | Callable[[], Iterable[str]]


@dataclass(frozen=True)
class Names:
    """What a name may be: one of ``known`` (a tuple, or a function read at each check, such
    as the backend table), and/or a match of ``pattern`` (``meaning`` says it in words).

    With a ``separator`` a value is a list (``--backend a,b``): each item is checked, empty
    items are dropped, and at least one is needed. As an argparse ``type=`` it returns the
    text as given, so the command's own parsing of it is unchanged.
    """

    known: Known = ()
    what: str = ""  # "backend": "unknown backend 'x', expected one of ..."
    pattern: str = ""
    meaning: str = ""
    separator: str = ""

    def choices(self) -> tuple[str, ...]:
        return tuple(self.known() if callable(self.known) else self.known)

    def check(self, name: object) -> str:
        """``name`` if it is allowed; :class:`Invalid` naming what is."""
        if not isinstance(name, str):
            raise Invalid(f"expected {self.meaning or 'a name'}, got {_shown(name)}")
        if self.pattern and not re.fullmatch(self.pattern, name):
            raise Invalid(f"expected {self.meaning or 'a name'}, got {_shown(name)}")
        if callable(self.known) or self.known:
            choices = self.choices()
            if name not in choices:
                listed = ", ".join(choices[:LISTED]) + (
                    f", ... ({len(choices)} in all)" if len(choices) > LISTED else "")
                allowed = f"expected one of {listed}" if choices else "there is none"
                if self.what:
                    raise Invalid(f"unknown {self.what} {_shown(name)}, {allowed}")
                raise Invalid(f"{allowed}, got {_shown(name)}")
        return name

    def split(self, text: str) -> tuple[str, ...]:
        """A list (``a,b``) as its checked items."""
        items = tuple(item.strip() for item in text.split(self.separator) if item.strip())
        if not items:
            raise Invalid(f"expected a {self.separator!r}-separated list of "
                          f"{self.what or 'name'}s, got {_shown(text)}")
        return tuple(self.check(item) for item in items)

    def __call__(self, text: str) -> str:
        try:
            self.split(text) if self.separator else self.check(text)
        except Invalid as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text


@dataclass(frozen=True)
class Text:
    """A free-form value (a path, a run id): not empty, at most ``MAX_TEXT`` characters.

    Whether the thing it names exists is for the command to say, before it starts anything:
    a path's meaning can depend on other options (a run id on ``--results-dir``).
    """

    what: str = "a path"

    def check(self, text: object) -> str:
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT or "\0" in text:
            raise Invalid(f"expected {self.what} (1 to {MAX_TEXT} characters), "
                          f"got {_shown(text)}")
        return text

    def __call__(self, text: str) -> str:
        try:
            return self.check(text)
        except Invalid as error:
            raise argparse.ArgumentTypeError(str(error)) from None


# ---------------------------------------------------------------- bounds taken in several places

TIMEOUT_S = Bounds(0.001, DAY_S, unit="s")  # waiting for an instance's READY
DURATION_S = Bounds(0, DAY_S, unit="s")  # a wait or grace that may be none (settle, SIGKILL)
RUN_TIMEOUT_S = Bounds(1, WEEK_S, integer=True, unit="s")  # a whole run (a fleet host's)
MEMORY_LIMIT_MIB = Bounds(4, MAX_MEMORY_MIB, integer=True, unit="MiB")  # below 4 MiB even
# busybox sh cannot start (runtime.spec's MIN_MEMORY_BYTES is this minimum)
GUEST_MEMORY_MIB = Bounds(16, MAX_MEMORY_MIB, integer=True, unit="MiB")
PIDS = Bounds(1, MAX_PIDS, integer=True)
CPUS = Bounds(0.01, MAX_CPUS)  # a CPU quota: 0.01 is the kernel's 1 ms per 100 ms period
VCPUS = Bounds(1, MAX_CPUS, integer=True)
SEED = Bounds(0, 2**32 - 1, integer=True)  # the range the harness draws a turn order's seed in
ALPHA = Bounds(0, 1, open_minimum=True, open_maximum=True)  # a significance level
PATH = Text()
RUN = Text("a run directory or run id")
INSTANCES = Bounds(1, MAX_COUNT, integer=True)  # instances an experiment starts (a level, a batch)
INTERVAL_S = Bounds(0.001, DAY_S, unit="s")  # a measuring window: some time must pass
BACKEND_OPTION = Names(pattern=r"[a-z][a-z0-9_]*=.*", meaning="a backend option KEY=VALUE")
