"""Requests as messages: read views and run actions through a pipeline, reply to the caller.

A transport (REST, JSON-RPC, WebSocket) is a ``RequestSource``: each request becomes a
message whose value is an *API request*, and the caller waits for its reply. The ``api``
processor answers it (reading a view, listing views, or running an action) and the
``reply`` sink hands the answer back::

    pipelines:
      api:
        source: {type: rest, views: ["examples.meeting_room.views:MeetingSession"]}
        processors: [{type: api}]
        sinks: [{type: reply}]

An API request is ``{"op": "read" | "list" | "action", "view": "module:Class", "key": ...,
"action": ..., "arguments": {...}, "filters": {...}, "limit": n}``; its answer is
``{"status": <HTTP-like code>, "body": ...}`` where a failure's body is
``{"error": message, "field": name or null}``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from onto_core.builtin.view import load_view
from onto_core.errors import (
    ActionError,
    ConflictError,
    DatastoreError,
    NotFoundError,
    ProcessorError,
)
from onto_core.models.domain import use_datastore
from onto_core.models.view import ViewModel, build_views, find_view, run_action
from onto_core.protocols import Guarantee, Message, RuntimeContext

__all__ = [
    "REPLY_HEADER",
    "ApiProcessor",
    "Replies",
    "ReplySink",
    "RequestSource",
    "read_queued",
    "replies",
]

REPLY_HEADER = "onto-reply-to"
log = logging.getLogger("onto.api")


class Replies:
    """Callers waiting for answers, by request id (process-wide, thread-safe).

    A request is either waiting, started (``claim``: whoever answers it began), or gone.
    A caller that stops waiting (``abandon``) before it started takes it out for good:
    ``claim`` then refuses, so a request whose caller was told it timed out never runs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, concurrent.futures.Future[Any]] = {}
        self._started: set[str] = set()

    def expect(self, request_id: str) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._waiting[request_id] = future
        return future

    def _take(self, request_id: str) -> concurrent.futures.Future[Any] | None:
        with self._lock:
            self._started.discard(request_id)
            return self._waiting.pop(request_id, None)

    def claim(self, request_id: str) -> bool:
        """Start answering ``request_id``; False if its caller no longer waits for it."""
        with self._lock:
            if request_id not in self._waiting:
                return False
            self._started.add(request_id)
            return True

    def abandon(self, request_id: str) -> bool:
        """The caller stops waiting: True if the request had not started (it never will)."""
        with self._lock:
            if request_id in self._started:
                return False
            self._waiting.pop(request_id, None)
            return True

    def resolve(self, request_id: str, value: Any) -> bool:
        """Answer request ``request_id``; False if nobody waits for it any more."""
        future = self._take(request_id)
        if future is None or future.done():
            return False
        future.set_result(value)
        return True

    def fail(self, request_id: str, error: BaseException) -> bool:
        """Fail request ``request_id`` with ``error``; False if nobody waits for it."""
        future = self._take(request_id)
        if future is None or future.done():
            return False
        future.set_exception(error)
        return True

    def forget(self, request_id: str) -> None:
        self._take(request_id)


replies = Replies()


class RequestSource:
    """A source fed by callers in other threads (web handlers) who wait for a reply.

    ``submit(value)`` puts a message in the pipeline and blocks until the ``reply`` sink
    answers it, the pipeline nacks it, or ``timeout`` passes (``TimeoutError``). Subclass
    it and call ``submit`` from the transport's handlers; ``start`` must run first.

    A request that times out before the pipeline started on it never runs afterwards; one
    already started is waited for up to ``timeout`` more, and if it still has no answer
    the ``TimeoutError`` says its outcome is unknown. At most ``max_pending`` requests
    wait for an answer at once: beyond that ``submit`` answers 503 at once rather than
    queue more.
    """

    max_pending: ClassVar[int] = 1000

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Message | None] | None = None
        self._pending = 0
        self._pending_lock = threading.Lock()

    async def start(self, ctx: RuntimeContext) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()

    def submit(
        self, value: dict[str, Any], timeout: float = 30.0, headers: dict[str, str] | None = None
    ) -> Any:
        """Send ``value`` through the pipeline; the reply's value (blocking).

        ``headers`` go on the message: a transport passes the caller's W3C trace context
        (``onto_core.tracing.carried``) so the request continues the caller's trace.
        """
        if self._loop is None or self._queue is None:
            raise RuntimeError("the request source has not started")
        with self._pending_lock:
            if self._pending >= self.max_pending:
                return _error(
                    503, f"too many requests waiting ({self.max_pending}); try again shortly"
                )
            self._pending += 1
        try:
            return self._submit(value, timeout, headers)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _submit(self, value: dict[str, Any], timeout: float, headers: dict[str, str] | None) -> Any:
        assert self._loop is not None
        assert self._queue is not None
        message = Message(value, headers=dict(headers) if headers else None)
        message.headers[REPLY_HEADER] = message.id
        future = replies.expect(message.id)
        self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            if replies.abandon(message.id):
                raise TimeoutError(
                    f"no reply to request {message.id} within {timeout}s; it will not run"
                ) from None
        try:  # already being answered: its outcome is on its way
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            replies.forget(message.id)
            raise TimeoutError(
                f"request {message.id} started but had no reply within {2 * timeout}s;"
                " its outcome is unknown"
            ) from None

    async def read_batch(self, max_messages: int) -> list[Message]:
        assert self._queue is not None
        return await read_queued(self._queue, max_messages)

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        pass  # the reply sink has answered (or the request was filtered out)

    async def ack_batch(self, messages: list[Message]) -> None:
        pass

    async def nack(self, message: Message, error: BaseException) -> None:
        replies.fail(message.headers.get(REPLY_HEADER, message.id), error)

    async def close(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)


