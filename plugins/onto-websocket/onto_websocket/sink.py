"""The ``websocket`` sink: view updates pushed to the Socket.IO clients subscribed to them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from onto_core.builtin.view import load_view
from onto_core.errors import ActionError, DatastoreError, SinkError
from onto_core.models.domain import use_datastore
from onto_core.models.view import ViewModel, find_view
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_core.reactive.engine import ViewUpdate
from onto_web import Authenticator, ViewRooms, WebEndpointConfig, get_server
from onto_websocket.hub import ClientError, SocketHub, hub_for, key_error, room_name

__all__ = ["WebSocketSink"]


class WebSocketSink:
    """Emits each view update to the room of its view key, ``"{view}:{key}"``.

    Clients join a room with the ``subscribe`` event and at once receive the view as it
    is now, stamped with the latest version this sink has delivered for that key (0
    before the first); from then on every update the pipeline delivers. A Socket.IO emit
    is fire and forget: ``write`` returns once the update is queued for every connected
    subscriber, with no confirmation that any received it, and a client that is
    disconnected at that moment misses it (it receives the current view when it
    subscribes again). Messages must be view updates as the ``view`` processor emits
    them; anything else fails the write (and is dead-lettered) with ``SinkError``.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )
    needs_datastore: ClassVar[bool] = True

    class Config(WebEndpointConfig):
        views: list[str] = Field(
            min_length=1,
            description="ViewModel classes ('package.module:Class') clients may subscribe to.",
        )
        event: str = Field("view", min_length=1, description="Event name updates are sent as.")
        page_dir: Path | None = Field(
            None,
            description="Folder served over HTTP: GET / is its index.html, other paths its files.",
        )

        @field_validator("views")
        @classmethod
        def _loadable(cls, refs: list[str]) -> list[str]:
            for ref in refs:
                load_view(ref)
            return refs

        @field_validator("page_dir")
        @classmethod
        def _has_index(cls, page_dir: Path | None) -> Path | None:
            if page_dir is not None and not (page_dir / "index.html").is_file():
                raise ValueError(f"{page_dir} has no index.html (paths are relative to the cwd)")
            return page_dir

    def __init__(self, config: Config) -> None:
        self.config = config
        self.views: list[type[ViewModel]] = [load_view(ref) for ref in config.views]
        self.label = "websocket sink"
        self._hub: SocketHub | None = None
        self._store: Any = None
        self._rooms = ViewRooms()  # per key: a lock to join and emit under, the version

    def start(self, ctx: RuntimeContext) -> None:
        if ctx.datastore is None:
            raise SinkError("the websocket sink needs a datastore", component=ctx.component)
        self._store = ctx.datastore
        self.label = f"{ctx.pipeline}.{ctx.component}"
        server = get_server(self.config.host, self.config.port)
        server.claim(self.label, self.config)
        self._hub = hub_for(server)
        self._hub.serve_views(self.label, self, self.views, Authenticator(self.config.auth))
        if self.config.page_dir is not None:
            self._hub.serve_page(self.label, self.config.page_dir)

    def write(self, messages: list[Message]) -> None:
        if self._hub is None:
            raise SinkError("the websocket sink was not started", component=self.label)
        for room, value in self._rooms.updates(messages, self.label):
            self._hub.emit(self.config.event, value, room)

    def join(self, sid: str, view: type[ViewModel], key: str) -> None:
        """Put client ``sid`` in the room of ``view`` at ``key`` and send it the view now.

        Raises ``ClientError``: 404 when there is no such view, 400 for a malformed key,
        503 when the datastore cannot be read.
        """
        assert self._hub is not None
        room = room_name(view.view_name, key)
        with self._rooms.lock(room):
            # Read under the room's lock: an update emitted before is then already in
            # what we send, and every later one reaches the room we join.
            try:
                with use_datastore(self._store):
                    current = find_view(view, key, store=self._store)
            except ActionError as exc:
                raise key_error(exc) from None
            except DatastoreError as exc:
                raise ClientError(503, f"cannot read {view.view_name} {key!r}: {exc}") from None
            if current is None:
                raise ClientError(404, f"{view.view_name} {key!r} does not exist", "key")
            self._hub.socketio.server.enter_room(sid, room)
            envelope = ViewUpdate(
                view.view_name,
                current.key,
                {f: str(getattr(current, f)) for f in view.key_fields},
                self._rooms.version(room),
                current.to_dict(),
            ).to_dict()
            self._hub.socketio.emit(self.config.event, envelope, to=sid)

    def asyncapi_channels(self, incoming: Any) -> list[Any]:
        """The Socket.IO events of this sink, for the AsyncAPI document (docs/asyncapi.md)."""
        from onto_websocket._asyncapi import sink_channels

        return sink_channels(self)

    def close(self) -> None:
        if self._hub is not None:
            self._hub.withdraw(self.label)
