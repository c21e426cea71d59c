"""One HTTP server per host and port, shared by every web component configured on it.

Components claim a server while they start (``get_server(host, port)``) and add their
routes to its Flask ``app``; when every component of the runtime has started, the
``runtime_started`` hook starts each claimed server in a thread, and ``runtime_stopped``
stops it. The server is Werkzeug's threaded server, which also serves WebSocket
upgrades, bounded here: at most ``max_connections`` connections (one thread each), a
``read_timeout`` on every read (request line and headers within it in total), and
errors of the HTTP layer itself answered as JSON. docs/web.md says why it is kept and
how to run the same app under gunicorn instead.

Every request, whichever server runs the app, first passes the server's
``OriginPolicy``: a ``Host`` the server is not known by, or an ``Origin`` that is
neither the server's own nor listed, is refused with 403 before any route or Socket.IO
sees it (DNS rebinding, cross-site requests).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, Response, request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from werkzeug.exceptions import HTTPException
from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from onto_web.auth import AuthConfig

__all__ = [
    "OriginPolicy",
    "WebEndpointConfig",
    "WebServer",
    "all_servers",
    "get_server",
    "is_loopback",
    "json_error",
    "redact_query",
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
    allowed_hosts: list[str] | None = Field(
        None,
        description=(
            "Host names clients may address the server by ('example.com', "
            "'*.example.com', 'example.com:8443', '*' for any). Default: on loopback, "
            "localhost, 127.0.0.1 and [::1] at the server's port; elsewhere any host when "
            "auth is configured, and an open endpoint must list them."
        ),
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Origins of other web pages that may call the server from a browser, as "
            "'scheme://host[:port]' ('*' for any); the server's own origin is always allowed."
        ),
    )
    read_timeout: float = Field(
        10.0,
        gt=0,
        description=(
            "Seconds a client has to send a request's line and headers, and the longest "
            "pause while reading its body or writing the answer; then the connection closes."
        ),
    )
    max_connections: int = Field(
        200,
        ge=1,
        description="Most connections served at once (one thread each); more get 503.",
    )

    @model_validator(mode="after")
    def _open_only_on_loopback(self) -> WebEndpointConfig:
        if self.allowed_hosts is None and self.auth.open and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback interface and the endpoint has no "
                "auth: set allowed_hosts to the names clients use to reach it (or configure "
                "auth.tokens or auth.verifier), so another site cannot reach it through DNS "
                "rebinding"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to listen on) is reachable from this machine only."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def json_error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """A JSON error reply: ``{"error": message, "field": field}`` with ``status``."""
    response = Response(
        json.dumps({"error": message, "field": field}), status, mimetype="application/json"
    )
    response.headers.update(headers or {})
    return response


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message, "field": None}).encode()


# A query parameter whose name looks like it carries a credential.
_SECRET_PARAMETER = re.compile(
    r"([?&;][^=&;#\s]*(?:token|secret|passw|key|auth|sig|session|credential|jwt|code|sid)"
    r"[^=&;#\s]*=)[^&;#\s'\"]*",
    re.IGNORECASE,
)


def redact_query(text: str) -> str:
    """``text`` with the values of secret-looking query parameters replaced by ``***``."""
    return _SECRET_PARAMETER.sub(r"\1***", text)


_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_and_port(value: str) -> tuple[str, int | None]:
    """``("example.com", 8000)`` from ``Example.COM.:8000``; ``[::1]`` keeps its brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name, port = f"{name}]", rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = value.partition(":")
    name = name.rstrip(".")
    return name, int(port) if port.isdigit() else None


