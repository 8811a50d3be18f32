"""Scenario files: valid ones load into frozen dataclasses; every malformed one gives one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oci_runtimes import copy_of_crun, forgetting_user_runtimes

from harness import scenario
from harness.backends import registry
from harness.kinds import registry as kinds
from harness.kinds.density import DensityParams
from harness.kinds.memory import MemoryParams
from harness.kinds.startup import StartupParams
from harness.scenario import ScenarioError

REPO = Path(__file__).resolve().parents[3]

VALID = """
[suite]
name = "t"
backends = ["process", "ours"]

[[scenario]]
kind = "startup"
repetitions = 5

[scenario.overrides.ours]
repetitions = 7
"""


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.toml")), ids=str)
def test_shipped_scenarios_load(path: Path) -> None:
    suite = scenario.load(path)
    assert suite.scenarios
    assert suite.text == path.read_text()


def test_valid_file_loads_into_frozen_dataclasses() -> None:
    suite = scenario.loads(VALID, "t.toml")
    assert suite.backends == ("process", "ours")
    (startup,) = suite.scenarios
    assert startup.kind == "startup" and startup.name == "startup"
    assert startup.params == StartupParams(repetitions=5, warmup=2)
    assert startup.for_backend("ours").params.repetitions == 7
    assert startup.for_backend("process").params.repetitions == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        startup.params.repetitions = 3  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        startup.timeout_s = 3.0  # type: ignore[misc]


def test_each_kind_gets_its_own_keys_with_their_defaults() -> None:
    suite = scenario.loads(
        "[[scenario]]\nkind='density'\nbatch_size=4\ntimeout_s=9\n"
        "[[scenario]]\nkind='memory'\nksm=['off', 'on']\n", "t.toml")
    density, memory = suite.scenarios
    assert density.params == DensityParams(batch_size=4) and density.timeout_s == 9.0
    assert memory.params == MemoryParams(ksm=("off", "on"))
    assert memory.params.warmup == 2  # the memory kind's own default


FAMILY_THEN_BACKEND = """
[suite]
backends = ["process", "ours", "qemu", "libvirt"]

[[scenario]]
kind = "memory"
instances = 50
timeout_s = 30

[scenario.overrides.vm]
instances = 3
timeout_s = 120
ksm = ["off", "on"]

[scenario.overrides.libvirt]
instances = 2

