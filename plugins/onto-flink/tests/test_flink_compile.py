"""What compiles to Flink SQL, and the error for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from examples.meeting_room.views import MeetingSession, UserView
from onto_core.cli import add_plugin_commands, cli
from onto_core.errors import ConfigError
from onto_flink import CompileError, compile_views
from onto_flink._job import load_flink_config

CONFIG = Path(__file__).with_name("meeting_sessions.yaml")


def test_a_python_build_is_refused_naming_the_view_and_the_construct() -> None:
    with pytest.raises(CompileError) as refused:
        compile_views([UserView], {"connector": "blackhole"}, {"connector": "blackhole"})
    assert str(refused.value) == (
        "examples.meeting_room.views:UserView cannot run on Flink: its build() is Python code"
        " (a hand-written build); only a build declared with onto_core.models.declarative"
        " (build = declared(...)) compiles to Flink SQL"
    )


def test_onto_flink_compile_prints_the_job_over_the_change_topic() -> None:
    add_plugin_commands(["flink"])
    result = CliRunner().invoke(cli, ["flink", "compile", str(CONFIG)])
    assert result.exit_code == 0, result.output
    sql = result.output
    assert "CREATE TEMPORARY TABLE `onto_changes`" in sql
    assert "'connector' = 'upsert-kafka'" in sql
    assert "'sink.delivery-guarantee' = 'exactly-once'" in sql
    assert "CREATE TEMPORARY VIEW `onto_view_rows` AS" in sql
    assert "makes each key's\n-- versions rise" in sql
    for collection in ("meetings", "tickets", "users", "locations"):
        assert f"CREATE TEMPORARY VIEW `state_{collection}`" in sql


def test_compiling_a_refused_view_from_the_command_line_fails_with_the_error(
    tmp_path: Path,
) -> None:
    config = tmp_path / "flink.yaml"
    config.write_text(
        CONFIG.read_text()
        .replace("views.MeetingSession", "views:UserView")
        .replace(
            "examples.meeting_room.views:MeetingSession", "examples.meeting_room.views:UserView"
        )
    )
    add_plugin_commands(["flink"])
    result = CliRunner().invoke(cli, ["flink", "compile", str(config)])
    assert result.exit_code != 0
    assert "UserView cannot run on Flink: its build() is Python code" in result.output


def test_a_declared_view_compiles() -> None:
    job = compile_views([MeetingSession], {"connector": "blackhole"}, {"connector": "blackhole"})
    script = job.script()
    assert "ARRAY_AGG" in script
    assert f"CREATE TEMPORARY VIEW `{job.rows}` AS" in script
    # The step the runner adds after the SQL is named where the SQL ends.
    assert script.rstrip().endswith(
        f"writes key and head || version || tail as `value` to `{job.sink}`."
    )


def test_an_unset_environment_variable_in_the_flink_block_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONTO_TEST_UNSET_TOPIC", raising=False)
    monkeypatch.setenv("ONTO_TEST_GROUP", "views")
    config = tmp_path / "flink.yaml"
    config.write_text(
        "flink:\n"
        "  views: ['examples.meeting_room.views:MeetingSession']\n"
        "  changes: {path: changes.jsonl, group_id: '${ONTO_TEST_GROUP}', topic: '$${x}'}\n"
        "  sink: {topic: '${ONTO_TEST_UNSET_TOPIC}', bootstrap_servers: 'b:9092'}\n"
    )
    with pytest.raises(ConfigError) as missing:
        load_flink_config(config)
    assert str(missing.value) == (
        f"{config}: flink.sink.topic: environment variable ONTO_TEST_UNSET_TOPIC is not set"
        " and has no default"
    )
    monkeypatch.setenv("ONTO_TEST_UNSET_TOPIC", "sessions")
    loaded = load_flink_config(config)
    assert (loaded.sink.topic, loaded.changes.group_id, loaded.changes.topic) == (
        "sessions",
        "views",
        "${x}",
    )


def test_a_mistake_in_the_flink_block_names_the_file_and_key_once(tmp_path: Path) -> None:
    config = tmp_path / "flink.yaml"
    config.write_text("flink:\n  views: ['examples.meeting_room.views:MeetingSession']\n")
    with pytest.raises(ConfigError) as refused:
        load_flink_config(config)
    assert str(refused.value) == f"{config}: flink.changes: Field required"
    config.write_text("other: {}\n")
    with pytest.raises(ConfigError) as refused:
        load_flink_config(config)
    assert str(refused.value) == f"{config}: no 'flink:' block"
