"""LeanEngine for onto: LeanCloud's hooks as a change source, view actions as cloud functions.

LeanCloud calls a LeanEngine app over HTTP: ``POST /1.1/functions/<Class>/<hook>`` after
(and before) each write to a class, with the app's hook key in ``X-LC-Hook-Key``, and
``POST /1.1/functions/<name>`` (or ``/1.1/call/<name>``) when a front end runs a cloud
function (``AV.Cloud.run``). The same routes answer under ``/1/``, ``/__engine/1/`` and
``/__engine/1.1/``. Both sources here serve them on the web server onto-web shares per
host and port:

- ``leanengine``: each after-hook (``afterSave``, ``afterUpdate``, ``afterDelete``) of a
  class it follows becomes a change message, shaped like the ``changes`` source's, so the
  ``view`` processor recomputes the views the object feeds. The hook is answered once the
  pipeline is done with the change (acked), so LeanCloud's hook log shows failures.
  Before-hooks validate the object against the domain model of its collection and reject
  a bad write with LeanCloud's error 142, which the client that wrote receives.
- ``leanengine_functions``: the views' actions (and ``get``/``list``) as cloud functions,
  answered ``{"result": ...}`` through the ``api`` processor like REST and JSON-RPC.

Every error is a LeanCloud error body, ``{"code": N, "error": "..."}``, with the HTTP
status LeanEngine uses. docs/leancloud.md has the routes, codes and settings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from flask import Flask, Response, request
from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from werkzeug.exceptions import RequestEntityTooLarge

from onto_core.builtin.api import RequestSource, read_queued
from onto_core.builtin.changes import change_message
from onto_core.builtin.transform import import_object
from onto_core.builtin.view import load_view
from onto_core.models import DomainModel, ViewModel
from onto_core.models.datastore import Change, ChangeOp
from onto_core.models.domain import TYPE_KEY
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_leancloud._client import request_sign
from onto_web import (
    Authenticator,
    AuthError,
    WebEndpointConfig,
    WebServer,
    bearer_token,
    get_server,
    is_loopback,
)

__all__ = [
    "AFTER_HOOKS",
    "BEFORE_HOOKS",
    "ROUTE_PREFIXES",
    "CloudFunction",
    "LeanEngineFunctionsSource",
    "LeanEngineSource",
    "MalformedHook",
    "decode_leancloud",
]

log = logging.getLogger("onto.leancloud.engine")

ROUTE_PREFIXES = ("/1.1", "/1", "/__engine/1", "/__engine/1.1")
"""The path prefixes LeanCloud calls a LeanEngine app under."""

AFTER_HOOKS: dict[str, ChangeOp] = {
    "afterSave": ChangeOp.CREATE,
    "afterUpdate": ChangeOp.UPDATE,
    "afterDelete": ChangeOp.DELETE,
}
"""The after-hooks and the change each becomes."""

BEFORE_HOOKS = frozenset({"beforeSave", "beforeUpdate", "beforeDelete"})

# Fields LeanCloud adds to a hook's object that are not the object's data: the markers
# that keep hooks from calling themselves, and the keys an update touched.
_HOOK_MARKERS = frozenset({"__before", "__after", "__ignore_hooks", "_updatedKeys"})
# Fields every LeanCloud object has, which are LeanCloud's rather than the domain's.
_BUILT_IN = frozenset({"objectId", "createdAt", "updatedAt", "ACL", "className", "__type"})
# LeanCloud's error codes for the outcomes here (1: an app error, as AV.Cloud.Error's).
_CODE_BY_STATUS = {400: 1, 401: 401, 403: 119, 404: 101, 409: 305, 413: 1, 422: 142, 503: 1}
_CODE_TIMEOUT = 124
_CODE_MALFORMED = 107
_CODE_REJECTED = 142
_CODE_SCRIPT_ERROR = 141


# --- LeanCloud's JSON ---------------------------------------------------------------------


def decode_leancloud(value: Any, collection_of: Callable[[str], str] = str) -> Any:
    """``value`` with LeanCloud's typed JSON made plain, the way onto stores it.

    ``{"__type": "Date", "iso": ...}`` becomes the ISO string; a ``Pointer`` becomes the
    reference path ``<collection>/<objectId>`` (``collection_of`` maps its class name);
    a ``GeoPoint`` becomes ``{"latitude": ..., "longitude": ...}``; ``Bytes`` its base64
    text; a ``File`` its URL. Lists and objects are decoded throughout.
    """
    if isinstance(value, list):
        return [decode_leancloud(v, collection_of) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("__type")
    if kind == "Date" and isinstance(value.get("iso"), str):
        return value["iso"]
    if kind == "Pointer" and isinstance(value.get("className"), str):
        return f"{collection_of(value['className'])}/{value.get('objectId')}"
    if kind == "GeoPoint":
        return {"latitude": value.get("latitude"), "longitude": value.get("longitude")}
    if kind == "Bytes":
        return value.get("base64")
    if kind == "File":
        return value.get("url")
    return {k: decode_leancloud(v, collection_of) for k, v in value.items()}


class _Malformed(Exception):
    """A hook body that is not what LeanCloud sends; ``object_id`` when it could be read."""

    def __init__(self, message: str, object_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.object_id = object_id


@dataclass(frozen=True)
class MalformedHook:
    """A hook request whose body could not be read: stands for it on its way to the
    dead-letter sink.

    The view processor (or any processor expecting a change) refuses it, so the pipeline
    dead-letters it with the class, object id (``None`` when the body did not say) and
    why; ``body`` is the start of what was sent.
    """

    class_name: str
    hook: str
    object_id: str | None
    error: str
    body: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "malformedHook": self.hook,
            "className": self.class_name,
            "objectId": self.object_id,
            "error": self.error,
            "body": self.body,
        }

    def __repr__(self) -> str:
        which = _clip(self.object_id, 60) if self.object_id else "(object id unknown)"
        name = _clip(self.class_name, 60)
        return f"malformed LeanEngine {self.hook} hook for {name} {which}: {self.error}"


def _leancloud_error(
    status: int, message: str, code: int | None = None, field: str | None = None
) -> Response:
    """A LeanCloud error answer: ``{"code", "error"}`` (and ``field`` when one is at fault)."""
    body: dict[str, Any] = {"code": code or _CODE_BY_STATUS.get(status, 1), "error": message}
    if field is not None:
        body["field"] = field
    return Response(json.dumps(body), status, mimetype="application/json")


def _answer(body: Any) -> Response:
    return Response(json.dumps(body), 200, mimetype="application/json")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _secret_value(secret: SecretStr | None) -> str:
    return secret.get_secret_value() if secret is not None else ""


class _Refused(Exception):
    """A request answered with a LeanCloud error instead of running."""

    def __init__(
        self, status: int, message: str, code: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.response = _leancloud_error(status, message, code, field)


def _json_body(max_bytes: int) -> Any:
    """The request body parsed as JSON; an empty body is ``{}``. Raises ``_Refused``."""
    request.max_content_length = max_bytes + 1
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raw = None
    if raw is None or len(raw) > max_bytes:
        raise _Refused(413, f"the request body is larger than {max_bytes} bytes")
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except RecursionError:
        raise _Malformed("the body is nested too deeply") from None
    except ValueError as exc:
        raise _Malformed(f"the body is not JSON: {exc}") from None


# --- shared settings ----------------------------------------------------------------------


class _EngineEndpoint(WebEndpointConfig):
    """onto-web's settings, with the port LeanEngine gives an app by default."""

    port: int = Field(
        3000,
        ge=0,
        le=65535,
        description=(
            "Port; LeanEngine passes it as LEANCLOUD_APP_PORT. Components on one host and "
            "port share it."
        ),
    )
    timeout: float = Field(
        10.0, gt=0, description="Seconds a request waits for the pipeline before 504 (code 124)."
    )
    max_pending: int = Field(
        1000,
        ge=1,
        description="Most requests in the pipeline at once; more are answered 503 at once.",
    )

    def _keyed(self) -> bool:
        return False

    # Replaces onto-web's check of the same name: these endpoints are also closed by
    # LeanCloud's keys, which onto-web's auth settings do not know about.
    @model_validator(mode="after")
    def _open_only_on_loopback(self) -> _EngineEndpoint:
        if (
            self.allowed_hosts is None
            and self.auth.open
            and not self._keyed()
            and not is_loopback(self.host)
        ):
            raise ValueError(
                f"host {self.host!r} is not a loopback interface and the endpoint has no "
                "keys: set app_id and app_key (or auth), or allowed_hosts, so another site "
                "cannot reach it through DNS rebinding"
            )
        return self


