"""Pipeline configs: what a user sees for every kind of mistake, and what a good config yields.

Each file in ``configs/bad/`` is one realistic mistake. Its first line says the error it
must produce, after the ``FILE:`` part: ``# expect: LINE: key.path: message``. Lists of
registered component names, which grow as built-ins are added, are written as
``{source_types}``, ``{sink_types}``, ``{processor_types}`` and ``{datastore_types}``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from onto_core.config import (
    BatchPolicy,
    OntoConfig,
    RetryPolicy,
    is_secret_key,
    load_config,
    parse_config,
    redact,
)
from onto_core.errors import ConfigError
from onto_core.plugins import list_components
from onto_core.protocols import Guarantee

BAD_CONFIGS = sorted((Path(__file__).parent / "configs" / "bad").glob("*.yaml"))
EXPECT = re.compile(r"# expect: (?:(?P<line>\d+): )?(?P<rest>.+)")


def expectation(path: Path) -> tuple[int | None, str]:
    """The line and the rest of the error the first line of ``path`` promises."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = EXPECT.fullmatch(first)
    assert match, f"{path.name} must start with '# expect: LINE: key.path: message'"
    line, rest = match["line"], match["rest"]
    for kind in ("source", "processor", "sink", "datastore"):
        names = ", ".join(c.name for c in list_components(kind))
        rest = rest.replace(f"{{{kind}_types}}", names)
    return (int(line) if line else None), rest


def test_the_bad_config_corpus_is_large_enough() -> None:
    assert len(BAD_CONFIGS) >= 20


@pytest.mark.parametrize("path", BAD_CONFIGS, ids=lambda p: p.stem)
def test_bad_config_error_names_file_line_key_and_problem(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text(encoding="utf-8")):
        monkeypatch.delenv(name, raising=False)
    line, rest = expectation(path)

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    error = caught.value
    location = f"{path}:{line}" if line is not None else str(path)
    first, *others = str(error).split("\n")
    assert first == f"{location}: {rest}"
    assert others == [f"  {problem}" for problem in error.problems[1:]]
    assert (error.file, error.line) == (str(path), line)


def test_error_names_the_file_as_given() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("pipelines: {}\n", file="deploy/orders.yaml")
    assert str(caught.value) == "deploy/orders.yaml:1: pipelines: must not be empty"


def test_zero_byte_file_is_reported_empty(tmp_path: Path) -> None:
    path = tmp_path / "onto.yaml"
    path.write_bytes(b"")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: the config is empty; expected a mapping with 'pipelines'"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: file not found"


def test_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("pipelines: {caf\xe9: {}}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: cannot read the file"):
        load_config(path)


def test_missing_key_and_its_misspelling_are_one_problem() -> None:
    text = "pipelines:\n  orders:\n    source: {type: generate}\n    sinkz: [{type: stdout}]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="onto.yaml")
    assert str(caught.value).startswith("onto.yaml:4: pipelines.orders.sinkz: unknown key")
    assert "(did you mean 'sinks'?)" in str(caught.value)
    assert "more problem" not in str(caught.value)


def test_guarantee_error_names_only_the_component_that_falls_short() -> None:
    # memory -> memory gives at_least_once; a stdout sink next to them cannot give
    # exactly_once, and neither can the memory ones: each is named once.
    text = """\
pipelines:
  orders:
    source: {type: memory}
    sinks: [{type: memory}, {type: stdout}]
    guarantee: exactly_once
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="onto.yaml")
    message = str(caught.value)
    assert message.startswith("onto.yaml:5: pipelines.orders.guarantee: guarantee exactly_once")
    assert message.count("sink 'memory'") == 1
    assert "sink 'stdout' supports only at_most_once, at_least_once" in message


def test_a_trailing_document_marker_is_harmless() -> None:
    text = "---\npipelines:\n  orders: {source: {type: generate}, sinks: [{type: stdout}]}\n---\n"
    assert list(parse_config(text).pipelines) == ["orders"]


# --- good configs -----------------------------------------------------------------------

MINIMAL = """\
pipelines:
  orders:
    source: {type: generate, count: 3}
    sinks:
      - {type: file, path: ./out/orders.jsonl}
