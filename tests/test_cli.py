"""The ``onto`` command as a user sees it: output, exit codes and one-line errors."""

from __future__ import annotations

import enum
import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel, ConfigDict, Field

from onto_core.__about__ import __version__
from onto_core.cli import cli
from onto_core.hookspecs import hookimpl
from onto_core.plugins import ComponentRegistrar, list_components, register_plugin

OntoCommand = Callable[..., subprocess.CompletedProcess[str]]  # the ``onto`` fixture

GENERATE_TO_FILE = """\
pipelines:
  numbers:
    source: {type: generate, count: 5}
    sinks:
      - {type: file, path: ./out/numbers.jsonl, envelope: false}
"""

BAD_COUNT = """\
pipelines:
  numbers:
    source:
      type: generate
      count: many
    sinks: [{type: stdout}]
"""
BAD_COUNT_ERROR = "5: pipelines.numbers.source.count: expected an integer, got 'many'"


@pytest.fixture(autouse=True)
def _isolated(onto_plugins_reset: None) -> Iterator[None]:
    # The command configures the root logger for the process; put it back afterwards.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="onto")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"onto {__version__}\n"


def test_version_from_a_real_process(onto: OntoCommand) -> None:
    done = onto("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"onto {__version__}\n", "")


def test_validate_summarises_each_pipeline(tmp_path: Path) -> None:
    config = write(
        tmp_path / "onto.yaml",
        GENERATE_TO_FILE
        + """\
  shouting:
    source: {type: memory, channel: words}
    processors:
      - {type: map, function: "builtins:str"}
    sinks: [{type: stdout}, {type: memory}]
    guarantee: at_most_once
""",
    )
    result = invoke("validate", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{config}: ok, 2 pipelines\n"
        "  numbers: generate → [file] (at_least_once)\n"
        "  shouting: memory → map → [stdout, memory] (at_most_once)\n"
    )
    assert result.stderr == ""


def test_validate_bad_config_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    config = write(tmp_path / "onto.yaml", BAD_COUNT)
    result = invoke("validate", str(config))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {config}:{BAD_COUNT_ERROR}\n"


def test_bad_config_in_a_real_process_prints_one_line_without_traceback(
    onto: OntoCommand, tmp_path: Path
) -> None:
    write(tmp_path / "onto.yaml", BAD_COUNT)
    done = onto("validate", "onto.yaml")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"error: onto.yaml:{BAD_COUNT_ERROR}"]


def test_run_with_a_bad_config_exits_2_before_running(onto: OntoCommand, tmp_path: Path) -> None:
    write(tmp_path / "onto.yaml", BAD_COUNT)
    done = onto("run", "onto.yaml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: onto.yaml:{BAD_COUNT_ERROR}"]


def test_debug_adds_the_traceback(onto: OntoCommand, tmp_path: Path) -> None:
    write(tmp_path / "onto.yaml", BAD_COUNT)
    done = onto("--debug", "validate", "onto.yaml")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert any(line.startswith("onto_core.errors.ConfigError: ") for line in lines)
    assert lines[-1] == f"error: onto.yaml:{BAD_COUNT_ERROR}"


def test_missing_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = invoke("validate", str(missing))
    assert result.exit_code == 2
    assert result.stderr == f"error: {missing}: file not found\n"


def test_unknown_command_is_a_usage_error() -> None:
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.stderr


def test_run_writes_every_message_and_exits_0(onto: OntoCommand, tmp_path: Path) -> None:
    write(tmp_path / "onto.yaml", GENERATE_TO_FILE)
    done = onto("run", "onto.yaml")
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "out" / "numbers.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"n": n} for n in range(5)]
    assert "error" not in done.stderr


def test_run_logs_as_json_on_request(onto: OntoCommand, tmp_path: Path) -> None:
    write(tmp_path / "onto.yaml", GENERATE_TO_FILE)
    done = onto("--log-format", "json", "run", "onto.yaml")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert entries
    assert {e["level"] for e in entries} <= {"debug", "info", "warning", "error"}
    assert any(e["message"].startswith("pipeline numbers:") for e in entries)


def test_failure_while_running_exits_1_with_one_error_line(
    onto: OntoCommand, tmp_path: Path
) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    write(
        tmp_path / "onto.yaml",
        GENERATE_TO_FILE.replace("./out/numbers.jsonl", "./blocker/numbers.jsonl"),
    )
    done = onto("run", "onto.yaml")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert errors[0].startswith("error: sink 'file' failed to start: cannot open")
    assert "Traceback" not in done.stderr


def test_validate_show_prints_the_config_with_secrets_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONTO_TEST_PASSWORD", "hunter2")
    config = write(
        tmp_path / "onto.yaml",
        """\
pipelines:
  numbers:
    source:
      type: generate
      count: 2
      fields: {user: app, password: "${ONTO_TEST_PASSWORD}", api_key: k-1}
    sinks: [{type: stdout}]
""",
    )
    result = invoke("validate", "--show", str(config))
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.stdout
    assert "k-1" not in result.stdout
    assert result.stdout == (
        "pipelines:\n"
        "  numbers:\n"
        "    source:\n"
        "      type: generate\n"
        "      count: 2\n"
        "      fields:\n"
        "        user: app\n"
        "        password: '***'\n"
        "        api_key: '***'\n"
        "    sinks:\n"
        "    - type: stdout\n"
    )