# --- one set of routes per server ---------------------------------------------------------


class _EngineRoutes:
    """The LeanEngine routes of one web server and the sources that answer them."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.hook_sources: list[LeanEngineSource] = []
        self.functions: dict[str, tuple[LeanEngineFunctionsSource, CloudFunction]] = {}
        self._installed = False
        self._lock = threading.Lock()

    def install(self, app: Flask) -> None:
        with self._lock:
            if self._installed:
                return
            self._installed = True
        for prefix in ROUTE_PREFIXES:
            name = prefix.strip("/").replace("/", "_").replace(".", "_")
            app.add_url_rule(
                f"{prefix}/functions/<class_name>/<hook>",
                f"leanengine_hook_{name}",
                self.hook,
                methods=["POST"],
            )
            app.add_url_rule(
                f"{prefix}/functions/<function>",
                f"leanengine_function_{name}",
                _bound(self.function, rpc=False),
                methods=["POST"],
            )
            app.add_url_rule(
                f"{prefix}/call/<function>",
                f"leanengine_call_{name}",
                _bound(self.function, rpc=True),
                methods=["POST"],
            )
        app.add_url_rule("/__engine/1/ping", "leanengine_ping", _ping, methods=["GET"])
        app.add_url_rule("/__engine/1.1/ping", "leanengine_ping_1_1", _ping, methods=["GET"])

    # -- hooks --

    def hook(self, class_name: str, hook: str) -> Response:
        sources = list(self.hook_sources)
        if not sources:
            return _leancloud_error(404, "no LeanEngine hooks are served here")
        if not sources[0].key_matches(request.headers.get("X-LC-Hook-Key")):
            return _leancloud_error(401, "Unauthorized.")
        if class_name == "_ops" and hook == "metadatas":
            return _answer({"result": self.metadata()})
        if hook not in AFTER_HOOKS and hook not in BEFORE_HOOKS:
            return _leancloud_error(
                404, f"{_clip(repr(hook), 60)} is not a LeanEngine hook this app answers"
            )
        following = [s for s in sources if s.follows(class_name)]
        if not following:
            return _leancloud_error(404, f"no pipeline follows class {_clip(repr(class_name), 60)}")
        try:
            obj = _hook_object(_json_body(following[0].config.max_body_bytes), class_name)
            if hook in BEFORE_HOOKS:
                validating = [s for s in following if s.validates(class_name)]
                return (validating or following)[0].before(class_name, hook, obj)
            return self._after(following, class_name, hook, obj)
        except _Refused as exc:
            return exc.response
        except _Malformed as exc:
            body = _clip(request.get_data(cache=True).decode("utf-8", "replace"))
            letter = MalformedHook(class_name, hook, exc.object_id, exc.message, body)
            if hook in AFTER_HOOKS:
                for source in following:
                    source.dead_letter(letter)
            log.warning("refused %r", letter)
            return _leancloud_error(400, repr(letter), _CODE_MALFORMED)

    def _after(
        self, sources: list[LeanEngineSource], class_name: str, hook: str, obj: dict[str, Any]
    ) -> Response:
        changes = [(source, source.change(class_name, hook, obj)) for source in sources]
        which = f"{hook} of {_clip(class_name, 60)} {_clip(str(obj.get('objectId')), 60)}"
        waiting = [source.deliver(change) for source, change in changes]
        timeout = max(source.config.timeout for source in sources)
        done, not_done = concurrent.futures.wait(waiting, timeout)
        if not_done:
            return _leancloud_error(
                504,
                f"{which}: the pipeline did not finish "
                f"within {timeout:g}s; the change stays queued and will still be processed",
                _CODE_TIMEOUT,
            )
        for future in done:
            error = future.exception()
            if error is not None:
                log.error("%s failed: %s", which, error)
                return _leancloud_error(
                    500,
                    f"{which}: the pipeline could not process the change; the server log says why",
                    _CODE_SCRIPT_ERROR,
                )
        return _answer({"result": "ok"})

    def metadata(self) -> list[str]:
        """What LeanEngine's ``_ops/metadatas`` lists: the hooks and functions served."""
        prefixes = {
            "beforeSave": "__before_save_for_",
            "afterSave": "__after_save_for_",
            "beforeUpdate": "__before_update_for_",
            "afterUpdate": "__after_update_for_",
            "beforeDelete": "__before_delete_for_",
            "afterDelete": "__after_delete_for_",
        }
        names: list[str] = []
        for source in self.hook_sources:
            for class_name in source.class_names():
                hooks = list(AFTER_HOOKS)
                if source.validates(class_name):
                    hooks += ["beforeSave", "beforeUpdate"]
                names += [prefixes[h] + class_name for h in hooks]
        return sorted(set(names) | set(self.functions))

    # -- cloud functions --

    def function(self, function: str, rpc: bool) -> Response:
        found = self.functions.get(function)
        if found is None:
            known = ", ".join(sorted(self.functions)) or "none"
            return _leancloud_error(
                404,
                f"cloud function {_clip(repr(function), 60)} does not exist; functions: {known}",
                404,
            )
        source, cloud_function = found
        try:
            return source.run(cloud_function, rpc)
        except _Refused as exc:
            return exc.response
        except _Malformed as exc:
            return _leancloud_error(400, f"{function}: {exc.message}", _CODE_MALFORMED)


