"""What READY means for an instance's workload: one rule, the same for every backend.

A scenario says it with the ``ready`` key (``[suite]`` or per scenario) in one of three forms:

- ``line:TEXT`` (default ``line:READY``, today's rule): the workload printed a line equal to
  ``TEXT`` (spaces around it ignored) on its stdout;
- ``exit``: the workload's process exited with status 0 (a run-to-completion image); a
  non-zero status is :class:`~harness.backends.base.NotReady` in one line;
- ``tcp:PORT``: a TCP connection from the host to ``PORT`` on the instance's bridge address
  is accepted (it needs ``network = "bridge"``).

:meth:`ReadyRule.parse` takes the text and raises :class:`hostkit.validate.Invalid` with one
line; :class:`RULE` is the check the scenario loader uses for the key. Each backend declares
the kinds of rule it honours beyond the default (``ready_kinds``); the runner refuses the
rest before anything starts (:func:`refusal`): a rule is never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hostkit import validate

LINE = "line"
EXIT = "exit"
TCP = "tcp"
KINDS = (LINE, EXIT, TCP)
MAX_LINE = 200  # the longest expected line: a marker, not a log
FORMS = '"line:TEXT", "exit" or "tcp:PORT"'


@dataclass(frozen=True)
class ReadyRule:
    """One readiness rule: its ``kind`` and, for ``line``, its ``text``; for ``tcp``, its
    ``port``."""

    kind: str = LINE
    text: str = "READY"
    port: int = 0

    @classmethod
    def parse(cls, value: object) -> ReadyRule:
        """The rule a scenario's ``ready`` value says; Invalid (one line) if none."""
        if not isinstance(value, str):
            raise validate.Invalid(f"expected {FORMS}, got {value!r}")
        kind, colon, argument = value.partition(":")
        if kind == EXIT and not colon:
            return cls(EXIT, text="", port=0)
        if kind == LINE and colon:
            text = argument.strip()
            if not text or len(text) > MAX_LINE or any(c in text for c in "\n\r\0"):
                raise validate.Invalid(
                    f"line: expected a text of 1 to {MAX_LINE} characters on one line, "
                    f"got {argument[:60]!r}")
            return cls(LINE, text=text)
        if kind == TCP and colon:
            if not argument.isdigit() or not 1 <= int(argument) <= 65535:
                raise validate.Invalid(f"tcp: expected a port from 1 to 65535, "
                                       f"got {argument[:60]!r}")
            return cls(TCP, text="", port=int(argument))
        raise validate.Invalid(f"expected {FORMS}, got {value[:60]!r}")

    def __str__(self) -> str:
        return {LINE: f"line:{self.text}", EXIT: EXIT, TCP: f"tcp:{self.port}"}[self.kind]

    @property
    def marker(self) -> bytes:
        """The line a ``line`` rule waits for, as the workload writes it."""
        return self.text.encode()

    def describe(self) -> str:
        """The rule in words, for the report's methodology."""
        if self.kind == EXIT:
            return "the workload's process exited with status 0 (a run-to-completion image)"
        if self.kind == TCP:
            return (f"a TCP connection from the host to port {self.port} on the instance's "
                    "bridge address was accepted")
        return f"the workload printed the line {self.text!r} on its stdout"

    def as_dict(self) -> dict[str, Any]:
        """What metadata.json records: the rule as written and in words."""
        return {"rule": str(self), "kind": self.kind, "meaning": self.describe()}


DEFAULT = ReadyRule()


@dataclass(frozen=True)
class RuleCheck:
    """The scenario key's check (what :mod:`harness.params` calls ``check``)."""

    def check(self, value: object) -> str:
        ReadyRule.parse(value)
        assert isinstance(value, str)
        return value


RULE = RuleCheck()


def supports(backend: Any, rule: ReadyRule) -> bool:
    """Whether ``backend`` (an instance or its class) honours ``rule``: every backend the
    default, and the kinds it lists in ``ready_kinds``."""
    return rule == DEFAULT or rule.kind in getattr(backend, "ready_kinds", ())


def refusal(name: str, backend: Any, rule: ReadyRule) -> str | None:
    """The line refusing ``rule`` on backend ``name`` if it cannot honour it; else None."""
    if supports(backend, rule):
        return None
    kinds = getattr(backend, "ready_kinds", ())
    offered = (f"{', '.join(kinds)} rules" if kinds else f"only the default, {DEFAULT}")
    return f"backend {name!r} cannot wait for ready = {str(rule)!r}: it honours {offered}"