def test_components_json_lists_every_builtin_with_its_settings_schema() -> None:
    result = invoke("components", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    by_key = {(c["kind"], c["name"]): c for c in listed}
    builtin = {(c.kind, c.name) for c in list_components() if c.plugin == "builtin"}
    assert {
        ("source", "memory"),
        ("source", "generate"),
        ("source", "changes"),
        ("processor", "map"),
        ("sink", "memory"),
        ("sink", "stdout"),
        ("sink", "file"),
        ("datastore", "sqlite"),
    } <= builtin
    for key in builtin:
        component = by_key[key]
        assert component["plugin"] == "builtin"
        assert component["description"]
        schema = component["config_schema"]
        assert schema["type"] == "object"
        assert schema.get("additionalProperties") is False, key
    file_sink = by_key[("sink", "file")]
    assert file_sink["config_schema"]["required"] == ["path"]
    assert file_sink["guarantees"] == ["at_most_once", "at_least_once"]
    assert set(file_sink["config_schema"]["properties"]) >= {"path", "envelope", "fsync"}


def test_components_of_one_kind_with_their_settings() -> None:
    result = invoke("components", "--kind", "sink")
    assert result.exit_code == 0, result.output
    heads = [line for line in result.stdout.splitlines() if line and not line.startswith(" ")]
    assert heads
    assert all(head.startswith("sink ") for head in heads)
    assert "sink file  (builtin)" in heads
    assert "  - path (required): File to append to." in result.stdout
    assert "  - envelope (default true): " in result.stdout
    assert "  guarantees: at_most_once, at_least_once\n" in result.stdout


def test_plugins_json_lists_the_builtin_plugin() -> None:
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    builtin = plugins["builtin"]
    assert builtin["distribution"] == "onto-core"
    assert builtin["version"] == __version__
    assert builtin["hooks"] == ["register_components"]
    assert {"source:generate", "sink:file", "processor:map"} <= set(builtin["components"])


def test_plugins_table() -> None:
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["name", "version", "hooks", "components"]
    assert rows[0].split()[:3] == ["builtin", __version__, "register_components"]


class Color(enum.Enum):
    RED = "red"


class ShowcaseSink:
    """Writes to ``path`` through a
    :class:`~pathlib.Path`, one ``line`` per message.

    Further paragraphs are left out of listings.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: Path = Field(Path("out/lines.txt"), description="Where to write.")
        label: str | None = Field(None, description="A label | or none.")
        enabled: bool = Field(True, description="On or off.")
        tags: list[str] = Field(default_factory=list, description="Tags.")
        prefix: str = Field("", description="Prefix.")
        code: str = Field("123", description="A string of digits.")
        answer: str = Field("yes", description="A word YAML reads as a boolean.")
        color: Color = Field(Color.RED, description="A colour.")
        target: str = Field(description="Required.")


class ShowcasePlugin:
    @hookimpl
    def register_components(self, register: ComponentRegistrar) -> None:
        register.sink("showcase", ShowcaseSink)


@pytest.fixture
def showcase() -> None:
    register_plugin(ShowcasePlugin(), name="showcase")


@pytest.mark.usefixtures("showcase")
def test_components_show_docstring_summaries_with_code_and_defaults_as_yaml() -> None:
    result = invoke("components", "--kind", "sink")
    assert result.exit_code == 0, result.output
    listed = result.stdout.split("sink showcase  (showcase)\n", 1)[1].split("\n\n", 1)[0]
    assert listed.splitlines() == [
        "  Writes to `path` through a `pathlib.Path`, one `line` per message.",
        "  - path (default out/lines.txt): Where to write.",
        "  - label (default null): A label | or none.",
        "  - enabled (default true): On or off.",
        "  - tags (default []): Tags.",
        "  - prefix (default ''): Prefix.",
        "  - code (default '123'): A string of digits.",
        "  - answer (default 'yes'): A word YAML reads as a boolean.",
        "  - color (default red): A colour.",
        "  - target (required): Required.",
    ]


@pytest.mark.usefixtures("showcase")
def test_components_markdown_renders_code_and_yaml_defaults() -> None:
    result = invoke("components", "--markdown", "--kind", "sink")
    assert result.exit_code == 0, result.output
    section = result.stdout.split("## sink `showcase`\n\n", 1)[1].split("\n\n## ", 1)[0]
    assert section.splitlines() == [
        "Writes to `path` through a `pathlib.Path`, one `line` per message. (plugin: `showcase`)",
        "",
        "| setting | default | meaning |",
        "|---|---|---|",
        "| `path` | `out/lines.txt` | Where to write. |",
        "| `label` | `null` | A label \\| or none. |",
        "| `enabled` | `true` | On or off. |",
        "| `tags` | `[]` | Tags. |",
        "| `prefix` | `''` | Prefix. |",
        "| `code` | `'123'` | A string of digits. |",
        "| `answer` | `'yes'` | A word YAML reads as a boolean. |",
        "| `color` | `red` | A colour. |",
        "| `target` | required | Required. |",
    ]


@pytest.mark.usefixtures("showcase")
def test_components_json_description_is_the_docstring_summary() -> None:
    result = invoke("components", "--json", "--kind", "sink")
    (showcase,) = [c for c in json.loads(result.stdout) if c["name"] == "showcase"]
    assert showcase["description"] == (
        "Writes to `path` through a `pathlib.Path`, one `line` per message."
    )


def test_components_help_says_where_descriptions_come_from() -> None:
    result = invoke("components", "--help")
    assert result.exit_code == 0
    assert "summary line of its class docstring" in " ".join(result.stdout.split())