async def read_queued(queue: asyncio.Queue[Message | None], max_messages: int) -> list[Message]:
    """Up to ``max_messages`` from ``queue``, waiting for the first; ``[]`` when the
    ``None`` that ends it comes first. A ``None`` met after the first message is left
    for the next read."""
    first = await queue.get()
    if first is None:
        return []
    batch = [first]
    while len(batch) < max_messages and not queue.empty():
        item = queue.get_nowait()
        if item is None:
            queue.put_nowait(None)
            break
        batch.append(item)
    return batch


def _answer(status: int, body: Any) -> dict[str, Any]:
    return {"status": status, "body": body}


def _error(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    return _answer(status, {"error": message, "field": field})


class ApiProcessor:
    """Answers API requests: reads a view, lists views, or runs an action.

    Every outcome is an answer, never an exception, with the status every transport
    shares: an unknown view, key or action, or a document the action needs that does not
    exist, is 404; a bad argument is 400 naming the field; an action refusing valid
    arguments (a rule of the domain) is 422; a lost race is 409; an unreachable datastore
    is 503; anything unexpected is 500 (and logged). The answer keeps the request's
    headers, so the ``reply`` sink finds who asked. A request whose caller has stopped
    waiting (it was told the request timed out) is dropped unanswered, never run.
    """

    needs_datastore: ClassVar[bool] = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_list: int = Field(1000, ge=1, description="Most views one list request returns.")

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Any = None
        self._views: dict[str, type[ViewModel]] = {}

    async def start(self, ctx: RuntimeContext) -> None:
        if ctx.datastore is None:
            raise ProcessorError("the api processor needs a datastore", component=ctx.component)
        self.store = ctx.datastore

    def _view(self, ref: Any) -> type[ViewModel]:
        if not isinstance(ref, str):
            raise ActionError(f"'view' must name a view model, got {ref!r}", field="view")
        if ref not in self._views:
            try:
                self._views[ref] = load_view(ref)
            except ValueError as exc:
                raise ActionError(str(exc), field="view", not_found=True) from None
        return self._views[ref]

    def process(self, message: Message) -> Message | None:
        request_id = message.headers.get(REPLY_HEADER)
        if request_id is not None and not replies.claim(request_id):
            return None  # its caller was told it timed out: it must not run now
        request = message.value if isinstance(message.value, dict) else {}
        try:
            answer = self.answer(request)
        except ActionError as exc:
            status = 404 if exc.not_found else 422 if exc.refused else 400
            answer = _error(status, exc.message, exc.field)
        except NotFoundError as exc:
            answer = _error(404, exc.message)
        except ConflictError as exc:
            answer = _error(409, exc.message)
        except DatastoreError as exc:
            answer = _error(503, exc.message)
        except Exception:
            log.exception("request %s failed", message.id)
            answer = _error(500, f"internal error handling request {message.id}")
        return message.derive(answer)

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The answer to one API request (raises ``ActionError`` for a bad one)."""
        op = request.get("op")
        view = self._view(request.get("view"))
        if op == "read":
            with use_datastore(self.store):
                found = find_view(view, _key(request), store=self.store)
            if found is None:
                raise ActionError(
                    f"{view.view_name} {_key(request)!r} does not exist", not_found=True
                )
            return _answer(200, found.to_dict())
        if op == "list":
            return _answer(
                200, self._list(view, request.get("filters") or {}, request.get("limit"))
            )
        if op == "action":
            name = request.get("action")
            if not isinstance(name, str):
                raise ActionError("'action' must name an action", field="action")
            arguments = request.get("arguments") or {}
            if not isinstance(arguments, dict):
                raise ActionError("'arguments' must be an object", field="arguments")
            after = run_action(self.store, view, _key(request), name, arguments)
            return _answer(200, after.to_dict() if after is not None else None)
        raise ActionError(f"unknown op {op!r}; expected read, list or action", field="op")

    def _list(self, view: type[ViewModel], filters: dict[str, Any], limit: Any) -> list[Any]:
        wanted = {}
        by_alias = {f.alias or n: n for n, f in view.model_fields.items()}
        for name, raw in filters.items():
            field_name = by_alias.get(name, name)
            info = view.model_fields.get(field_name)
            if info is None:
                raise ActionError(
                    f"{view.view_name} has no field {name!r} to filter on", field=name
                )
            try:
                adapter: TypeAdapter[Any] = TypeAdapter(info.annotation or Any)
                wanted[field_name] = adapter.validate_python(raw)
            except ValidationError as exc:
                message = exc.errors()[0]["msg"]
                raise ActionError(f"filter {name}: {message}", field=name) from None
        cap = self.config.max_list
        if limit is not None:
            if not isinstance(limit, int) or limit < 1:
                raise ActionError(f"limit must be a positive integer, got {limit!r}", field="limit")
            cap = min(cap, limit)
        found: list[Any] = []
        with use_datastore(self.store):
            for root_id, _ in self.store.query(view.root.collection):
                root = view.root.find(root_id)
                for item in build_views(view, root) if root is not None else []:
                    if all(getattr(item, f) == v for f, v in wanted.items()):
                        found.append(item.to_dict())
                        if len(found) >= cap:
                            return found
        return found


def _key(request: dict[str, Any]) -> str:
    key = request.get("key")
    if not isinstance(key, str) or not key:
        raise ActionError("'key' must be a non-empty string", field="key")
    return key


class ReplySink:
    """Hands each answer back to the caller waiting on its request (see ``RequestSource``)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        pass

    async def write(self, messages: list[Message]) -> None:
        for message in messages:
            request_id = message.headers.get(REPLY_HEADER)
            if request_id is None:
                log.warning("message %s reached the reply sink without a request", message.id)
                continue
            replies.resolve(request_id, message.value)
