"""WebSocket clients that break the protocol, flood subscriptions or come from another
site are closed or refused with a reason; the server keeps serving everyone else."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from onto_core.testing import running
from onto_websocket.testing import free_port

WATCH = {
    "query": 'subscription { meetingSession(meetingId: "meeting-1", userId: "joshua") { userId } }'
}


async def session(url: str, *messages: Any, origin: str | None = None) -> tuple[list[Any], Any]:
    """Send ``messages`` (dicts as JSON, str and bytes as they are); what came back (each
    JSON message, in order) and the close code, once the server closes or goes quiet."""
    received: list[Any] = []
    headers = {"Origin": origin} if origin else None
    async with websockets.connect(
        url.replace("http://", "ws://"),
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers=headers,
    ) as socket:
        for message in messages:
            await socket.send(json.dumps(message) if isinstance(message, dict) else message)
        try:
            while True:
                received.append(json.loads(await asyncio.wait_for(socket.recv(), 2)))
        except (websockets.ConnectionClosed, TimeoutError):
            pass
        return received, socket.close_code


def init() -> dict[str, Any]:
    return {"type": "connection_init", "payload": {}}


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        b"\x00\x01binary",
        '["a", "list"]',
        '{"no": "type"}',
        '{"type": "subscribe", "payload": {"query": "{ userViews { userId } }"}}',
    ],
)
def test_a_message_outside_the_protocol_closes_the_connection_with_4400(
    serve: Any, bad: str | bytes
) -> None:
    with serve() as url:
        received, code = asyncio.run(session(url, init(), bad))
        still = httpx.post(url, json={"query": "{ userViews { userId } }"})
    assert received == [{"type": "connection_ack"}]
    assert code == 4400
    assert still.status_code == 200


def test_subscribing_before_connection_init_is_refused_with_4401(serve: Any) -> None:
    with serve() as url:
        received, code = asyncio.run(
            session(url, {"type": "subscribe", "id": "1", "payload": WATCH})
        )
    assert received == []
    assert code == 4401


def test_a_connection_holds_at_most_max_subscriptions(serve: Any) -> None:
    subscribes = [{"type": "subscribe", "id": str(n), "payload": WATCH} for n in range(3)]
    with serve(max_subscriptions=2) as url:
        received, _ = asyncio.run(session(url, init(), *subscribes))
    firsts = [m["id"] for m in received if m["type"] == "next"]
    (refusal,) = [m for m in received if m["type"] == "error"]
    assert sorted(firsts) == ["0", "1"]
    assert refusal["id"] == "2"
    assert refusal["payload"][0]["extensions"] == {"code": "TOO_MANY_SUBSCRIPTIONS"}


def test_a_websocket_from_another_site_is_refused(serve: Any) -> None:
    with serve() as url, pytest.raises(websockets.InvalidStatus) as refused:
        asyncio.run(session(url, init(), origin="https://attacker.example"))
    assert refused.value.response.status_code == 403


def test_graphql_on_the_port_of_a_flask_based_transport_fails_at_start_naming_both(
    store: Any,
) -> None:
    port = free_port()
    session_view = "examples.meeting_room.views:MeetingSession"
    config = {
        "pipelines": {
            "sessions": {
                "source": {"type": "changes", "models": ["meetings", "tickets", "users"]},
                "processors": [{"type": "view", "view": session_view}],
                "sinks": [
                    {"type": "websocket", "port": port, "views": [session_view]},
                    {"type": "graphql", "port": port, "views": [session_view]},
                ],
            }
        }
    }
    with (
        pytest.raises(Exception, match="GraphQL runs on its own ASGI server") as failed,
        running(json.dumps(config), datastore=store),
    ):
        pass
    assert "sessions.sinks[0] (websocket)" in str(failed.value)
    assert "sessions.sinks[1] (graphql)" in str(failed.value)