def _bound(fn: Callable[..., Response], **bound: Any) -> Callable[..., Response]:
    """``fn`` with ``bound`` keyword arguments, as a plain function Flask can name."""

    def view(**kwargs: Any) -> Response:
        return fn(**kwargs, **bound)

    return view


def _ping() -> Response:
    return _answer({"runtime": "onto", "engine": "leanengine"})


def _routes(server: WebServer) -> _EngineRoutes:
    return server.shared("onto-leancloud-engine", lambda: _EngineRoutes(server))


def _hook_object(body: Any, class_name: str) -> dict[str, Any]:
    """The ``object`` of a hook body, which must be a JSON object; raises ``_Malformed``."""
    if not isinstance(body, dict):
        raise _Malformed("the body must be a JSON object with an 'object'")
    obj = body.get("object")
    if not isinstance(obj, dict):
        raise _Malformed(f"the body has no 'object' holding the {_clip(class_name, 60)} object")
    object_id = obj.get("objectId")
    if object_id is not None and (not isinstance(object_id, str) or not object_id):
        raise _Malformed(f"objectId must be a non-empty string, got {_clip(repr(object_id))}")
    return obj


# --- the hook source ----------------------------------------------------------------------


class _Sequence:
    """Change sequence numbers for hooks: microseconds since the epoch, strictly rising.

    LeanCloud numbers no writes, so a hook's change gets the time it arrived; views get
    it as their version, so a restarted process still emits versions above the last.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 1000)
            return self._last


_sequence = _Sequence()


class LeanEngineSource:
    """LeanEngine hooks of the classes it follows, as changes for the ``view`` processor.

    Serves ``POST {prefix}/functions/<Class>/<hook>`` for every prefix LeanCloud uses
    (``/1.1``, ``/1``, ``/__engine/1``, ``/__engine/1.1``) on the web server onto-web
    shares per host and port. Every request must carry the app's hook key in
    ``X-LC-Hook-Key`` (compared in constant time); one without it, or with another key,
    is answered 401 and nothing else happens.

    An after-hook of a followed class becomes one message, the same shape the ``changes``
    source emits: ``{seq, collection, docId, op, data, timestamp}``, ``op`` ``create``
    (afterSave), ``update`` (afterUpdate) or ``delete`` (afterDelete; ``data`` null),
    ``data`` the object's fields with LeanCloud's types made plain (``decode_leancloud``).
    The hook is answered ``{"result": "ok"}`` once the pipeline acked the change (every
    sink confirmed it, or it went to the dead-letter sink), 500 if the pipeline gave it
    up, 504 (code 124) if that took longer than ``timeout`` (the change still runs).
    LeanCloud does not call an after-hook again, whatever the answer, so a change lost
    before the pipeline took it (the process stopped) is made good only by the view
    processor's build at the next start, which compares every view with what was
    delivered. A body that is not a LeanCloud hook body is answered 400 (code 107), and
    a ``MalformedHook`` naming the class and object id goes to the dead-letter sink.

    Before-hooks (``beforeSave``, ``beforeUpdate``) of a class whose domain model is in
    ``validate`` check the object against it; a bad object is rejected with 400, code 142,
    and the message naming the field, which LeanCloud passes to the client that wrote.
    Otherwise the object is answered back as sent (``__before`` kept), as LeanEngine does;
    ``beforeDelete`` is answered ``{}``.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(_EngineEndpoint):
        hook_key: SecretStr = Field(
            description=(
                "The app's hook key (LEANCLOUD_APP_HOOK_KEY): hooks without it get 401. "
                "Keep it in an environment variable."
            )
        )
        collections: list[str] = Field(
            default_factory=list,
            description=(
                "Collections followed: hooks of class <class_prefix><collection> become "
                "changes of the collection (hooks of classes not followed get 404)."
            ),
        )
        classes: dict[str, str] = Field(
            default_factory=dict,
            description=(
                "Further classes followed, named apart from the rule, each mapped to its "
                "collection, e.g. {_User: users}."
            ),
        )
        class_prefix: str | None = Field(
            None,
            description=(
                "Prefix of the class each collection is kept in; default: the leancloud "
                "datastore's, else ''."
            ),
        )
        id_field: str | None = Field(
            None,
            description=(
                "Object field holding the document id (objectId when the object has none); "
                "default: the leancloud datastore's, else 'ontoId'."
            ),
        )
        version_field: str | None = Field(
            None,
            description=(
                "Object field the datastore counts writes in (not domain data); default: "
                "the leancloud datastore's, else 'ontoVersion'."
            ),
        )
        validate_models: list[str] = Field(
            default_factory=list,
            alias="validate",
            description=(
                "Domain models, as 'module:Class', whose before-hooks validate objects of "
                "their collection's class (a bad one is rejected with code 142)."
            ),
        )

        @field_validator("validate_models")
        @classmethod
        def _models(cls, refs: list[str]) -> list[str]:
            for ref in refs:
                _domain_model(ref)
            return refs

        @model_validator(mode="after")
        def _validated_classes_followed(self) -> LeanEngineSource.Config:
            followed = set(self.classes.values()) | set(self.collections)
            if not followed:
                raise ValueError("follow at least one collection (collections or classes)")
            for ref in self.validate_models:
                collection = _domain_model(ref).collection
                if collection not in followed:
                    raise ValueError(
                        f"validate: {ref} is stored in {collection!r}, which is not followed;"
                        " add it to collections"
                    )
            return self

        def _keyed(self) -> bool:
            return True

    def __init__(self, config: Config) -> None:
        self.config = config
        self._validating = [_domain_model(ref) for ref in config.validate_models]
        self._collections: dict[str, str] = {}  # class name → collection
        self._validators: dict[str, type[DomainModel]] = {}  # class name → model
        self.id_field = "ontoId"
        self._skipped: frozenset[str] = frozenset()
        self.use_datastore_settings(None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Message | None] | None = None
        self._waiting: dict[str, concurrent.futures.Future[None]] = {}
        self._in_flight = 0
        self._lock = threading.Lock()
        self._closed = False
        self._ctx: RuntimeContext | None = None

    def use_datastore_settings(self, datastore: Any) -> None:
        """Map classes and fields as ``datastore`` (a leancloud datastore) does, where the
        config leaves them unset; with ``None``, the leancloud datastore's defaults."""
        store_config = getattr(datastore, "config", None)

        def setting(name: str, default: str) -> str:
            value = getattr(self.config, name)
            if value is not None:
                return str(value)
            found = getattr(store_config, name, None)
            return found if isinstance(found, str) else default

        prefix = setting("class_prefix", "")
        self.id_field = setting("id_field", "ontoId")
        version = setting("version_field", "ontoVersion")
        self._collections = {prefix + c: c for c in self.config.collections}
        self._collections.update(self.config.classes)
        classes = {collection: name for name, collection in self._collections.items()}
        self._validators = {classes[m.collection]: m for m in self._validating}
        self._skipped = _BUILT_IN | _HOOK_MARKERS | {self.id_field, version}

    # -- for the routes --

    def key_matches(self, sent: str | None) -> bool:
        """Whether ``sent`` is the hook key (compared in constant time)."""
        expected = _secret_value(self.config.hook_key).encode()
        return bool(expected) and hmac.compare_digest((sent or "").encode(), expected)

    def follows(self, class_name: str) -> bool:
        return class_name in self._collections

    def class_names(self) -> list[str]:
        return sorted(self._collections)

    def validates(self, class_name: str) -> bool:
        return class_name in self._validators

    def collection_of(self, class_name: str) -> str:
        """The collection a class's objects are in (the class name itself when unmapped)."""
        return self._collections.get(class_name, class_name)

    def change(self, class_name: str, hook: str, obj: dict[str, Any]) -> Change:
        """The change an after-hook's object stands for; raises ``_Malformed``."""
        doc_id = obj.get(self.id_field) or obj.get("objectId")
        if not isinstance(doc_id, str) or not doc_id:
            raise _Malformed(f"the object has no objectId (nor {self.id_field})")
        op = AFTER_HOOKS[hook]
        return Change(
            seq=_sequence.next(),
            collection=self.collection_of(class_name),
            doc_id=doc_id,
            op=op,
            data=None if op is ChangeOp.DELETE else self.document(obj),
            timestamp=time.time(),
        )

    def document(self, obj: dict[str, Any]) -> dict[str, Any]:
        """An object's domain data: LeanCloud's own fields and hook markers left out."""
        skip = self._skipped
        return {
            key: decode_leancloud(value, self.collection_of)
            for key, value in obj.items()
            if key not in skip
        }

    def deliver(self, change: Change) -> concurrent.futures.Future[None]:
        """Queue an after-hook's change; the future settles when the pipeline is done."""
        message = change_message(change)
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._enqueue(message, future)
        return future

    def dead_letter(self, letter: MalformedHook) -> None:
        """Send a ``MalformedHook`` through the pipeline, which dead-letters it."""
        key = f"{self.collection_of(letter.class_name)}/{letter.object_id or '?'}"
        message = Message(letter, key=key, channel=self.collection_of(letter.class_name))
        try:
            self._enqueue(message, None)
        except _Refused as exc:
            log.warning("could not dead-letter %r: %s", letter, exc)

    def _enqueue(self, message: Message, future: concurrent.futures.Future[None] | None) -> None:
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or self._closed:
            raise _Refused(503, "the LeanEngine hook source is not running")
        with self._lock:
            if self._in_flight >= self.config.max_pending:
                raise _Refused(
                    503,
                    f"too many hooks in the pipeline ({self.config.max_pending}); "
                    "LeanCloud does not retry after-hooks, so this change is lost here",
                )
            self._in_flight += 1
            if future is not None:
                self._waiting[message.id] = future
        try:
            loop.call_soon_threadsafe(queue.put_nowait, message)
        except RuntimeError:  # the loop has closed
            self._settle(message, RuntimeError("stopped"))
            raise _Refused(503, "the LeanEngine hook source has stopped") from None

    def before(self, class_name: str, hook: str, obj: dict[str, Any]) -> Response:
        """The answer to a before-hook: the object back, or error 142 naming the field."""
        if hook == "beforeDelete":
            return _answer({})
        model = self._validators.get(class_name)
        if model is not None:
            problem = self._invalid(model, hook, obj)
            if problem is not None:
                which = obj.get("objectId") or "(new object)"
                return _leancloud_error(400, f"{class_name} {which}: {problem}", _CODE_REJECTED)
        return _answer(obj)

    def _invalid(self, model: type[DomainModel], hook: str, obj: dict[str, Any]) -> str | None:
        data = self.document(obj)
        data.pop(TYPE_KEY, None)
        if hook == "beforeSave":
            checked = data
        else:
            updated = obj.get("_updatedKeys")
            keys = [k for k in updated if k in data] if isinstance(updated, list) else list(data)
            by_wire = {(f.alias or n) for n, f in model.model_fields.items()}
            for key in keys:
                if key not in by_wire:
                    return f"{key}: {model.__name__} has no such field"
            checked = {key: data[key] for key in keys}
        try:
            # Strict, as JSON, like actions' arguments: "no" is not a boolean.
            if hook == "beforeSave":
                model.model_validate_json(json.dumps(checked), strict=True)
            else:
                for key, value in checked.items():
                    _field_adapter(model, key).validate_json(json.dumps(value), strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) if hook == "beforeSave" else key
            return f"{where or 'object'}: {first['msg']}"
        return None

    # -- the Source protocol --

    async def start(self, ctx: RuntimeContext) -> None:
        self._ctx = ctx
        self.use_datastore_settings(ctx.datastore)
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        server = get_server(self.config.host, self.config.port)
        routes = _routes(server)
        for other in routes.hook_sources:
            if not hmac.compare_digest(
                _secret_value(other.config.hook_key).encode(),
                _secret_value(self.config.hook_key).encode(),
            ):
                raise ValueError(
                    f"another LeanEngine hook source on {self.config.host}:{self.config.port}"
                    " has a different hook_key; one app has one hook key"
                )
        app = server.claim(ctx.component, self.config)
        # Hooks are closed by the hook key, which onto-web's auth settings do not know.
        if ctx.component in server.open_endpoints:
            server.open_endpoints.remove(ctx.component)
        routes.hook_sources.append(self)
        routes.install(app)
        ctx.log.info(
            "LeanEngine hooks for %s (after-hooks become changes%s)",
            ", ".join(self.class_names()),
            f"; before-hooks validate {', '.join(sorted(self._validators))}"
            if self._validators
            else "",
        )

    async def read_batch(self, max_messages: int) -> list[Message]:
        assert self._queue is not None, "start() first"
        return await read_queued(self._queue, max_messages)

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        self._settle(message, None)

    async def ack_batch(self, messages: list[Message]) -> None:
        for message in messages:
            self._settle(message, None)

    async def nack(self, message: Message, error: BaseException) -> None:
        """The hook is answered with an error: LeanCloud would not send it again."""
        self._settle(message, error)

    def _settle(self, message: Message, error: BaseException | None) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            future = self._waiting.pop(message.id, None)
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    async def close(self) -> None:
        self._closed = True
        if self._queue is not None:
            self._queue.put_nowait(None)
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(RuntimeError("the pipeline stopped before the change ran"))


