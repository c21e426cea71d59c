"""Settings every GraphQL component has: the web endpoint's, and the GraphQL server's limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from onto_core.builtin.view import load_views
from onto_web import WebEndpointConfig

__all__ = ["GRAPHIQL_DIR", "GraphQLEndpointConfig", "loadable_views"]

GRAPHIQL_DIR = Path(__file__).parent / "graphiql"
"""Where ``npm ci`` installs the GraphiQL page's assets by default (its package.json is there)."""


def loadable_views(refs: list[str]) -> list[str]:
    """``refs`` if each imports as a view model and no two share a ``view_name``."""
    load_views(refs, "GraphQL field names must be unique")
    return refs


class GraphQLEndpointConfig(WebEndpointConfig):
    """Where the GraphQL server listens, who may use it, and how much one request may ask.

    Components on one host and port share one server; its limits are the strictest of
    theirs, introspection is on only if every one allows it, and the GraphiQL page is
    served if any asks for it (and introspection is on).
    """

    path: str = Field(
        "/graphql", description="URL path of the GraphQL endpoint (HTTP and WebSocket)."
    )
    max_depth: int = Field(
        15,
        ge=1,
        description=(
            "Deepest nesting of selections a query may have (15 lets the standard "
            "introspection query of GraphiQL and gql through)."
        ),
    )
    max_aliases: int = Field(20, ge=0, description="Most aliases one query document may use.")
    max_query_bytes: int = Field(
        10_000, ge=100, description="Longest query text accepted, in bytes (UTF-8)."
    )
    max_tokens: int = Field(
        2_000, ge=10, description="Most lexical tokens one query document may have."
    )
    max_subscriptions: int = Field(
        32, ge=1, description="Most subscriptions one WebSocket connection may hold at once."
    )
    introspection: bool = Field(
        True, description="Answer introspection queries (__schema, __type); GraphiQL needs them."
    )
    graphiql: bool = Field(
        True, description="Serve the GraphiQL page on GET of the endpoint's path from a browser."
    )
    graphiql_dir: Path = Field(
        GRAPHIQL_DIR,
        description="Folder whose node_modules holds graphiql, react, react-dom and graphql-ws.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        stripped = path.strip().strip("/")
        if not stripped or not all(
            segment and all(c.isalnum() or c in "-._~" for c in segment)
            for segment in stripped.split("/")
        ):
            raise ValueError(
                f"path {path!r}: use path segments of letters, digits, '-', '.', '_' and '~' "
                "separated by single slashes, e.g. '/graphql'"
            )
        if stripped.split("/")[0] == "graphiql":
            raise ValueError(f"path {path!r}: /graphiql is where the page's assets are served")
        return f"/{stripped}"
