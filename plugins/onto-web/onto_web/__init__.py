"""onto-web: the HTTP server onto's web transports share, and their authentication.

Installing it adds no component of its own: it starts every server the REST, JSON-RPC
and WebSocket components claimed once the runtime has started them all, and stops the
servers when the runtime stops.
"""

from __future__ import annotations

from typing import Any

from onto_core import hookimpl
from onto_web.auth import AuthConfig, Authenticator, AuthError, TokenEntry, bearer_token
from onto_web.server import (
    OriginPolicy,
    WebEndpointConfig,
    WebServer,
    get_server,
    is_loopback,
    json_error,
    redact_query,
    reset_servers,
    running_servers,
    start_claimed,
)

__all__ = [
    "AuthConfig",
    "AuthError",
    "Authenticator",
    "OriginPolicy",
    "TokenEntry",
    "WebEndpointConfig",
    "WebServer",
    "bearer_token",
    "get_server",
    "is_loopback",
    "json_error",
    "redact_query",
    "reset_servers",
    "running_servers",
    "runtime_started",
    "runtime_stopped",
]


@hookimpl
def runtime_started(runtime: Any) -> None:
    start_claimed()


@hookimpl
def runtime_stopped(runtime: Any) -> None:
    reset_servers()
