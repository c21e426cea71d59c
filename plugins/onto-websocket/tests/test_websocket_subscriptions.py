"""Subscribing over a real Socket.IO connection: the view at once, every update, then none."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from examples.meeting_room.views import MeetingSession
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import run_action
from onto_web import get_server
from onto_websocket import hub_for, room_name
from onto_websocket.testing import ViewClient

Serve = Callable[..., contextlib.AbstractContextManager[str]]
Client = Callable[[], ViewClient]
VIEW = "meeting_session"


def attendees(view: dict[str, Any]) -> list[str]:
    return [a["userId"] for a in view["data"]["attending"]]


def test_subscribe_sends_the_current_view_at_once(serve: Serve, client: Client) -> None:
    with serve() as url:
        joshua = client().connect(url)
        assert joshua.subscribe(VIEW, "meeting-1/joshua") == {"ok": True}
        # Sent before the ack: a client holding the ack holds the view already.
        first = joshua.views.get_nowait()
    assert first["view"] == VIEW
    assert first["key"] == "meeting-1/joshua"
    assert first["fields"] == {"meeting_id": "meeting-1", "user_id": "joshua"}
    assert first["removed"] is False
    assert isinstance(first["version"], int)
    assert attendees(first) == ["joshua", "thomasina", "tijuana"]
    assert first["data"]["numHearingAidRequested"] == 2
    assert first["data"]["address"] == "9500 Gilman Drive, La Jolla, CA"


def test_attendance_change_through_the_action_event_reaches_every_subscriber(
    serve: Serve, client: Client
) -> None:
    with serve() as url:
        joshua, tijuana = client().connect(url), client().connect(url)
        joshua.subscribe(VIEW, "meeting-1/joshua")
        tijuana.subscribe(VIEW, "meeting-1/tijuana")
        before = tijuana.next_view()
        joshua.next_view()

        answer = joshua.action(VIEW, "meeting-1/joshua", "set_attendance", {"attending": False})

        assert answer["status"] == 200
        assert [a["userId"] for a in answer["body"]["attending"]] == ["thomasina", "tijuana"]
        update = tijuana.view_where(lambda v: attendees(v) == ["thomasina", "tijuana"])
        assert update["key"] == "meeting-1/tijuana"
        assert update["version"] > before["version"]
        assert update["data"]["numHearingAidRequested"] == 1
        joshua.view_where(lambda v: attendees(v) == ["thomasina", "tijuana"])


def test_change_written_to_the_store_reaches_subscribers(
    serve: Serve, client: Client, store: SqliteDatastore
) -> None:
    with serve() as url:
        thomasina = client().connect(url)
        thomasina.subscribe(VIEW, "meeting-1/thomasina")
        before = thomasina.next_view()

        run_action(
            store, MeetingSession, "meeting-1/tijuana", "set_attendance", {"attending": False}
        )

        update = thomasina.view_where(lambda v: attendees(v) == ["joshua", "thomasina"])
        assert update["version"] > before["version"]


def test_a_later_subscriber_gets_the_latest_version_delivered(
    serve: Serve, client: Client, store: SqliteDatastore
) -> None:
    with serve() as url:
        early = client().connect(url)
        early.subscribe(VIEW, "meeting-1/joshua")
        early.next_view()
        run_action(
            store, MeetingSession, "meeting-1/joshua", "set_attendance", {"attending": False}
        )
        update = early.view_where(lambda v: attendees(v) == ["thomasina", "tijuana"])

        late = client().connect(url)
        late.subscribe(VIEW, "meeting-1/joshua")
        current = late.next_view()
    assert current["version"] == update["version"]
    assert current["data"] == update["data"]


def test_after_unsubscribe_a_change_delivers_nothing(
    serve: Serve, client: Client, store: SqliteDatastore
) -> None:
    with serve() as url:
        leaving, staying = client().connect(url), client().connect(url)
        for one in (leaving, staying):
            one.subscribe(VIEW, "meeting-1/thomasina")
            one.next_view()

        assert leaving.unsubscribe(VIEW, "meeting-1/thomasina") == {"ok": True}
        assert leaving.unsubscribe(VIEW, "meeting-1/thomasina") == {"ok": True}  # idempotent
        # Whatever was sent before the ack (the start-up views, say) is in already.
        leaving.received()
        run_action(
            store, MeetingSession, "meeting-1/joshua", "set_attendance", {"attending": False}
        )

        # The update goes to the whole room in one emit: once the client still in it has
        # it, the one who left would have had it too.
        staying.view_where(lambda v: attendees(v) == ["thomasina", "tijuana"])
        assert leaving.received() == []


def test_disconnect_releases_every_subscription(serve: Serve, client: Client) -> None:
    with serve() as url:
        gone = client().connect(url)
        gone.subscribe(VIEW, "meeting-1/joshua")
        gone.subscribe(VIEW, "meeting-1/tijuana")
        sid = gone.sid
        server = get_server("127.0.0.1", int(url.rsplit(":", 1)[1]))
        manager = hub_for(server).socketio.server.manager
        rooms = [room_name(VIEW, "meeting-1/joshua"), room_name(VIEW, "meeting-1/tijuana")]

        def members() -> set[str]:
            return {s for room in rooms for s, _ in manager.get_participants("/", room)}

        assert sid in members()
        gone.close()
        # The server learns of the disconnect asynchronously; nothing to await but its state.
        deadline = time.monotonic() + 10
        while sid in members() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sid not in members()


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"view": "nope", "key": "meeting-1/joshua"}, 404, "view"),
        ({"view": VIEW, "key": "meeting-9/joshua"}, 404, "key"),
        ({"view": VIEW, "key": "meeting-1"}, 400, "key"),
        ({"view": VIEW}, 400, "key"),
        ("meeting-1/joshua", 400, None),
    ],
    ids=["unknown view", "unknown key", "malformed key", "no key", "not an object"],
)
def test_a_refused_subscription_says_why_and_sends_no_view(
    serve: Serve, client: Client, payload: Any, status: int, field: str | None
) -> None:
    with serve() as url:
        someone = client().connect(url)
        refusal = someone.call("subscribe", payload)
        assert refusal["ok"] is False
        assert refusal["status"] == status
        assert refusal["field"] == field
        assert refusal["error"]
        # The error event is sent before the ack, so it is here already.
        assert someone.errors.get_nowait() == refusal
        # A good subscription's view is the first view this client sees.
        assert someone.subscribe(VIEW, "meeting-1/joshua") == {"ok": True}
        assert {v["key"] for v in someone.received()} == {"meeting-1/joshua"}
