"""One HTTP server per host and port, shared by every web component configured on it.

Components claim a server while they start (``get_server(host, port)``) and add their
routes to its Flask ``app``; when every component of the runtime has started, the
``runtime_started`` hook starts each claimed server in a thread, and ``runtime_stopped``
stops it. The server is Werkzeug's threaded server, which also serves WebSocket
upgrades; docs/web.md says how to run the same app under gunicorn in production.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from onto_web.auth import AuthConfig

__all__ = [
    "WebEndpointConfig",
    "WebServer",
    "all_servers",
    "get_server",
    "reset_servers",
    "running_servers",
    "serve_externally",
    "start_claimed",
]

log = logging.getLogger("onto.web")
T = TypeVar("T")


class WebEndpointConfig(BaseModel):
    """Settings every web component has: where it listens and who may use it."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(
        8000, ge=0, le=65535, description="Port; components on one host and port share it."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="Who may use it.")
    max_body_bytes: int = Field(
        1_000_000, ge=1, description="Largest request body accepted (larger ones get 413)."
    )


class _RequestHandler(WSGIRequestHandler):
    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        # A WebSocket session (simple-websocket) ends this way too: the connection is
        # spent and must not be read again as HTTP, or the client's closing frames get a
        # 400 response instead of the close it waits for.
        self.close_connection = True


class WebServer:
    """A Flask app and the thread serving it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.app = Flask(f"onto_web_{host}_{port}")
        self.app.config["MAX_CONTENT_LENGTH"] = 1_000_000
        self.app.json.sort_keys = False  # type: ignore[attr-defined]
        self.claimed_by: list[str] = []
        self.open_endpoints: list[str] = []
        self._shared: dict[str, Any] = {}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def claim(self, component: str, settings: WebEndpointConfig) -> Flask:
        """Register ``component`` as served here; returns the app to add routes to."""
        self.claimed_by.append(component)
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        self.app.config["MAX_CONTENT_LENGTH"] = min(limit, settings.max_body_bytes)
        if settings.auth.open:
            self.open_endpoints.append(component)
        return self.app

    def shared(self, name: str, factory: Callable[[], T]) -> T:
        """One object per server under ``name`` (e.g. the Socket.IO server), made once."""
        with self._lock:
            if name not in self._shared:
                self._shared[name] = factory()
            return self._shared[name]  # type: ignore[no-any-return]

    def start(self) -> None:
        """Listen and serve in a daemon thread (idempotent); port 0 picks a free port."""
        with self._lock:
            if self._server is not None:
                return
            try:
                server = make_server(
                    self.host, self.port, self.app, threaded=True, request_handler=_RequestHandler
                )
            except (OSError, SystemExit) as exc:
                # Werkzeug reports a busy port on stderr and exits; say which address instead.
                reason = exc if isinstance(exc, OSError) else "the address is in use or refused"
                raise OSError(f"cannot listen on {self.host}:{self.port}: {reason}") from None
            self.port = server.server_port
            self._server = server
            # A short poll interval makes stop() return promptly instead of after 0.5 s.
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"onto-web-{self.port}",
                daemon=True,
            )
            self._thread.start()
        log.info("serving %s for %s", self.url, ", ".join(self.claimed_by) or "nothing yet")
        if self.open_endpoints:
            log.warning(
                "%s open without authentication (%s): anyone who can reach it may read "
                "and act on every view; configure auth.tokens or auth.verifier to close it",
                self.url,
                ", ".join(self.open_endpoints),
            )

    def stop(self) -> None:
        """Stop listening and wait for the serving thread (idempotent)."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)


_servers: dict[tuple[str, int], WebServer] = {}
_servers_lock = threading.Lock()
_external = False


def serve_externally(enabled: bool) -> None:
    """When enabled, the runtime does not listen itself: a WSGI server serves the apps."""
    global _external
    _external = enabled


def start_claimed() -> None:
    """Start every server some component claimed (unless served externally)."""
    if _external:
        return
    for server in all_servers():
        if server.claimed_by:
            server.start()


def all_servers() -> list[WebServer]:
    with _servers_lock:
        return list(_servers.values())


def get_server(host: str, port: int) -> WebServer:
    """The server for ``host``:``port``, created on first use."""
    with _servers_lock:
        server = _servers.get((host, port))
        if server is None:
            server = _servers[(host, port)] = WebServer(host, port)
        return server


def running_servers() -> list[WebServer]:
    with _servers_lock:
        return [s for s in _servers.values() if s.running]


def reset_servers() -> None:
    """Stop and forget every server (between runs, and in tests)."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()
