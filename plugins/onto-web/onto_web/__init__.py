"""onto-web: the HTTP server onto's web transports share, and their authentication.

Installing it adds no component of its own: it starts every server the REST, JSON-RPC
and WebSocket components claimed once the runtime has started them all, and stops the
servers when the runtime stops. Each server also serves the runtime's Prometheus
metrics at ``/metrics``, requests by route and status among them, and the AsyncAPI
document of the running config at ``/asyncapi.json``.
"""

from __future__ import annotations

from typing import Any

from onto_core import hookimpl
from onto_web.asyncapi import serve_asyncapi
from onto_web.auth import AuthConfig, Authenticator, AuthError, TokenEntry, bearer_token
from onto_web.metrics import WebRequestsCollector, serve_metrics
from onto_web.rooms import ViewRooms
from onto_web.server import (
    OriginPolicy,
    WebEndpointConfig,
    WebServer,
    all_servers,
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
    "ViewRooms",
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
    registry = getattr(runtime, "metrics_registry", None)
    servers = [server for server in all_servers() if server.claimed_by]
    if registry is not None and servers:
        registry.register(WebRequestsCollector())
        for server in servers:
            serve_metrics(server, registry)
    config = getattr(runtime, "config", None)
    if config is not None:
        for server in servers:
            serve_asyncapi(server, config)
    start_claimed()


@hookimpl
def runtime_stopped(runtime: Any) -> None:
    reset_servers()