"""


def test_defaults_are_applied() -> None:
    config = parse_config(MINIMAL, file="onto.yaml")

    assert config.file == "onto.yaml"
    assert config.datastore is None
    assert config.runtime.drain_timeout == 10.0
    pipeline = config.pipelines["orders"]
    assert pipeline.name == "orders"
    assert pipeline.guarantee is Guarantee.AT_LEAST_ONCE
    assert pipeline.buffer == 1000
    assert pipeline.batch == BatchPolicy(size=100, linger_ms=0)
    assert pipeline.retry == RetryPolicy(
        max_attempts=5, initial_backoff=0.05, max_backoff=5.0, multiplier=2.0
    )
    assert pipeline.dead_letter is None
    assert pipeline.processors == []
    source, (sink,) = pipeline.source, pipeline.sinks
    assert (source.kind, source.type, source.line) == ("source", "generate", 3)
    assert source.config.model_dump() == {
        "count": 3,
        "interval": 0.0,
        "fields": {},
        "key_field": None,
    }
    assert (sink.path, sink.line) == ("pipelines.orders.sinks[0]", 5)
    assert sink.config.model_dump()["envelope"] is True


def test_relative_paths_are_kept_relative_to_the_working_directory() -> None:
    sink = parse_config(MINIMAL).pipelines["orders"].sinks[0]
    assert sink.config.model_dump()["path"] == Path("out/orders.jsonl")
    assert not sink.config.model_dump()["path"].is_absolute()


def test_retry_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=3, max_backoff=1.0)
    assert [policy.backoff(n) for n in (1, 2, 3)] == pytest.approx([0.1, 0.3, 0.9])
    assert policy.backoff(4) == 1.0


def test_env_references_are_substituted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONTO_TEST_COUNT", "7")
    monkeypatch.setenv("ONTO_TEST_REGION", "eu-west")
    monkeypatch.delenv("ONTO_TEST_UNSET", raising=False)
    text = """\
pipelines:
  orders:
    source:
      type: generate
      count: ${ONTO_TEST_COUNT}
      fields:
        region: ${ONTO_TEST_REGION}
        zone: "${ONTO_TEST_UNSET:zone-a}"
        empty: "${ONTO_TEST_UNSET:}"
        both: "${ONTO_TEST_REGION}/${ONTO_TEST_UNSET:x}"
    sinks: [{type: stdout}]
"""
    config = parse_config(text)
    source = config.pipelines["orders"].source.config.model_dump()
    assert source["count"] == 7
    assert source["fields"] == {
        "region": "eu-west",
        "zone": "zone-a",
        "empty": "",
        "both": "eu-west/x",
    }
    assert config.raw["pipelines"]["orders"]["source"]["count"] == "7"


def test_double_dollar_writes_a_literal_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONTO_TEST_NAME", "resolved")
    text = """\
pipelines:
  orders:
    source: {type: generate, fields: {template: "Hello $${ONTO_TEST_NAME}", cost: "$$5"}}
    sinks: [{type: stdout}]
"""
    fields = parse_config(text).pipelines["orders"].source.config.model_dump()["fields"]
    assert fields == {"template": "Hello ${ONTO_TEST_NAME}", "cost": "$$5"}


SECRETS = """\
pipelines:
  orders:
    source:
      type: generate
      fields:
        password: hunter2
        api_key: k-123
        authToken: t-456
        dsn: "postgres://app:${ONTO_TEST_DB_PASSWORD}@db.internal:5432/orders"
        max_tokens: 100
        passthrough: true
        empty_secret: ""
    sinks: [{type: stdout}]
