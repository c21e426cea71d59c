"""The ``cloud_event`` and ``http_function`` sources: a function's invocations as messages."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onto_core.builtin.api import RequestSource
from onto_core.builtin.changes import change_message
from onto_core.builtin.view import VERSION_HEADER
from onto_core.config import PipelineConfig
from onto_core.errors import SourceError
from onto_core.models.datastore import Change
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_functions._events import DocumentEvent, micros

if TYPE_CHECKING:
    from onto_firestore.tasks import TaskOutcome

__all__ = ["CloudEventSource", "HttpFunctionSource", "TaskMode", "started_source"]

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


class TaskMode(BaseModel):
    """The ``cloud_event`` source's task mode ("Query+Task"): trigger documents, each
    version committed once with its outputs (the ``firestore_tasks`` rules)."""

    model_config = ConfigDict(extra="forbid")

    status_field: str = Field("status", description="Top-level field with the state.")
    pending: str = Field("pending", description="State of a trigger to process.")
    done: str = Field("done", description="State the commit sets.")
    claims_collection: str = Field(
        "_onto_task_claims", description="One claim per committed trigger version."
    )
    claim_ttl: float = Field(
        7 * 86400.0,
        gt=0,
        description="Seconds after which a claim's 'expireAt' passes (for a TTL policy).",
    )
    transaction_attempts: int = Field(
        5, ge=1, description="Tries of one trigger's contended transaction."
    )
    worker: str | None = Field(None, description="Name recorded in claims (default: host:pid).")
    project: str | None = Field(None, description="Default: the firestore datastore's.")
    database: str = Field("(default)", description="Firestore database id.")
    emulator_host: str | None = Field(None, description="host:port of an emulator.")

    @field_validator("status_field")
    @classmethod
    def _top_level(cls, field: str) -> str:
        if "." in field:
            raise ValueError(f"status_field {field!r} must be a top-level field")
        return field

    def not_a_task(self, event: DocumentEvent) -> str | None:
        """Why ``event`` is no task, from its payload alone (``None``: it is one).

        A task is a created, updated or written document whose status is ``pending``;
        the ``done`` mark a commit writes is itself such a write, and is no task.
        """
        if event.data is None:
            return "deleted"
        status = event.data.get(self.status_field)
        if status != self.pending:
            return f"{self.status_field} is {status!r}, not {self.pending!r}"
        if event.update_time is None:
            return "the event's value has no update time"
        return None


class CloudEventSource:
    """Firestore document events delivered to a Cloud Function, as changes (or, with
    ``tasks``, as trigger documents each committed once with its outputs).

    Each invocation of the function hands one CloudEvent over (``deliver``) and waits:
    the event becomes a change message (``{seq, collection, docId, op, data, timestamp}``,
    as the ``changes`` source emits it, with the event's id as the message id) and the
    invocation returns once every sink confirmed what it caused (ack), or fails when the
    pipeline gave up on it (nack), so the platform delivers it again.

    Task mode (``tasks`` set, ``exactly_once``, one ``firestore`` sink): an event whose
    document is ``pending`` becomes ``{docId, path, data}`` as ``firestore_tasks`` emits
    it (``deliver_task``), its offset ``(path, update time)``, and the sink commits it
    with ``commit_task``: the outputs, the claim of that version and the ``done`` mark in
    one Firestore transaction (``onto_firestore.tasks.commit_trigger``).
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

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
        tasks: TaskMode | None = Field(
            None,
            description=(
                "Task mode ('Query+Task', needs guarantee exactly_once and one firestore"
                " sink): `true`, or its settings. Each pending document is committed once"
                " with its outputs and marked done (docs/functions.md)."
            ),
        )

        @field_validator("tasks", mode="before")
        @classmethod
        def _switch(cls, value: Any) -> Any:
            if value is True:
                return {}
            return None if value is False else value

    @classmethod
    def check_pipeline(cls, pipeline: PipelineConfig) -> None:
        """exactly_once only in task mode; task mode only with exactly_once, no
        ``stateless_view`` and exactly one ``firestore`` sink."""
        tasks = getattr(pipeline.source.config, "tasks", None)
        exactly_once = pipeline.guarantee is Guarantee.EXACTLY_ONCE
        if tasks is None:
            if exactly_once:
                raise ValueError(
                    "guarantee exactly_once is offered in task mode only: set 'tasks: true'"
                    " on the source to commit each pending trigger document once with its"
                    " outputs, or choose at_least_once (changes are effectively once"
                    " through the stateless_view records and the sinks' versions)"
                )
            return
        if not exactly_once:
            raise ValueError(
                "'tasks' commits each trigger with its outputs in one transaction: set"
                f" 'guarantee: exactly_once' on the pipeline (it is {pipeline.guarantee.value})"
            )
        from onto_functions._view import StatelessViewProcessor

        for i, spec in enumerate(pipeline.processors):
            if issubclass(spec.info.cls, StatelessViewProcessor):
                raise ValueError(
                    f"'tasks' cannot feed processors[{i}] ({spec.type!r}): its outputs"
                    " belong to the roots the reverse index finds, not to the trigger, and"
                    " are effectively once already; build a trigger's outputs with a 'map'"
                    " processor"
                )
        try:
            from onto_firestore.tasks import check_task_sinks
        except ImportError:
            raise ValueError(
                "'tasks' commits through Firestore: install the onto-firestore plugin"
            ) from None
        check_task_sinks(pipeline)

    def __init__(self, config: Config) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Message | None] | None = None
        self._waiting: dict[int, concurrent.futures.Future[Any]] = {}
        self._pipeline = ""
        self._ctx: RuntimeContext | None = None
        self._client: Any = None  # task mode: the Firestore client
        self._own_client = False
        self._claims: Any = None  # task mode: onto_firestore.tasks.TriggerClaims
        self._outcomes: dict[int, TaskOutcome] = {}  # committed, not acked yet

    async def start(self, ctx: RuntimeContext) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._pipeline = ctx.pipeline
        self._ctx = ctx
        tasks = self.config.tasks
        if tasks is not None:
            from onto_firestore.datastore import check_collection, component_client
            from onto_firestore.tasks import TriggerClaims

            check_collection(tasks.claims_collection)
            self._client, self._own_client = await component_client(
                ctx,
                "cloud_event source (tasks)",
                SourceError,
                tasks.project,
                tasks.database,
                tasks.emulator_host,
            )
            self._claims = TriggerClaims.of(tasks)
        _register(ctx.pipeline, self)

    def deliver(self, change: Change, event_id: str, event_type: str = "") -> None:
        """Put ``change`` through the pipeline and block until it is done (any thread).

        Raises what the pipeline failed with when it nacked the change, or
        ``TimeoutError`` after ``timeout`` seconds.
        """
        message = change_message(change)
        message.id = event_id
        self._run(message, event_type)

    def deliver_task(self, event: DocumentEvent, event_id: str, event_type: str = "") -> str:
        """Task mode: commit the trigger ``event`` carries once, and say how it went.

        An event that is no task (a delete, or a document that is not pending, such as
        the ``done`` mark's own event) is answered from its payload, reading nothing:
        ``"not a task: <why>"``. A task goes through the pipeline, and the answer is the
        commit's outcome: ``applied``, ``taken`` (that version was committed before),
        ``stale`` (the trigger changed since: its newer version has an event of its own)
        or ``gone``. Raises when the commit failed (the invocation fails and the platform
        delivers the event again), or ``TimeoutError`` after ``timeout`` seconds.
        """
        tasks = self.config.tasks
        if tasks is None:
            raise RuntimeError("the cloud_event source is not in task mode ('tasks')")
        why = tasks.not_a_task(event)
        if why is not None:
            return f"not a task: {why}"
        assert event.update_time is not None
        assert event.data is not None
        message = Message(
            {"docId": event.doc_id, "path": event.path, "data": event.data},
            key=event.path,
            id=event_id,
            # Outputs derived from it carry it: a view's version, for the sink.
            headers={VERSION_HEADER: str(micros(event.update_time))},
            channel=event.collection,
            offset=(event.path, event.update_time),
        )
        outcome = self._run(message, event_type)
        return str(outcome.value)

    def commit_task(
        self, message: Message, stage: Callable[[Any], Callable[[Any], None]]
    ) -> TaskOutcome:
        """Commit ``message``'s trigger version once, with what ``stage`` writes (blocking):
        ``onto_firestore.tasks.commit_trigger`` with this source's client and settings.
        The ``firestore`` sink calls it under exactly_once."""
        from onto_firestore.tasks import commit_trigger

        if self._client is None:
            raise SourceError.at(self._ctx, "cloud_event source: not started in task mode")
        path, read_time = message.offset
        outcome = commit_trigger(self._client, path, read_time, stage, self._claims, self._ctx)
        self._outcomes[id(message)] = outcome
        if self._ctx is not None:
            self._ctx.log.info("event %s: trigger %s %s", message.id, path, outcome.value)
        return outcome

    def _run(self, message: Message, event_type: str) -> Any:
        """Put ``message`` through the pipeline; what its ack settled it with."""
        if self._loop is None or self._queue is None:
            raise RuntimeError("the cloud_event source has not started")
        event_id = message.id
        message.headers[EVENT_ID_HEADER] = event_id
        if event_type:
            message.headers[EVENT_TYPE_HEADER] = event_type
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._waiting[id(message)] = done
        self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
        try:
            return done.result(self.config.timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"event {event_id} was not delivered within {self.config.timeout}s"
            ) from None
        finally:
            self._waiting.pop(id(message), None)
            self._outcomes.pop(id(message), None)

    async def read_batch(self, max_messages: int) -> list[Message]:
        from onto_core.builtin.api import read_queued

        assert self._queue is not None
        return await read_queued(self._queue, max_messages)

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        done = self._waiting.get(id(message))
        if done is None or done.done():
            return
        if self.config.tasks is None:
            done.set_result(None)
            return
        outcome = self._outcomes.pop(id(message), None)
        if outcome is not None:
            done.set_result(outcome)
            return
        # Acked uncommitted: its transaction failed every attempt and the dead-letter sink
        # took the outputs. Nothing marks the trigger: fail, so the platform redelivers.
        done.set_exception(
            SourceError.at(
                self._ctx,
                f"event {message.id}: trigger {message.offset[0]} was not committed (its"
                " transaction failed every attempt); the event is to be delivered again",
            )
        )

    async def nack(self, message: Message, error: BaseException) -> None:
        self._outcomes.pop(id(message), None)
        done = self._waiting.get(id(message))
        if done is not None and not done.done():
            done.set_exception(error)

    async def close(self) -> None:
        _unregister(self._pipeline, self)
        client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()
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