def _field_adapter(model: type[DomainModel], wire_name: str) -> TypeAdapter[Any]:
    """A validator of the field ``wire_name`` (camelCase) of ``model``."""
    for name, info in model.model_fields.items():
        if (info.alias or name) == wire_name:
            return TypeAdapter(info.annotation or Any)
    raise KeyError(wire_name)


def _domain_model(ref: str) -> type[DomainModel]:
    found = import_object(ref)
    if not (isinstance(found, type) and issubclass(found, DomainModel) and found.collection):
        raise ValueError(f"{ref!r} is not a DomainModel with a collection")
    return found


# --- cloud functions ----------------------------------------------------------------------


@dataclass(frozen=True)
class CloudFunction:
    """One cloud function: a view's action, or reading or listing the view.

    Its parameters are the body's fields: the view's key as ``key`` (key fields joined by
    ``/``) or as the key fields themselves (``meetingId`` and ``userId``, or in
    snake_case), then the action's own arguments (``get`` takes none; ``list`` takes
    ``filters`` and ``limit``).
    """

    name: str
    view: type[ViewModel]
    view_ref: str
    operation: Literal["read", "list", "action"]
    action: str | None

    def request(self, params: dict[str, Any]) -> dict[str, Any]:
        """The API request of a call with ``params``; raises ``_Refused`` for a bad key."""
        if self.operation == "list":
            unknown = sorted(set(params) - {"filters", "limit"})
            if unknown:
                raise _Refused(
                    400,
                    f"{self.name}: unknown parameter {unknown[0]!r}; parameters: filters, limit",
                    field=unknown[0],
                )
            return {
                "op": "list",
                "view": self.view_ref,
                "filters": params.get("filters") or {},
                "limit": params.get("limit"),
            }
        arguments = dict(params)
        key = self._key(arguments)
        if self.operation == "read":
            if arguments:
                raise _Refused(
                    400,
                    f"{self.name}: unknown parameter {sorted(arguments)[0]!r}; it takes the key",
                    field=sorted(arguments)[0],
                )
            return {"op": "read", "view": self.view_ref, "key": key}
        return {
            "op": "action",
            "view": self.view_ref,
            "key": key,
            "action": self.action,
            "arguments": arguments,
        }

    def _key(self, arguments: dict[str, Any]) -> str:
        """Takes the key out of ``arguments``: ``key``, or every key field by name."""
        fields = self.view.key_fields
        if "key" in arguments:
            key = arguments.pop("key")
            if not isinstance(key, str) or not key:
                raise _Refused(400, f"{self.name}: key must be a non-empty string", field="key")
            return key
        parts: list[str] = []
        for name in fields:
            camel = _camel(name)
            value = arguments.pop(camel, arguments.pop(name, None))
            if not isinstance(value, str) or not value:
                joined = " and ".join(_camel(f) for f in fields)
                raise _Refused(
                    400,
                    f"{self.name}: missing the {self.view.view_name} key: send 'key' or {joined}",
                    field="key" if len(fields) > 1 else camel,
                )
            parts.append(value)
        return "/".join(parts)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def cloud_functions(view_refs: Iterable[str]) -> dict[str, CloudFunction]:
    """The cloud functions of the views ``"module:Class"``, by name.

    Each view gets ``<view_name>.get``, ``<view_name>.list`` and ``<view_name>.<action>``;
    an action also answers to its bare name (``set_attendance``) when no other view
    served has an action of that name. Raises ``ValueError`` for an action parameter
    named like a key field or ``key``, which would be taken for the key.
    """
    functions: dict[str, CloudFunction] = {}
    bare: dict[str, list[CloudFunction]] = {}
    for ref in view_refs:
        view = load_view(ref)
        name = view.view_name
        functions[f"{name}.get"] = CloudFunction(f"{name}.get", view, ref, "read", None)
        functions[f"{name}.list"] = CloudFunction(f"{name}.list", view, ref, "list", None)
        taken = {"key", *view.key_fields, *(_camel(f) for f in view.key_fields)}
        for action in sorted(view.actions):
            params = view.action_model(action).model_fields
            clash = sorted(taken & (set(params) | {_camel(p) for p in params}))
            if clash:
                raise ValueError(
                    f"{ref}: action {action!r} has a parameter {clash[0]!r}, which a cloud "
                    "function call uses for the view key; rename the parameter"
                )
            function = CloudFunction(f"{name}.{action}", view, ref, "action", action)
            functions[function.name] = function
            bare.setdefault(action, []).append(function)
    for action, candidates in bare.items():
        if len(candidates) == 1 and action not in functions:
            functions[action] = candidates[0]
    return functions