class OriginPolicy:
    """Which ``Host`` and ``Origin`` a server answers: the rule of docs/web.md.

    ``hosts`` is the merged ``allowed_hosts`` of the server's components (``None``: the
    default rule), ``origins`` their ``allowed_origins``; ``port`` gives the server's port
    (known once it listens).
    """

    def __init__(
        self,
        listen_host: str,
        port: Callable[[], int],
        hosts: Iterable[str] | None,
        origins: Iterable[str],
    ) -> None:
        self.loopback = is_loopback(listen_host)
        self._port = port
        self.hosts = None if hosts is None else [_host_and_port(h) for h in hosts]
        self.origins = {o.strip().lower().rstrip("/") for o in origins}

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request whose ``Host`` header is ``host`` is for this server."""
        if host is None:
            return True  # an HTTP/1.0 client: no browser, so no rebinding
        name, port = _host_and_port(host)
        if self.hosts is None:
            if not self.loopback:
                return True  # an authenticated endpoint (the config refuses open ones)
            return name in _LOOPBACK_NAMES and port in (None, self._port())
        for allowed, allowed_port in self.hosts:
            if allowed_port is not None and allowed_port != port:
                continue
            if allowed in ("*", name):
                return True
            if allowed.startswith("*.") and name.endswith(allowed[1:]):
                return True
        return False

    def origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        """Whether a browser page at ``origin`` may call the server (Socket.IO's CORS hook)."""
        if origin is None:
            return True  # not sent by a browser for this request, or same-origin GET
        normalized = origin.strip().lower().rstrip("/")
        if "*" in self.origins or normalized in self.origins:
            return True
        parts = urlsplit(normalized)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            return False  # "null" (a sandboxed or file: page) and the like
        host = environ.get("HTTP_HOST")
        if host is None:
            return False
        name, port = _host_and_port(parts.netloc)
        host_name, host_port = _host_and_port(host)
        default = _DEFAULT_PORTS[parts.scheme]
        return name == host_name and (port or default) == (host_port or default)

    def refusal(self, environ: dict[str, Any]) -> str | None:
        """Why the request in ``environ`` is refused, or ``None`` when it may proceed."""
        host = environ.get("HTTP_HOST")
        if not self.host_allowed(host):
            return (
                f"this server is not {host!r}: add it to allowed_hosts if clients reach the "
                "server by that name"
            )
        origin = environ.get("HTTP_ORIGIN")
        if not self.origin_allowed(origin, environ):
            return (
                f"requests from pages at {origin!r} are not allowed: add the origin to "
                "allowed_origins to let that site call this server"
            )
        return None


# In the WSGI environ of every request: a list that gets the rule Flask matched. A list,
# not the rule itself: Socket.IO's middleware hands Flask a copy of the environ.
ROUTE_KEY = "onto.route"


class _GuardedFlask(Flask):
    """A Flask app whose every request passes its server's ``OriginPolicy`` first.

    The check sits in ``__call__``, outside ``wsgi_app``, so it also covers what wraps
    ``wsgi_app`` (Socket.IO's polling and WebSocket upgrades). Each answer is counted
    there too, by route rule and status (``WebServer.requests``).
    """

    web_server: WebServer

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        server = self.web_server
        refusal = server.policy.refusal(environ)
        if refusal is None:
            route: list[str] = []
            environ[ROUTE_KEY] = route

            def counted(status: str, headers: Any, exc_info: Any = None) -> Any:
                server.count_request(_route_label(route, environ), status)
                return start_response(status, headers, exc_info)

            return super().__call__(environ, counted)
        server.count_request("refused", "403")
        body = _error_body(refusal)
        start_response(
            "403 FORBIDDEN",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def full_dispatch_request(self) -> Response:
        route = request.environ.get(ROUTE_KEY)
        rule = request.url_rule
        if route is not None and rule is not None:
            route.append(rule.rule)
        return super().full_dispatch_request()


def _route_label(route: list[str], environ: dict[str, Any]) -> str:
    """The route label of a request: its rule, ``socket.io``, or ``unmatched``."""
    if route:
        return route[-1]
    if environ.get("PATH_INFO", "").startswith("/socket.io/"):
        return "socket.io"  # answered by Socket.IO's middleware, outside Flask's routing
    return "unmatched"


class _HeaderReader:
    """``readline`` over a buffered socket file, failing once ``deadline`` has passed.

    A socket timeout alone restarts with every byte; a client sending one byte at a time
    would hold the connection for good.
    """

    def __init__(self, rfile: Any, connection: socket.socket, deadline: float) -> None:
        self._rfile = rfile
        self._connection = connection
        self._deadline = deadline

    def readline(self, limit: int = -1) -> bytes:
        line = bytearray()
        while limit < 0 or len(line) < limit:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request line and headers did not arrive in time")
            self._connection.settimeout(remaining)
            buffered = self._rfile.peek(1)
            if not buffered:
                break
            want = len(buffered) if limit < 0 else min(len(buffered), limit - len(line))
            end = buffered.find(b"\n", 0, want)
            line += self._rfile.read(end + 1 if end >= 0 else want)
            if end >= 0:
                break
        return bytes(line)


class _RequestHandler(WSGIRequestHandler):
    server: _BoundedWSGIServer

    def handle_one_request(self) -> None:
        timeout = self.server.read_timeout
        self._file = self.rfile
        self.rfile = _HeaderReader(self.rfile, self.connection, time.monotonic() + timeout)  # type: ignore[assignment]
        try:
            super().handle_one_request()
        finally:
            self.rfile = self._file

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self.rfile = self._file
        upgrade = self.headers.get("Upgrade", "") if parsed else ""
        # A WebSocket may be quiet for long; Socket.IO's pings find dead ones.
        self.connection.settimeout(
            None if upgrade.lower() == "websocket" else self.server.read_timeout
        )
        return parsed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors of the HTTP layer (400, 414, 431, 505 ...) as JSON, like every other."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        text = message or phrase
        self.log_error("code %d, message %s", code, text)
        body = _error_body(f"{code} {phrase}: {text}" if message else f"{code} {phrase}")
        # A request line too broken to name its version leaves HTTP/0.9, which would
        # send the body without a status line or headers; no client speaks 0.9 today.
        if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        self.send_response(code, phrase)
        self.send_header("Connection", "close")
        self.close_connection = True
        if code >= 200 and code not in (HTTPStatus.NO_CONTENT, HTTPStatus.NOT_MODIFIED):
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log(self, type: str, message: str, *args: Any) -> None:
        # Tokens sent in a query string must not reach the access log.
        super().log(type, "%s", redact_query(message % args if args else message))

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        # A WebSocket session (simple-websocket) ends this way too: the connection is
        # spent and must not be read again as HTTP, or the client's closing frames get a
        # 400 response instead of the close it waits for.
        self.close_connection = True


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class _BoundedWSGIServer(ThreadedWSGIServer):
    """Werkzeug's threaded server with at most ``max_connections`` threads at once."""

    def __init__(
        self, host: str, port: int, app: Any, *, max_connections: int, read_timeout: float
    ) -> None:
        super().__init__(host, port, app, handler=_RequestHandler)
        self.read_timeout = read_timeout
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse_busy(self, request: socket.socket) -> None:
        # Answered from the accepting thread, so it must never wait on the client.
        body = _error_body("the server is at its max_connections; try again shortly")
        try:
            request.settimeout(0)
            request.send(_BUSY % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)


class WebServer:
    """A Flask app and the thread serving it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        app = _GuardedFlask(f"onto_web_{host}_{port}")
        app.web_server = self
        self.app: Flask = app
        self.app.config["MAX_CONTENT_LENGTH"] = 1_000_000
        self.app.json.sort_keys = False  # type: ignore[attr-defined]
        # Unknown paths, wrong methods and the like answer JSON; a transport may install
        # a handler of its own with more to say (onto-rest does).
        self.app.register_error_handler(HTTPException, _http_error)
        self.claimed_by: list[str] = []
        self.open_endpoints: list[str] = []
        self.settings: list[WebEndpointConfig] = []
        self._policy: OriginPolicy | None = None
        self._shared: dict[str, Any] = {}
        self._server: _BoundedWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Answers so far by (route rule, status code): bounded by the routes.
        self.requests: Counter[tuple[str, str]] = Counter()
        self._requests_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def count_request(self, route: str, status: str) -> None:
        """Count one answer: ``route`` is the rule (never the path), ``status`` its line."""
        with self._requests_lock:
            self.requests[(route, status[:3])] += 1

    def claim(self, component: str, settings: WebEndpointConfig) -> Flask:
        """Register ``component`` as served here; returns the app to add routes to."""
        self.claimed_by.append(component)
        self.settings.append(settings)
        self._policy = None
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        self.app.config["MAX_CONTENT_LENGTH"] = min(limit, settings.max_body_bytes)
        if settings.auth.open:
            self.open_endpoints.append(component)
        return self.app

    @property
    def policy(self) -> OriginPolicy:
        """The Host and Origin rule of this server's components taken together."""
        policy = self._policy
        if policy is None:
            listed = [s.allowed_hosts for s in self.settings if s.allowed_hosts is not None]
            hosts = None if not listed else [h for hosts in listed for h in hosts]
            origins = [o for s in self.settings for o in s.allowed_origins]
            policy = self._policy = OriginPolicy(self.host, lambda: self.port, hosts, origins)
        return policy

    def origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        """Socket.IO's ``cors_allowed_origins`` callable: the same rule as every request."""
        return self.policy.origin_allowed(origin, environ)

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
                server = _BoundedWSGIServer(
                    self.host,
                    self.port,
                    self.app,
                    max_connections=min((s.max_connections for s in self.settings), default=200),
                    read_timeout=min((s.read_timeout for s in self.settings), default=10.0),
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


def _http_error(exc: HTTPException) -> Response:
    headers = {
        name: value
        for name, value in exc.get_headers()
        if name.lower() not in ("content-type", "content-length")
    }
    status = exc.code or 500
    message = exc.description or exc.name
    if status >= 500:
        message = "internal error; the server log has the details"
    return json_error(status, message, headers=headers)


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
