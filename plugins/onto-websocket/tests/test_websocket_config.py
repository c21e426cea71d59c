"""Websocket settings are checked when the config is read, and clashes when servers start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.config import parse_config
from onto_core.errors import ComponentError, ConfigError
from onto_core.testing import running
from onto_websocket.testing import free_port

SESSION = "examples.meeting_room.views:MeetingSession"


def sink_config(**settings: object) -> str:
    pipeline = {
        "source": {"type": "changes"},
        "processors": [{"type": "view", "view": SESSION}],
        "sinks": [{"type": "websocket", **settings}],
    }
    return json.dumps({"pipelines": {"sessions": pipeline}})


def test_a_view_that_is_not_a_view_model_names_the_key() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(sink_config(views=["examples.meeting_room.models:User"]))
    assert "sinks[0].views" in str(error.value)
    assert "is not a ViewModel subclass" in str(error.value)


def test_views_are_required() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(sink_config())
    assert "views" in str(error.value)


def test_a_page_dir_without_index_html_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(sink_config(views=[SESSION], page_dir=str(tmp_path)))
    assert "has no index.html" in str(error.value)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(sink_config(views=[SESSION], room="meeting:{meeting_id}"))
    assert "room" in str(error.value)


def test_two_sinks_serving_one_view_on_one_port_fail_to_start(store: SqliteDatastore) -> None:
    port = free_port()
    sink = {"type": "websocket", "port": port, "views": [SESSION]}
    pipeline = {
        "source": {"type": "changes"},
        "processors": [{"type": "view", "view": SESSION}],
        "sinks": [sink, {**sink, "event": "again"}],
    }
    config = json.dumps({"pipelines": {"sessions": pipeline}})
    with pytest.raises(ComponentError) as error, running(config, datastore=store):
        pass
    assert "view 'meeting_session' is already served by sessions.sinks[0]" in str(error.value)
