"""The Socket.IO events of the websocket sink and source, as AsyncAPI channels.

The protocol is docs/websocket.md's (and ``onto_websocket.hub``'s): clients send
``subscribe`` and ``unsubscribe`` (acked ``{"ok": true}`` or a refusal), the sink emits
view updates as its ``event`` and refusals as ``error``; the source receives ``action``
and acks it with the API answer ``{"status", "body"}``. Each channel's address is the
event name; the server is the Socket.IO endpoint on the component's host and port.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from onto_core.asyncapi import AsyncChannel, AsyncMessage, AsyncServer, model_schemas
from onto_core.models.view import ViewModel
from onto_web import WebEndpointConfig

if TYPE_CHECKING:
    from onto_websocket.sink import WebSocketSink
    from onto_websocket.source import WebSocketSource

__all__ = ["sink_channels", "source_channels"]

_ERROR_BODY = {
    "type": "object",
    "description": "Why a request was refused.",
    "properties": {
        "error": {"type": "string", "description": "What went wrong, for a person to read."},
        "field": {
            "type": ["string", "null"],
            "description": "The argument, view or key the error is about, or null.",
        },
    },
    "required": ["error", "field"],
}

_OK = AsyncMessage(
    name="SocketAck",
    title="Accepted",
    summary="The event was served.",
    payload={
        "type": "object",
        "properties": {"ok": {"const": True}},
        "required": ["ok"],
        "additionalProperties": False,
    },
)

_REFUSAL = AsyncMessage(
    name="SocketRefusal",
    title="Refused",
    summary="The event could not be served: the status says why, as in HTTP.",
    payload={
        "type": "object",
        "properties": {
            "ok": {"const": False},
            "status": {
                "type": "integer",
                "description": "400 malformed, 401/403 auth, 404 no such view or key, 429 too"
                " many events in flight, 503 unavailable, 504 waited too long, 500 unexpected.",
            },
            "error": {"type": "string", "description": "What went wrong, for a person to read."},
            "field": {
                "type": ["string", "null"],
                "description": "The payload field at fault (view, key), or null.",
            },
        },
        "required": ["ok", "status", "error", "field"],
        "additionalProperties": False,
    },
)


def _server(config: WebEndpointConfig) -> AsyncServer:
    return AsyncServer(
        host=f"{config.host}:{config.port}",
        protocol="ws",
        pathname="/socket.io/",
        description="Socket.IO (protocol v5, Engine.IO v4) on the default namespace; events"
        ' are JSON. Connect with the auth payload {"token": ...} where auth is configured.',
    )


def _view_and_key(view: type[ViewModel]) -> dict[str, Any]:
    """The ``view`` and ``key`` properties every event naming one view key has."""
    parts = "/".join(view.key_fields)
    return {
        "view": {"const": view.view_name},
        "key": {
            "type": "string",
            "minLength": 1,
            "description": f"The view key: {parts}, joined by '/'.",
        },
    }


def _target(view: type[ViewModel], event: str) -> AsyncMessage:
    return AsyncMessage(
        name=f"{event.capitalize()}{view.__name__}",
        title=f"{event} {view.view_name}",
        summary=f"{event.capitalize()} the {view.view_name} view at one key.",
        payload={
            "type": "object",
            "properties": _view_and_key(view),
            "required": ["view", "key"],
        },
    )


def sink_channels(sink: WebSocketSink) -> list[AsyncChannel]:
    """``subscribe``, ``unsubscribe``, the update event and ``error`` of ``sink``."""
    from onto_core.asyncapi import view_update_message

    server = _server(sink.config)
    event = sink.config.event
    return [
        AsyncChannel(
            address="subscribe",
            action="receive",
            server=server,
            messages=[_target(view, "subscribe") for view in sink.views],
            title="subscribe",
            description="A client asks for a view key: it receives the view now as a"
            f" {event!r} event, then every update, and the ack. A refused subscription is"
            " an 'error' event and the same refusal as the ack.",
            summary="Subscribe to a view key.",
            reply=[_OK, _REFUSAL],
        ),
        AsyncChannel(
            address="unsubscribe",
            action="receive",
            server=server,
            messages=[_target(view, "unsubscribe") for view in sink.views],
            title="unsubscribe",
            description="A client leaves a view key's room; no update of it reaches the"
            " client afterwards.",
            summary="Unsubscribe from a view key.",
            reply=[_OK, _REFUSAL],
        ),
        AsyncChannel(
            address=event,
            action="send",
            server=server,
            messages=[view_update_message(view) for view in sink.views],
            title=event,
            description='View updates, to the room of each view key ("{view}:{key}"): the'
            " current view on subscribing, then every update the pipeline delivers.",
            summary="Push a view update to its subscribers.",
        ),
        AsyncChannel(
            address="error",
            action="send",
            server=server,
            messages=[_REFUSAL],
            title="error",
            description="Why a subscription was refused, to the client that asked.",
            summary="Tell a client its subscription was refused.",
        ),
    ]


def _action_request(view: type[ViewModel], action: str, arguments: dict[str, Any]) -> AsyncMessage:
    return AsyncMessage(
        name=f"Action{view.__name__}_{action}",
        title=f"{view.view_name}.{action}",
        summary=f"Run {view.view_name} action {action}.",
        payload={
            "type": "object",
            "properties": {
                **_view_and_key(view),
                "action": {"const": action},
                "traceparent": {
                    "type": "string",
                    "description": "Optional W3C trace context: the action continues this"
                    " trace (docs/observability.md#traces).",
                },
                "tracestate": {"type": "string", "description": "Optional W3C trace state."},
                "arguments": {
                    "description": "The action's arguments by parameter name (omitted or"
                    " null when none is required).",
                    "oneOf": [arguments, {"type": "null"}],
                },
            },
            "required": ["view", "key", "action"],
        },
    )


def _action_answer(view: type[ViewModel], data_ref: dict[str, Any]) -> AsyncMessage:
    return AsyncMessage(
        name=f"ActionAnswer{view.__name__}",
        title=f"{view.view_name} action answer",
        summary="The api processor's answer: the view after the action, or an error.",
        payload={
            "type": "object",
            "properties": {
                "status": {
                    "type": "integer",
                    "description": "200, or the error's status: 400 bad argument, 401/403"
                    " auth, 404 no such view, key or action, 409 lost race, 422 refused by"
                    " the action's rules, 429 too many events, 503/504 unavailable or too"
                    " slow, 500 unexpected.",
                },
                "body": {
                    "description": "With 200: the view after the action (null if it no"
                    " longer exists); otherwise the error.",
                    "oneOf": [data_ref, {"type": "null"}, _ERROR_BODY],
                },
            },
            "required": ["status", "body"],
        },
    )


def source_channels(source: WebSocketSource) -> list[AsyncChannel]:
    """The ``action`` event of ``source``: one message per view and action."""
    views = list(source.views.values())
    actions = [(view, name, view.action_model(name)) for view in views for name in view.actions]
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((view, "serialization") for view in views),
        *((model, "validation") for _, _, model in actions),
    ]
    refs, schemas = model_schemas(wanted)
    requests = [
        _action_request(view, name, refs[(model, "validation")])
        for view, name, model in sorted(actions, key=lambda a: (a[0].view_name, a[1]))
    ]
    answers = [_action_answer(view, refs[(view, "serialization")]) for view in views]
    return [
        AsyncChannel(
            address="action",
            action="receive",
            server=_server(source.config),
            messages=[m.but(schemas=schemas) for m in requests],
            title="action",
            description="A client runs an action of a view key; the ack carries the answer."
            " The action's effect also reaches every subscriber as a view update.",
            summary="Run an action on a view key.",
            reply=[m.but(schemas=schemas) for m in answers],
        )
    ]
