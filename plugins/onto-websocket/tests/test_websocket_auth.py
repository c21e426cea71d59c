"""Who may connect, subscribe and act when the websocket endpoint has bearer tokens."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
import socketio

from examples.meeting_room.views import MeetingSession
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import find_view, use_datastore
from onto_websocket.testing import ViewClient

Serve = Callable[..., contextlib.AbstractContextManager[str]]
Client = Callable[[], ViewClient]
VIEW = "meeting_session"
# Each participant may touch only views keyed by their own user_id (owner_field's default).
AUTH: dict[str, Any] = {
    "tokens": [
        {"token": "joshua-secret", "principal": "joshua"},
        {"token": "tijuana-secret", "principal": "tijuana"},
    ]
}


def test_a_connection_without_a_token_is_refused(serve: Serve, client: Client) -> None:
    with serve(auth=AUTH) as url:
        nobody = client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            nobody.connect(url)
        hint = 'connect with the auth payload {"token": "<token>"}'
        assert nobody.refusals.get_nowait() == {"message": f"a bearer token is required: {hint}"}
        assert not nobody.client.connected
        assert nobody.received() == []


def test_a_connection_with_an_unknown_token_is_refused(serve: Serve, client: Client) -> None:
    with serve(auth=AUTH) as url:
        guesser = client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            guesser.connect(url, token="guess")
        assert guesser.refusals.get_nowait() == {"message": "the bearer token is not valid"}


def test_a_participant_follows_their_own_view(serve: Serve, client: Client) -> None:
    with serve(auth=AUTH) as url:
        joshua = client().connect(url, token="joshua-secret")
        assert joshua.subscribe(VIEW, "meeting-1/joshua") == {"ok": True}
        assert joshua.next_view()["key"] == "meeting-1/joshua"


def test_subscribing_to_another_participants_view_is_403_and_sends_no_view(
    serve: Serve, client: Client
) -> None:
    with serve(auth=AUTH) as url:
        joshua = client().connect(url, token="joshua-secret")
        refusal = joshua.subscribe(VIEW, "meeting-1/tijuana")
        assert refusal["ok"] is False
        assert refusal["status"] == 403
        assert "joshua may not subscribe" in refusal["error"]
        assert joshua.errors.get_nowait() == refusal
        # His own view, subscribed next, is the first view he receives.
        joshua.subscribe(VIEW, "meeting-1/joshua")
        assert {v["key"] for v in joshua.received()} == {"meeting-1/joshua"}


def test_an_action_on_another_participants_view_is_403_and_changes_nothing(
    serve: Serve, client: Client, store: SqliteDatastore
) -> None:
    with serve(auth=AUTH) as url:
        tijuana = client().connect(url, token="tijuana-secret")
        answer = tijuana.action(VIEW, "meeting-1/joshua", "set_attendance", {"attending": False})
        assert answer["status"] == 403
        assert (
            answer["body"]["error"] == "tijuana may not action meeting_session 'meeting-1/joshua'"
        )
        own = tijuana.action(VIEW, "meeting-1/tijuana", "set_attendance", {"attending": False})
        assert own["status"] == 200
        with use_datastore(store):
            after = find_view(MeetingSession, "meeting-1/joshua")
        assert after is not None
        assert [a.user_id for a in after.attending] == ["joshua", "thomasina"]