[scenario.overrides.ours]
timeout_s = 10
"""


def test_family_overrides_then_the_backends_own() -> None:
    (memory,) = scenario.loads(FAMILY_THEN_BACKEND, "t.toml").scenarios
    plans = {name: memory.for_backend(name) for name in ("process", "ours", "qemu", "libvirt")}
    assert plans["process"] is memory
    assert (plans["ours"].timeout_s, plans["ours"].params.instances) == (10.0, 50)
    assert (plans["qemu"].timeout_s, plans["qemu"].params.instances) == (120.0, 3)
    assert (plans["libvirt"].timeout_s, plans["libvirt"].params.instances) == (120.0, 2)
    assert plans["libvirt"].params.ksm == ("off", "on")
    assert memory.params.ksm == ("off",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[scenario]]\nkind='startup'\nmax_instances=3\n",
         "key 'max_instances' belongs to kind density, not startup: "
         "startup's own keys are repetitions, warmup, variants, settle_s"),
        ("[[scenario]]\nkind='density'\nvariants=['warm']\n",
         "key 'variants' belongs to kind startup, not density: density's own keys are "
         "max_instances, batch_size, min_mem_available_mib, time_limit_s, warmup_batch"),
        ("[[scenario]]\nkind='density'\n[scenario.overrides.vm]\npasses=2\n",
         "#1 overrides.vm: key 'passes' belongs to kind memory, not density"),
    ],
)
def test_a_key_of_another_kind_names_the_kinds_keys(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario.loads(text, "bad.toml")
    assert str(caught.value).startswith("bad.toml: [[scenario]] #1")
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[scenario]]\nkind='startup'\nrepetitons=3\n", "unknown key 'repetitons'"),
        ("[[scenario]]\nkind='startup'\nrepetitions='3'\n",
         "key 'repetitions': expected an integer"),
        ("[[scenario]]\nkind='startup'\nrepetitions=-1\n",
         "key 'repetitions': expected a value >= 1"),
        ("[[scenario]]\nkind='startup'\ntimeout_s=-2.5\n", "key 'timeout_s'"),
        ("[[scenario]]\nkind='warp'\n", "key 'kind': expected one of startup, density, memory"),
        ("[[scenario]]\nrepetitions=3\n", "missing key 'kind'"),
        ("[suite]\nbackends=['nosuchengine']\n[[scenario]]\nkind='startup'\n",
         "unknown backend 'nosuchengine'"),
        ("[suite]\nbackend=['ours']\n[[scenario]]\nkind='startup'\n", "unknown key 'backend'"),
        ("[[scenario]]\nkind='startup'\nnetwork='wifi'\n", "key 'network'"),
        ("[[scenario]]\nkind='startup'\n[scenario.overrides.vbox]\n", "unknown backend 'vbox'"),
        ("[[scenario]]\nkind='startup'\n[scenario.overrides.ours]\nkind='memory'\n",
         "unknown key 'kind'"),
        ("[[scenario]]\nkind='memory'\nksm=['maybe']\n", "key 'ksm'"),
        ("[suite]\nname='x'\n", "missing [[scenario]]"),
        ("[[scenario]]\nkind='startup'\n[[scenario]]\nkind='startup'\n", "used twice"),
        ("this is = = not toml", "not valid TOML"),
        ("[[scenario]]\nkind='startup'\ndisk=1\n", "key 'disk': expected true or false"),
    ],
)
def test_malformed_files_name_file_key_and_expectation(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario.loads(text, "bad.toml")
    message = str(caught.value)
    assert message.startswith("bad.toml")
    assert expected in message
    assert "\n" not in message


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        scenario.load("/nonexistent/x.toml")


def test_select_backends_validates_names() -> None:
    suite = scenario.loads(VALID, "t.toml")
    assert scenario.select_backends(suite, "ours").backends == ("ours",)
    with pytest.raises(ScenarioError, match="unknown backend 'vbox'"):
        scenario.select_backends(suite, "ours,vbox")


toml_scalars = st.one_of(
    st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
    st.text(max_size=8), st.lists(st.text(max_size=5), max_size=3),
)
keys = st.sampled_from(
    [*scenario.COMMON_KEYS, *(key for kind in kinds.loaded() for key in
                              (f.name for f in dataclasses.fields(kind.params))),
     "bogus", "kind", "name", "overrides"]
)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(keys, toml_scalars, max_size=6), st.text(max_size=60),
       st.sampled_from(kinds.names()))
def test_random_scenarios_never_traceback(table: dict, noise: str, kind: str) -> None:
    body = "\n".join(f"{key} = {_toml_value(value)}" for key, value in table.items())
    with_suite = f"[suite]\n{body}\n[[scenario]]\nkind='startup'"
    of_kind = f"[[scenario]]\nkind='{kind}'\n{body}\n"
    overridden = f"[[scenario]]\nkind='{kind}'\n[scenario.overrides.vm]\n{body}\n"
    for text in (f"[[scenario]]\n{body}\n", noise, with_suite, of_kind, overridden):
        try:
            suite = scenario.loads(text, "fuzz.toml")
        except ScenarioError as error:
            assert str(error).startswith("fuzz.toml") and "\n" not in str(error)
        else:
            assert all(s.kind in kinds.names() for s in suite.scenarios)


def test_backend_options_are_parsed_and_validated() -> None:
    suite = scenario.loads(VALID + "\n[backend_options.libvirt]\ntb_cache_mib = 16\n", "t.toml")
    assert suite.backend_options == {"libvirt": {"tb_cache_mib": 16}}
    with pytest.raises(ScenarioError, match="unknown backend 'vbox'"):
        scenario.loads(VALID + "\n[backend_options.vbox]\nx = 1\n", "t.toml")
    with pytest.raises(ScenarioError, match="key 'libvirt': expected a table"):
        scenario.loads(VALID + "\n[backend_options]\nlibvirt = 3\n", "t.toml")
    # a list of names, as the floor's steps
    suite = scenario.loads(VALID + '\n[backend_options.floor]\nsteps = ["namespaces"]\n',
                           "t.toml")
    assert suite.backend_options == {"floor": {"steps": ["namespaces"]}}
    with pytest.raises(ScenarioError, match="lists of strings"):
        scenario.loads(VALID + "\n[backend_options.floor]\nsteps = [1, 2]\n", "t.toml")


LABELLED = """
[suite]
name = "rungs"
backends = ["process", "floor:bare", "floor", "libvirt:acpi"]

