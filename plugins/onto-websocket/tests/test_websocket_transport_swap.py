"""Changing the transport is a config change: the same pipeline, its sink block swapped."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.views import MeetingSession
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import run_action
from onto_core.testing import running
from onto_websocket.testing import ViewClient, free_port

PIPELINE = """\
pipelines:
  sessions:
    source: {type: changes, models: [meetings, tickets, users]}
    processors:
      - {type: view, view: "examples.meeting_room.views:MeetingSession"}
    sinks:
      - SINK
"""
SINKS = {
    "websocket": "{type: websocket, port: PORT, views: [VIEW]}",
    "file": '{type: file, path: "PATH"}',
}


def pipeline(transport: str, port: int, path: Path) -> str:
    block = SINKS[transport].replace("PORT", str(port)).replace("PATH", str(path))
    block = block.replace("VIEW", "examples.meeting_room.views:MeetingSession")
    return PIPELINE.replace("SINK", block)


def leave(store: SqliteDatastore) -> None:
    run_action(store, MeetingSession, "meeting-1/joshua", "set_attendance", {"attending": False})


def attendees(view: dict[str, Any]) -> list[str]:
    return [a["userId"] for a in view["data"]["attending"]]


def test_the_two_configs_differ_only_in_the_sink_block(tmp_path: Path) -> None:
    over_websocket = pipeline("websocket", 8000, tmp_path / "views.jsonl").splitlines()
    over_file = pipeline("file", 8000, tmp_path / "views.jsonl").splitlines()
    changed = [(a, b) for a, b in zip(over_websocket, over_file, strict=True) if a != b]
    assert len(changed) == 1
    (before, after) = changed[0]
    assert before.strip().startswith("- {type: websocket,")
    assert after.strip().startswith("- {type: file,")


def delivered_over_websocket(store: SqliteDatastore, tmp_path: Path) -> dict[str, Any]:
    port = free_port()
    with running(pipeline("websocket", port, tmp_path / "unused"), datastore=store):
        tijuana = ViewClient().connect(f"http://127.0.0.1:{port}")
        try:
            tijuana.subscribe("meeting_session", "meeting-1/tijuana")
            before = tijuana.next_view()
            leave(store)
            # The start-up views may still arrive first: wait for the change's.
            update = tijuana.view_where(lambda v: attendees(v) == ["thomasina", "tijuana"])
        finally:
            tijuana.close()
    assert update["version"] > before["version"]
    return update


def delivered_to_file(store: SqliteDatastore, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "views.jsonl"

    def tijuanas() -> list[dict[str, Any]]:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        values = [json.loads(line)["value"] for line in lines]
        return [v for v in values if v["key"] == "meeting-1/tijuana"]

    def written(count: int) -> list[dict[str, Any]]:
        # A file has no event to await: read it until the views are there, or give up.
        deadline = time.monotonic() + 10
        while len(found := tijuanas()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(found) >= count, f"{path} holds {len(found)} of tijuana's views, not {count}"
        return found

    with running(pipeline("file", free_port(), path), datastore=store):
        (before,) = written(1)  # every view is written once at start-up
        leave(store)
        update = written(2)[1]
    assert update["version"] > before["version"]
    return update


@pytest.mark.parametrize("transport", ["websocket", "file"])
def test_an_attendance_change_is_delivered_over_either_sink(
    transport: str, store: SqliteDatastore, tmp_path: Path
) -> None:
    deliver = delivered_over_websocket if transport == "websocket" else delivered_to_file
    update = deliver(store, tmp_path)
    assert update["view"] == "meeting_session"
    assert update["key"] == "meeting-1/tijuana"
    assert attendees(update) == ["thomasina", "tijuana"]
    assert update["data"]["numHearingAidRequested"] == 1
