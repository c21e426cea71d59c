"""onto-graphql: view models as GraphQL queries and live subscriptions, actions as mutations.

Registers the ``graphql`` source (queries and mutations, answered by an ``api``
pipeline) and the ``graphql`` sink (each view update streamed to the subscriptions of
its key). Components on one host and port share one Starlette/ariadne app served by
uvicorn; the schema is generated from the views they serve. docs/graphql.md is the
reference::

    pipelines:
      sessions:
        source: {type: changes, models: [meetings, tickets, users, locations]}
        processors: [{type: view, view: "examples.meeting_room.views:MeetingSession"}]
        sinks: [{type: graphql, port: 8000, views: ["examples.meeting_room.views:MeetingSession"]}]
      api:
        source: {type: graphql, port: 8000, views: ["examples.meeting_room.views:MeetingSession"]}
        processors: [{type: api}]
        sinks: [{type: reply}]
"""

from __future__ import annotations

from typing import Any

from onto_core import ComponentRegistrar, hookimpl
from onto_graphql._config import GRAPHIQL_DIR, GraphQLEndpointConfig
from onto_graphql._schema import build_schema, list_field_name, mutation_names
from onto_graphql._server import (
    GRAPHIQL_ASSETS,
    GraphQLServer,
    get_server,
    reset_servers,
    running_servers,
    start_claimed,
)
from onto_graphql._sink import GraphQLSink
from onto_graphql._source import GraphQLSource

__all__ = [
    "GRAPHIQL_ASSETS",
    "GRAPHIQL_DIR",
    "GraphQLEndpointConfig",
    "GraphQLServer",
    "GraphQLSink",
    "GraphQLSource",
    "build_schema",
    "get_server",
    "list_field_name",
    "mutation_names",
    "register_components",
    "reset_servers",
    "running_servers",
    "runtime_started",
    "runtime_stopped",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.source("graphql", GraphQLSource)
    register.sink("graphql", GraphQLSink)


@hookimpl
def runtime_started(runtime: Any) -> None:
    start_claimed()


@hookimpl
def runtime_stopped(runtime: Any) -> None:
    reset_servers()
