"""flask-jsonrpc's site held to JSON-RPC 2.0, with typed view methods and bounded logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import request
from flask_jsonrpc.exceptions import (
    InternalError,
    InvalidRequestError,
    JSONRPCError,
    MethodNotFoundError,
    ParseError,
)
from flask_jsonrpc.site import JSONRPCSite
from werkzeug.datastructures import Headers

__all__ = ["INVOKE", "MAX_DEPTH", "ViewMethodSite"]

INVOKE = "onto_jsonrpc_invoke"
"""Attribute of a registered function holding ``invoke(params)``, which runs the call."""

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects a body may have; deeper is a parse error."""

log = logging.getLogger("onto.jsonrpc")

# flask-jsonrpc's (body, HTTP status, headers).
Answer = tuple[Any, int, Headers | dict[str, str] | tuple[str] | list[tuple[str]]]
_NO_ANSWER: Answer = (None, 204, {})


class ViewMethodSite(JSONRPCSite):
    """A JSON-RPC site that follows JSON-RPC 2.0 and checks view methods' parameters.

    - A request object must have ``"jsonrpc": "2.0"``, a string ``method``, ``params``
      an array or object if present, and an ``id`` (if present) that is a string, an
      integer or null; anything else is answered -32600 with ``id: null``, and the
      answer's ``jsonrpc`` is always ``"2.0"``.
    - A valid request without ``id`` is a notification: it runs and is never answered,
      even when it fails, alone (HTTP 204, no body) or in a batch (left out; a batch of
      notifications only is HTTP 204, no body).
    - A body that is not JSON, or nested deeper than ``MAX_DEPTH``, is -32700; an empty
      batch or one of more than ``max_batch`` calls is one -32600.
    - No answer or log line echoes the body: errors name at most a clipped method name,
      and failed calls are logged as one bounded line, with a traceback only for
      failures of the server itself.

    flask-jsonrpc checks parameter types with typeguard, which instruments a function's
    source code, so it cannot check the signatures built at run time from view models and
    their actions. For a function carrying ``INVOKE``, this site hands the call's raw
    ``params`` (array or object) to it, and that checks them against the method's
    pydantic model, raising flask-jsonrpc's ``InvalidParamsError`` naming the parameter.
    Functions registered the ordinary way (``rpc.describe``) are dispatched as usual.
    """

    max_batch: int = 100
    """Most calls one batch may hold (set by the source from its config)."""

    @property
    def logger(self) -> logging.Logger:
        # flask-jsonrpc's own logging writes request bodies and a traceback per failed
        # call; the paths this site still inherits (rpc.describe) log nothing instead.
        quiet = logging.getLogger("onto.jsonrpc.flask_jsonrpc")
        quiet.disabled = True
        return quiet

    def dispatch_request(self) -> Answer:
        """The answer to the HTTP request: body, status and headers; never raises."""
        try:
            if not self.validate_request():
                raise ParseError(
                    data={
                        "message": f"the body must be sent as Content-Type: application/json, "
                        f"not {_clip(request.mimetype)}"
                    }
                )
            body = self.to_json(request.get_data(cache=True))
            if not isinstance(body, list):
                return self.handle_dispatch_except(body)
            if not body:
                raise InvalidRequestError(data={"message": "an empty batch"})
            if len(body) > self.max_batch:
                raise InvalidRequestError(
                    data={
                        "message": f"a batch may hold at most {self.max_batch} calls, "
                        f"this one holds {len(body)}"
                    }
                )
            return self.batch_dispatch(body)
        except JSONRPCError as exc:
            log.debug("refused a request: %s", type(exc).__name__)
            return _error(None, exc), exc.status_code, {}

    def to_json(self, request_data: bytes) -> Any:
        try:
            body = json.loads(request_data, parse_constant=_not_json)
        except RecursionError:
            raise ParseError(data={"message": _too_deep()}) from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN, huge ints
            raise ParseError(data={"message": f"invalid JSON: {_clip(str(exc))}"}) from None
        if _deeper_than(body, MAX_DEPTH):
            raise ParseError(data={"message": _too_deep()})
        return body

    def validate(self, req_json: Any) -> bool:
        if not isinstance(req_json, dict):
            raise InvalidRequestError(data={"message": "a request must be a JSON object"})
        if req_json.get("jsonrpc") != "2.0":
            raise InvalidRequestError(data={"message": "'jsonrpc' must be exactly \"2.0\""})
        if not isinstance(req_json.get("method"), str):
            raise InvalidRequestError(data={"message": "'method' must be a string"})
        if "params" in req_json and not isinstance(req_json["params"], list | dict):
            raise InvalidRequestError(data={"message": "'params' must be an array or an object"})
        if "id" in req_json and _request_id(req_json) is None and req_json["id"] is not None:
            raise InvalidRequestError(data={"message": "'id' must be a string, an integer or null"})
        return True

    def handle_dispatch_except(self, req_json: Any) -> Answer:
        """One request object's answer; ``(None, 204, {})`` for a notification."""
        try:
            self.validate(req_json)
        except JSONRPCError as exc:
            # Not a request object, so not a notification either: answered, id null.
            log.debug("refused an invalid request object: %s", _summary(exc))
            return _error(None, exc), exc.status_code, {}
        request_id = _request_id(req_json)
        notification = "id" not in req_json
        try:
            answer: Answer = self.dispatch(req_json)
            return _NO_ANSWER if notification else answer
        except JSONRPCError as exc:
            log.debug("%s (id %.40r) failed: %s", self._named(req_json), request_id, _summary(exc))
            failure = exc
        except Exception:
            log.exception("%s (id %.40r) failed on the server", self._named(req_json), request_id)
            failure = InternalError(
                message="the call failed on the server; the server log says why", data=None
            )
        if notification:
            return _NO_ANSWER
        return _error(request_id, failure), failure.status_code, {}

    def _named(self, req_json: dict[str, Any]) -> str:
        """The method's name for the log: only a served one, never a client's free text."""
        name: str = req_json["method"]
        return name if name in self.view_funcs else "an unknown method"

    def dispatch(self, req_json: dict[str, Any]) -> Answer:
        name: str = req_json["method"]
        view_func = self.view_funcs.get(name)
        if view_func is None:
            raise MethodNotFoundError(data={"message": f"Method not found: {_clip(name)}"})
        result = self.handle_view_func(view_func, req_json.get("params", {}))
        return self.make_response(req_json, result)

    def handle_view_func(self, view_func: Callable[..., Any], params: Any) -> Any:
        invoke: Callable[[Any], Any] | None = getattr(view_func, INVOKE, None)
        if invoke is None:
            return super().handle_view_func(view_func, params)
        return invoke(params)


def _request_id(req_json: dict[str, Any]) -> str | int | None:
    """The request's id if it is one JSON-RPC allows echoing: a string or an integer."""
    value = req_json.get("id")
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _error(request_id: str | int | None, exc: JSONRPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": exc.jsonrpc_format}


def _summary(exc: JSONRPCError) -> str:
    return f"{type(exc).__name__} ({exc.code})"


def _clip(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _too_deep() -> str:
    return f"the body is nested deeper than {MAX_DEPTH} arrays or objects"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects deeper than ``limit`` (without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
