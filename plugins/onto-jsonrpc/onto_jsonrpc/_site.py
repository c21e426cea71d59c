"""flask-jsonrpc's site with onto's checks: strict request objects, typed view methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_jsonrpc.exceptions import InvalidRequestError
from flask_jsonrpc.site import JSONRPCSite

__all__ = ["INVOKE", "ViewMethodSite"]

INVOKE = "onto_jsonrpc_invoke"
"""Attribute of a registered function holding ``invoke(params)``, which runs the call."""


class ViewMethodSite(JSONRPCSite):
    """A JSON-RPC site whose view methods check their own parameters.

    flask-jsonrpc checks parameter types with typeguard, which instruments a function's
    source code, so it cannot check the signatures built at run time from view models and
    their actions. For a function carrying ``INVOKE``, this site hands the call's raw
    ``params`` (array or object) to it, and that checks them against the method's
    pydantic model, raising flask-jsonrpc's ``InvalidParamsError`` naming the parameter.
    Functions registered the ordinary way (``rpc.describe``) are dispatched as usual.

    It also holds requests to JSON-RPC 2.0: ``"jsonrpc": "2.0"``, a string ``method``,
    ``params`` an array or object, ``id`` a string, number or null; anything else is an
    invalid request (-32600) saying which member is wrong.
    """

    def validate(self, req_json: Any) -> bool:
        if not isinstance(req_json, dict):
            raise InvalidRequestError(data={"message": "a request must be a JSON object"})
        if req_json.get("jsonrpc") != "2.0":
            raise InvalidRequestError(data={"message": "'jsonrpc' must be exactly \"2.0\""})
        if not isinstance(req_json.get("method"), str):
            raise InvalidRequestError(data={"message": "'method' must be a string"})
        if "params" in req_json and not isinstance(req_json["params"], list | dict):
            raise InvalidRequestError(data={"message": "'params' must be an array or an object"})
        request_id = req_json.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, str | int | float | None):
            raise InvalidRequestError(data={"message": "'id' must be a string, a number or null"})
        return True

    def handle_view_func(self, view_func: Callable[..., Any], params: Any) -> Any:
        invoke: Callable[[Any], Any] | None = getattr(view_func, INVOKE, None)
        if invoke is None:
            return super().handle_view_func(view_func, params)
        return invoke(params)
