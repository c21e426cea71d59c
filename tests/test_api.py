"""Requests through a pipeline: the api processor answers, the reply sink returns answers."""

from __future__ import annotations

import threading
import time
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


def action(key: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"op": "action", "view": SESSION, "key": key, "action": name, "arguments": arguments}


@pytest.mark.parametrize("value", ["yes", "off", 0, 1, "1", "true", None, [True]])
def test_arguments_are_strict_json_types_for_every_transport(ask: Any, value: Any) -> None:
    answer = ask(action("meeting-1/joshua", "set_attendance", {"attending": value}))
    assert answer["status"] == 400
    assert answer["body"]["field"] == "attending"
    assert ask({"op": "read", "view": SESSION, "key": "meeting-1/joshua"})["status"] == 200


def test_a_rule_of_the_domain_is_422_and_a_missing_document_404(ask: Any, tmp_path: Path) -> None:
    closed = ask(action("meeting-1/joshua", "set_in_session", {"in_session": False}))
    assert closed["status"] == 200
    again = ask(action("meeting-1/joshua", "set_in_session", {"in_session": False}))
    assert again["status"] == 422
    assert "cannot go from closed to closed" in again["body"]["error"]
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    store.open()
    try:  # the ticket the action needs is gone
        store.delete("tickets", "meeting-1-joshua")
    finally:
        store.close()
    gone = ask(action("meeting-1/joshua", "set_attendance", {"attending": False}))
    assert gone["status"] == 404
    assert "tickets/meeting-1-joshua does not exist" in gone["body"]["error"]


class Gate:
    """A map step that holds every message until the test opens it."""

    opened = threading.Event()
    seen = threading.Event()


def hold(value: Any) -> Any:
    Gate.seen.set()
    Gate.opened.wait(30)
    return value


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[Any, SqliteDatastore]]:
    """An api pipeline whose requests wait at a gate before the api processor."""
    name = plugins.register_plugin(TestPlugin(), name="api-gate-tests")
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    store.open()
    seed(store)
    Gate.opened.clear()
    Gate.seen.clear()
    config = parse_config("""
pipelines:
  api:
    source: {type: caller}
    processors: [{type: map, function: "tests.test_api:hold"}, {type: api}]
    sinks: [{type: reply}]
""")
    sources.clear()
    try:
        with running(config, datastore=store):
            yield sources[0], store
            Gate.opened.set()
    finally:
        store.close()
        plugins.unregister_plugin(name)


def test_a_request_answered_as_timed_out_never_runs_afterwards(
    gated: tuple[Any, SqliteDatastore],
) -> None:
    source, store = gated
    before = store.get("tickets", "meeting-1-joshua")
    assert before is not None
    assert before["attendance"] is True
    with pytest.raises(TimeoutError, match="it will not run"):
        source.submit(action("meeting-1/joshua", "set_attendance", {"attending": False}), 0.2)
    Gate.opened.set()  # the pipeline moves on; the abandoned action must not run
    after = source.submit({"op": "read", "view": SESSION, "key": "meeting-1/joshua"}, 10)
    assert after["status"] == 200
    assert store.get("tickets", "meeting-1-joshua") == before


def test_requests_beyond_max_pending_are_refused_at_once(
    gated: tuple[Any, SqliteDatastore], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = gated
    monkeypatch.setattr(type(source), "max_pending", 3)
    read = {"op": "read", "view": SESSION, "key": "meeting-1/joshua"}
    waiting = [threading.Thread(target=source.submit, args=(read, 30)) for _ in range(5)]
    for thread in waiting:
        thread.start()
    assert Gate.seen.wait(10)  # the first is held at the gate; the others queue behind
    deadline = time.monotonic() + 10
    while source._pending < 3 and time.monotonic() < deadline:
        Gate.seen.wait(0.01)  # the callers start in their own threads
    busy = source.submit(read, 5)
    assert busy["status"] == 503
    assert "too many requests waiting (3)" in busy["body"]["error"]
    Gate.opened.set()
    for thread in waiting:
        thread.join(30)
