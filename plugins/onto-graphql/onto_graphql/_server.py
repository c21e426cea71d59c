"""One GraphQL server per host and port: a Starlette/ariadne ASGI app served by uvicorn.

``graphql`` components claim a server while they start (``get_server(host, port)``) and
register what they serve; when every component of the runtime has started, the
``runtime_started`` hook builds the schema of everything registered and starts uvicorn
in a thread of its own (with its own event loop); ``runtime_stopped`` stops it.

Every request and WebSocket handshake first passes onto-web's ``OriginPolicy`` (the
same ``Host`` and ``Origin`` rule as the Flask-based transports), then the limits: a
POST body must be JSON (415) and at most ``max_body_bytes`` (413); a query is refused by
size, tokens, depth and aliases. Errors are GraphQL errors or JSON, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from ariadne.asgi import GraphQL
from ariadne.asgi.handlers import GraphQLHTTPHandler
from ariadne.exceptions import HttpError
from ariadne.explorer import Explorer, ExplorerHttp405
from ariadne.utils import get_operation_type, unwrap_graphql_error
from graphql import GraphQLError, GraphQLSchema, OperationType, parse
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from onto_core.errors import ComponentError
from onto_core.tracing import carried
from onto_graphql._config import GraphQLEndpointConfig
from onto_graphql._limits import aliases_rule, depth_rule, query_parser
from onto_graphql._schema import ServedView, api_error, build_schema
from onto_graphql._transport import TOKEN_SCOPE_KEY, SubscriptionProtocols
from onto_web import Authenticator, AuthError, OriginPolicy, bearer_token
from onto_web import server as web_servers

if TYPE_CHECKING:
    from onto_graphql._sink import GraphQLSink
    from onto_graphql._source import GraphQLSource

__all__ = [
    "GRAPHIQL_ASSETS",
    "GraphQLServer",
    "Subscriber",
    "all_servers",
    "get_server",
    "reset_servers",
    "running_servers",
    "start_claimed",
]

log = logging.getLogger("onto.graphql")

GRAPHIQL_ASSETS = {
    "graphiql.min.css": "graphiql/graphiql.min.css",
    "graphiql.min.js": "graphiql/graphiql.min.js",
    "react.production.min.js": "react/umd/react.production.min.js",
    "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
    "graphql-ws.min.js": "graphql-ws/umd/graphql-ws.min.js",
}
"""The GraphiQL page's files, served at ``/graphiql/<name>`` from ``graphiql_dir/node_modules``."""

_INTERNAL = "internal error; the server log has the details"


@dataclass
class _Queried:
    served: ServedView
    source: GraphQLSource
    auth: Authenticator
    label: str
    timeout: float
    open: bool = True


@dataclass
class _Subscribed:
    served: ServedView
    sink: GraphQLSink
    auth: Authenticator
    label: str
    open: bool = True


class Subscriber:
    """One subscription's mailbox on the server's event loop: the newest update only.

    A client slower than the updates skips to the newest version instead of queueing
    every one, so a subscription holds at most one pending view, however slow its client.
    """

    def __init__(self) -> None:
        self.version = 0
        self.latest: dict[str, Any] | None = None
        self.ready = asyncio.Event()

    def offer(self, update: dict[str, Any]) -> None:
        """Keep ``update`` if it is newer than what this subscriber has (loop thread only)."""
        version = update.get("version")
        if isinstance(version, int) and version <= self.version:
            return
        if isinstance(version, int):
            self.version = version
        self.latest = update
        self.ready.set()


def _offer_all(subscribers: list[Subscriber], update: dict[str, Any]) -> None:
    for subscriber in subscribers:
        subscriber.offer(update)


