"""onto-websocket: live view models over Socket.IO, and actions from client events.

Registers the ``websocket`` sink (view updates emitted to the room of each view key,
clients subscribe with the ``subscribe`` event) and the ``websocket`` source (``action``
events run through an ``api`` pipeline, answered through the event's ack). Both are
served by one Flask-SocketIO server per host and port, on the onto-web app; the browser
client ``onto-socket.js`` is served at ``/onto/socket.js``. docs/websocket.md is the
protocol's reference. Connections and subscriptions are counted in the runtime's
Prometheus metrics (``onto_websocket.metrics``).
"""

from __future__ import annotations

from typing import Any

from onto_core import ComponentRegistrar, hookimpl
from onto_websocket.hub import CLIENT_SCRIPT, ClientError, SocketHub, hub_for, room_name
from onto_websocket.metrics import SocketMetricsCollector
from onto_websocket.sink import WebSocketSink
from onto_websocket.source import WebSocketSource

__all__ = [
    "CLIENT_SCRIPT",
    "ClientError",
    "SocketHub",
    "WebSocketSink",
    "WebSocketSource",
    "hub_for",
    "register_components",
    "room_name",
    "runtime_started",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.sink("websocket", WebSocketSink)
    register.source("websocket", WebSocketSource)


@hookimpl
def runtime_started(runtime: Any) -> None:
    registry = getattr(runtime, "metrics_registry", None)
    if registry is not None:
        registry.register(SocketMetricsCollector())
