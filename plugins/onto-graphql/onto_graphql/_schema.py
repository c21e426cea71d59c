"""The GraphQL schema of one server, generated from the view models its components serve.

For each view served by a ``graphql`` source (``MeetingSession``, ``view_name``
``meeting_session``)::

    type Query {
      meetingSession(meetingId: ID!, userId: ID!): MeetingSession      # read one by key
      meetingSessions(userId: ID, inSession: Boolean, ..., limit: Int): [MeetingSession!]!
    }
    type Mutation {
      setAttendance(meetingId: ID!, userId: ID!, attending: Boolean!): MeetingSession
    }

and for each view served by a ``graphql`` sink::

    type Subscription {
      meetingSession(meetingId: ID!, userId: ID!): MeetingSession!
    }

A mutation is named after its action (``set_attendance`` → ``setAttendance``); when two
served views have an action of the same name, each is prefixed with its view's name
(``userViewUpdate``). The resolvers check auth, then hand the request to the component
(``Endpoints``) that serves it.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
)

from onto_core.models.view import ViewModel
from onto_graphql._types import TypeRegistry, camel, unwrap_optional

__all__ = ["Endpoints", "ServedView", "build_schema", "list_field_name", "mutation_names"]

_CODES = {
    400: "BAD_USER_INPUT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    422: "ACTION_REFUSED",
    429: "TOO_MANY_REQUESTS",
    503: "UNAVAILABLE",
    504: "TIMEOUT",
}


def api_error(status: int, message: str, field: str | None = None) -> GraphQLError:
    """A GraphQL error carrying an API answer's status: ``extensions {code, status, field}``."""
    return GraphQLError(
        message,
        extensions={
            "code": _CODES.get(status, "INTERNAL_SERVER_ERROR"),
            "status": status,
            "field": field,
        },
    )


@dataclass(frozen=True)
class ServedView:
    """A view the server answers for: its model and how the schema names its pieces."""

    view: type[ViewModel]
    ref: str

    @property
    def key_args(self) -> dict[str, str]:
        """GraphQL argument name → key field (``meetingId`` → ``meeting_id``)."""
        return {_alias(self.view, f): f for f in self.view.key_fields}

    def key_of(self, arguments: dict[str, Any]) -> str:
        """The view key (``meeting-1/joshua``) the key arguments name."""
        parts = []
        for name in self.key_args:
            part = str(arguments[name])
            if not part or "/" in part:
                raise api_error(400, f"{name} must be non-empty and hold no '/'", name)
            parts.append(part)
        return "/".join(parts)


class Endpoints(Protocol):
    """What the schema's resolvers need from the server (``GraphQLServer``)."""

    async def read(self, served: ServedView, info: Any, key: str) -> Any: ...

    async def list(
        self, served: ServedView, info: Any, filters: dict[str, Any], limit: Any
    ) -> Any: ...

    async def act(
        self, served: ServedView, info: Any, key: str, action: str, arguments: dict[str, Any]
    ) -> Any: ...

    async def subscribe(self, served: ServedView, info: Any, key: str) -> AsyncIterator[Any]: ...


def list_field_name(view: type[ViewModel]) -> str:
    """``meetingSessions`` for ``meeting_session``; ``...List`` when the name ends in s."""
    name = camel(view.view_name)
    return f"{name}List" if name.endswith("s") else f"{name}s"


def mutation_names(views: list[type[ViewModel]]) -> dict[tuple[str, str], str]:
    """``(view_name, action) → mutation name``: the action's camelCase name, or prefixed
    with the view's when another served view has an action of that name."""
    counts: dict[str, int] = {}
    for view in views:
        for action in view.actions:
            counts[action] = counts.get(action, 0) + 1
    return {
        (view.view_name, action): (
            camel(action) if counts[action] == 1 else camel(f"{view.view_name}_{action}")
        )
        for view in views
        for action in view.actions
    }


def build_schema(
    endpoints: Endpoints, queried: list[ServedView], subscribed: list[ServedView]
) -> GraphQLSchema:
    """The schema of a server answering ``queried`` views' reads, lists and actions and
    streaming ``subscribed`` views' updates; resolvers call ``endpoints``."""
    types = TypeRegistry()
    query: dict[str, GraphQLField] = {}
    mutation: dict[str, GraphQLField] = {}
    names = mutation_names([s.view for s in queried])
    for served in queried:
        view_type = types.object(served.view)
        query[camel(served.view.view_name)] = GraphQLField(
            view_type,
            _key_arguments(served),
            resolve=_reader(endpoints, served),
            description=f"The {served.view.__name__} with this key (an error if there is none).",
        )
        filters, field_by_arg = _filter_arguments(types, served.view)
        query[list_field_name(served.view)] = GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(view_type))),
            {
                **filters,
                "limit": GraphQLArgument(GraphQLInt, description="Most views to return."),
            },
            resolve=_lister(endpoints, served, field_by_arg),
            description=(
                f"Every {served.view.__name__} whose fields equal the arguments given, "
                "at most limit."
            ),
        )
        for action in sorted(served.view.actions):
            arguments, param_by_arg = _action_arguments(types, served, action)
            mutation[names[(served.view.view_name, action)]] = GraphQLField(
                view_type,
                {**_key_arguments(served), **arguments},
                resolve=_actor(endpoints, served, action, param_by_arg),
                description=_action_doc(served.view, action),
            )
    subscription: dict[str, GraphQLField] = {}
    for served in subscribed:
        subscription[camel(served.view.view_name)] = GraphQLField(
            GraphQLNonNull(types.object(served.view)),
            _key_arguments(served),
            subscribe=_subscriber(endpoints, served),
            resolve=lambda value, info, **_: value,
            description=(
                f"The {served.view.__name__} with this key now, then each new version; ends "
                "with an error when it is removed or access to it is revoked."
            ),
        )
    if not query:
        # GraphQL requires a Query type with a field; a server of subscriptions only has none.
        query["served"] = GraphQLField(
            GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLString))),
            resolve=lambda *_: sorted(s.view.view_name for s in subscribed),
            description="The views this server streams (it answers no queries).",
        )
    return GraphQLSchema(
        query=GraphQLObjectType("Query", query),
        mutation=GraphQLObjectType("Mutation", mutation) if mutation else None,
        subscription=GraphQLObjectType("Subscription", subscription) if subscription else None,
    )