class GraphQLServer:
    """The GraphQL endpoint of one host and port, and the components it serves."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.claimed_by: list[str] = []
        self.open_endpoints: list[str] = []
        self.settings: list[GraphQLEndpointConfig] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._queried: dict[str, _Queried] = {}
        self._subscribed: dict[str, _Subscribed] = {}
        self._lock = threading.Lock()
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._app: _OntoGraphQLApp | None = None
        self.schema: GraphQLSchema | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    @property
    def path(self) -> str:
        return self.settings[0].path if self.settings else "/graphql"

    @property
    def running(self) -> bool:
        return self._uvicorn is not None

    # --- registration (component start / close) ---------------------------------------

    def claim(self, label: str, settings: GraphQLEndpointConfig) -> None:
        """Register component ``label`` as served here, with its endpoint settings."""
        with self._lock:
            if self.settings and settings.path != self.settings[0].path:
                raise ComponentError(
                    f"{self.claimed_by[0]} serves GraphQL at {self.settings[0].path} on "
                    f"{self.host}:{self.port}; components on one port share one path "
                    f"(this one asks for {settings.path})",
                    component=label,
                )
            self.claimed_by.append(label)
            self.settings.append(settings)
            if settings.auth.open:
                self.open_endpoints.append(label)

    def serve_queries(
        self,
        label: str,
        source: GraphQLSource,
        views: list[ServedView],
        auth: Authenticator,
        timeout: float,
    ) -> None:
        """Answer reads, lists and actions of ``views`` through ``source``'s pipeline."""
        with self._lock:
            for served in views:
                taken = self._queried.get(served.view.view_name)
                if taken is not None:
                    raise ComponentError(
                        f"view {served.view.view_name!r} is already served by {taken.label} "
                        f"on {self.host}:{self.port}; list each view in one graphql source "
                        "per port",
                        component=label,
                    )
            for served in views:
                self._queried[served.view.view_name] = _Queried(
                    served, source, auth, label, timeout
                )

    def serve_subscriptions(
        self, label: str, sink: GraphQLSink, views: list[ServedView], auth: Authenticator
    ) -> None:
        """Stream the updates ``sink`` receives for ``views`` to their subscribers."""
        with self._lock:
            for served in views:
                taken = self._subscribed.get(served.view.view_name)
                if taken is not None:
                    raise ComponentError(
                        f"view {served.view.view_name!r} is already streamed by {taken.label} "
                        f"on {self.host}:{self.port}; list each view in one graphql sink per "
                        "port",
                        component=label,
                    )
            for served in views:
                self._subscribed[served.view.view_name] = _Subscribed(served, sink, auth, label)

    def withdraw(self, label: str) -> None:
        """Stop serving what ``label`` registered: its operations answer 503 from now on."""
        with self._lock:
            for queried in self._queried.values():
                queried.open = queried.open and queried.label != label
            for subscribed in self._subscribed.values():
                subscribed.open = subscribed.open and subscribed.label != label
            subscribers = [
                s for entry in self._subscribed.values() if not entry.open for s in entry.sink.all()
            ]
        # Wake every subscription of a withdrawn sink: each ends with an error.
        self.deliver(subscribers, {"version": None, "removed": False, "closing": True})

    def deliver(self, subscribers: list[Subscriber], update: dict[str, Any]) -> None:
        """Offer ``update`` to ``subscribers`` on the server's loop (from any thread)."""
        loop = self.loop
        if loop is None or not subscribers:
            return
        # A closed loop: the server stopped, and its subscriptions with it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_offer_all, subscribers, update)

    # --- what the schema's resolvers call (on the server's loop) ----------------------

    def _principal(self, info: Any, auth: Authenticator) -> str | None:
        try:
            return auth.principal(info.context.get("token"))
        except AuthError as exc:
            raise api_error(exc.status, exc.message) from None

    def _authorized(
        self, info: Any, auth: Authenticator, served: ServedView, key: str | None, operation: Any
    ) -> str | None:
        principal = self._principal(info, auth)
        try:
            auth.check(principal, served.view, key, operation)
        except AuthError as exc:
            raise api_error(exc.status, exc.message) from None
        return principal

    def _queried_entry(self, served: ServedView) -> _Queried:
        entry = self._queried[served.view.view_name]
        if not entry.open:
            raise api_error(503, "the server is shutting down; try again later")
        return entry

    async def read(self, served: ServedView, info: Any, key: str) -> Any:
        entry = self._queried_entry(served)
        self._authorized(info, entry.auth, served, key, "read")
        return await entry.source.ask({"op": "read", "view": served.ref, "key": key}, entry.timeout)

    async def list(self, served: ServedView, info: Any, filters: dict[str, Any], limit: Any) -> Any:
        entry = self._queried_entry(served)
        self._authorized(info, entry.auth, served, None, "list")
        request = {"op": "list", "view": served.ref, "filters": filters, "limit": limit}
        return await entry.source.ask(request, entry.timeout)

    async def act(
        self, served: ServedView, info: Any, key: str, action: str, arguments: dict[str, Any]
    ) -> Any:
        entry = self._queried_entry(served)
        self._authorized(info, entry.auth, served, key, "action")
        request = {
            "op": "action",
            "view": served.ref,
            "key": key,
            "action": action,
            "arguments": arguments,
        }
        # The HTTP request's W3C traceparent header, if any: the mutation continues its trace.
        http = info.context.get("request")
        trace = carried(http.headers) if http is not None else None
        return await entry.source.ask(request, entry.timeout, trace)

    async def subscribe(self, served: ServedView, info: Any, key: str) -> AsyncIterator[Any]:
        """The view at ``key`` now, then each newer version; raises once it is removed,
        access is revoked or the server stops. Refusals raise before anything is sent."""
        entry = self._subscribed[served.view.view_name]
        if not entry.open:
            raise api_error(503, "the server is shutting down; try again later")
        self._authorized(info, entry.auth, served, key, "subscribe")
        subscriber = Subscriber()
        current = await asyncio.to_thread(entry.sink.join, served.view, key, subscriber)
        return self._stream(entry, info, key, subscriber, current)

    async def _stream(
        self,
        entry: _Subscribed,
        info: Any,
        key: str,
        subscriber: Subscriber,
        current: dict[str, Any],
    ) -> AsyncIterator[Any]:
        served = entry.served
        last = current
        try:
            yield current
            while True:
                await subscriber.ready.wait()
                subscriber.ready.clear()
                update = subscriber.latest
                if update is None:
                    continue
                if update.get("closing") or not entry.open:
                    raise api_error(503, "the server is shutting down; subscribe again later")
                if update.get("removed"):
                    raise api_error(404, f"{served.view.view_name} {key!r} was removed")
                try:
                    self._authorized(info, entry.auth, served, key, "subscribe")
                except GraphQLError as exc:
                    raise api_error(
                        (exc.extensions or {}).get("status", 403),
                        f"access to {served.view.view_name} {key!r} was revoked: {exc.message}",
                    ) from None
                if update["data"] != last:  # a view emitted again unchanged is no new version
                    last = update["data"]
                    yield last
        finally:
            entry.sink.leave(served.view, key, subscriber)

    # --- the app ------------------------------------------------------------------------

    def _check_token(self, payload: Any, header: str | None) -> str | None:
        """The token of a WebSocket's ``connection_init``; ``PermissionError`` when every
        component here needs one and none accepts it."""
        from onto_graphql._transport import _token_of

        token = _token_of(payload) or bearer_token(header)
        with self._lock:
            auths = [e.auth for e in self._subscribed.values()] + [
                e.auth for e in self._queried.values()
            ]
        if not auths or any(a.open for a in auths):
            return token
        reasons = []
        for auth in auths:
            try:
                auth.principal(token)
                return token
            except AuthError as exc:
                reasons.append(exc.message)
        reason = reasons[0]
        if token is None:
            reason += ': send {"token": "<token>"} as the connection_init payload'
        raise PermissionError(reason)

    def build(self) -> _OntoGraphQLApp:
        """The ASGI app serving everything registered so far (made at start)."""
        with self._lock:
            queried = [e.served for e in self._queried.values()]
            subscribed = [e.served for e in self._subscribed.values()]
        self.schema = build_schema(self, queried, subscribed)
        settings = self.settings
        introspection = all(s.introspection for s in settings)
        graphiql_dirs = [s.graphiql_dir for s in settings if s.graphiql]
        explorer: Explorer = ExplorerHttp405()
        if introspection and graphiql_dirs:
            explorer = _GraphiQLPage(self.path, graphiql_dirs[0])
        limits = _Limits(
            max_depth=min(s.max_depth for s in settings),
            max_aliases=min(s.max_aliases for s in settings),
            max_query_bytes=min(s.max_query_bytes for s in settings),
            max_tokens=min(s.max_tokens for s in settings),
            max_subscriptions=min(s.max_subscriptions for s in settings),
            max_body_bytes=min(s.max_body_bytes for s in settings),
        )
        graphql = GraphQL(
            self.schema,
            context_value=_context,
            query_parser=query_parser(limits.max_query_bytes, limits.max_tokens),
            validation_rules=[depth_rule(limits.max_depth), aliases_rule(limits.max_aliases)],
            execute_get_queries=True,
            debug=False,
            introspection=introspection,
            explorer=explorer,
            logger=_AnsweredErrors(logging.getLogger("onto.graphql.answered"), {}),
            error_formatter=format_error,
            http_handler=_HTTPHandler(),
            websocket_handler=SubscriptionProtocols(
                self._check_token,
                limits.max_subscriptions,
                min(s.read_timeout for s in settings),
            ),
        )
        listed = [s.allowed_hosts for s in settings if s.allowed_hosts is not None]
        policy = OriginPolicy(
            self.host,
            lambda: self.port,
            None if not listed else [h for hosts in listed for h in hosts],
            [o for s in settings for o in s.allowed_origins],
        )
        page = isinstance(explorer, _GraphiQLPage)
        assets = graphiql_dirs[0] / "node_modules" if page else None
        return _OntoGraphQLApp(graphql, policy, self.path, limits, assets)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Build the app, listen and serve in a thread of its own (idempotent)."""
        with self._lock:
            if self._uvicorn is not None:
                return
        for web in web_servers.all_servers():
            if web.claimed_by and web.port != 0 and (web.host, web.port) == (self.host, self.port):
                raise ComponentError(
                    f"{', '.join(self.claimed_by)} and {', '.join(web.claimed_by)} are both "
                    f"configured on {self.host}:{self.port}, but GraphQL runs on its own ASGI "
                    "server: give the graphql components another port (docs/web.md, "
                    "'GraphQL next to the Flask-based transports')",
                    component=self.claimed_by[0],
                )
        app = self._app = self.build()
        settings = self.settings
        try:
            listener = socket.create_server((self.host, self.port), reuse_port=False)
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {exc}") from None
        self.port = listener.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            limit_concurrency=min(s.max_connections for s in settings),
            timeout_keep_alive=int(max(1, min(s.read_timeout for s in settings))),
            ws_max_size=min(s.max_body_bytes for s in settings),
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
        )
        server = uvicorn.Server(config)
        started = threading.Event()

        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            started.set()
            await server.serve(sockets=[listener])

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
                    runner.run(serve())
            finally:
                started.set()
                listener.close()

        self._uvicorn = server
        self._thread = threading.Thread(target=run, name=f"onto-graphql-{self.port}", daemon=True)
        self._thread.start()
        started.wait(10)
        deadline = 100
        while not server.started and self._thread.is_alive() and deadline:
            threading.Event().wait(0.01)
            deadline -= 1
        log.info("serving GraphQL at %s for %s", self.url, ", ".join(self.claimed_by))
        if app.assets is not None and not (app.assets / "graphiql").is_dir():
            log.warning(
                "the GraphiQL page's assets are not installed in %s: run `npm ci` in %s "
                "(docs/graphql.md, 'GraphiQL')",
                app.assets,
                app.assets.parent,
            )
        if self.open_endpoints:
            log.warning(
                "%s open without authentication (%s): anyone who can reach it may read, "
                "act on and subscribe to every view; configure auth.tokens or auth.verifier "
                "to close it",
                self.url,
                ", ".join(self.open_endpoints),
            )

    def stop(self) -> None:
        """Close every connection, stop listening and wait for the thread (idempotent)."""
        with self._lock:
            server, thread = self._uvicorn, self._thread
            self._uvicorn = self._thread = None
        if server is not None:
            server.should_exit = True
            server.force_exit = True  # do not wait for WebSocket clients to leave
        if thread is not None:
            thread.join(timeout=10)
        self.loop = None


@dataclass(frozen=True)
class _Limits:
    max_depth: int
    max_aliases: int
    max_query_bytes: int
    max_tokens: int
    max_subscriptions: int
    max_body_bytes: int


class _AnsweredErrors(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Where ariadne logs each error it answers: at DEBUG, one line, no traceback.

    Those are the client's mistakes and refusals (a bad field, a wrong token); a failure
    of the server itself is logged by ``format_error`` on ``onto.graphql``.
    """

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("exc_info", None)
        self.debug("answered with an error: %s", str(msg).splitlines()[0], **kwargs)


