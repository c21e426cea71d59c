"""Live views over GraphQL: a gql client subscribes (graphql-transport-ws), another mutates
over HTTP, and the subscription yields exactly the versions that changed its view."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from examples.meeting_room.models import Meeting
from examples.meeting_room.views import MeetingSession
from onto_core.models import run_action, use_datastore

SESSION_UPDATES = """
subscription Session($meetingId: ID!, $userId: ID!) {
  meetingSession(meetingId: $meetingId, userId: $userId) {
    userId
    status
    attending { name organization hearingAidRequested }
    numHearingAidRequested
  }
}
"""
SET_ATTENDANCE = """
mutation Leave($meetingId: ID!, $userId: ID!, $attending: Boolean!) {
  setAttendance(meetingId: $meetingId, userId: $userId, attending: $attending) {
    attending { name }
  }
}
"""
UPDATE_PROFILE = """
mutation Profile($userId: ID!, $organization: String) {
  update(userId: $userId, organization: $organization) { organization }
}
"""
WAIT = 10.0


def session_of(user: str) -> GraphQLRequest:
    return GraphQLRequest(
        SESSION_UPDATES, variable_values={"meetingId": "meeting-1", "userId": user}
    )


def attendance(user: str, attending: bool) -> GraphQLRequest:
    return GraphQLRequest(
        SET_ATTENDANCE,
        variable_values={"meetingId": "meeting-1", "userId": user, "attending": attending},
    )


def subscriber(url: str, token: str | None, protocol: str = "graphql-transport-ws") -> Client:
    payload = {"token": token} if token is not None else {}
    transport = WebsocketsTransport(
        url=url.replace("http://", "ws://"), subprotocols=[protocol], init_payload=payload
    )
    return Client(transport=transport)


def caller(url: str, token: str) -> Client:
    return Client(transport=HTTPXAsyncTransport(url, headers={"Authorization": f"Bearer {token}"}))


async def next_of(updates: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = await asyncio.wait_for(anext(updates), WAIT)
    return item["meetingSession"]


def names(view: dict[str, Any]) -> list[str]:
    return [a["name"] for a in view["attending"]]


async def attendance_story(url: str, protocol: str) -> None:
    async with (
        subscriber(url, "joshua-token", protocol) as joshua,
        # Closing the subscription unsubscribes; gql waits for the server's complete.
        contextlib.aclosing(joshua.subscribe(session_of("joshua"))) as updates,
    ):
        now = await next_of(updates)
        assert names(now) == ["Joshua Pendergrast", "Thomasina Manning", "Tijuana Ramos"]
        assert now["numHearingAidRequested"] == 3
        assert now["status"] == "IN_SESSION"

        async with caller(url, "thomasina-token") as thomasina:
            left = await thomasina.execute(attendance("thomasina", False))
            assert names(left["setAttendance"]) == ["Joshua Pendergrast", "Tijuana Ramos"]

            after = await next_of(updates)
            assert names(after) == ["Joshua Pendergrast", "Tijuana Ramos"]
            assert after["numHearingAidRequested"] == 2

            # Thomasina no longer attends: her profile is not in joshua's view, so this
            # change yields nothing; the next version joshua sees is her coming back, with
            # the new organization already in it.
            profile = await thomasina.execute(
                GraphQLRequest(
                    UPDATE_PROFILE, variable_values={"userId": "thomasina", "organization": "UCLA"}
                )
            )
            assert profile == {"update": {"organization": "UCLA"}}
            await thomasina.execute(attendance("thomasina", True))
        back = await next_of(updates)
        assert names(back) == ["Joshua Pendergrast", "Thomasina Manning", "Tijuana Ramos"]
        assert [a["organization"] for a in back["attending"]] == ["SDSU", "UCLA", "UCSD"]
        assert back["numHearingAidRequested"] == 3


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
def test_attendance_change_reaches_joshuas_subscription_and_unrelated_change_does_not(
    serve: Any, auth: dict[str, Any], protocol: str
) -> None:
    with serve(auth=auth) as url:
        asyncio.run(attendance_story(url, protocol))


async def removal_story(url: str, store: Any) -> str:
    async with (
        subscriber(url, "joshua-token") as joshua,
        contextlib.aclosing(joshua.subscribe(session_of("joshua"))) as updates,
    ):
        await next_of(updates)

        def drop_joshua() -> None:
            with use_datastore(store):
                meeting = Meeting.get("meeting-1")
                meeting.users = [u for u in meeting.users if u.doc_id != "joshua"]
                meeting.save()

        await asyncio.to_thread(drop_joshua)
        with pytest.raises(TransportQueryError) as ended:
            await next_of(updates)
        return str(ended.value)


def test_subscription_ends_with_an_error_when_the_view_is_removed(
    serve: Any, auth: dict[str, Any], store: Any
) -> None:
    with serve(auth=auth) as url:
        message = asyncio.run(removal_story(url, store))
    assert "meeting_session 'meeting-1/joshua' was removed" in message


REVOCABLE = """
allowed = {"joshua"}


def may(principal, view, key, operation):
    return principal in allowed
"""


async def revocation_story(url: str, store: Any, rules: Any) -> str:
    async with (
        subscriber(url, "joshua-token") as joshua,
        contextlib.aclosing(joshua.subscribe(session_of("joshua"))) as updates,
    ):
        await next_of(updates)
        rules.allowed.clear()  # joshua may no longer see any view
        await asyncio.to_thread(
            run_action,
            store,
            MeetingSession,
            "meeting-1/thomasina",
            "set_attendance",
            {"attending": False},
        )
        with pytest.raises(TransportQueryError) as ended:
            await next_of(updates)
        return str(ended.value)


def test_subscription_ends_with_an_error_when_access_is_revoked(
    serve: Any, store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: dict[str, Any]
) -> None:
    (tmp_path / "revocable_rules.py").write_text(REVOCABLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import revocable_rules  # type: ignore[import-not-found]

    try:
        with serve(auth={**auth, "authorize": "revocable_rules:may"}) as url:
            message = asyncio.run(revocation_story(url, store, revocable_rules))
    finally:
        sys.modules.pop("revocable_rules", None)
    assert "access to meeting_session 'meeting-1/joshua' was revoked" in message