def _alias(view: type[ViewModel], name: str) -> str:
    return view.model_fields[name].alias or name


def _key_arguments(served: ServedView) -> dict[str, GraphQLArgument]:
    return {name: GraphQLArgument(GraphQLNonNull(GraphQLID)) for name in served.key_args}


def _filter_arguments(
    types: TypeRegistry, view: type[ViewModel]
) -> tuple[dict[str, GraphQLArgument], dict[str, str]]:
    """Optional arguments for the fields a list can filter on (scalars and enums)."""
    arguments: dict[str, GraphQLArgument] = {}
    field_by_arg: dict[str, str] = {}
    for name, info in view.model_fields.items():
        inner, _ = unwrap_optional(info.annotation)
        graphql_type = types.input(inner)[0]
        named = graphql_type.of_type if isinstance(graphql_type, GraphQLNonNull) else graphql_type
        if not isinstance(named, GraphQLScalarType | GraphQLEnumType) or named.name == "JSON":
            continue
        alias = info.alias or name
        if name in view.key_fields:
            named = GraphQLID
        arguments[alias] = GraphQLArgument(named, description=f"Only views whose {alias} is this.")
        field_by_arg[alias] = name
    return arguments, field_by_arg


def _action_arguments(
    types: TypeRegistry, served: ServedView, action: str
) -> tuple[dict[str, GraphQLArgument], dict[str, str]]:
    model = served.view.action_model(action)
    arguments: dict[str, GraphQLArgument] = {}
    param_by_arg: dict[str, str] = {}
    for name, info in model.model_fields.items():
        argument = camel(name)
        if argument in served.key_args:
            raise ValueError(
                f"{served.view.view_name}.{action}: parameter {name!r} has the name of a key "
                f"argument ({argument}); rename it to serve the action over GraphQL"
            )
        graphql_type, _ = types.input(info.annotation)
        if not info.is_required() and isinstance(graphql_type, GraphQLNonNull):
            graphql_type = graphql_type.of_type  # a default makes it optional
        arguments[argument] = GraphQLArgument(graphql_type)
        param_by_arg[argument] = name
    return arguments, param_by_arg


def _action_doc(view: type[ViewModel], action: str) -> str:
    doc = inspect.getdoc(view.actions[action])
    text = " ".join(doc.split()) if doc else f"Run {view.view_name}.{action}."
    return f"{text} Answers the {view.__name__} after the action (null if it removed it)."


def _reader(endpoints: Endpoints, served: ServedView) -> Callable[..., Any]:
    async def resolve(_: Any, info: Any, **arguments: Any) -> Any:
        return await endpoints.read(served, info, served.key_of(arguments))

    return resolve


def _lister(
    endpoints: Endpoints, served: ServedView, field_by_arg: dict[str, str]
) -> Callable[..., Any]:
    async def resolve(_: Any, info: Any, limit: Any = None, **arguments: Any) -> Any:
        if limit is not None and limit < 1:
            raise api_error(400, f"limit must be a positive integer, got {limit}", "limit")
        filters = {name: value for name, value in arguments.items() if value is not None}
        return await endpoints.list(served, info, filters, limit)

    return resolve


def _actor(
    endpoints: Endpoints, served: ServedView, action: str, param_by_arg: dict[str, str]
) -> Callable[..., Any]:
    async def resolve(_: Any, info: Any, **arguments: Any) -> Any:
        key = served.key_of(arguments)
        given = {
            param_by_arg[name]: value for name, value in arguments.items() if name in param_by_arg
        }
        return await endpoints.act(served, info, key, action, given)

    return resolve


def _subscriber(endpoints: Endpoints, served: ServedView) -> Callable[..., Any]:
    async def subscribe(_: Any, info: Any, **arguments: Any) -> AsyncIterator[Any]:
        # Awaited before the stream starts: a refusal is the operation's error, not an event.
        return await endpoints.subscribe(served, info, served.key_of(arguments))

    return subscribe