def _context(request: Any, data: Any) -> dict[str, Any]:
    """A request's context: who it is from (the bearer token, checked by the resolvers)."""
    token = request.scope.get(TOKEN_SCOPE_KEY)
    if token is None:
        token = bearer_token(request.headers.get("authorization"))
    return {"request": request, "token": token}


def format_error(error: GraphQLError, debug: bool = False) -> dict[str, Any]:
    """A GraphQL error as the client sees it: never a traceback, nor an unexpected
    exception's text (that goes to the server log)."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = unwrap_graphql_error(error)
    if error.path is not None and original is not None and not isinstance(original, GraphQLError):
        log.error("resolving %s failed", ".".join(map(str, error.path)), exc_info=original)
        formatted["message"] = _INTERNAL
        formatted["extensions"] = {"code": "INTERNAL_SERVER_ERROR", "status": 500}
    return formatted


class _HTTPHandler(GraphQLHTTPHandler):
    """ariadne's HTTP handler answering its refusals as GraphQL JSON, not plain text."""

    async def graphql_http_server(self, request: Request) -> Response:
        try:
            data = await self.extract_data_from_request(request)
        except HttpError as error:
            return _errors(400, error.message or "the request is not a GraphQL request")
        if not isinstance(data, dict):
            return _errors(
                400, "the body must be one JSON object {query, variables, operationName}"
            )
        success, result = await self.execute_graphql_query(request, data)
        return await self.create_json_response(request, result, success)

    def handle_not_allowed_method(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=200, headers={"Allow": "GET, HEAD, OPTIONS, POST"})
        message = (
            f"{request.method} is not allowed here; send queries and mutations with POST "
            "(application/json), or queries with GET ?query=..."
        )
        return _errors(405, message, {"Allow": "GET, HEAD, OPTIONS, POST"})


