"""OCI hooks run on the host: state on stdin, their own args and env, errors in one line."""

from __future__ import annotations

import json

import pytest

from runtime.oci import hooks


def test_check_keeps_the_host_stages_and_refuses_the_container_ones():
    entry = {"path": "/bin/true"}
    assert hooks.check({"prestart": [entry], "poststop": [], "poststart": None}) == {
        "prestart": [entry]}
    assert hooks.check(None) == {}
    with pytest.raises(ValueError, match="^hooks.createContainer: hooks in the container"):
        hooks.check({"createContainer": [entry]})
    with pytest.raises(ValueError, match=r"^hooks.prestart\[0\]: needs an absolute path"):
        hooks.check({"prestart": [{"path": "true"}]})


def test_a_hook_gets_the_state_its_args_and_env(tmp_path):
    out = tmp_path / "out"
    script = f'cat > {out}; echo >> {out}; echo "$0 $X" >> {out}'
    hook = {"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["X=seen"]}
    state = {"id": "c", "pid": 42, "status": "creating"}
    hooks.run("prestart", {"prestart": [hook]}, state)
    first, second = out.read_text().splitlines()
    assert json.loads(first) == state and second == "sh seen"
    hooks.run("poststart", {"prestart": [hook]}, state)  # another stage: not run
    assert len(out.read_text().splitlines()) == 2


def test_a_failing_or_slow_hook_is_one_line():
    failing = {"path": "/bin/sh", "args": ["sh", "-c", "echo no >&2; exit 4"]}
    with pytest.raises(hooks.HookError, match="^poststop hook /bin/sh exited with 4: no$"):
        hooks.run("poststop", {"poststop": [failing]}, {})
    slow = {"path": "/bin/sh", "args": ["sh", "-c", "sleep 5"], "timeout": 1}
    with pytest.raises(hooks.HookError, match="^prestart hook /bin/sh: timed out$"):
        hooks.run("prestart", {"prestart": [slow]}, {})
    with pytest.raises(hooks.HookError, match="^prestart hook /nonexistent: "):
        hooks.run("prestart", {"prestart": [{"path": "/nonexistent"}]}, {})
