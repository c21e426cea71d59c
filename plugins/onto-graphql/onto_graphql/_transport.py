"""GraphQL over WebSocket: ``graphql-transport-ws`` and the legacy ``graphql-ws``, hardened.

ariadne speaks both protocols; these subclasses add what a public server needs:

- ``connection_init`` carries the bearer token (``{"token": "..."}``, or
  ``{"Authorization": "Bearer ..."}``); a connection no component accepts is closed
  with ``4403`` and the reason (legacy: ``connection_error``), before any operation runs;
- at most ``max_subscriptions`` operations per connection (more are refused with an
  ``error`` message for that id);
- a message that is not a JSON object of the protocol (binary, not JSON, wrong shape)
  closes the connection with ``4400``: never a traceback, never a server error;
- a connection must send ``connection_init`` within ``init_timeout`` seconds (``4408``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ariadne.asgi.handlers import (
    GraphQLTransportWSHandler,
    GraphQLWebsocketHandlerBase,
    GraphQLWSHandler,
)
from ariadne.exceptions import WebSocketConnectionError
from graphql import GraphQLError
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

__all__ = ["TOKEN_SCOPE_KEY", "SubscriptionProtocols", "TokenCheck"]

log = logging.getLogger("onto.graphql")

TOKEN_SCOPE_KEY = "onto.token"
"""Where a connection's bearer token is kept in the ASGI scope, once ``connection_init`` came."""

TokenCheck = Callable[[Any, str | None], str | None]
"""``(connection_init payload, Authorization header) -> token``; raises ``PermissionError``
with the reason when no component on the server accepts it."""


class _Invalid(Exception):
    """A message outside the protocol: the connection is closed with 4400."""


def _checked_receive(receive: Receive) -> Receive:
    """``receive`` refusing frames ariadne would choke on: binary, non-JSON, non-objects."""

    async def checked() -> dict[str, Any]:
        message = dict(await receive())
        if message["type"] != "websocket.receive":
            return message
        text = message.get("text")
        if text is None:
            raise _Invalid("binary frames are not part of the protocol; send JSON text")
        try:
            value = json.loads(text)
        except ValueError:
            raise _Invalid("a message is not valid JSON") from None
        if not isinstance(value, dict) or not isinstance(value.get("type"), str):
            raise _Invalid('every message is a JSON object with a "type"')
        operation = value.get("id")
        if value["type"] in ("subscribe", "start", "complete", "stop") and (
            not isinstance(operation, str) or not operation or len(operation) > 128
        ):
            raise _Invalid(f'a {value["type"]} message needs an "id" string of 1 to 128 characters')
        payload = value.get("payload")
        if value["type"] in ("subscribe", "start") and not isinstance(payload, dict):
            raise _Invalid(f'a {value["type"]} message needs a "payload" object')
        return message

    return checked


