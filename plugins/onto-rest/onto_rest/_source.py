"""The ``rest`` source: view models over HTTP, each request answered by the pipeline."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, Literal

from flask import Response, jsonify, request
from pydantic import Field, field_validator
from werkzeug.exceptions import RequestEntityTooLarge

from onto_core.builtin.api import RequestSource
from onto_core.builtin.view import load_view, load_views
from onto_core.models.view import ViewModel
from onto_core.protocols import RuntimeContext
from onto_core.tracing import carried
from onto_rest._endpoint import RestEndpoint, field_alias
from onto_rest._site import OPENAPI_PATH, SWAGGER_PATH, error_response, rest_site
from onto_web import Authenticator, AuthError, WebEndpointConfig, bearer_token, get_server

__all__ = ["RestSource"]

log = logging.getLogger("onto.rest")

_Operation = Literal["read", "list", "action"]
_EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
_JSON_TYPES = ("application/json",)


class _Refusal(Exception):
    """A request answered with an error before it reaches the pipeline."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}


def _normalized_prefix(prefix: str) -> str:
    stripped = prefix.strip().strip("/")
    if not stripped:
        return ""
    for segment in stripped.split("/"):
        if not segment or not all(c.isalnum() or c in "-._~" for c in segment):
            raise ValueError(
                f"prefix {prefix!r}: use path segments of letters, digits, '-', '.', '_' "
                "and '~' separated by single slashes, e.g. '/api/v1'"
            )
    normalized = f"/{stripped}"
    if normalized in (OPENAPI_PATH, SWAGGER_PATH):
        raise ValueError(f"prefix {prefix!r} is where the API docs are served; choose another")
    return normalized


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class RestSource(RequestSource):
    """Serves view models over HTTP: read, list, PATCH and actions, answered by the pipeline.

    Each request becomes an API request message (see ``onto_core.builtin.api``); the
    pipeline's ``api`` processor answers it and the ``reply`` sink hands the answer back,
    which the caller receives as JSON with the answer's status. Routes, per view::

        GET   {prefix}/{view}                  list; query: camelCase field filters, limit
        GET   {prefix}/{view}/{key}            read (key parts as path segments)
        PATCH {prefix}/{view}/{key}            run the view's update action
        POST  {prefix}/{view}/{key}/{action}   run an action; body: its arguments

    Authentication (``auth``) is checked before a request enters the pipeline; a refused
    request gets 401 or 403 and no view data. ``/openapi.json`` and ``/apidocs`` describe
    every REST route on the server.
    """

    class Config(WebEndpointConfig):
        """Settings of a ``rest`` source: the web endpoint's, and which views it serves."""

        views: list[str] = Field(
            min_length=1,
            description="View models to serve, each as 'package.module:Class'.",
        )
        prefix: str = Field("", description="URL path before every view route, e.g. '/api'.")
        timeout: float = Field(
            30.0, gt=0, description="Seconds to wait for the pipeline's answer before a 504."
        )
        openapi: bool = Field(
            True, description="List these routes in /openapi.json and the /apidocs page."
        )

        @field_validator("views")
        @classmethod
        def _loadable(cls, refs: list[str]) -> list[str]:
            load_views(refs, "serve them under different prefixes")
            return refs

        @field_validator("prefix")
        @classmethod
        def _prefix(cls, prefix: str) -> str:
            return _normalized_prefix(prefix)

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.views: dict[str, tuple[str, type[ViewModel]]] = {}
        for ref in config.views:
            view = load_view(ref)
            self.views[view.view_name] = (ref, view)
        self.authenticator = Authenticator(config.auth)

    async def start(self, ctx: RuntimeContext) -> None:
        """Add this component's routes to the shared server (which starts later)."""
        await super().start(ctx)
        server = get_server(self.config.host, self.config.port)
        app = server.claim(ctx.component, self.config)
        endpoint = RestEndpoint(
            component=ctx.component,
            prefix=self.config.prefix,
            views=tuple(view for _, view in self.views.values()),
            secured=not self.authenticator.open,
            in_openapi=self.config.openapi,
        )
        rest_site(server).add(endpoint)
        for name, (_, view) in self.views.items():
            base = endpoint.base(view)
            # Every method reaches the handlers, which know what each path accepts: a
            # method it does not is 405 with that path's own Allow, OPTIONS lists exactly it.
            app.add_url_rule(
                base,
                f"onto_rest:{base}:list",
                self._guarded(self._list),
                methods=_EVERY_METHOD,
                defaults={"view_name": name},
                provide_automatic_options=False,
            )
            app.add_url_rule(
                f"{base}/<path:rest>",
                f"onto_rest:{base}:item",
                self._guarded(self._item),
                methods=_EVERY_METHOD,
                defaults={"view_name": name},
                provide_automatic_options=False,
            )

    # --- handlers ----------------------------------------------------------------------

    def _guarded(self, handler: Callable[..., Response]) -> Callable[..., Response]:
        """``handler`` answering its refusals (and auth's) as JSON errors."""

        @functools.wraps(handler)
        def guarded(**kwargs: Any) -> Response:
            try:
                return handler(**kwargs)
            except _Answer as answer:
                return answer.response
            except _Refusal as refusal:
                return error_response(
                    refusal.status, refusal.message, refusal.field, refusal.headers
                )
            except AuthError as exc:
                headers = {}
                if exc.status == 401:
                    sent = bearer_token(request.headers.get("Authorization")) is not None
                    # RFC 6750: name the error only when a token was presented.
                    headers["WWW-Authenticate"] = (
                        'Bearer error="invalid_token"' if sent else "Bearer"
                    )
                return error_response(exc.status, exc.message, headers=headers)

        return guarded

    def _list(self, view_name: str) -> Response:
        ref, view = self.views[view_name]
        _methods(view_name, "GET, HEAD, OPTIONS")
        self._authorize(view, None, "list")
        filters: dict[str, str] = {}
        limit: int | None = None
        for name in request.args:
            values = request.args.getlist(name)
            if len(values) > 1:
                message = f"query parameter {name!r} is given {len(values)} times; give it once"
                raise _Refusal(400, message, name)
            if name == "limit":
                limit = _positive_int(values[0], "limit")
            else:
                filters[name] = values[0]
        return self._ask({"op": "list", "view": ref, "filters": filters, "limit": limit})

    def _item(self, view_name: str, rest: str) -> Response:
        ref, view = self.views[view_name]
        parts = rest.split("/")
        size = len(view.key_fields)
        method = "GET" if request.method == "HEAD" else request.method
        if len(parts) not in (size, size + 1) or not all(parts):
            template = "/".join(f"{{{field_alias(view, f)}}}" for f in view.key_fields)
            raise _Refusal(
                404,
                f"{view_name} {rest!r} is not a key: {view_name} keys have {size} part(s), "
                f"{template}",
            )
        if len(parts) == size:
            return self._on_key(ref, view, rest, method)
        key, action = "/".join(parts[:-1]), parts[-1]
        if action not in view.actions:
            known = ", ".join(sorted(view.actions)) or "none"
            raise _Refusal(404, f"{view_name} has no action {action!r}; actions: {known}", "action")
        _methods(f"{view_name}.{action}", "OPTIONS, POST")
        self._authorize(view, key, "action")
        return self._ask(
            {"op": "action", "view": ref, "key": key, "action": action, "arguments": self._body()}
        )

    def _on_key(self, ref: str, view: type[ViewModel], key: str, method: str) -> Response:
        allowed = "GET, HEAD, OPTIONS, PATCH" if "update" in view.actions else "GET, HEAD, OPTIONS"
        if method == "OPTIONS":
            return _options(allowed)
        if method == "GET":
            self._authorize(view, key, "read")
            return self._ask({"op": "read", "view": ref, "key": key})
        if method == "PATCH" and "update" in view.actions:
            self._authorize(view, key, "action")
            return self._ask(
                {
                    "op": "action",
                    "view": ref,
                    "key": key,
                    "action": "update",
                    "arguments": self._body(),
                }
            )
        if method == "PATCH":
            known = ", ".join(sorted(view.actions)) or "none"
            message = (
                f"{view.view_name} has no update action, so it cannot be PATCHed; "
                f"run one of its actions with POST instead (actions: {known})"
            )
        elif method == "POST":
            message = f"{method} on a {view.view_name} needs an action: POST .../{key}/<action>"
        else:
            message = f"{method} is not allowed on a {view.view_name}; it accepts {allowed}"
        raise _Refusal(405, message, headers={"Allow": allowed})

    # --- the pieces ---------------------------------------------------------------------

    def _authorize(self, view: type[ViewModel], key: str | None, operation: _Operation) -> None:
        """Raise ``AuthError`` (401, 403) unless the caller may do ``operation``."""
        principal = self.authenticator.principal(bearer_token(request.headers.get("Authorization")))
        self.authenticator.check(principal, view, key, operation)

    def _body(self) -> dict[str, Any]:
        """The request body as a JSON object; an empty body is ``{}``.

        Only a JSON ``Content-Type`` is read (415 otherwise): a cross-site form or
        ``text/plain`` request cannot pass for a JSON one. A request without a body may
        leave the header out.
        """
        content_type = request.mimetype
        has_body = request.content_length or request.headers.get("Transfer-Encoding")
        is_json = content_type in _JSON_TYPES or content_type.endswith("+json")
        if (content_type or has_body) and not is_json:
            sent = content_type or "no Content-Type"
            raise _Refusal(
                415,
                "the request body must be JSON, sent as Content-Type: application/json "
                f"(got {sent})",
                headers={"Accept-Patch": "application/json"} if request.method == "PATCH" else None,
            )
        limit = self.config.max_body_bytes
        # This component's limit, even where another component on the server set a lower
        # one. One byte more, because a chunked body is cut at the limit without an error:
        # reading limit + 1 bytes is how a body over the limit shows.
        request.max_content_length = limit + 1
        try:
            raw = request.get_data(cache=False)
        except RequestEntityTooLarge:
            raw = None
        if raw is None or len(raw) > limit:
            raise _Refusal(
                413, f"the request body is larger than the {limit} bytes this endpoint accepts"
            )
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw, parse_constant=_no_constants)
        except RecursionError:
            raise _Refusal(400, "the request body is nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
            raise _Refusal(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            kind = {list: "an array", str: "a string", bool: "a boolean"}.get(
                type(value), "a number" if isinstance(value, int | float) else "null"
            )
            raise _Refusal(400, f"the request body must be a JSON object of arguments, not {kind}")
        return value

    def _ask(self, api_request: dict[str, Any]) -> Response:
        """Send ``api_request`` through the pipeline and reply with its answer."""
        timeout = self.config.timeout
        try:
            # The caller's W3C traceparent header, if any: the request continues its trace.
            answer = self.submit(api_request, timeout, carried(request.headers))
        except TimeoutError:
            raise _Refusal(
                504,
                f"no answer within {timeout:g}s (the 'timeout' setting); is the pipeline "
                "overloaded, or does it not end with the api processor and reply sink?",
            ) from None
        except RuntimeError as exc:  # not started, or already stopped
            raise _Refusal(503, f"the REST source is not running: {exc}") from None
        except Exception:
            log.exception("the pipeline failed a %s request", api_request.get("op"))
            message = "the pipeline failed this request; the server log has why"
            raise _Refusal(500, message) from None
        if not (isinstance(answer, dict) and isinstance(answer.get("status"), int)):
            log.error("the pipeline answered with %r, not {status, body}", answer)
            raise _Refusal(
                500, "the pipeline's answer has no status; does it use the api processor?"
            )
        response = jsonify(answer.get("body"))
        response.status_code = answer["status"]
        return response


def _methods(what: str, allowed: str) -> None:
    """Answer OPTIONS with ``allowed``, refuse any other method not in it with 405."""
    method = request.method
    if method == "OPTIONS":
        raise _Answer(_options(allowed))
    if method not in {m.strip() for m in allowed.split(",")}:
        message = f"{method} is not allowed on {what}; it accepts {allowed}"
        raise _Refusal(405, message, headers={"Allow": allowed})


def _options(allowed: str) -> Response:
    response = Response(status=200)
    response.headers["Allow"] = allowed
    return response


class _Answer(Exception):
    """A reply ready before the request reaches the pipeline (an OPTIONS answer)."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


def _positive_int(raw: str, name: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise _Refusal(400, f"{name} must be a positive integer, got {raw!r}", name)
    return value