"""


def test_redacted_config_hides_secrets_and_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONTO_TEST_DB_PASSWORD", "s3cr3t")
    config = parse_config(SECRETS)

    fields = config.redacted()["pipelines"]["orders"]["source"]["fields"]

    assert fields == {
        "password": "***",
        "api_key": "***",
        "authToken": "***",
        "dsn": "postgres://app:***@db.internal:5432/orders",
        "max_tokens": 100,
        "passthrough": True,
        "empty_secret": "",
    }
    assert "s3cr3t" not in repr(config.redacted())
    # The config itself keeps the real values: components need them.
    source = config.pipelines["orders"].source.config.model_dump()
    assert source["fields"]["password"] == "hunter2"


@pytest.mark.parametrize(
    "key",
    ["password", "db_password", "passwd", "secret", "client_secret", "token", "access_token",
     "authToken", "api_key", "apiKey", "x-api-key", "private_key", "credentials",
     "Authorization"],
)  # fmt: skip
def test_secret_looking_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["path", "key_field", "max_tokens", "passthrough", "bypass", "tokenizer", "keys", "type"],
)
def test_ordinary_keys_are_not_secret(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_walks_lists_and_nested_mappings() -> None:
    value = {"tokens": [{"token": "a"}, {"token": "b"}], "secrets": ["x", "y"], "n": None}
    assert redact(value) == {
        "tokens": [{"token": "***"}, {"token": "***"}],
        "secrets": ["***", "***"],
        "n": None,
    }


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "onto.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    config = load_config(path)
    assert isinstance(config, OntoConfig)
    assert config.file == str(path)
    assert list(config.pipelines) == ["orders"]


@pytest.mark.parametrize(
    "value",
    ["[hunter2]", "{p: hunter2}", "12345678"],
    ids=["list", "mapping", "number"],
)
def test_a_secret_of_the_wrong_type_is_never_echoed(value: str) -> None:
    text = f"""
datastore: {{type: sqlite}}
pipelines:
  p:
    source: {{type: generate, count: 1}}
    sinks:
      - {{type: kafka_like, password: {value}}}
