"""Bearer tokens and per-view authorization over GraphQL: refused means a GraphQL error
(or a closed connection) and not one field of the view."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportError, TransportQueryError
from gql.transport.websockets import WebsocketsTransport

READ = """query Read($userId: ID!) {
  meetingSession(meetingId: "meeting-1", userId: $userId) { userId attending { name } }
}"""
LEAVE = """mutation Leave($userId: ID!) {
  setAttendance(meetingId: "meeting-1", userId: $userId, attending: false) { userId }
}"""
SUBSCRIBE = """subscription Watch($userId: ID!) {
  meetingSession(meetingId: "meeting-1", userId: $userId) { userId attending { name } }
}"""
# What any part of a view would show: a participant's name or key.
VIEW_TEXT = ("Pendergrast", "Manning", "Ramos", "attending")


def post(url: str, query: str, token: str | None = None, **variables: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url, json={"query": query, "variables": variables}, headers=headers)


def refused(response: httpx.Response, code: str) -> dict[str, Any]:
    """The one error of a refused field, after checking the answer holds no view data."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert not any(part in response.text for part in VIEW_TEXT), response.text
    assert list(body["data"].values()) == [None]
    (error,) = body["errors"]
    assert error["extensions"]["code"] == code
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "a bearer token is required"), ("not-a-token", "the bearer token is not valid")],
)
def test_a_query_without_a_valid_token_is_refused(
    serve: Any, auth: dict[str, Any], token: str | None, message: str
) -> None:
    with serve(auth=auth) as url:
        error = refused(post(url, READ, token, userId="joshua"), "UNAUTHENTICATED")
    assert error["message"] == message
    assert error["path"] == ["meetingSession"]


def test_another_users_view_is_refused(serve: Any, auth: dict[str, Any]) -> None:
    with serve(auth=auth) as url:
        error = refused(post(url, READ, "joshua-token", userId="tijuana"), "FORBIDDEN")
        own = post(url, READ, "joshua-token", userId="joshua").json()
    assert error["message"] == "joshua may not read meeting_session 'meeting-1/tijuana'"
    assert own == {"data": {"meetingSession": {"userId": "joshua", "attending": own_names()}}}


def own_names() -> list[dict[str, str]]:
    return [{"name": n} for n in ("Joshua Pendergrast", "Thomasina Manning", "Tijuana Ramos")]


def test_a_mutation_on_another_users_view_is_refused_and_changes_nothing(
    serve: Any, auth: dict[str, Any]
) -> None:
    with serve(auth=auth) as url:
        refused(post(url, LEAVE, "joshua-token", userId="thomasina"), "FORBIDDEN")
        refused(post(url, LEAVE, None, userId="thomasina"), "UNAUTHENTICATED")
        still = post(url, READ, "thomasina-token", userId="thomasina").json()
    assert still["data"]["meetingSession"]["attending"] == own_names()


async def raw_subscription(url: str, init: dict[str, Any]) -> tuple[list[str], int | None, str]:
    """Every message a raw graphql-transport-ws client receives, and how it was closed."""
    received: list[str] = []
    async with websockets.connect(
        url.replace("http://", "ws://"), subprotocols=["graphql-transport-ws"]
    ) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": init}))
        with contextlib.suppress(websockets.ConnectionClosed):
            received.append(str(await asyncio.wait_for(socket.recv(), 10)))
            subscribe = {"query": SUBSCRIBE, "variables": {"userId": "joshua"}}
            await socket.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
            while True:
                received.append(str(await asyncio.wait_for(socket.recv(), 10)))
        return received, socket.close_code, socket.close_reason or ""


@pytest.mark.parametrize(
    ("init", "reason"),
    [
        ({}, 'a bearer token is required: send {"token": "<token>"}'),
        ({"token": "not-a-token"}, "the bearer token is not valid"),
    ],
)
def test_a_subscription_without_a_valid_token_is_closed_before_any_data(
    serve: Any, auth: dict[str, Any], init: dict[str, Any], reason: str
) -> None:
    with serve(auth=auth) as url:
        received, code, closed_because = asyncio.run(raw_subscription(url, init))
        with pytest.raises(TransportError):
            asyncio.run(gql_subscription(url, init))
    assert received == []
    assert code == 4403
    assert closed_because.startswith(reason)


async def gql_subscription(url: str, init: dict[str, Any], user: str = "joshua") -> list[Any]:
    transport = WebsocketsTransport(
        url=url.replace("http://", "ws://"),
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload=init,
    )
    got: list[Any] = []
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIBE, variable_values={"userId": user})
        async for item in session.subscribe(request):
            got.append(item)
    return got


def test_a_subscription_to_another_users_view_is_refused(serve: Any, auth: dict[str, Any]) -> None:
    with serve(auth=auth) as url, pytest.raises(TransportQueryError) as refusal:
        asyncio.run(gql_subscription(url, {"token": "joshua-token"}, user="tijuana"))
    assert refusal.value.errors is not None
    (error,) = refusal.value.errors
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["message"] == "joshua may not subscribe meeting_session 'meeting-1/tijuana'"
    assert refusal.value.data is None