[backend_options.floor]
grace_s = 1.5
steps = ["namespaces"]

[backend_options."floor:bare"]
steps = []

[[scenario]]
kind = "startup"
repetitions = 5

[scenario.overrides.vm]
repetitions = 2

[scenario.overrides.floor]
repetitions = 3

[scenario.overrides."floor:bare"]
warmup = 0
"""


def test_a_labelled_backend_has_its_backends_options_and_overrides_then_its_own() -> None:
    suite = scenario.loads(LABELLED, "t.toml")
    assert suite.backends == ("process", "floor:bare", "floor", "libvirt:acpi")
    assert suite.options_for("floor:bare") == {"grace_s": 1.5, "steps": []}
    assert suite.options_for("floor") == {"grace_s": 1.5, "steps": ["namespaces"]}
    assert suite.options_for("libvirt:acpi") == {} and suite.options_for("process") == {}
    (startup,) = suite.scenarios
    bare = startup.for_backend("floor:bare")
    assert (bare.params.repetitions, bare.params.warmup) == (3, 0)  # floor's, then its own
    assert startup.for_backend("floor").params.warmup == 2  # not the labelled one's
    assert startup.for_backend("libvirt:acpi").params.repetitions == 2  # its family's


@pytest.mark.parametrize(("change", "message"), [
    (("\"floor\", \"libvirt:acpi\"", "\"floor:bare\", \"libvirt:acpi\""),
     "'floor:bare' is listed twice (a second floor needs a label of its own: 'floor:<label>')"),
    (("\"floor:bare\", \"floor\"", "\"floor:Bare\", \"floor\""),
     "backend 'floor:Bare': expected a label"),
    (('[backend_options."floor:bare"]', '[backend_options."vbox:bare"]'),
     "unknown backend 'vbox'"),
])
def test_labelled_backends_are_checked_in_one_line(change: tuple[str, str], message: str
                                                   ) -> None:
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace(")", r"\)")
                       ) as raised:
        scenario.loads(LABELLED.replace(*change), "t.toml")
    assert str(raised.value).startswith("t.toml") and "\n" not in str(raised.value)


# ---------------------------------------------------------------- [runtimes]: a user's OCI runtime

RUNTIMES = """
[suite]
backends = ["process", "mycrun"]

[runtimes]
mycrun = "{path}"

[[scenario]]
kind = "startup"
repetitions = 3