"""
    from onto_core import plugins
    from onto_core.hookspecs import hookimpl

    class Sink:
        class Config(BaseModel):
            model_config = ConfigDict(extra="forbid")
            password: str

        def __init__(self, config: object) -> None:
            pass

    class Plugin:
        @hookimpl
        def register_components(self, register: plugins.ComponentRegistrar) -> None:
            register.sink("kafka_like", Sink)

    name = plugins.register_plugin(Plugin(), name="secret-echo-test")
    try:
        with pytest.raises(ConfigError) as caught:
            parse_config(text, "p.yaml")
    finally:
        plugins.unregister_plugin(name)
    message = str(caught.value)
    assert "pipelines.p.sinks[0].password" in message
    assert "hunter2" not in message
    assert "12345678" not in message


# --- where Python references are imported from ------------------------------------------


def onto_validate(config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``onto validate`` as a user runs it: the installed script, from ``cwd``."""
    script = Path(sys.executable).with_name("onto")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(script), "validate", str(config)],
        cwd=cwd,
        env={**env, "ONTO_LOAD_PLUGINS": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_map_functions_are_imported_from_the_working_directory_not_the_config_folder(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pricing_for_onto_test.py").write_text(
        "def price(value):\n    return value\n", encoding="utf-8"
    )
    (project / "onto.yaml").write_text(
        "pipelines:\n"
        "  orders:\n"
        "    source: {type: generate, count: 1}\n"
        "    processors:\n"
        "      - {type: map, function: 'pricing_for_onto_test:price'}\n"
        "    sinks: [{type: stdout}]\n",
        encoding="utf-8",
    )

    from_project = onto_validate(Path("onto.yaml"), cwd=project)
    assert from_project.returncode == 0, from_project.stderr
    assert "onto.yaml: ok, 1 pipeline" in from_project.stdout

    from_elsewhere = onto_validate(project / "onto.yaml", cwd=tmp_path)
    assert from_elsewhere.returncode == 2
    assert (
        f"error: {project / 'onto.yaml'}:5: pipelines.orders.processors[0].function:"
        " cannot import module 'pricing_for_onto_test'"
    ) in from_elsewhere.stderr


# --- every problem of a file --------------------------------------------------------------

PROBLEMS_IN_EVERY_BLOCK = """\
pipelines:
  orders:
    source: {type: generate, count: -1}
    processors:
      - {type: map, function: "no_such_module_for_onto:price"}
    sinks: [{type: file, pth: out.jsonl}]
  audit:
    source: {type: generater}
    sinks: [{type: stdout}]
    buffer: 0
"""


def test_every_problem_of_a_file_is_reported_with_its_line_and_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(PROBLEMS_IN_EVERY_BLOCK, file="onto.yaml")
    error = caught.value
    assert [(p.line, p.path) for p in error.problems] == [
        (3, "pipelines.orders.source.count"),
        (5, "pipelines.orders.processors[0].function"),
        (6, "pipelines.orders.sinks[0].pth"),
        (8, "pipelines.audit.source.type"),
        (10, "pipelines.audit.buffer"),
    ]
    assert str(error).splitlines() == [
        "onto.yaml:3: pipelines.orders.source.count: must be at least 0, got -1"
        " (and 4 more problems)",
        "  onto.yaml:5: pipelines.orders.processors[0].function: cannot import module"
        " 'no_such_module_for_onto': No module named 'no_such_module_for_onto'",
        "  onto.yaml:6: pipelines.orders.sinks[0].pth: unknown key; expected one of:"
        " envelope, fsync, path, type (did you mean 'path'?)",
        f"  onto.yaml:8: pipelines.audit.source.type: unknown source type 'generater';"
        f" known: {', '.join(c.name for c in list_components('source'))}"
        " (did you mean 'generate'?)",
        "  onto.yaml:10: pipelines.audit.buffer: must be at least 1, got 0",
    ]


def test_a_function_that_cannot_be_imported_hides_no_other_problem() -> None:
    text = """\
pipelines:
  orders:
    source: {type: generate}
    processors: [{type: map, function: "no_such_module_for_onto:price"}]
    sinks: [{type: stdout, colour: true}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="onto.yaml")
    assert [p.path for p in caught.value.problems] == [
        "pipelines.orders.processors[0].function",
        "pipelines.orders.sinks[0].colour",
    ]


def test_a_pipeline_with_no_problem_of_its_own_still_gets_its_pipeline_checks() -> None:
    text = """\
pipelines:
  broken:
    source: {type: generate, count: many}
    sinks: [{type: stdout}]
  too_strict:
    source: {type: generate}
    sinks: [{type: stdout}]
    guarantee: exactly_once
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, file="onto.yaml")
    assert [(p.line, p.path) for p in caught.value.problems] == [
        (3, "pipelines.broken.source.count"),
        (8, "pipelines.too_strict.guarantee"),
    ]


def test_onto_validate_prints_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "onto.yaml"
    config.write_text(PROBLEMS_IN_EVERY_BLOCK, encoding="utf-8")
    done = onto_validate(config, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"error: {config}:3: pipelines.orders.source.count: must be at least 0, got -1"
        " (and 4 more problems)"
    )
    assert [line.split(": ", 2)[1] for line in lines[1:]] == [
        "pipelines.orders.processors[0].function",
        "pipelines.orders.sinks[0].pth",
        "pipelines.audit.source.type",
        "pipelines.audit.buffer",
    ]
    assert all(line.startswith(f"  {config}:") for line in lines[1:])


@pytest.mark.parametrize(
    ("written", "size", "linger"),
    [
        ("", 1000, 0),  # the view processor's preference
        ("buffer: 300", 300, 0),  # up to the buffer
        ("batch: {size: 50}", 50, 0),  # a size written wins
        ("batch: {linger_ms: 5}", 1000, 5),
    ],
)
def test_a_pipeline_without_a_batch_size_takes_its_processors_preference(
    written: str, size: int, linger: float
) -> None:
    config = parse_config(f"""
pipelines:
  live:
    source: {{type: changes}}
    processors: [{{type: view, view: "examples.meeting_room.views:MeetingSession"}}]
    sinks: [{{type: stdout}}]
    {written}
  plain:
    source: {{type: generate, count: 1}}
    sinks: [{{type: stdout}}]
""")
    batch = config.pipelines["live"].batch
    assert (batch.size, batch.linger_ms) == (size, linger)
    assert config.pipelines["plain"].batch.size == 100
