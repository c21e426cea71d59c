"""Requests through a pipeline: the api processor answers, the reply sink returns answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from examples.meeting_room.seed import seed
from onto_core import plugins
from onto_core.builtin.api import RequestSource
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.config import parse_config
from onto_core.hookspecs import hookimpl
from onto_core.testing import running

SESSION = "examples.meeting_room.views:MeetingSession"
sources: list[RequestSource] = []


class CallerSource(RequestSource):
    """Requests submitted by the test itself."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        super().__init__()
        sources.append(self)


class TestPlugin:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.source("caller", CallerSource)


@pytest.fixture
def ask(tmp_path: Path) -> Iterator[Any]:
    """Run an api pipeline on a seeded store; yields a function sending one request."""
    name = plugins.register_plugin(TestPlugin(), name="api-tests")
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    store.open()
    seed(store)
    config = parse_config("""
pipelines:
  api:
    source: {type: caller}
    processors: [{type: api}]
    sinks: [{type: reply}]
""")
    sources.clear()
    try:
        with running(config, datastore=store):
            yield lambda request: sources[0].submit(request, timeout=10)
    finally:
        store.close()
        plugins.unregister_plugin(name)


def test_read_returns_the_view(ask: Any) -> None:
    answer = ask({"op": "read", "view": SESSION, "key": "meeting-1/joshua"})
    assert answer["status"] == 200
    assert answer["body"]["userId"] == "joshua"
    assert answer["body"]["numHearingAidRequested"] == 2


def test_unknown_key_and_view_are_404(ask: Any) -> None:
    assert ask({"op": "read", "view": SESSION, "key": "meeting-9/joshua"}) == {
        "status": 404,
        "body": {"error": "meeting_session 'meeting-9/joshua' does not exist", "field": None},
    }
    missing = ask({"op": "read", "view": "examples.meeting_room.views:Nope", "key": "x"})
    assert missing["status"] == 404
    assert missing["body"]["field"] == "view"


def test_action_changes_the_view_and_bad_arguments_name_the_field(ask: Any) -> None:
    done = ask(
        {
            "op": "action",
            "view": SESSION,
            "key": "meeting-1/joshua",
            "action": "set_attendance",
            "arguments": {"attending": False},
        }
    )
    assert done["status"] == 200
    assert [a["userId"] for a in done["body"]["attending"]] == ["thomasina", "tijuana"]
    bad = ask(
        {
            "op": "action",
            "view": SESSION,
            "key": "meeting-1/joshua",
            "action": "set_attendance",
            "arguments": {"attending": "maybe"},
        }
    )
    assert bad["status"] == 400
    assert bad["body"]["field"] == "attending"


def test_list_filters_by_view_fields(ask: Any) -> None:
    answer = ask({"op": "list", "view": SESSION, "filters": {"userId": "tijuana"}})
    assert answer["status"] == 200
    assert [v["userId"] for v in answer["body"]] == ["tijuana"]
    everyone = ask({"op": "list", "view": SESSION, "filters": {"inSession": "true"}})
    assert len(everyone["body"]) == 3
    bad = ask({"op": "list", "view": SESSION, "filters": {"colour": "red"}})
    assert bad == {
        "status": 400,
        "body": {"error": "meeting_session has no field 'colour' to filter on", "field": "colour"},
    }


def test_unknown_op_is_400(ask: Any) -> None:
    answer = ask({"op": "explode", "view": SESSION})
    assert answer["status"] == 400
    assert answer["body"]["field"] == "op"