[scenario.overrides.mycrun]
repetitions = 4
"""


@pytest.fixture
def forget_runtimes():
    with forgetting_user_runtimes():
        yield


def test_a_files_runtimes_are_backends_of_its_suite(tmp_path, forget_runtimes) -> None:
    mine = copy_of_crun(tmp_path)
    suite = scenario.loads(RUNTIMES.format(path="cvbench-crun2/mycrun"), tmp_path / "s.toml")
    assert suite.backends == ("process", "mycrun")
    assert suite.runtimes == {"mycrun": str(mine)}  # relative to the file's directory
    assert suite.scenarios[0].for_backend("mycrun").params.repetitions == 4


def test_the_command_lines_runtime_wins_over_the_files(tmp_path, forget_runtimes) -> None:
    copy_of_crun(tmp_path / "file")
    given = copy_of_crun(tmp_path / "given")
    suite = scenario.loads(RUNTIMES.format(path="cvbench-crun2/mycrun"),
                           tmp_path / "file" / "s.toml", runtimes={"mycrun": str(given)})
    assert suite.runtimes == {"mycrun": str(given)}


@pytest.mark.parametrize(("runtimes", "expected"), [
    ('mycrun = "/nonexistent/crun"',
     "[runtimes]: key 'mycrun': runtime mycrun: /nonexistent/crun: no such file"),
    ('mycrun = "/bin/true"',
     "[runtimes]: key 'mycrun': runtime mycrun: /bin/true: not an OCI runtime: `--version`"),
    ('crun = "/usr/bin/crun"',
     "[runtimes]: key 'crun': runtime crun: 'crun' is a built-in backend, give the runtime "
     "another name"),
    ('mycrun = 3', "[runtimes]: key 'mycrun': expected the path of the runtime's binary"),
])
def test_a_bad_runtime_is_one_line_naming_the_file_and_key(runtimes, expected,
                                                           forget_runtimes) -> None:
    text = RUNTIMES.replace('mycrun = "{path}"', runtimes)
    with pytest.raises(ScenarioError) as error:
        scenario.loads(text, "s.toml")
    message = str(error.value)
    assert message.startswith(f"s.toml: {expected}"), message
    assert "\n" not in message
    assert "mycrun" not in registry.names()


def test_a_runtime_the_file_does_not_declare_is_an_unknown_backend(forget_runtimes) -> None:
    text = RUNTIMES.replace('[runtimes]\nmycrun = "{path}"\n', "")
    with pytest.raises(ScenarioError, match="key 'backends': unknown backend 'mycrun'"):
        scenario.loads(text, "s.toml")


def test_ready_is_todays_line_unless_the_suite_or_the_scenario_says_otherwise() -> None:
    from harness.backends.ready_rule import DEFAULT, ReadyRule

    (plain,) = scenario.loads("[[scenario]]\nkind='startup'\n").scenarios
    assert plain.ready == "line:READY" and plain.ready_rule == DEFAULT
    suite = scenario.loads(
        "[suite]\nready='line:Listening'\n[[scenario]]\nkind='startup'\nname='a'\n"
        "[[scenario]]\nkind='startup'\nname='b'\nready='exit'\n"
        "[[scenario]]\nkind='memory'\nname='c'\nnetwork='bridge'\nready='tcp:8080'\n")
    assert [s.ready_rule for s in suite.scenarios] == [
        ReadyRule.parse("line:Listening"), ReadyRule.parse("exit"),
        ReadyRule.parse("tcp:8080")]


@pytest.mark.parametrize(("text", "expected"), [
    ("[[scenario]]\nkind='startup'\nready='tcp'\n",
     "bad.toml: [[scenario]] #1: key 'ready': expected \"line:TEXT\", \"exit\" or "
     "\"tcp:PORT\", got 'tcp'"),
    ("[[scenario]]\nkind='startup'\nready=8080\n",
     "bad.toml: [[scenario]] #1: key 'ready': expected a string, got 8080"),
    ("[suite]\nready='tcp:0'\n[[scenario]]\nkind='startup'\n",
     "bad.toml: [suite]: key 'ready': tcp: expected a port from 1 to 65535, got '0'"),
    ("[suite]\nready=1\n[[scenario]]\nkind='startup'\n",
     "bad.toml: [suite]: key 'ready': expected a string"),
    ("[[scenario]]\nkind='startup'\nready='tcp:80'\n",
     "bad.toml: [[scenario]] #1: key 'ready': 'tcp:80' connects to the instance's bridge "
     "address: it needs network = \"bridge\" (for every backend)"),
    ("[[scenario]]\nkind='startup'\nready='tcp:80'\nnetwork='bridge'\n"
     "[scenario.overrides.vm]\nnetwork='none'\n", "it needs network = \"bridge\""),
    ("[[scenario]]\nkind='memory'\nready='exit'\n",
     "bad.toml: [[scenario]] #1: key 'ready': \"exit\" is for run-to-completion images, "
     "which only a startup scenario takes (a memory scenario uses its instances after READY)"),
    ("[[scenario]]\nkind='startup'\n[scenario.overrides.ours]\nready='exit'\n",
     "unknown key 'ready'"),
])
def test_a_bad_ready_is_one_line(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        scenario.loads(text, "bad.toml")
    assert expected in str(caught.value) and "\n" not in str(caught.value)
