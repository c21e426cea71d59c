"""A small synchronous client for LeanCloud's v1.1 REST API, over httpx.

``LeanCloudClient`` sends JSON to ``{server_url}/1.1/...`` with the app's credentials:
``X-LC-Id`` plus either a request signature (``X-LC-Sign: md5(timestamp + key),timestamp``
with ``,master`` appended when the master key signs; the default) or the key itself
(``X-LC-Key: key`` or ``key,master``). One pooled connection set per client; every
request has a timeout. The client is thread-safe (httpx's ``Client`` is).

LeanCloud answers errors with ``{"code": N, "error": "..."}``; the client raises them as
``LeanCloudError`` (a ``DatastoreError``), or a subclass for codes with a meaning onto
acts on: 101 ``LeanCloudNotFound`` (also a ``NotFoundError``), 305
``LeanCloudConflict`` (a conditional update or delete matched nothing: also a
``ConflictError``), 137 ``LeanCloudDuplicate`` (a unique field already holds the
value). Messages name the request (class and object id) and never hold a key: keys live
only in request headers, and neither ``repr`` nor errors nor logs show them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from onto_core.errors import ConflictError, DatastoreError, NotFoundError

__all__ = [
    "API_VERSION",
    "KNOWN_CODES",
    "LeanCloudClient",
    "LeanCloudConflict",
    "LeanCloudDuplicate",
    "LeanCloudError",
    "LeanCloudNotFound",
    "request_sign",
]

API_VERSION = "1.1"

KNOWN_CODES: dict[int, str] = {
    1: "LeanCloud had an internal error",
    101: "the object or class does not exist",
    105: "a field name is invalid (names start with a letter; letters, digits and _ only)",
    107: "the request body is not valid JSON",
    119: "the operation is not permitted with this key (it needs the master key)",
    137: "a unique field already holds this value",
    142: "a LeanEngine before-hook rejected the write",
    305: "the condition of a conditional update or delete matched nothing (a conflict)",
    401: "unauthorized: the app id, key or signature was not accepted",
}
"""What the error codes onto meets mean, for messages."""


class LeanCloudError(DatastoreError):
    """LeanCloud refused or failed a request.

    ``code`` is LeanCloud's error code (``-1`` when the answer was not a LeanCloud error
    body, e.g. a proxy's HTML page or a lost connection), ``error`` its message as sent,
    ``status`` the HTTP status (``None`` when no answer came).
    """

    def __init__(self, message: str, *, code: int, error: str, status: int | None) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.status = status


class LeanCloudNotFound(LeanCloudError, NotFoundError):
    """Code 101: the object (or class) does not exist."""


class LeanCloudConflict(LeanCloudError, ConflictError):
    """Code 305: a conditional update or delete's ``where`` matched nothing."""


class LeanCloudDuplicate(LeanCloudError):
    """Code 137: a field with a unique index already holds the value written."""


_ERROR_TYPES: dict[int, type[LeanCloudError]] = {
    101: LeanCloudNotFound,
    137: LeanCloudDuplicate,
    305: LeanCloudConflict,
}


def leancloud_error(what: str, code: int, error: str, status: int | None) -> LeanCloudError:
    """The ``LeanCloudError`` (or subclass) for LeanCloud's answer to request ``what``."""
    meaning = KNOWN_CODES.get(code)
    detail = f"code {code}: {error}" if error else f"code {code}"
    if meaning:
        text = f"LeanCloud refused {what}: {meaning} ({detail})"
    else:
        text = f"LeanCloud refused {what} ({detail})"
    if status is not None:
        text += f" [HTTP {status}]"
    return _ERROR_TYPES.get(code, LeanCloudError)(text, code=code, error=error, status=status)


def request_sign(key: str, master: bool, now_ms: int | None = None) -> str:
    """The ``X-LC-Sign`` header value: ``md5(timestamp + key),timestamp[,master]``."""
    stamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    digest = hashlib.md5((stamp + key).encode()).hexdigest()
    return f"{digest},{stamp},master" if master else f"{digest},{stamp}"


