"""The ``jsonrpc`` source: JSON-RPC 2.0 calls on view models, answered through a pipeline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, has_request_context, jsonify, request
from flask_jsonrpc import JSONRPC
from pydantic import Field, field_validator

from onto_core.builtin.api import RequestSource
from onto_core.protocols import RuntimeContext
from onto_core.tracing import carried
from onto_jsonrpc._errors import ErrorCode, answer_result, rpc_error
from onto_jsonrpc._methods import ViewMethod, view_methods
from onto_jsonrpc._site import INVOKE, ViewMethodSite
from onto_web import Authenticator, AuthError, WebEndpointConfig, bearer_token, get_server

__all__ = ["JsonRpcSource"]

log = logging.getLogger("onto.jsonrpc")


class JsonRpcSource(RequestSource):
    """Serves view models as JSON-RPC 2.0 methods: get, list and each action, typed.

    Each view gets ``<view_name>.get(key)``, ``<view_name>.list(filters, limit)`` and
    ``<view_name>.<action>(key, ...)`` with the action's own typed parameters, on one
    endpoint (``path``) of the web server shared with every web component configured on
    the same host and port. A call is checked (bearer token, parameter types, who may
    touch the view) and then becomes an API request through the pipeline; its answer is
    the call's result, or an error with a code from ``ErrorCode``. Batches and
    notifications work as JSON-RPC 2.0 says. With ``browse`` on, flask-jsonrpc's browsable
    API page describes every method at ``<path>/browse``.
    """

    class Config(WebEndpointConfig):
        views: list[str] = Field(
            min_length=1,
            description="View models served, as 'module:Class'; each gets its own methods.",
        )
        path: str = Field("/api", description="URL path of the JSON-RPC endpoint.")
        browse: bool = Field(
            True, description="Serve the browsable API page (method list, try-it form)."
        )
        timeout: float = Field(
            30.0, gt=0, description="Seconds a call waits for the pipeline's answer."
        )
        max_batch: int = Field(
            100,
            ge=1,
            description="Most calls one batch may hold; a larger batch is one -32600 error.",
        )

        @field_validator("views")
        @classmethod
        def _views_servable(cls, views: list[str]) -> list[str]:
            named: dict[str, str] = {}
            for ref in views:
                # Raises ValueError saying why the view cannot be served.
                name = view_methods(ref)[0].view.view_name
                if name in named:
                    raise ValueError(
                        f"views {named[name]!r} and {ref!r} are both named {name!r}, so "
                        "their methods would clash; serve them on different paths"
                    )
                named[name] = ref
            return views

        @field_validator("path")
        @classmethod
        def _path_shape(cls, path: str) -> str:
            if not path.startswith("/") or path == "/" or path.endswith("/"):
                raise ValueError(
                    f"path must start with '/' and not end with one, like '/api'; got {path!r}"
                )
            if any(c in path for c in "<>?#% "):
                raise ValueError(f"path must be a plain URL path, like '/api'; got {path!r}")
            return path

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.auth = Authenticator(config.auth)
        self.methods: dict[str, ViewMethod] = {
            method.name: method for ref in config.views for method in view_methods(ref)
        }
        self._closed = False

    async def start(self, ctx: RuntimeContext) -> None:
        await super().start(ctx)
        server = get_server(self.config.host, self.config.port)
        endpoints: dict[str, str] = server.shared("onto-jsonrpc-paths", dict)
        if self.config.path in endpoints:
            raise ValueError(
                f"{endpoints[self.config.path]} already serves JSON-RPC at "
                f"{self.config.host}:{self.config.port}{self.config.path}; give one of them a "
                "different path"
            )
        endpoints[self.config.path] = f"pipeline {ctx.pipeline!r}"
        app = server.claim(ctx.component, self.config)
        jsonrpc = JSONRPC(
            app,
            self.config.path,
            jsonrpc_site=ViewMethodSite,
            enable_web_browsable_api=self.config.browse,
        )
        site = jsonrpc.get_jsonrpc_site()
        assert isinstance(site, ViewMethodSite)
        site.name = "onto"
        site.max_batch = self.config.max_batch
        # rpc.describe shows the site's docstring as the service's description.
        site.__doc__ = "View models served by onto: " + ", ".join(
            dict.fromkeys(m.view.view_name for m in self.methods.values())
        )
        for method in self.methods.values():
            invoke = self._invoker(method)
            function = method.function(invoke)
            setattr(function, INVOKE, invoke)
            jsonrpc.register(
                function,
                name=method.name,
                validate=False,  # ViewMethodSite checks the parameters (see there)
                notification=True,
                annotation=method.annotation(),
            )
        app.before_request(self._refuse_oversized(app))
        # The port may be 0 until the server listens, which logs its address itself.
        ctx.log.info("JSON-RPC methods at %s: %s", self.config.path, ", ".join(self.methods))

    async def close(self) -> None:
        self._closed = True
        await super().close()

    def _invoker(self, method: ViewMethod) -> Callable[[Any], Any]:
        def invoke(params: Any) -> Any:
            return self.call(method, params, self._request_principal)

        return invoke

    def _request_principal(self) -> str | None:
        """The principal of the HTTP request being answered, its token checked once.

        Every call of a batch carries the same token, so a refused token costs one check
        per request, not one per call, and the same -32001 answers each call.
        """
        verdicts: dict[int, str | AuthError | None] = g.setdefault("onto_jsonrpc_auth", {})
        if id(self) not in verdicts:
            try:
                verdicts[id(self)] = self.auth.principal(
                    bearer_token(request.headers.get("Authorization"))
                )
            except AuthError as exc:
                verdicts[id(self)] = exc
        verdict = verdicts[id(self)]
        if isinstance(verdict, AuthError):
            raise verdict
        return verdict

    def call(self, method: ViewMethod, params: Any, principal_of: Callable[[], str | None]) -> Any:
        """Run one call of ``method`` with ``params`` (array or object); its result.

        Checks, in this order: the caller's token, through ``principal_of`` (which raises
        ``AuthError``; -32001), the parameters (-32602), whether the caller may touch the
        view (-32003); then sends the API request through the pipeline and waits up to
        ``timeout`` for its answer. Raises flask-jsonrpc's ``JSONRPCError`` with a code
        from ``ErrorCode`` on failure.
        """
        try:
            principal = principal_of()
        except AuthError as exc:
            raise rpc_error(exc.status, exc.message) from None
        arguments = method.arguments(params)
        key = arguments.get("key") if method.operation != "list" else None
        try:
            self.auth.check(principal, method.view, key, method.operation)
        except AuthError as exc:
            raise rpc_error(exc.status, exc.message) from None
        if self._closed:
            raise rpc_error(503, "the JSON-RPC endpoint is shutting down")
        try:
            # The HTTP request's W3C traceparent header, if any: the call continues its trace.
            trace = carried(request.headers) if has_request_context() else None
            answer = self.submit(method.request(arguments), self.config.timeout, trace)
        except TimeoutError:
            raise rpc_error(
                504, f"{method.name}: no answer from the pipeline within {self.config.timeout}s"
            ) from None
        except Exception as exc:  # the pipeline nacked the request with this error
            log.error("%s: the pipeline could not answer: %s", method.name, exc)
            raise rpc_error(
                502, f"{method.name}: the pipeline could not answer; the server log says why"
            ) from None
        return answer_result(answer)

    def _refuse_oversized(self, app: Flask) -> Callable[[], Response | None]:
        path = self.config.path

        def refuse() -> Response | None:
            # Werkzeug would answer an HTML 413 page; a JSON-RPC client can read this.
            limit = app.config.get("MAX_CONTENT_LENGTH")
            if request.path != path or limit is None:
                return None
            declared = request.content_length
            if declared is not None:
                if declared <= limit:
                    return None
            # A chunked body has no declared length, and Werkzeug silently cuts it at the
            # limit: a body that reaches the limit was (most likely) cut. The read is
            # cached, so flask-jsonrpc reads the same bytes afterwards.
            elif len(request.get_data(cache=True)) < limit:
                return None
            # Shaped like flask-jsonrpc's own invalid-request errors.
            error = {
                "code": int(ErrorCode.INVALID_REQUEST),
                "message": "Invalid Request",
                "data": {"message": f"the request body is too large (limit: {limit} bytes)"},
            }
            response = jsonify({"jsonrpc": "2.0", "id": None, "error": error})
            response.status_code = 413
            return response

        return refuse