def _not_a_query(data: dict[str, Any]) -> bool:
    """Whether the GET request ``data`` would run a mutation or a subscription."""
    try:
        document = parse(data["query"], max_tokens=10_000)
        return get_operation_type(document, data.get("operationName")) is not OperationType.QUERY
    except (GraphQLError, KeyError, TypeError):
        return False  # ariadne answers what is wrong with it


def _errors(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status, headers=headers)


class _GraphiQLPage(Explorer):
    """GraphiQL from local files (``/graphiql/...``), never from a CDN."""

    def __init__(self, path: str, folder: Path) -> None:
        self.path = path
        self.folder = folder

    def html(self, request: Any) -> str:
        return _GRAPHIQL_HTML.replace("{{path}}", json.dumps(self.path))


_GRAPHIQL_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>onto GraphQL</title>
<style>body { margin: 0; height: 100vh; } #graphiql { height: 100vh; }</style>
<link rel="stylesheet" href="/graphiql/graphiql.min.css">
<script src="/graphiql/react.production.min.js"></script>
<script src="/graphiql/react-dom.production.min.js"></script>
<script src="/graphiql/graphql-ws.min.js"></script>
<script src="/graphiql/graphiql.min.js"></script>
</head>
<body>
<div id="graphiql">Loading GraphiQL... (if this stays, its assets are not installed:
run <code>npm ci</code> in onto_graphql/graphiql, see docs/graphql.md)</div>
<script>
  const path = {{path}};
  const http = new URL(path, window.location.href).href;
  const ws = http.replace(/^http/, "ws");
  // Subscriptions send the Authorization header set in GraphiQL's Headers tab as the token.
  function token() {
    try {
      const headers = JSON.parse(localStorage.getItem("graphiql:headers") || "{}");
      const value = headers.Authorization || headers.authorization || "";
      return value.replace(/^Bearer\\s+/i, "") || undefined;
    } catch (error) { return undefined; }
  }
  const fetcher = GraphiQL.createFetcher({
    url: http,
    wsClient: graphqlWs.createClient({ url: ws, connectionParams: () => ({ token: token() }) }),
  });
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true })
  );
