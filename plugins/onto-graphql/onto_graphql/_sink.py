"""The ``graphql`` sink: view updates streamed to the GraphQL subscriptions of their keys."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from onto_core.builtin.view import load_view
from onto_core.errors import ActionError, DatastoreError, SinkError
from onto_core.models.domain import use_datastore
from onto_core.models.view import ViewModel, find_view
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_graphql._config import GraphQLEndpointConfig, loadable_views
from onto_graphql._schema import ServedView, api_error
from onto_graphql._server import Subscriber, get_server
from onto_web import Authenticator, ViewRooms

__all__ = ["GraphQLSink"]


class GraphQLSink:
    """Streams each view update to the subscriptions of its view key.

    A subscription (``subscription { meetingSession(meetingId: ..., userId: ...) {...} }``)
    receives the view as it is now at once, then every newer version this sink delivers;
    a removal ends it with an error. Delivery is like a WebSocket emit: ``write`` returns
    once the update is handed to every subscription of the key at that moment, with no
    confirmation that a client received it; a client slower than the updates skips to
    the newest version. Messages must be view updates as the ``view`` processor emits
    them; anything else fails the write (and is dead-lettered) with ``SinkError``.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )
    needs_datastore: ClassVar[bool] = True

    class Config(GraphQLEndpointConfig):
        """Settings of a ``graphql`` sink: the endpoint's, and which views it streams."""

        views: list[str] = Field(
            min_length=1,
            description="View models clients may subscribe to, as 'package.module:Class'.",
        )

        @field_validator("views")
        @classmethod
        def _loadable(cls, refs: list[str]) -> list[str]:
            return loadable_views(refs)

    def __init__(self, config: Config) -> None:
        self.config = config
        self.views = [ServedView(load_view(ref), ref) for ref in config.views]
        self.label = "graphql sink"
        self._store: Any = None
        self._server = get_server(config.host, config.port)
        self._keys = ViewRooms()  # per key: a lock to join and hand out under, the version
        self._rooms: dict[str, set[Subscriber]] = {}

    def start(self, ctx: RuntimeContext) -> None:
        if ctx.datastore is None:
            raise SinkError("the graphql sink needs a datastore", component=ctx.component)
        self._store = ctx.datastore
        self.label = f"{ctx.pipeline}.{ctx.component}"
        self._server.claim(self.label, self.config)
        self._server.serve_subscriptions(
            self.label, self, self.views, Authenticator(self.config.auth)
        )

    def write(self, messages: list[Message]) -> None:
        for room, value in self._keys.updates(messages, self.label):
            subscribers = self._rooms.get(room)
            if subscribers:
                self._server.deliver(list(subscribers), value)

    def join(self, view: type[ViewModel], key: str, subscriber: Subscriber) -> dict[str, Any]:
        """Add ``subscriber`` to the view at ``key``; the view's JSON now (blocking).

        Raises a GraphQL error: NOT_FOUND when there is no such view, BAD_USER_INPUT for a
        malformed key, UNAVAILABLE when the datastore cannot be read.
        """
        room = ViewRooms.room(view.view_name, key)
        with self._keys.lock(room):
            try:
                with use_datastore(self._store):
                    current = find_view(view, key, store=self._store)
            except ActionError as exc:
                raise api_error(404 if exc.not_found else 400, exc.message) from None
            except DatastoreError as exc:
                raise api_error(503, f"cannot read {view.view_name} {key!r}: {exc}") from None
            if current is None:
                raise api_error(404, f"{view.view_name} {key!r} does not exist")
            subscriber.version = self._keys.version(room)
            self._rooms.setdefault(room, set()).add(subscriber)
            return current.to_dict()

    def leave(self, view: type[ViewModel], key: str, subscriber: Subscriber) -> None:
        """Take ``subscriber`` off the view at ``key`` (it receives nothing more)."""
        room = ViewRooms.room(view.view_name, key)
        with self._keys.lock(room):
            members = self._rooms.get(room)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._rooms[room]

    def all(self) -> list[Subscriber]:
        """Every subscriber of every key (to end them when the sink closes)."""
        found: list[Subscriber] = []
        for room in list(self._rooms):
            with self._keys.lock(room):
                found.extend(self._rooms.get(room, ()))
        return found

    def close(self) -> None:
        self._server.withdraw(self.label)
