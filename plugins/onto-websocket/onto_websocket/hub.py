"""The Socket.IO server of one host and port, and the protocol it speaks.

Every websocket component configured on the same host and port shares one ``SocketHub``:
one Flask-SocketIO server mounted on the onto-web app, one set of event handlers. Sinks
register the views clients may subscribe to; sources register the views clients may run
actions on. The handlers look the view up by its name (``meeting_session``) and apply
the registering component's ``auth`` settings.

The protocol (docs/websocket.md is its reference):

- connect, optionally with the auth payload ``{"token": "<bearer token>"}``;
- ``subscribe {"view", "key"}`` → the current view as a ``view`` event, then the ack
  ``{"ok": true}``; or an ``error`` event and the ack, both ``{"ok": false, "status",
  "error", "field"}``;
- ``unsubscribe {"view", "key"}`` → ack ``{"ok": true}``;
- ``action {"view", "key", "action", "arguments"}`` → ack with the API answer
  ``{"status", "body"}``.

Every event sent with an ack callback gets exactly one ack, whatever it carries: an
unknown event, extra arguments, text that is not valid Unicode, a full queue or a
failure are error acks in the event's shape (``{"ok": false, ...}``, or ``{"status",
"body"}`` for ``action``). Events run on a bounded ``EventPool``: at most
``EVENTS_PER_CONNECTION`` waiting or running per connection (more are refused 429),
``EVENT_WORKERS`` threads in all, in order per connection; an event that waited longer
than its timeout is answered 504 and never runs.

Each view key has a room named ``"{view}:{key}"``; a sink emits each update to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import request, send_from_directory
from flask.typing import ResponseReturnValue
from flask_socketio import ConnectionRefusedError, SocketIO  # type: ignore[import-untyped]
from socketio import packet  # type: ignore[import-untyped]

from onto_core.errors import ActionError, ComponentError
from onto_core.models.view import ViewModel
from onto_core.tracing import carried
from onto_web import Authenticator, AuthError, WebServer, bearer_token
from onto_web.auth import Operation
from onto_websocket.events import EventPool
from onto_websocket.metrics import track

if TYPE_CHECKING:
    from onto_websocket.sink import WebSocketSink
    from onto_websocket.source import WebSocketSource

__all__ = [
    "CLIENT_SCRIPT",
    "EVENTS_PER_CONNECTION",
    "EVENT_WAIT",
    "EVENT_WORKERS",
    "ClientError",
    "SocketHub",
    "hub_for",
    "key_error",
    "room_name",
]

log = logging.getLogger("onto.websocket")

CLIENT_SCRIPT = Path(__file__).parent / "static" / "onto-socket.js"
"""The browser client shipped with the plugin, served at ``/onto/socket.js``."""

EVENT_WORKERS = 8
"""Threads running client events, shared by every connection of one server."""

EVENTS_PER_CONNECTION = 16
"""Events one connection may have waiting or running; more are refused with 429."""

EVENT_WAIT = 10.0
"""Seconds a subscribe or unsubscribe may wait for a thread before it is refused (504)
instead of run; an action may wait its source's ``timeout``, which its answer counts."""


def room_name(view: str, key: str) -> str:
    """The room every subscriber of view ``view`` at ``key`` is in: ``"{view}:{key}"``."""
    return f"{view}:{key}"