class LeanEngineFunctionsSource(RequestSource):
    """View actions as LeanEngine cloud functions: ``AV.Cloud.run('set_attendance', ...)``.

    Serves ``POST {prefix}/functions/<name>`` and ``POST {prefix}/call/<name>`` (every
    prefix LeanCloud uses) on the shared web server. The functions are those of
    ``cloud_functions``: ``set_attendance`` (or ``meeting_session.set_attendance``) with
    ``{"key": "meeting-1/joshua", "attending": false}`` or ``{"meetingId": "meeting-1",
    "userId": "joshua", "attending": false}``. Body fields starting with ``_`` are dropped
    (the JavaScript SDK may send its app info that way); on ``/call/`` LeanCloud's typed
    values (a ``Date``) are made plain first. Each call becomes an API request through the
    pipeline (``api`` processor, ``reply`` sink), which validates the arguments as REST and
    JSON-RPC do, and is answered ``{"result": <the view afterwards>}``.

    Callers authenticate as LeanEngine's do: ``X-LC-Id`` equal to ``app_id`` with
    ``X-LC-Key`` (the app key, or ``<master key>,master``) or ``X-LC-Sign``
    (``md5(timestamp + key),timestamp[,master]``, at most ``sign_max_age`` old), and,
    when onto-web's ``auth`` is configured, a bearer token too (whose principal may only
    touch its own views). Errors are LeanCloud errors: 401 (code 401) for missing or
    wrong keys, 403 (119) for a view the caller may not touch, 404 (code 404) for an
    unknown function and (101) an unknown key, 400 (1) for a bad argument with ``field``,
    400 (142) for an action refusing valid arguments, 409 (305) for a lost race, 504
    (124) when the pipeline did not answer within ``timeout``.
    """

    class Config(_EngineEndpoint):
        views: list[str] = Field(
            min_length=1, description="View models whose actions are served, as 'module:Class'."
        )
        app_id: str | None = Field(
            None,
            description=(
                "The LeanCloud app id callers must send (X-LC-Id); null: no LeanCloud key "
                "check (only on loopback, or with auth)."
            ),
        )
        app_key: SecretStr | None = Field(
            None, description="The app key (LEANCLOUD_APP_KEY) accepted in X-LC-Key or X-LC-Sign."
        )
        master_key: SecretStr | None = Field(
            None, description="The master key (LEANCLOUD_APP_MASTER_KEY), also accepted."
        )
        sign_max_age: float = Field(
            900.0, gt=0, description="Seconds an X-LC-Sign timestamp stays acceptable."
        )

        @field_validator("views")
        @classmethod
        def _servable(cls, refs: list[str]) -> list[str]:
            cloud_functions(refs)  # raises ValueError saying why not
            return refs

        @model_validator(mode="after")
        def _keys_complete(self) -> LeanEngineFunctionsSource.Config:
            if self.app_id is not None and self.app_key is None and self.master_key is None:
                raise ValueError("app_id is set: set app_key or master_key (or both) too")
            if self.app_id is None and (self.app_key is not None or self.master_key is not None):
                raise ValueError("app_key and master_key need app_id")
            return self

        def _keyed(self) -> bool:
            return self.app_id is not None

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self.auth = Authenticator(config.auth)
        self.functions = cloud_functions(config.views)
        self._closed = False

    async def start(self, ctx: RuntimeContext) -> None:
        await super().start(ctx)
        server = get_server(self.config.host, self.config.port)
        routes = _routes(server)
        for name in self.functions:
            if name in routes.functions:
                raise ValueError(
                    f"cloud function {name!r} is already served at {self.config.host}:"
                    f"{self.config.port} by another pipeline"
                )
        app = server.claim(ctx.component, self.config)
        if self.config.app_id is not None and ctx.component in server.open_endpoints:
            server.open_endpoints.remove(ctx.component)  # closed by LeanCloud's keys
        for name, function in self.functions.items():
            routes.functions[name] = (self, function)
        routes.install(app)
        ctx.log.info("LeanEngine cloud functions: %s", ", ".join(sorted(self.functions)))

    async def close(self) -> None:
        self._closed = True
        await super().close()

    def _check_keys(self) -> None:
        """Raise ``_Refused(401)`` unless the request carries the app's id and a key."""
        config = self.config
        if config.app_id is None:
            return
        headers = request.headers
        app_id = headers.get("X-LC-Id") or headers.get("X-Avoscloud-Application-Id") or ""
        if not hmac.compare_digest(app_id.encode(), config.app_id.encode()):
            raise _Refused(401, "Unauthorized.", 401)
        app_key, master_key = _secret_value(config.app_key), _secret_value(config.master_key)
        sent = headers.get("X-LC-Key")
        if sent:
            key, _, kind = sent.partition(",")
            expected = master_key if kind == "master" else app_key
            if expected and hmac.compare_digest(key.encode(), expected.encode()):
                return
            raise _Refused(401, "Unauthorized.", 401)
        sign = headers.get("X-LC-Sign") or headers.get("X-Avoscloud-Request-Sign")
        if sign and self._sign_valid(sign, app_key, master_key):
            return
        raise _Refused(401, "Unauthorized.", 401)

    def _sign_valid(self, sign: str, app_key: str, master_key: str) -> bool:
        parts = sign.split(",")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            return False
        master = len(parts) == 3 and parts[2] == "master"
        if len(parts) == 3 and not master:
            return False
        key = master_key if master else app_key
        if not key:
            return False
        stamp = int(parts[1])
        if abs(time.time() * 1000 - stamp) > self.config.sign_max_age * 1000:
            return False
        expected = request_sign(key, master, now_ms=stamp).split(",")[0]
        return hmac.compare_digest(parts[0].lower().encode(), expected.encode())

    def run(self, function: CloudFunction, rpc: bool) -> Response:
        """Answer one call of ``function`` (raises ``_Refused``/``_Malformed``)."""
        self._check_keys()
        try:
            principal = self.auth.principal(bearer_token(request.headers.get("Authorization")))
        except AuthError as exc:
            raise _Refused(exc.status, exc.message) from None
        body = _json_body(self.config.max_body_bytes)
        if not isinstance(body, dict):
            raise _Malformed("the body must be a JSON object of parameters")
        params = {k: v for k, v in body.items() if not k.startswith("_")}
        if rpc:
            params = decode_leancloud(params)
        api_request = function.request(params)
        key = api_request.get("key")
        try:
            self.auth.check(principal, function.view, key, function.operation)
        except AuthError as exc:
            raise _Refused(exc.status, exc.message) from None
        if self._closed:
            raise _Refused(503, "the cloud functions are shutting down")
        try:
            answer = self.submit(api_request, self.config.timeout)
        except TimeoutError:
            raise _Refused(
                504,
                f"{function.name}: no answer from the pipeline within {self.config.timeout:g}s",
                _CODE_TIMEOUT,
            ) from None
        except RuntimeError as exc:
            raise _Refused(503, f"the cloud functions are not running: {exc}") from None
        except Exception:
            log.exception("the pipeline failed cloud function %s", function.name)
            raise _Refused(
                500,
                f"{function.name}: the pipeline could not answer; the server log says why",
                _CODE_SCRIPT_ERROR,
            ) from None
        if not (isinstance(answer, dict) and isinstance(answer.get("status"), int)):
            log.error("the pipeline answered %s with %r, not {status, body}", function.name, answer)
            raise _Refused(
                500,
                f"{function.name}: the pipeline's answer has no status; does it end with the "
                "api processor and the reply sink?",
                _CODE_SCRIPT_ERROR,
            )
        status, result = answer["status"], answer.get("body")
        if status == 200:
            return _answer({"result": result})
        error = result.get("error") if isinstance(result, dict) else None
        field = result.get("field") if isinstance(result, dict) else None
        message = error if isinstance(error, str) else f"{function.name} failed ({status})"
        if not isinstance(field, str):
            field = None
        if status == 422:  # valid arguments a rule of the domain refused
            return _leancloud_error(400, message, _CODE_REJECTED, field)
        return _leancloud_error(status, message, None, field)
