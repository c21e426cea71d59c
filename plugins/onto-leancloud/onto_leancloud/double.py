"""``LeanCloudDouble``: a local test DOUBLE of the parts of LeanCloud's REST API onto uses.

No LeanCloud server can run outside LeanCloud, so tests (and anyone trying the plugin
offline) run this instead: a real HTTP server on 127.0.0.1 (threaded Werkzeug), holding
objects in memory. It is a double, not LeanCloud, and it does only this:

- ``/1.1/classes/<Class>``: ``POST`` creates, ``GET`` queries (``where`` with equality,
  ``$lt $lte $gt $gte $ne $in $nin $exists $regex $or $and``, dotted keys; ``order``
  with ``-`` for descending, comma-separated; ``limit`` (default 100, at most 1000);
  ``skip``; ``count=1``; ``keys``); ``/1.1/classes/<Class>/<id>``: ``GET``, ``PUT``,
  ``DELETE``. ``PUT``/``DELETE`` take ``?where=`` and answer error 305 when the object
  does not match. Objects carry ``objectId``, ``createdAt``, ``updatedAt``; typed values
  (``Date``, ``Pointer``, ``GeoPoint``, ``Bytes``, ``File``) are stored as given;
  ``__op`` ``Increment``/``Decrement``/``Delete``/``Add``/``AddUnique``/``Remove``/
  ``BitAnd``/``BitOr``/``BitXor`` apply as on LeanCloud. A class's fields keep the type
  of their first value (error 111 otherwise), and field names follow LeanCloud's rule
  (error 105). ``unique(cls, field)`` stands for a unique index (error 137).
- ``/1.1/batch``: ``{"requests": [{method, path, body}]}`` → one ``{"success": ...}`` or
  ``{"error": {code, error}}`` per request; not atomic, as on LeanCloud. A request's
  ``path`` may carry ``?where=`` (a conditional update or delete in a batch).
- Authentication: ``X-LC-Id`` plus ``X-LC-Key`` (``key`` or ``master,master``) or
  ``X-LC-Sign`` (``md5(timestamp+key),timestamp[,master]``); anything else is
  ``401 {"code": 401, "error": "Unauthorized."}``. ``master_only(cls)`` refuses the app
  key on a class (error 119), as class permissions do.
- LeanEngine: after ``hook(url, hook_key, classes=..., hooks=...)`` each write calls
  ``POST {url}/1.1/functions/<Class>/<hook>`` the way LeanCloud does (``X-LC-Id``,
  ``X-LC-Key``, ``X-LC-Hook-Key``; body ``{"object": {...}, "user": null}``):
  ``beforeSave``/``afterSave`` on create, ``beforeUpdate``/``afterUpdate`` on update
  (the object lists ``_updatedKeys``), ``beforeDelete``/``afterDelete`` on delete.
  Before-hooks run before the write; an error answer fails the write with code 142 and
  the hook's message; ``beforeSave``'s answer (the object) is what gets saved.
  After-hooks run after the write on one background thread, in order (LeanCloud calls
  them asynchronously too); their answers are recorded, never returned to the writer.
  The object sent to a before-hook holds ``__before``, to an after-hook ``__after``
  (signed markers); a write carrying a valid marker back, or ``__ignore_hooks``, skips
  those hooks, as LeanCloud does for writes made inside hooks.
  ``POST /1.1/functions/<name>`` and ``/1.1/call/<name>`` are forwarded to the app at
  ``url`` and its answer returned, as LeanCloud proxies cloud functions to LeanEngine.

Not done: users and sessions, ACL enforcement, files, relations, ``include``, live
queries, ``$select``/``$inQuery``, geo queries, ``cql``, the batch size limit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = ["HOOK_NAMES", "HookCall", "LeanCloudDouble"]

HOOK_NAMES = (
    "beforeSave",
    "afterSave",
    "beforeUpdate",
    "afterUpdate",
    "beforeDelete",
    "afterDelete",
)

_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CLASS_NAME = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_META = ("objectId", "createdAt", "updatedAt")
_FLAGS = ("__before", "__after", "__ignore_hooks")
_STATUS = {1: 500, 101: 404, 119: 403, 401: 401}


class _QuietHandler(WSGIRequestHandler):
    """Serves requests without a log line each (tests and benches make thousands)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Refused(Exception):
    """A LeanCloud error answer: ``{"code": code, "error": message}``."""

    def __init__(self, code: int, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or _STATUS.get(code, 400)


@dataclass(frozen=True)
class HookCall:
    """One LeanEngine hook request the double made, and the app's answer."""

    class_name: str
    hook: str
    body: dict[str, Any]
    status: int | None  # None: the app could not be reached
    answer: Any


@dataclass
class _Engine:
    url: str
    hook_key: str
    classes: frozenset[str] | None
    hooks: frozenset[str]


@dataclass
class _Class:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    unique: set[str] = field(default_factory=set)
    master_only: bool = False


def _now() -> str:
    stamp = dt.datetime.now(dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _type_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict) and isinstance(value.get("__type"), str):
        return str(value["__type"])
    return "Object"


def _comparable(value: Any) -> Any:
    """Typed values as what they compare by (a Date by its ISO time, a Pointer by id)."""
    if isinstance(value, dict):
        kind = value.get("__type")
        if kind == "Date":
            return value.get("iso")
        if kind == "Pointer":
            return (value.get("className"), value.get("objectId"))
    return value


_MISSING = object()


def _lookup(obj: dict[str, Any], key: str) -> Any:
    value: Any = obj
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _rank(value: Any) -> tuple[int, Any]:
    """A sort key across JSON kinds (MongoDB's order: null, numbers, strings, ...)."""
    value = _comparable(value)
    if value is _MISSING or value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (5, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, tuple):
        return (3, value)
    return (4, json.dumps(value, sort_keys=True))


def _compare(value: Any, op: str, operand: Any) -> bool:
    a, b = _comparable(value), _comparable(operand)
    numbers = isinstance(a, int | float) and not isinstance(a, bool)
    if numbers != (isinstance(b, int | float) and not isinstance(b, bool)):
        return False
    if not numbers and type(a) is not type(b):
        return False
    try:
        if op == "$lt":
            return bool(a < b)
        if op == "$lte":
            return bool(a <= b)
        if op == "$gt":
            return bool(a > b)
        return bool(a >= b)
    except TypeError:
        return False


def _equals(value: Any, operand: Any) -> bool:
    if isinstance(value, list) and not isinstance(operand, list):
        return any(_equals(v, operand) for v in value)  # an array matches any element
    a, b = _comparable(value), _comparable(operand)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def _matches(obj: dict[str, Any], where: dict[str, Any]) -> bool:
    for key, condition in where.items():
        if key == "$or":
            if not any(_matches(obj, sub) for sub in condition):
                return False
            continue
        if key == "$and":
            if not all(_matches(obj, sub) for sub in condition):
                return False
            continue
        value = _lookup(obj, key)
        if isinstance(condition, dict) and any(k.startswith("$") for k in condition):
            for op, operand in condition.items():
                if not _operator(value, op, operand, condition):
                    return False
        elif value is _MISSING or not _equals(value, condition):
            return False
    return True


def _operator(value: Any, op: str, operand: Any, condition: dict[str, Any]) -> bool:
    if op == "$exists":
        return (value is not _MISSING) == bool(operand)
    if op == "$options":
        return True
    if op == "$ne":
        return value is _MISSING or not _equals(value, operand)
    if op == "$nin":
        return value is _MISSING or not any(_equals(value, o) for o in operand)
    if value is _MISSING:
        return False
    if op in ("$lt", "$lte", "$gt", "$gte"):
        return _compare(value, op, operand)
    if op == "$in":
        return any(_equals(value, o) for o in operand)
    if op == "$regex":
        flags = re.IGNORECASE if "i" in str(condition.get("$options", "")) else 0
        return isinstance(value, str) and re.search(operand, value, flags) is not None
    if op == "$all":
        return isinstance(value, list) and all(_equals(value, o) for o in operand)
    raise _Refused(102, f"Invalid query operator {op}.")


class LeanCloudDouble:
    """A double of LeanCloud's REST API on 127.0.0.1 (see the module docstring).

    ``start()`` binds a free port (``url`` is then ``http://127.0.0.1:<port>``; point the
    SDK's ``LEANCLOUD_API_SERVER`` or onto's ``server_url`` at it); ``stop()`` stops the
    server and the hook thread. Usable as a context manager. Thread-safe.

    Test helpers: ``unique``, ``master_only``, ``hook``, ``objects``, ``hook_calls``,
    ``wait_for_hooks``, ``requests`` (a count of HTTP requests served), ``clear``.
    """

    def __init__(
        self,
        app_id: str = "double-app-id",
        app_key: str = "double-app-key",
        master_key: str = "double-master-key",
    ) -> None:
        self.app_id = app_id
        self.app_key = app_key
        self.master_key = master_key
        self._lock = threading.RLock()
        self._classes: dict[str, _Class] = {}
        self._unique_everywhere: set[str] = set()
        self._ids = itertools.count(1)
        self._engine: _Engine | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._hook_queue: queue.Queue[tuple[str, str, dict[str, Any]] | None] = queue.Queue()
        self._hook_thread: threading.Thread | None = None
        self._hook_http = httpx.Client(timeout=30.0)
        self._hooks_done = threading.Condition()
        self._hooks_pending = 0
        self.hook_calls: list[HookCall] = []
        self.requests = 0

    def __repr__(self) -> str:
        where = self.url if self._server else "not started"
        return f"LeanCloudDouble({where}, app_id={self.app_id!r})"

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the server URL, without ``/1.1``)."""
        if self._server is None:
            raise RuntimeError("the LeanCloud double is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> LeanCloudDouble:
        server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        server.daemon_threads = True  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="leancloud-double", daemon=True
        )
        self._thread.start()
        self._hook_thread = threading.Thread(
            target=self._deliver_hooks, name="leancloud-double-hooks", daemon=True
        )
        self._hook_thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._hook_thread is not None:
            self._hook_queue.put(None)
            self._hook_thread.join(timeout=10)
            self._hook_thread = None
        self._hook_http.close()

    def __enter__(self) -> LeanCloudDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test helpers -------------------------------------------------------------------

    def unique(self, class_name: str, *fields: str) -> None:
        """Give ``fields`` of ``class_name`` a unique index (``"*"``: of every class)."""
        with self._lock:
            if class_name == "*":
                self._unique_everywhere.update(fields)
            else:
                self._class(class_name).unique.update(fields)

    def master_only(self, class_name: str) -> None:
        """Refuse requests signed with the app key on ``class_name`` (error 119)."""
        with self._lock:
            self._class(class_name).master_only = True

    def hook(
        self,
        url: str,
        hook_key: str,
        classes: Iterable[str] | None = None,
        hooks: Iterable[str] = HOOK_NAMES,
    ) -> None:
        """Call the LeanEngine app at ``url`` (its root) for ``hooks`` on ``classes``
        (``None``: every class), and forward cloud functions to it."""
        wanted = frozenset(hooks)
        if unknown := wanted - set(HOOK_NAMES):
            raise ValueError(f"unknown hooks {sorted(unknown)}; expected some of {HOOK_NAMES}")
        self._engine = _Engine(
            url.rstrip("/"), hook_key, None if classes is None else frozenset(classes), wanted
        )

    def objects(self, class_name: str) -> list[dict[str, Any]]:
        """Copies of the objects of ``class_name``, oldest first."""
        with self._lock:
            found = self._classes.get(class_name)
            return json.loads(json.dumps(list(found.objects.values()))) if found else []

    def clear(self) -> None:
        """Forget every object (unique indexes and class settings stay)."""
        with self._lock:
            for cls in self._classes.values():
                cls.objects.clear()
                cls.types.clear()

    def wait_for_hooks(self, timeout: float = 10.0) -> None:
        """Wait until every after-hook due so far was delivered (``TimeoutError`` if not)."""
        with self._hooks_done:
            if not self._hooks_done.wait_for(lambda: self._hooks_pending == 0, timeout):
                raise TimeoutError(f"after-hooks still pending after {timeout}s")

    # --- HTTP ---------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        with self._lock:
            self.requests += 1
        try:
            master = self._authenticate(request)
            status, answer = self._route(request, master)
        except _Refused as refused:
            status, answer = refused.status, {"code": refused.code, "error": refused.message}
        body = (
            json.dumps(answer, ensure_ascii=False).encode()
            if not isinstance(answer, bytes)
            else answer
        )
        response = Response(body, status=status, content_type="application/json; charset=utf-8")
        return response(environ, start_response)

    def _authenticate(self, request: Request) -> bool:
        """Whether the master key signed ``request``; ``401`` when nothing valid did."""
        unauthorized = _Refused(401, "Unauthorized.", 401)
        if request.headers.get("X-LC-Id") != self.app_id:
            raise unauthorized
        key = request.headers.get("X-LC-Key")
        if key is not None:
            if key == self.app_key:
                return False
            if key == f"{self.master_key},master":
                return True
            raise unauthorized
        parts = (request.headers.get("X-LC-Sign") or "").split(",")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "master"):
            raise unauthorized
        master = len(parts) == 3
        secret = self.master_key if master else self.app_key
        expected = hashlib.md5((parts[1] + secret).encode()).hexdigest()
        if not hmac.compare_digest(expected, parts[0].lower()):
            raise unauthorized
        return master

    def _route(self, request: Request, master: bool) -> tuple[int, Any]:
        path = request.path
        if not path.startswith("/1.1/"):
            raise _Refused(404, f"Path not found: {path}", 404)
        try:
            body = json.loads(request.get_data(as_text=True) or "null")
        except ValueError:
            raise _Refused(107, "Malformed json object. A json dictionary is expected.") from None
        if path == "/1.1/batch" and request.method == "POST":
            return 200, self._batch(body, master)
        parts = path[len("/1.1/") :].split("/")
        if parts[0] in ("functions", "call") and len(parts) == 2 and request.method == "POST":
            return self._forward(request, parts[0], parts[1])
        args = {k: v[-1] for k, v in parse_qs(request.query_string.decode()).items()}
        return self._call(request.method, parts, args, body, master)

    def _call(
        self, method: str, parts: list[str], args: dict[str, str], body: Any, master: bool
    ) -> tuple[int, Any]:
        if len(parts) not in (2, 3) or parts[0] != "classes":
            raise _Refused(404, f"Path not found: /1.1/{'/'.join(parts)}", 404)
        class_name = parts[1]
        if not _CLASS_NAME.match(class_name):
            raise _Refused(103, f"Invalid class name: {class_name}.")
        with self._lock:
            if class_name in self._classes and self._classes[class_name].master_only and not master:
                raise _Refused(119, f"Forbidden to access class {class_name}: master key required.")
        where = self._where(args)
        fetch = args.get("fetchWhenSave") == "true"
        if len(parts) == 2:
            if method == "POST":
                return 201, self._create(class_name, self._body(body), fetch)
            if method == "GET":
                return 200, self._query(class_name, args, where)
        else:
            object_id = parts[2]
            if method == "GET":
                return 200, self._get(class_name, object_id, args)
            if method == "PUT":
                return 200, self._update(class_name, object_id, self._body(body), where, fetch)
            if method == "DELETE":
                return 200, self._delete(class_name, object_id, where, body or {})
        raise _Refused(404, f"Method {method} not allowed on /1.1/{'/'.join(parts)}", 405)

    @staticmethod
    def _where(args: dict[str, str]) -> dict[str, Any] | None:
        if "where" not in args:
            return None
        try:
            where = json.loads(args["where"])
        except ValueError:
            raise _Refused(107, "where must be a JSON object.") from None
        if not isinstance(where, dict):
            raise _Refused(107, "where must be a JSON object.")
        return where

    @staticmethod
    def _body(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Refused(107, "Malformed json object. A json dictionary is expected.")
        return body

    def _batch(self, body: Any, master: bool) -> list[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise _Refused(107, 'A batch needs {"requests": [...]}.')
        answers = []
        for item in body["requests"]:
            try:
                if not isinstance(item, dict) or "method" not in item or "path" not in item:
                    raise _Refused(107, "Each batch request needs method and path.")
                split = urlsplit(str(item["path"]))
                if not split.path.startswith("/1.1/"):
                    raise _Refused(107, f"Invalid batch path: {item['path']}")
                args = {k: v[-1] for k, v in parse_qs(split.query).items()}
                parts = split.path[len("/1.1/") :].split("/")
                _, answer = self._call(
                    str(item["method"]).upper(), parts, args, item.get("body"), master
                )
                answers.append({"success": answer})
            except _Refused as refused:
                answers.append({"error": {"code": refused.code, "error": refused.message}})
        return answers

    # --- objects ------------------------------------------------------------------------

    def _class(self, class_name: str) -> _Class:
        cls = self._classes.get(class_name)
        if cls is None:
            cls = self._classes[class_name] = _Class()
        return cls

    def _new_id(self) -> str:
        return f"{int(time.time()):08x}{next(self._ids):016x}"

    def _check_fields(self, cls: _Class, class_name: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key in _FLAGS or key == "ACL":
                continue
            if not _FIELD_NAME.match(key):
                raise _Refused(
                    105,
                    f"Invalid key name. Keys are case-sensitive and 'a-zA-Z0-9_' are the only"
                    f" valid characters, and must start with a letter: {key!r} in {class_name}.",
                )
            kind = _type_of(value)
            known = cls.types.get(key)
            if kind is not None and known is not None and kind != known:
                raise _Refused(
                    111,
                    f"Invalid value type for field '{key}', expect type is {{{known}}},"
                    f" but it's {{{kind}}}.",
                )

    def _check_unique(self, cls: _Class, class_name: str, obj: dict[str, Any]) -> None:
        for name in cls.unique | self._unique_everywhere:
            value = obj.get(name)
            if value is None:
                continue
            for other in cls.objects.values():
                if other["objectId"] != obj["objectId"] and other.get(name) == value:
                    raise _Refused(
                        137, f"A unique field was given a value that is already taken: {name}."
                    )

    def _remember_types(self, cls: _Class, obj: dict[str, Any]) -> None:
        for key, value in obj.items():
            kind = _type_of(value)
            if kind is not None and key not in _META:
                cls.types.setdefault(key, kind)

    def _create(self, class_name: str, body: dict[str, Any], fetch: bool) -> dict[str, Any]:
        flags = {k: body[k] for k in _FLAGS if k in body}
        data = {k: v for k, v in body.items() if k not in _FLAGS and k not in _META}
        with self._lock:
            cls = self._class(class_name)
            obj = {k: _apply({}, k, v) for k, v in data.items()}
            obj = {k: v for k, v in obj.items() if v is not _MISSING}
            self._check_fields(cls, class_name, obj)
        if self._wants(class_name, "beforeSave", flags):
            answer = self._call_before(class_name, "beforeSave", obj)
            if isinstance(answer, dict):
                obj = {
                    k: v
                    for k, v in answer.items()
                    if k not in _META
                    and k not in _FLAGS
                    and k not in ("className", "__type", "_updatedKeys")
                }
        with self._lock:
            self._check_fields(cls, class_name, obj)
            now = _now()
            stored = {"objectId": self._new_id(), "createdAt": now, "updatedAt": now, **obj}
            self._check_unique(cls, class_name, stored)
            cls.objects[stored["objectId"]] = stored
            self._remember_types(cls, stored)
            snapshot: dict[str, Any] = json.loads(json.dumps(stored))
        if self._wants(class_name, "afterSave", flags):
            self._queue_after(class_name, "afterSave", snapshot)
        if fetch:
            return snapshot
        return {"objectId": snapshot["objectId"], "createdAt": snapshot["createdAt"]}

    def _get(self, class_name: str, object_id: str, args: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            cls = self._classes.get(class_name)
            obj = cls.objects.get(object_id) if cls else None
            if obj is None:
                return {}  # LeanCloud answers an empty object for a missing id
            return _select(json.loads(json.dumps(obj)), args.get("keys"))

    def _update(
        self,
        class_name: str,
        object_id: str,
        body: dict[str, Any],
        where: dict[str, Any] | None,
        fetch: bool,
    ) -> dict[str, Any]:
        flags = {k: body[k] for k in _FLAGS if k in body}
        changes = {k: v for k, v in body.items() if k not in _FLAGS and k not in _META}
        with self._lock:
            cls = self._classes.get(class_name)
            current = cls.objects.get(object_id) if cls else None
            if cls is None or current is None:
                raise _Refused(101, f"Object not found: {class_name}/{object_id}.")
            if where is not None and not _matches(current, where):
                raise _Refused(305, "No effect on updating/deleting a document.")
            updated = _updated(current, changes)
            self._check_fields(cls, class_name, {k: updated.get(k) for k in changes})
        keys = sorted(changes)
        if self._wants(class_name, "beforeUpdate", flags):
            self._call_before(class_name, "beforeUpdate", {**updated, "_updatedKeys": keys})
        with self._lock:
            current = cls.objects.get(object_id)
            if current is None:
                raise _Refused(101, f"Object not found: {class_name}/{object_id}.")
            if where is not None and not _matches(current, where):
                raise _Refused(305, "No effect on updating/deleting a document.")
            updated = _updated(current, changes)
            updated["updatedAt"] = _now()
            self._check_unique(cls, class_name, updated)
            cls.objects[object_id] = updated
            self._remember_types(cls, updated)
            snapshot: dict[str, Any] = json.loads(json.dumps(updated))
        if self._wants(class_name, "afterUpdate", flags):
            self._queue_after(class_name, "afterUpdate", {**snapshot, "_updatedKeys": keys})
        if fetch:
            return snapshot
        return {"objectId": object_id, "updatedAt": snapshot["updatedAt"]}

    def _delete(
        self, class_name: str, object_id: str, where: dict[str, Any] | None, body: Any
    ) -> dict[str, Any]:
        flags = {k: body[k] for k in _FLAGS if isinstance(body, dict) and k in body}
        with self._lock:
            cls = self._classes.get(class_name)
            current = cls.objects.get(object_id) if cls else None
            if cls is None or current is None:
                return {}
            if where is not None and not _matches(current, where):
                raise _Refused(305, "No effect on updating/deleting a document.")
            snapshot = json.loads(json.dumps(current))
        if self._wants(class_name, "beforeDelete", flags):
            self._call_before(class_name, "beforeDelete", snapshot)
        with self._lock:
            current = cls.objects.get(object_id)
            if current is None:
                return {}
            if where is not None and not _matches(current, where):
                raise _Refused(305, "No effect on updating/deleting a document.")
            del cls.objects[object_id]
        if self._wants(class_name, "afterDelete", flags):
            self._queue_after(class_name, "afterDelete", snapshot)
        return {}

    def _query(
        self, class_name: str, args: dict[str, str], where: dict[str, Any] | None
    ) -> dict[str, Any]:
        try:
            limit = min(int(args.get("limit", 100)), 1000)
            skip = int(args.get("skip", 0))
        except ValueError:
            raise _Refused(107, "limit and skip must be integers.") from None
        with self._lock:
            cls = self._classes.get(class_name)
            rows = [o for o in (cls.objects.values() if cls else []) if _matches(o, where or {})]
            rows = json.loads(json.dumps(rows))
        order = args.get("order")
        if order:
            for key in reversed([k.strip() for k in order.split(",") if k.strip()]):
                name = key.lstrip("-")
                rows.sort(
                    key=lambda o, name=name: _rank(_lookup(o, name)), reverse=key.startswith("-")
                )
        answer: dict[str, Any] = {
            "results": [_select(o, args.get("keys")) for o in rows[skip : skip + max(limit, 0)]]
        }
        if args.get("count") in ("1", "true"):
            answer["count"] = len(rows)
        return answer

    # --- LeanEngine ---------------------------------------------------------------------

    def _marker(self, name: str) -> str:
        stamp = str(int(time.time() * 1000))
        sign = hmac.new(self.master_key.encode(), f"{name}:{stamp}".encode(), "sha1").hexdigest()
        return f"{stamp},{sign}"

    def _valid_marker(self, name: str, value: Any) -> bool:
        if not isinstance(value, str) or "," not in value:
            return False
        stamp, sign = value.split(",", 1)
        expected = hmac.new(
            self.master_key.encode(), f"{name}:{stamp}".encode(), "sha1"
        ).hexdigest()
        return hmac.compare_digest(expected, sign)

    def _wants(self, class_name: str, hook: str, flags: dict[str, Any]) -> bool:
        engine = self._engine
        if engine is None or hook not in engine.hooks:
            return False
        if engine.classes is not None and class_name not in engine.classes:
            return False
        if hook in (flags.get("__ignore_hooks") or []):
            return False
        marker = "__before" if hook.startswith("before") else "__after"
        return not self._valid_marker(marker, flags.get(marker))

    def _hook_request(
        self, class_name: str, hook: str, obj: dict[str, Any]
    ) -> tuple[int | None, Any, dict[str, Any]]:
        engine = self._engine
        assert engine is not None
        marker = "__before" if hook.startswith("before") else "__after"
        body = {
            "object": {**obj, "className": class_name, marker: self._marker(marker)},
            "user": None,
        }
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-LC-Id": self.app_id,
            "X-LC-Key": self.app_key,
            "X-LC-Hook-Key": engine.hook_key,
            "X-LC-Prod": "1",
        }
        try:
            response = self._hook_http.post(
                f"{engine.url}/1.1/functions/{class_name}/{hook}",
                content=json.dumps(body, ensure_ascii=False).encode(),
                headers=headers,
            )
        except httpx.HTTPError as exc:
            return None, str(exc), body
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        return response.status_code, answer, body

    def _call_before(self, class_name: str, hook: str, obj: dict[str, Any]) -> Any:
        status, answer, body = self._hook_request(class_name, hook, obj)
        with self._lock:
            self.hook_calls.append(HookCall(class_name, hook, body, status, answer))
        if status is None or status >= 400:
            message = answer.get("error") if isinstance(answer, dict) else answer
            raise _Refused(142, f"Cloud Code validation failed. Error detail : {message}", 400)
        return answer

    def _queue_after(self, class_name: str, hook: str, obj: dict[str, Any]) -> None:
        with self._hooks_done:
            self._hooks_pending += 1
        self._hook_queue.put((class_name, hook, obj))

    def _deliver_hooks(self) -> None:
        while (item := self._hook_queue.get()) is not None:
            class_name, hook, obj = item
            try:
                status, answer, body = self._hook_request(class_name, hook, obj)
                with self._lock:
                    self.hook_calls.append(HookCall(class_name, hook, body, status, answer))
            finally:
                with self._hooks_done:
                    self._hooks_pending -= 1
                    self._hooks_done.notify_all()

    def _forward(self, request: Request, kind: str, name: str) -> tuple[int, Any]:
        engine = self._engine
        if engine is None:
            raise _Refused(1, "LeanEngine not found: no app is deployed to the double.", 404)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower().startswith("x-lc-") or k.lower() == "content-type"
        }
        try:
            response = self._hook_http.post(
                f"{engine.url}/1.1/{kind}/{name}", content=request.get_data(), headers=headers
            )
        except httpx.HTTPError as exc:
            raise _Refused(1, f"LeanEngine app unreachable: {exc}", 502) from exc
        return response.status_code, response.content


def _select(obj: dict[str, Any], keys: str | None) -> dict[str, Any]:
    if not keys:
        return obj
    wanted = {k.strip() for k in keys.split(",")} | set(_META)
    return {k: v for k, v in obj.items() if k in wanted}


def _updated(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    updated = dict(current)
    for key, value in changes.items():
        result = _apply(updated.get(key, _MISSING), key, value)
        if result is _MISSING:
            updated.pop(key, None)
        else:
            updated[key] = result
    return updated


def _apply(old: Any, key: str, value: Any) -> Any:
    """The value of ``key`` after writing ``value`` (a plain value or an ``__op``)."""
    if not (isinstance(value, dict) and "__op" in value):
        return value
    op = value["__op"]
    have = None if old is _MISSING else old
    if op == "Delete":
        return _MISSING
    if op in ("Increment", "Decrement"):
        amount = value.get("amount", 1)
        if not isinstance(amount, int | float) or (
            have is not None and not isinstance(have, int | float)
        ):
            raise _Refused(111, f"Invalid value type for field '{key}': Increment needs numbers.")
        return (have or 0) + (amount if op == "Increment" else -amount)
    if op in ("BitAnd", "BitOr", "BitXor"):
        base, operand = int(have or 0), int(value.get("value", 0))
        return {"BitAnd": base & operand, "BitOr": base | operand, "BitXor": base ^ operand}[op]
    if op in ("Add", "AddUnique", "Remove"):
        items = value.get("objects")
        if not isinstance(items, list) or (have is not None and not isinstance(have, list)):
            raise _Refused(111, f"Invalid value type for field '{key}': {op} needs arrays.")
        result = list(have or [])
        if op == "Add":
            return result + items
        if op == "AddUnique":
            return result + [
                i for n, i in enumerate(items) if i not in result and i not in items[:n]
            ]
        return [i for i in result if i not in items]
    raise _Refused(
        107, f"Unsupported operation {op!r} on field '{key}' (the double does not do it)."
    )
