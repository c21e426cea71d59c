"""The ``cloud_event`` and ``http_function`` sources: a function's invocations as messages."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from onto_core.builtin.api import RequestSource
from onto_core.builtin.changes import change_message
from onto_core.models.datastore import Change
from onto_core.protocols import Guarantee, Message, RuntimeContext

__all__ = ["CloudEventSource", "HttpFunctionSource", "started_source"]

EVENT_ID_HEADER = "ce-id"
EVENT_TYPE_HEADER = "ce-type"

_started: dict[str, Any] = {}  # pipeline → its started source, in this process
_started_lock = threading.Condition()


def started_source(pipeline: str, timeout: float) -> Any:
    """The source of ``pipeline`` once it started (``TimeoutError`` after ``timeout``)."""
    with _started_lock:
        if not _started_lock.wait_for(lambda: pipeline in _started, timeout):
            raise TimeoutError(f"pipeline {pipeline!r} did not start within {timeout}s")
        return _started[pipeline]


def _register(pipeline: str, source: Any) -> None:
    with _started_lock:
        _started[pipeline] = source
        _started_lock.notify_all()


def _unregister(pipeline: str, source: Any) -> None:
    with _started_lock:
        if _started.get(pipeline) is source:
            del _started[pipeline]


class CloudEventSource:
    """Firestore document events delivered to a Cloud Function, as changes.

    Each invocation of the function hands one CloudEvent over (``deliver``) and waits:
    the event becomes a change message (``{seq, collection, docId, op, data, timestamp}``,
    as the ``changes`` source emits it, with the event's id as the message id) and the
    invocation returns once every sink confirmed what it caused (ack), or fails when the
    pipeline gave up on it (nack), so the platform delivers it again.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        collections: list[str] = Field(
            default_factory=list,
            description=(
                "Collections whose document writes trigger the function (a path such as"
                " 'users/{uid}/notes' for subcollections): what `onto functions build`"
                " writes the deploy commands and Firebase triggers for."
            ),
        )
        timeout: float = Field(
            300.0,
            gt=0,
            description=(
                "Seconds an invocation waits for its event to be delivered; keep it below"
                " the function's own timeout so a slow event fails (and is retried) first."
            ),
        )

    def __init__(self, config: Config) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Message | None] | None = None
        self._waiting: dict[int, concurrent.futures.Future[None]] = {}
        self._pipeline = ""

    async def start(self, ctx: RuntimeContext) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._pipeline = ctx.pipeline
        _register(ctx.pipeline, self)

    def deliver(self, change: Change, event_id: str, event_type: str = "") -> None:
        """Put ``change`` through the pipeline and block until it is done (any thread).

        Raises what the pipeline failed with when it nacked the change, or
        ``TimeoutError`` after ``timeout`` seconds.
        """
        if self._loop is None or self._queue is None:
            raise RuntimeError("the cloud_event source has not started")
        message = change_message(change)
        message.id = event_id
        message.headers[EVENT_ID_HEADER] = event_id
        if event_type:
            message.headers[EVENT_TYPE_HEADER] = event_type
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._waiting[id(message)] = done
        self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
        try:
            done.result(self.config.timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"event {event_id} was not delivered within {self.config.timeout}s"
            ) from None
        finally:
            self._waiting.pop(id(message), None)

    async def read_batch(self, max_messages: int) -> list[Message]:
        from onto_core.builtin.api import read_queued

        assert self._queue is not None
        return await read_queued(self._queue, max_messages)

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        done = self._waiting.get(id(message))
        if done is not None and not done.done():
            done.set_result(None)

    async def nack(self, message: Message, error: BaseException) -> None:
        done = self._waiting.get(id(message))
        if done is not None and not done.done():
            done.set_exception(error)

    async def close(self) -> None:
        _unregister(self._pipeline, self)
        if self._queue is not None:
            self._queue.put_nowait(None)
        for done in list(self._waiting.values()):
            if not done.done():
                done.set_exception(RuntimeError("the function is shutting down"))


class HttpFunctionSource(RequestSource):
    """Requests to an HTTP function as API requests (read a view, list views, run an
    action), answered by the ``api`` processor and the ``reply`` sink.

    The request body is the API request itself, ``{"op": "read" | "list" | "action",
    "view": "module:Class", "key": ..., "action": ..., "arguments": {...}}``; the answer's
    ``status`` becomes the HTTP status and its ``body`` the JSON body.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        timeout: float = Field(30.0, gt=0, description="Seconds a request waits for its answer.")

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config
        self._pipeline = ""

    async def start(self, ctx: RuntimeContext) -> None:
        await super().start(ctx)
        self._pipeline = ctx.pipeline
        _register(ctx.pipeline, self)

    async def close(self) -> None:
        _unregister(self._pipeline, self)
        await super().close()