def _token_of(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    token = payload.get("token")
    if token is None:
        header = payload.get("Authorization") or payload.get("authorization")
        if isinstance(header, str):
            scheme, _, value = header.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else None
    return token if isinstance(token, str) and token else None


class _TransportWS(GraphQLTransportWSHandler):
    def __init__(self, check: TokenCheck, max_operations: int, init_timeout: float) -> None:
        super().__init__(connection_init_wait_timeout=timedelta(seconds=init_timeout))
        self._check = check
        self._max_operations = max_operations

    async def handle_websocket_connection_init_message(
        self, websocket: WebSocket, message: dict[str, Any], client_context: Any
    ) -> None:
        if client_context.connection_init_received:
            await websocket.close(code=4429)  # the protocol's "too many initialisation requests"
            return
        client_context.connection_init_received = True
        try:
            token = self._check(message.get("payload"), websocket.headers.get("authorization"))
        except PermissionError as exc:
            await websocket.close(code=4403, reason=str(exc)[:120])
            return
        websocket.scope[TOKEN_SCOPE_KEY] = token
        await websocket.send_json({"type": self.GQL_CONNECTION_ACK})
        client_context.connection_acknowledged = True

    async def handle_websocket_subscribe(
        self, websocket: WebSocket, data: Any, operation_id: str, client_context: Any
    ) -> None:
        if (
            client_context.connection_acknowledged
            and operation_id not in client_context.operations
            and len(client_context.operations) >= self._max_operations
        ):
            error = GraphQLError(
                f"this connection already holds {self._max_operations} subscriptions (the "
                "max_subscriptions setting); complete one first",
                extensions={"code": "TOO_MANY_SUBSCRIPTIONS"},
            )
            await websocket.send_json(
                {"type": self.GQL_ERROR, "id": operation_id, "payload": [error.formatted]}
            )
            return
        await super().handle_websocket_subscribe(websocket, data, operation_id, client_context)

    async def handle_websocket_complete_message(
        self, websocket: WebSocket, operation_id: str, client_context: Any
    ) -> None:
        known = operation_id in client_context.operations
        await super().handle_websocket_complete_message(websocket, operation_id, client_context)
        if known:
            # Confirm the end, as the legacy protocol does: clients such as gql wait for it.
            await websocket.send_json({"type": self.GQL_COMPLETE, "id": operation_id})


class _LegacyWS(GraphQLWSHandler):
    def __init__(self, check: TokenCheck, max_operations: int) -> None:
        super().__init__(on_connect=self._on_connect)
        self._check = check
        self._max_operations = max_operations

    def _on_connect(self, websocket: WebSocket, payload: Any) -> None:
        try:
            token = self._check(payload, websocket.headers.get("authorization"))
        except PermissionError as exc:
            raise WebSocketConnectionError({"message": str(exc)}) from None
        websocket.scope[TOKEN_SCOPE_KEY] = token

    async def process_single_message(
        self, websocket: WebSocket, data: Any, operation_id: str, operations: dict[str, Any]
    ) -> None:
        if operation_id not in operations and len(operations) >= self._max_operations:
            error = GraphQLError(
                f"this connection already holds {self._max_operations} subscriptions (the "
                "max_subscriptions setting); stop one first",
                extensions={"code": "TOO_MANY_SUBSCRIPTIONS"},
            )
            await websocket.send_json(
                {"type": self.GQL_ERROR, "id": operation_id, "payload": error.formatted}
            )
            return
        await super().process_single_message(websocket, data, operation_id, operations)

    async def handle_websocket_message(
        self, websocket: WebSocket, message: dict[str, Any], operations: dict[str, Any]
    ) -> None:
        stopping = message.get("type") == self.GQL_STOP and message.get("id") in operations
        await super().handle_websocket_message(websocket, message, operations)
        if stopping:
            await websocket.send_json({"type": self.GQL_COMPLETE, "id": message["id"]})


class SubscriptionProtocols(GraphQLWebsocketHandlerBase):
    """Serves each WebSocket with the protocol it asks for: ``graphql-transport-ws``
    (preferred) or ``graphql-ws``; a connection asking for neither is refused (403)."""

    PROTOCOLS = ("graphql-transport-ws", "graphql-ws")

    def __init__(self, check: TokenCheck, max_operations: int, init_timeout: float) -> None:
        super().__init__()
        self._handlers: dict[str, GraphQLWebsocketHandlerBase] = {
            "graphql-transport-ws": _TransportWS(check, max_operations, init_timeout),
            "graphql-ws": _LegacyWS(check, max_operations),
        }

    def configure(self, *args: Any, **kwargs: Any) -> None:
        super().configure(*args, **kwargs)
        for handler in self._handlers.values():
            handler.configure(*args, **kwargs)

    async def handle_websocket(self, websocket: Any) -> None:  # pragma: no cover - unused
        raise NotImplementedError("SubscriptionProtocols.handle picks the protocol's handler")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        asked = scope.get("subprotocols") or []
        protocol = next((p for p in self.PROTOCOLS if p in asked), None)
        if protocol is None:
            # Closing before accepting answers the handshake with 403.
            await send({"type": "websocket.close", "code": 4406})
            return
        handler = self._handlers[protocol]
        websocket = WebSocket(scope, _checked_receive(receive), send)
        try:
            await handler.handle_websocket(websocket)
        except _Invalid as exc:
            await _close(websocket, 4400, str(exc))
        except Exception:
            log.exception("a %s connection failed", protocol)
            await _close(websocket, 1011, "internal error; the server log has the details")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state is WebSocketState.DISCONNECTED:
        return
    try:
        if websocket.application_state is WebSocketState.CONNECTING:
            await websocket.close(code=code)
        else:
            await websocket.close(code=code, reason=reason[:120])
    except (RuntimeError, OSError, asyncio.CancelledError):
        pass
