"""The error codes JSON-RPC callers receive, and how an API answer becomes a result or one.

The JSON-RPC 2.0 codes (-32700 to -32603) mean what the specification says. The others
are this transport's, taken from the range the specification leaves to implementations
(-32000 to -32099); their last digits echo the HTTP status of the same outcome, so
-32004 is "not found" and -32053 "unavailable".
"""

from __future__ import annotations

import enum
from typing import Any, NoReturn

from flask_jsonrpc.exceptions import InternalError, InvalidParamsError, JSONRPCError, ServerError

__all__ = ["ErrorCode", "answer_result", "rpc_error"]


class ErrorCode(enum.IntEnum):
    """Every ``error.code`` a call to a view method can receive."""

    PARSE_ERROR = -32700
    """The body is not JSON (or not sent as ``Content-Type: application/json``)."""
    INVALID_REQUEST = -32600
    """The body is JSON but not a request object (or an empty batch, or too large)."""
    METHOD_NOT_FOUND = -32601
    """No method of that name: the view or action is not served here."""
    INVALID_PARAMS = -32602
    """A parameter is missing, unknown or of the wrong type, or the action refused it;
    ``error.data.field`` names it when one parameter is at fault."""
    INTERNAL_ERROR = -32603
    """The request failed unexpectedly on the server (the server log has the details)."""
    SERVER_ERROR = -32000
    """The pipeline could not answer the request (the server log has the details)."""
    UNAUTHENTICATED = -32001
    """No bearer token, or one the endpoint does not accept."""
    FORBIDDEN = -32003
    """The caller may not read, list or act on that view."""
    NOT_FOUND = -32004
    """No view has that key."""
    CONFLICT = -32009
    """The action kept losing a race with concurrent writes; calling again may succeed."""
    UNAVAILABLE = -32053
    """The datastore is unavailable, or the endpoint is shutting down."""
    TIMEOUT = -32054
    """The pipeline did not answer within the endpoint's ``timeout``."""


# The HTTP status an API answer carries -> the code a caller sees, and the HTTP status of
# a single (non-batch) call's response, which mirrors it so HTTP-level monitoring sees
# failures too. A batch's response is always 200: each entry carries its own error.
_BY_STATUS: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID_PARAMS,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
    422: ErrorCode.INVALID_PARAMS,  # valid arguments an action's rule refused
    500: ErrorCode.INTERNAL_ERROR,
    503: ErrorCode.UNAVAILABLE,
    504: ErrorCode.TIMEOUT,
}


def rpc_error(status: int, message: str, field: str | None = None) -> JSONRPCError:
    """The JSON-RPC error for an outcome of HTTP-like ``status``, carrying ``message``.

    ``error.data`` is ``{"field": field}`` when a field is at fault and ``null``
    otherwise: an error never carries view data.
    """
    code = _BY_STATUS.get(status, ErrorCode.SERVER_ERROR)
    data = {"field": field} if field is not None else None
    if code is ErrorCode.INVALID_PARAMS:
        return InvalidParamsError(message=message, data=data, status_code=status)
    if code is ErrorCode.INTERNAL_ERROR:
        return InternalError(message=message, data=data, status_code=500)
    if code is ErrorCode.SERVER_ERROR:
        return ServerError(message=message, data=data, status_code=500)
    return JSONRPCError(message=message, code=int(code), data=data, status_code=status)


def answer_result(answer: Any) -> Any:
    """The result of a call whose API answer is ``answer``; raises its error otherwise."""
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), int):
        _malformed(answer)
    status = answer["status"]
    body = answer.get("body")
    if status == 200:
        return body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        field = body.get("field")
        raise rpc_error(status, body["error"], field if isinstance(field, str) else None)
    raise rpc_error(status, f"the request failed with status {status}")


def _malformed(answer: Any) -> NoReturn:
    # A pipeline whose processors replace the api processor's answer shape is a
    # configuration mistake; say so instead of passing an arbitrary value on as a result.
    raise rpc_error(
        500,
        "the pipeline answered without a status: is its processor the 'api' processor?",
    )