class ClientError(Exception):
    """A client event that cannot be served: ``status`` as in HTTP, ``field`` at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass
class _Subscribable:
    view: type[ViewModel]
    sink: WebSocketSink
    auth: Authenticator
    label: str
    open: bool = True


@dataclass
class _Actionable:
    view: type[ViewModel]
    ref: str
    source: WebSocketSource
    auth: Authenticator
    label: str
    timeout: float
    open: bool = True


@dataclass(frozen=True)
class _Event:
    """One event the hub serves: its handler, and its error ack."""

    handle: Callable[[str, Any, float], dict[str, Any]]  # (sid, payload, seconds waited)
    refuse: Callable[[str, ClientError], dict[str, Any]]


@dataclass
class _Client:
    token: str | None
    principals: dict[str, str | None] = field(default_factory=dict)  # by component label


class SocketHub:
    """The Socket.IO server on one ``WebServer`` and the components it serves.

    Made once per server by ``hub_for``; components call ``serve_views``,
    ``accept_actions`` and ``serve_page`` while they start (before the server listens)
    and ``withdraw`` when they close.
    """

    def __init__(self, server: WebServer, socketio: Any) -> None:
        self.server = server
        self.socketio = socketio
        self._lock = threading.Lock()
        self._subscribable: dict[str, _Subscribable] = {}
        self._actionable: dict[str, _Actionable] = {}
        self._clients: dict[str, _Client] = {}
        self._components: dict[str, Authenticator] = {}
        self._page: str | None = None
        self._events: dict[str, _Event] = {
            "action": _Event(self._on_action, _action_refusal),
            "subscribe": _Event(self._on_subscribe, self._refuse),
            "unsubscribe": _Event(self._on_unsubscribe, _refusal),
        }
        self.pool = EventPool(EVENT_WORKERS, EVENTS_PER_CONNECTION)
        on = self.socketio.on_event
        on("connect", self._on_connect)
        on("disconnect", self._on_disconnect)
        # Every event goes through _dispatch instead of python-socketio's thread per
        # event: bounded work, and exactly one ack whatever the event carries.
        self.socketio.server._handle_event = self._dispatch
        server.app.add_url_rule("/onto/socket.js", "onto_websocket_client", _client_script)
        track(self)

    def metrics(self) -> dict[str, Any]:
        """Connections open now, and subscriptions held now by view name."""
        with self._lock:
            connections = len(self._clients)
            views = set(self._subscribable)
        # A copy in one C-level step: Socket.IO's threads change the rooms meanwhile.
        rooms = list(self.socketio.server.manager.rooms.get("/", {}).items())
        subscriptions = dict.fromkeys(sorted(views), 0)
        for room, members in rooms:
            view, colon, _ = str(room).partition(":")
            if colon and view in views:
                subscriptions[view] += len(members)
        return {"connections": connections, "subscriptions": subscriptions}

    # --- registration (component start / close) ---------------------------------------

    def serve_views(
        self, label: str, sink: WebSocketSink, views: list[type[ViewModel]], auth: Authenticator
    ) -> None:
        """Let clients subscribe to ``views``, served by ``sink`` under its ``auth``."""
        with self._lock:
            for view in views:
                taken = self._subscribable.get(view.view_name)
                if taken is not None and taken.open:
                    raise ComponentError(
                        f"view {view.view_name!r} is already served by {taken.label} on "
                        f"{self.server.url}; list each view in one websocket sink per port",
                        component=label,
                    )
            for view in views:
                self._subscribable[view.view_name] = _Subscribable(view, sink, auth, label)
            self._components[label] = auth

    def accept_actions(
        self,
        label: str,
        source: WebSocketSource,
        views: dict[str, type[ViewModel]],
        auth: Authenticator,
        timeout: float,
    ) -> None:
        """Let clients run the actions of ``views`` (by ref) through ``source``."""
        with self._lock:
            for view in views.values():
                taken = self._actionable.get(view.view_name)
                if taken is not None and taken.open:
                    raise ComponentError(
                        f"actions on view {view.view_name!r} are already accepted by "
                        f"{taken.label} on {self.server.url}; list each view in one "
                        "websocket source per port",
                        component=label,
                    )
            for ref, view in views.items():
                self._actionable[view.view_name] = _Actionable(
                    view, ref, source, auth, label, timeout
                )
            self._components[label] = auth

    def serve_page(self, label: str, page_dir: Path) -> None:
        """Serve ``page_dir``: ``GET /`` is its ``index.html``, other paths its files."""
        with self._lock:
            if self._page is not None:
                raise ComponentError(
                    f"{self._page} already serves a page on {self.server.url}; "
                    "set page_dir on one websocket sink per port",
                    component=label,
                )
            self._page = label
        directory = str(page_dir.resolve())

        def index() -> ResponseReturnValue:
            return send_from_directory(directory, "index.html")

        def page_file(name: str) -> ResponseReturnValue:
            # send_from_directory refuses paths that leave the directory.
            return send_from_directory(directory, name)

        self.server.app.add_url_rule("/", "onto_websocket_page", index)
        self.server.app.add_url_rule("/<path:name>", "onto_websocket_page_file", page_file)

    def withdraw(self, label: str) -> None:
        """Stop serving what ``label`` registered: its events answer 503 from now on.

        When the last component withdraws, every client is disconnected (a browser
        client reconnects once the server is back), so no connection outlives the runtime.
        """
        with self._lock:
            for served in self._subscribable.values():
                served.open = served.open and served.label != label
            for accepted in self._actionable.values():
                accepted.open = accepted.open and accepted.label != label
            self._components.pop(label, None)
            last = not self._components
        if last:
            eio = self.socketio.server.eio
            # Close without waiting for each client's send queue to drain: a client whose
            # connection is already dying would hold the shutdown up.
            for client in list(eio.sockets.values()):
                client.close(wait=False, reason=eio.reason.SERVER_DISCONNECT)
            self.socketio.server.shutdown()
            self.pool.close()

    def emit(self, event: str, value: Any, room: str) -> None:
        """Send ``event`` with ``value`` to everyone in ``room`` (fire and forget)."""
        self.socketio.emit(event, value, to=room)

    # --- dispatch (in each connection's receiving thread) -----------------------------

    def _dispatch(self, eio_sid: str, namespace: str | None, ack: int | None, data: Any) -> None:
        """Queue one client event on the pool; refuse it at once when that cannot be.

        Takes the place of python-socketio's ``Server._handle_event`` (same arguments).
        """
        sio = self.socketio.server
        namespace = namespace or "/"
        sid: str | None = sio.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not sio.manager.is_connected(sid, namespace):
            return
        name, args = (data[0], data[1:]) if isinstance(data, list) and data else (None, [])
        known = self._events.get(name) if namespace == "/" and isinstance(name, str) else None
        refuse = known.refuse if known is not None else _refusal

        def answer(reply: Any) -> None:
            if ack is not None:
                sio._send_packet(
                    eio_sid,
                    sio.packet_class(packet.ACK, namespace=namespace, id=ack, data=[reply]),
                )

        def run(waited: float) -> None:
            try:
                if known is None:
                    reply = self._other_event(sid, namespace, name, args)
                    if reply is sio.not_handled:
                        raise ClientError(404, _unknown_event(name, sorted(self._events)))
                    # A handler registered on the SocketIO object answers like
                    # python-socketio would: a tuple is several ack arguments.
                    if ack is not None:
                        sio._send_packet(
                            eio_sid,
                            sio.packet_class(
                                packet.ACK, namespace=namespace, id=ack, data=_ack_data(reply)
                            ),
                        )
                    return
                if len(args) > 1:
                    raise ClientError(
                        400,
                        f"{name} takes one argument, its payload object; got {len(args)}",
                    )
                payload = args[0] if args else None
                bad = _invalid_text(payload)
                if bad is not None:
                    raise ClientError(
                        400,
                        f"{repr(bad) if bad else 'the payload'} is not valid Unicode text "
                        "(it holds a lone surrogate, which has no UTF-8 encoding)",
                        bad or None,
                    )
                reply = known.handle(sid, payload, waited)
            except ClientError as exc:
                reply = refuse(sid, exc)
            except Exception:
                log.exception("event %r from %s failed", name, sid)
                reply = refuse(sid, ClientError(500, "internal error; the server logged it"))
            answer(reply)

        if not self.pool.submit(sid, run):
            answer(
                refuse(
                    sid,
                    ClientError(
                        429,
                        f"too many events from this connection ({EVENTS_PER_CONNECTION} "
                        "waiting or running); wait for acks before sending more",
                    ),
                )
            )

    def _other_event(self, sid: str, namespace: str, name: Any, args: list[Any]) -> Any:
        """Run a handler registered on the SocketIO object itself, if there is one."""
        if not isinstance(name, str):
            return self.socketio.server.not_handled
        return self.socketio.server._trigger_event(name, namespace, sid, *args)

    # --- handlers (run on the event pool, one event of a connection at a time) --------

    def _on_connect(self, auth: Any = None) -> None:
        sid: str = request.sid  # type: ignore[attr-defined]
        if auth is not None and not isinstance(auth, dict):
            raise ConnectionRefusedError('the auth payload must be an object: {"token": "..."}')
        token = (auth or {}).get("token") or bearer_token(request.headers.get("Authorization"))
        if token is not None and not isinstance(token, str):
            raise ConnectionRefusedError("auth.token must be a string")
        with self._lock:
            authenticators = list(self._components.items())
        if authenticators and all(not a.open for _, a in authenticators):
            # Every component on this port needs a principal: refuse a connection none of
            # them would accept, rather than failing each of its events later.
            reasons = []
            for _, authenticator in authenticators:
                try:
                    authenticator.principal(token)
                    break
                except AuthError as exc:
                    reasons.append(exc.message)
            else:
                hint = "" if token else ': connect with the auth payload {"token": "<token>"}'
                raise ConnectionRefusedError(f"{reasons[0]}{hint}")
        with self._lock:
            self._clients[sid] = _Client(token)

    def _on_disconnect(self, reason: Any = None) -> None:
        # python-socketio removes the client from every room itself; only our record goes.
        sid: str = request.sid  # type: ignore[attr-defined]
        self.pool.forget(sid)
        with self._lock:
            self._clients.pop(sid, None)

    def _principal(self, sid: str, label: str, auth: Authenticator) -> str | None:
        with self._lock:
            client = self._clients.get(sid)
            if client is None:
                raise ClientError(401, "this connection is not known; connect again")
            if label in client.principals:
                return client.principals[label]
            token = client.token
        try:
            principal = auth.principal(token)
        except AuthError as exc:
            raise ClientError(exc.status, exc.message) from None
        with self._lock:
            client.principals[label] = principal
        return principal

    def _on_subscribe(self, sid: str, data: Any, waited: float) -> dict[str, Any]:
        _in_time("subscribe", waited, EVENT_WAIT)
        name, key = _target(data, "subscribe")
        with self._lock:
            served = self._subscribable.get(name)
            known = sorted(self._subscribable)
        if served is None:
            raise ClientError(404, _unknown_view(name, known, "subscribe to"), "view")
        self._authorize(sid, served, key, "subscribe")
        served.sink.join(sid, served.view, key)
        return {"ok": True}

    def _authorize(self, sid: str, endpoint: Any, key: str, operation: Operation) -> None:
        """Raise ``ClientError`` unless ``sid`` may ``operation`` ``key`` at ``endpoint``."""
        if not endpoint.open:
            raise ClientError(503, "the server is shutting down; connect again later")
        principal = self._principal(sid, endpoint.label, endpoint.auth)
        try:
            endpoint.auth.check(principal, endpoint.view, key, operation)
        except AuthError as exc:
            raise ClientError(exc.status, exc.message) from None

    def _refuse(self, sid: str, exc: ClientError) -> dict[str, Any]:
        """Tell ``sid`` why its subscription failed: an ``error`` event, then the ack."""
        refusal = _refusal(sid, exc)
        self.socketio.emit("error", refusal, to=sid)
        return refusal

    def _on_unsubscribe(self, sid: str, data: Any, waited: float) -> dict[str, Any]:
        _in_time("unsubscribe", waited, EVENT_WAIT)
        name, key = _target(data, "unsubscribe")
        self.socketio.server.leave_room(sid, room_name(name, key))
        return {"ok": True}

    def _on_action(self, sid: str, data: Any, waited: float) -> dict[str, Any]:
        name, key = _target(data, "action")
        action = data.get("action")
        if not isinstance(action, str) or not action:
            raise ClientError(400, "action needs 'action': the action's name", "action")
        arguments = data.get("arguments")
        arguments = {} if arguments is None else arguments
        if not isinstance(arguments, dict):
            raise ClientError(400, "'arguments' must be an object", "arguments")
        with self._lock:
            accepted = self._actionable.get(name)
            known = sorted(self._actionable)
        if accepted is None:
            raise ClientError(404, _unknown_view(name, known, "run actions on"), "view")
        # The wait for a thread counts against the action's timeout: one that could no
        # longer be answered in time is refused here, before anything runs.
        _in_time("action", waited, accepted.timeout)
        left = accepted.timeout - waited
        self._authorize(sid, accepted, key, "action")
        request_ = {
            "op": "action",
            "view": accepted.ref,
            "key": key,
            "action": action,
            "arguments": arguments,
        }
        try:
            # A "traceparent" in the event's payload: the action continues the client's trace.
            answer: dict[str, Any] = accepted.source.submit(request_, left, carried(data))
        except TimeoutError as exc:
            # The request source says whether the request will never run or had started.
            raise ClientError(504, str(exc)) from None
        return answer


def _refusal(sid: str, exc: ClientError) -> dict[str, Any]:
    """The error ack of ``subscribe``, ``unsubscribe`` and events the hub does not know."""
    return {"ok": False, "status": exc.status, "error": exc.message, "field": exc.field}


def _action_refusal(sid: str, exc: ClientError) -> dict[str, Any]:
    """The error ack of ``action``: an API error answer."""
    return {"status": exc.status, "body": {"error": exc.message, "field": exc.field}}


def _in_time(event: str, waited: float, limit: float) -> None:
    """Refuse (504) an event that waited ``limit`` seconds or more: it is not run."""
    if waited >= limit:
        raise ClientError(
            504, f"{event} waited {waited:.1f}s for the server (limit {limit}s) and was not run"
        )


def _ack_data(reply: Any) -> list[Any]:
    if reply is None:
        return []
    return list(reply) if isinstance(reply, tuple) else [reply]


def _unknown_event(name: Any, known: list[str]) -> str:
    shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
    return f"no event {shown} here; events: {', '.join(known)}"


def _invalid_text(payload: Any) -> str | None:
    """The path (``key``, ``arguments.name``; ``""`` for the payload itself) of the first
    string in ``payload`` that has no UTF-8 encoding, or ``None`` when all are valid."""
    stack: list[tuple[str, Any]] = [("", payload)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(value, dict):
            for name, item in value.items():
                inner = name if not path else f"{path}.{name}"
                if _invalid_text(name) is not None:
                    return path or ""
                stack.append((inner, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _client_script() -> ResponseReturnValue:
    return send_from_directory(str(CLIENT_SCRIPT.parent), CLIENT_SCRIPT.name)


def _target(data: Any, event: str) -> tuple[str, str]:
    """The ``view`` and ``key`` of an event's payload; ``ClientError(400)`` naming the field."""
    if not isinstance(data, dict):
        raise ClientError(400, f'{event} needs an object: {{"view": name, "key": key}}')
    name, key = data.get("view"), data.get("key")
    if not isinstance(name, str) or not name:
        raise ClientError(
            400, f"{event} needs 'view': a view name such as 'meeting_session'", "view"
        )
    if not isinstance(key, str) or not key:
        raise ClientError(400, f"{event} needs 'key': the view key, e.g. 'meeting-1/joshua'", "key")
    return name, key


def _unknown_view(name: str, known: list[str], verb: str) -> str:
    served = ", ".join(known) or "none"
    return f"no view {name!r} to {verb} here; views: {served}"


def hub_for(server: WebServer) -> SocketHub:
    """The ``SocketHub`` of ``server``, made on first use."""
    # Flask-SocketIO wraps the app's WSGI callable, so the one port serves both the app's
    # routes and /socket.io/. Threading mode: Werkzeug's threaded server (or gunicorn
    # --threads) with simple-websocket for the WebSocket transport.
    socketio = server.shared(
        "socketio",
        lambda: SocketIO(
            server.app,
            async_mode="threading",
            manage_session=False,
            # The server's allowed_origins rule: never echo a foreign origin with credentials.
            cors_allowed_origins=server.origin_allowed,
        ),
    )
    return server.shared("onto-websocket", lambda: SocketHub(server, socketio))


def key_error(exc: ActionError) -> ClientError:
    """A malformed view key (``ActionError`` from the model layer) as a 400 on ``key``."""
    return ClientError(404 if exc.not_found else 400, exc.message, exc.field or "key")