def _secret(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value() or None
    return value or None


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class LeanCloudClient:
    """Requests to one LeanCloud app's REST API (``{server_url}/1.1/...``).

    ``app_key`` or ``master_key`` (or both) is required. With ``use_master_key`` (the
    default when a master key is given) requests carry the master key, which LeanCloud
    needs for classes whose ACLs or class permissions keep the app key out. ``sign``
    (default) sends ``X-LC-Sign`` instead of the key itself.

    Methods raise ``LeanCloudError`` (see the module docstring) for every refusal, and
    ``LeanCloudError`` with code ``-1`` when the server cannot be reached or times out.
    """

    def __init__(
        self,
        server_url: str,
        app_id: str,
        app_key: SecretStr | str | None = None,
        master_key: SecretStr | str | None = None,
        *,
        use_master_key: bool | None = None,
        sign: bool = True,
        timeout: float = 15.0,
        max_connections: int = 20,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not server_url.startswith(("http://", "https://")):
            raise DatastoreError(
                f"LeanCloud server_url {server_url!r} must be an http:// or https:// URL"
            )
        if not app_id:
            raise DatastoreError("LeanCloud app_id is required")
        self._app_key = _secret(app_key)
        self._master_key = _secret(master_key)
        if self._app_key is None and self._master_key is None:
            raise DatastoreError(f"LeanCloud app {app_id!r}: set app_key or master_key (or both)")
        if use_master_key is None:
            use_master_key = self._master_key is not None
        if use_master_key and self._master_key is None:
            raise DatastoreError(f"LeanCloud app {app_id!r}: use_master_key needs master_key")
        self.server_url = server_url.rstrip("/")
        self.app_id = app_id
        self.use_master_key = use_master_key
        self.sign = sign
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=f"{self.server_url}/{API_VERSION}",
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"X-LC-Id": app_id, "Content-Type": "application/json; charset=utf-8"},
            transport=transport,
        )

    def __repr__(self) -> str:
        key = "master key" if self.use_master_key else "app key"
        how = "signed" if self.sign else "plain"
        return f"LeanCloudClient({self.server_url!r}, app_id={self.app_id!r}, {key}, {how})"

    def close(self) -> None:
        """Close the pooled connections (idempotent)."""
        self._http.close()

    def __enter__(self) -> LeanCloudClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -----------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        """The credential headers of one request (a fresh signature each call)."""
        master = self.use_master_key
        key = self._master_key if master else self._app_key
        assert key is not None  # checked in __init__
        if self.sign:
            return {"X-LC-Sign": request_sign(key, master)}
        return {"X-LC-Key": f"{key},master" if master else key}

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Send one request to ``/1.1{path}`` and return its decoded JSON answer.

        ``what`` names the request in errors (``"update of Ticket/5f1…"``). Dict and list
        values in ``params`` are sent as JSON (``where``). Raises ``LeanCloudError``.
        """
        query = {
            k: _dumps(v) if isinstance(v, dict | list) else v for k, v in (params or {}).items()
        }
        content = None if body is None else _dumps(body).encode()
        try:
            response = self._http.request(
                method, path, params=query, content=content, headers=self.auth_headers()
            )
        except httpx.TimeoutException as exc:
            raise LeanCloudError(
                f"{what}: no answer from LeanCloud at {self.server_url} within {self.timeout}s",
                code=-1,
                error=type(exc).__name__,
                status=None,
            ) from exc
        except httpx.HTTPError as exc:
            raise LeanCloudError(
                f"{what}: cannot reach LeanCloud at {self.server_url}: {exc}",
                code=-1,
                error=type(exc).__name__,
                status=None,
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "error" in answer and "code" in answer:
            raise leancloud_error(
                what, int(answer["code"]), str(answer["error"]), response.status_code
            )
        if response.status_code >= 400 or answer is None:
            raise leancloud_error(
                what, -1, response.text[:200] or response.reason_phrase, response.status_code
            )
        return answer

    # --- objects ------------------------------------------------------------------------

    @staticmethod
    def class_path(class_name: str, object_id: str | None = None) -> str:
        """``/classes/<class>[/<id>]``: the path of a class or object, without the version."""
        return f"/classes/{class_name}" + (f"/{object_id}" if object_id else "")

    def create(self, class_name: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object; returns ``{"objectId", "createdAt"}``."""
        answer: dict[str, Any] = self.request(
            "POST", self.class_path(class_name), body=dict(data), what=f"create in {class_name}"
        )
        return answer

    def get(
        self, class_name: str, object_id: str, keys: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """The object, or ``None`` when it does not exist."""
        params = {"keys": ",".join(keys)} if keys else None
        try:
            answer: dict[str, Any] = self.request(
                "GET",
                self.class_path(class_name, object_id),
                params=params,
                what=f"read of {class_name}/{object_id}",
            )
        except LeanCloudNotFound:
            return None
        return answer or None  # LeanCloud answers {} for a missing object id

    def update(
        self,
        class_name: str,
        object_id: str,
        data: Mapping[str, Any],
        where: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Update an object's fields (``__op`` operations allowed); returns ``{"updatedAt"}``.

        With ``where``, the update applies only if the object matches it, else
        ``LeanCloudConflict`` (code 305).
        """
        answer: dict[str, Any] = self.request(
            "PUT",
            self.class_path(class_name, object_id),
            params={"where": dict(where)} if where else None,
            body=dict(data),
            what=f"update of {class_name}/{object_id}",
        )
        return answer

    def delete(
        self, class_name: str, object_id: str, where: Mapping[str, Any] | None = None
    ) -> None:
        """Delete an object (a missing one is no error); ``where`` as in ``update``."""
        self.request(
            "DELETE",
            self.class_path(class_name, object_id),
            params={"where": dict(where)} if where else None,
            what=f"delete of {class_name}/{object_id}",
        )

    def query(
        self,
        class_name: str,
        where: Mapping[str, Any] | None = None,
        *,
        order: str | None = None,
        limit: int | None = None,
        skip: int | None = None,
        keys: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """One page of objects matching ``where`` (``limit`` at most 1000; default 100)."""
        params: dict[str, Any] = {}
        if where:
            params["where"] = dict(where)
        if order:
            params["order"] = order
        if limit is not None:
            params["limit"] = limit
        if skip:
            params["skip"] = skip
        if keys:
            params["keys"] = ",".join(keys)
        answer = self.request(
            "GET", self.class_path(class_name), params=params, what=f"query of {class_name}"
        )
        results: list[dict[str, Any]] = answer.get("results", [])
        return results

    def count(self, class_name: str, where: Mapping[str, Any] | None = None) -> int:
        """How many objects match ``where``."""
        params: dict[str, Any] = {"count": 1, "limit": 0}
        if where:
            params["where"] = dict(where)
        answer = self.request(
            "GET", self.class_path(class_name), params=params, what=f"count of {class_name}"
        )
        return int(answer.get("count", 0))

    def batch(self, requests: Sequence[Mapping[str, Any]], what: str = "batch") -> list[Any]:
        """Send ``requests`` (``{method, path, body}``; ``path`` without ``/1.1``) in one
        ``/1.1/batch`` call; returns one ``{"success": ...}`` or ``{"error": {code, error}}``
        per request, in order. Not atomic: each request succeeds or fails on its own."""
        body = {"requests": [{**r, "path": f"/{API_VERSION}{r['path']}"} for r in requests]}
        answer = self.request("POST", "/batch", body=body, what=what)
        if not isinstance(answer, list) or len(answer) != len(requests):
            raise LeanCloudError(
                f"{what}: LeanCloud answered a batch of {len(requests)} with {answer!r:.200}",
                code=-1,
                error="bad batch answer",
                status=None,
            )
        return answer

    def batch_error(self, what: str, item: Mapping[str, Any]) -> LeanCloudError:
        """The error of one failed item of a ``batch`` answer."""
        error = item.get("error") or {}
        return leancloud_error(what, int(error.get("code", -1)), str(error.get("error", "")), None)

    def run_function(self, name: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call cloud function ``name`` (``POST /1.1/functions/<name>``); returns its result."""
        answer = self.request(
            "POST", f"/functions/{name}", body=dict(params or {}), what=f"cloud function {name!r}"
        )
        return answer.get("result") if isinstance(answer, dict) else answer