</script>
</body>
</html>
"""


class _OntoGraphQLApp:
    """The ASGI app: Host/Origin check, routing, body limits, then ariadne."""

    def __init__(
        self,
        graphql: GraphQL,
        policy: OriginPolicy,
        path: str,
        limits: _Limits,
        assets: Path | None,
    ) -> None:
        self.graphql = graphql
        self.policy = policy
        self.path = path
        self.limits = limits
        self.assets = assets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        environ = {f"HTTP_{n.upper()}": headers[n] for n in ("host", "origin") if n in headers}
        refusal = self.policy.refusal(environ)
        path = scope.get("path", "")
        if kind == "websocket":
            if refusal is not None or path.rstrip("/") != self.path:
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.graphql(scope, receive, send)
            return
        if refusal is not None:
            await _errors(403, refusal)(scope, receive, send)
            return
        if path.rstrip("/") == self.path:
            await self._graphql_http(scope, receive, send, headers)
        elif path.startswith("/graphiql/") and self.assets is not None:
            await self._asset(path.removeprefix("/graphiql/"))(scope, receive, send)
        else:
            await _errors(404, f"nothing at {path[:200]}; GraphQL is at {self.path}")(
                scope, receive, send
            )

    async def _graphql_http(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]
    ) -> None:
        method = scope["method"]
        if method == "POST":
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                message = (
                    "send GraphQL requests as Content-Type: application/json "
                    f"(got {media or 'no Content-Type'})"
                )
                await _errors(415, message)(scope, receive, send)
                return
        limit = self.limits.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _errors(413, f"the body is larger than the {limit} bytes accepted")(
                scope, receive, send
            )
            return
        body = bytearray()
        more = True
        while more:
            part = await receive()
            if part["type"] == "http.disconnect":
                return
            body += part.get("body", b"")
            if len(body) > limit:
                await _errors(413, f"the body is larger than the {limit} bytes accepted")(
                    scope, receive, send
                )
                return
            more = part.get("more_body", False)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return dict(await receive())

        if method == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.graphql(scope, replay, send)

    def _asset(self, name: str) -> Response:
        relative = GRAPHIQL_ASSETS.get(name)
        if relative is None or self.assets is None:
            return _errors(404, f"no GraphiQL asset {name[:100]!r}")
        path = self.assets / relative
        if not path.is_file():
            return _errors(
                404,
                f"the GraphiQL assets are not installed: run `npm ci` in {self.assets.parent}",
            )
        media = "text/css" if name.endswith(".css") else "text/javascript"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "max-age=3600"})


_servers: dict[tuple[str, int], GraphQLServer] = {}
_servers_lock = threading.Lock()


def get_server(host: str, port: int) -> GraphQLServer:
    """The GraphQL server for ``host``:``port``, created on first use."""
    with _servers_lock:
        server = _servers.get((host, port))
        if server is None:
            server = _servers[(host, port)] = GraphQLServer(host, port)
        return server


def all_servers() -> list[GraphQLServer]:
    with _servers_lock:
        return list(_servers.values())


def running_servers() -> list[GraphQLServer]:
    """The servers listening now (their ``port`` is the real one, even when 0 was asked)."""
    return [s for s in all_servers() if s.running]


def start_claimed() -> None:
    """Start every server some component claimed (the ``runtime_started`` hook)."""
    for server in all_servers():
        if server.claimed_by:
            server.start()


def reset_servers() -> None:
    """Stop and forget every server (the ``runtime_stopped`` hook, and tests)."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()
