"""The readiness rule: its three forms parsed, every bad one refused in one line, and the
refusal of a rule a backend does not honour."""

from __future__ import annotations

import pytest

from harness.backends.base import BackendError
from harness.backends.ready_rule import (
    DEFAULT,
    EXIT,
    LINE,
    RULE,
    TCP,
    ReadyRule,
    refusal,
    supports,
)
from hostkit import validate


@pytest.mark.parametrize(("text", "rule"), [
    ("line:READY", DEFAULT),
    ("line: Listening on 8080 ", ReadyRule(LINE, text="Listening on 8080")),
    ("line:a:b", ReadyRule(LINE, text="a:b")),
    ("exit", ReadyRule(EXIT, text="")),
    ("tcp:8080", ReadyRule(TCP, text="", port=8080)),
    ("tcp:1", ReadyRule(TCP, text="", port=1)),
    ("tcp:65535", ReadyRule(TCP, text="", port=65535)),
])
def test_each_form_parses_and_says_itself_back(text: str, rule: ReadyRule) -> None:
    assert ReadyRule.parse(text) == rule
    assert ReadyRule.parse(str(rule)) == rule
    assert RULE.check(text) == text
    assert rule.as_dict()["rule"] == str(rule) and rule.as_dict()["kind"] == rule.kind
    assert rule.describe()


def test_the_default_is_todays_ready_line() -> None:
    assert str(DEFAULT) == "line:READY" and DEFAULT.marker == b"READY"
    assert "'READY'" in DEFAULT.describe()


@pytest.mark.parametrize(("value", "expected"), [
    ("", 'expected "line:TEXT", "exit" or "tcp:PORT", got \'\''),
    ("READY", "expected \"line:TEXT\""),
    ("line", "expected \"line:TEXT\""),
    ("line:", "line: expected a text of 1 to 200 characters on one line"),
    ("line:   ", "line: expected a text"),
    ("line:" + "x" * 201, "line: expected a text"),
    ("exit:0", "expected \"line:TEXT\""),
    ("tcp", "expected \"line:TEXT\""),
    ("tcp:", "tcp: expected a port from 1 to 65535, got ''"),
    ("tcp:0", "tcp: expected a port from 1 to 65535, got '0'"),
    ("tcp:65536", "tcp: expected a port from 1 to 65535"),
    ("tcp:-1", "tcp: expected a port"),
    ("tcp:http", "tcp: expected a port"),
    ("udp:53", "expected \"line:TEXT\""),
    (8080, "got 8080"),
    (True, "got True"),
])
def test_bad_rules_are_one_line(value: object, expected: str) -> None:
    with pytest.raises(validate.Invalid) as caught:
        ReadyRule.parse(value)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


class Lines:
    ready_kinds = (LINE,)


class Everything:
    ready_kinds = (LINE, EXIT, TCP)


def test_a_backend_honours_the_default_and_the_kinds_it_lists() -> None:
    exit_rule, line_rule = ReadyRule.parse("exit"), ReadyRule.parse("line:go")
    assert supports(object(), DEFAULT) and not supports(object(), line_rule)
    assert supports(Lines, line_rule) and not supports(Lines, exit_rule)
    assert supports(Everything, exit_rule) and refusal("x", Everything, exit_rule) is None
    assert refusal("qemu", object(), line_rule) == (
        "backend 'qemu' cannot wait for ready = 'line:go': it honours only the default, "
        "line:READY")
    assert refusal("crun", Lines, exit_rule) == (
        "backend 'crun' cannot wait for ready = 'exit': it honours line rules")


# Which kinds each backend honours, as docs/writing-a-scenario.md's table says; every other
# kind is refused by the runner in one line before anything starts.
DOCUMENTED = {
    "process": (LINE, EXIT, TCP), "ours": (LINE, EXIT, TCP), "crun": (LINE, EXIT, TCP),
    "runc": (LINE, EXIT, TCP), "floor": (LINE, EXIT, TCP), "docker": (LINE, EXIT, TCP),
    "docker-ours": (LINE, EXIT, TCP), "podman": (LINE, EXIT, TCP), "podman-ours": (LINE, EXIT, TCP),
    "lxc": (LINE, EXIT, TCP), "qemu": (LINE, EXIT, TCP), "microvm": (LINE, EXIT, TCP),
    "libvirt": (LINE, EXIT, TCP),
}


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_each_backend_honours_the_documented_kinds_and_refuses_the_rest(name) -> None:
    from harness.backends import backend_class

    try:
        cls = backend_class(name)
    except BackendError as error:  # its engine's Python package is not installed here
        pytest.skip(str(error))
    assert tuple(cls.ready_kinds) == DOCUMENTED[name]
    for rule in (ReadyRule.parse("exit"), ReadyRule.parse("tcp:80")):
        line = refusal(name, cls, rule)
        if rule.kind in DOCUMENTED[name]:
            assert line is None
        else:
            assert line == (f"backend {name!r} cannot wait for ready = {str(rule)!r}: it "
                            f"honours {', '.join(DOCUMENTED[name])} rules")
