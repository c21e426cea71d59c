"""The contracts every connector implements: ``Source``, ``Processor``, ``Sink`` and ``Message``.

Any method below may be written ``def`` or ``async def``; the runtime awaits coroutines and
runs plain functions in a worker thread, so a blocking client library never stalls other
pipelines. Optional methods (``start``, ``close``, ``read_batch``, ``ack_batch``, ``positions``,
``process_batch``, ``due_messages``, ``settled``, ``write_exactly_once``) are looked up by
name on the instance and skipped when absent. The guide is docs/writing-connectors.md.

Lifecycle of a pipeline::

    sinks.start(ctx)  processors.start(ctx)  source.start(ctx)   (source last: reads go out)
    loop:
        msgs = source.read_batch(n)  or  [source.read()]
        outs = processor.process(msg) ...             (each processor in order)
        sink.write(outs)                              (every sink; retried with backoff)
        source.ack(msg)      when every sink confirmed (at_least_once), or
                             right after reading (at_most_once)
        source.nack(msg, e)  when the message could be neither delivered nor dead-lettered
    source.close()  processors.close()  sinks.close()

Each component class declares its settings as a nested pydantic ``Config`` model with
``extra="forbid"``; the runtime constructs it as ``cls(config)``. Anything that connects
belongs in ``start``, so a config can be validated without connecting.
"""

from __future__ import annotations

import enum
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import logging

    from onto_core.models.datastore import Datastore

__all__ = [
    "Guarantee",
    "Message",
    "Positions",
    "Processor",
    "ProcessorResult",
    "RuntimeContext",
    "ShardCoordinator",
    "Sink",
    "Source",
]


class Guarantee(enum.StrEnum):
    """Delivery guarantee a pipeline asks for and a component can give."""

    AT_MOST_ONCE = "at_most_once"
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


# Ids are a per-process random prefix plus a counter: unique across processes in practice,
# and far cheaper than a uuid4 per message. ``next`` on a count is atomic in CPython.
_ID_PREFIX = uuid.uuid4().hex[:12]
_ID_COUNTER = itertools.count(1)


def _new_id() -> str:
    return f"{_ID_PREFIX}-{next(_ID_COUNTER)}"


_now = time.time
_new_message = object.__new__  # a Message without running __init__ (see ``derive``)


class Message:
    """One unit of data moving through a pipeline.

    ``id`` is unique per message and names it in errors and dead letters. ``key`` orders and
    partitions (messages with one key stay in order). ``value`` is any JSON-like value or
    model. ``headers`` carry string metadata (dead letters record their error there).
    ``channel`` names where the message came from (topic, collection, ...). ``timestamp`` is
    seconds since the epoch. ``offset`` is the source's own position marker, opaque to
    everyone else, which it reads back in ``ack``/``nack``.

    A message costs one object until it is asked for more: its ``id`` is drawn the first
    time it is read (unique all the same) and its ``headers`` dict is made the first time
    it is touched, so a message nobody names or labels never pays for either.
    """

    __slots__ = ("_headers", "_id", "channel", "key", "offset", "timestamp", "value")

    def __init__(
        self,
        value: Any,
        key: str | None = None,
        id: str | None = None,
        headers: dict[str, str] | None = None,
        channel: str | None = None,
        timestamp: float | None = None,
        offset: Any = None,
    ) -> None:
        self.value = value
        self.key = key
        self._id = id
        self._headers = headers
        self.channel = channel
        self.timestamp = _now() if timestamp is None else timestamp
        self.offset = offset

    @property
    def id(self) -> str:
        found = self._id
        if found is None:
            found = self._id = _new_id()
        return found

    @id.setter
    def id(self, value: str) -> None:
        self._id = value

    @property
    def headers(self) -> dict[str, str]:
        found = self._headers
        if found is None:
            found = self._headers = {}
        return found

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        self._headers = value

    @classmethod
    def wrap_all(cls, values: Iterable[Any]) -> list[Message]:
        """A message per value, timestamped now; values that are messages already are kept.

        What ``Message(value)`` makes for each, at a fraction of the cost per value.
        """
        now = _now()
        wrapped: list[Message] = []
        append = wrapped.append
        for value in values:
            if isinstance(value, Message):
                append(value)
                continue
            message = _new_message(cls)
            message.value = value
            message.key = message._id = message._headers = None
            message.channel = message.offset = None
            message.timestamp = now
            append(message)
        return wrapped

    def derive(self, value: Any, **changes: Any) -> Message:
        """A new message carrying ``value`` that keeps this one's key, headers and channel."""
        derived = _new_message(Message)
        derived.value = value
        derived.key = self.key
        derived._id = None
        headers = self._headers
        derived._headers = dict(headers) if headers else None
        derived.channel = self.channel
        derived.timestamp = self.timestamp
        derived.offset = None
        if changes:
            for name, changed in changes.items():
                setattr(derived, name, changed)
        return derived

    @staticmethod
    def derive_each(messages: list[Message], values: list[Any]) -> list[Message | None]:
        """``messages[i].derive(values[i])`` for each ``i`` (``None`` where the value is
        ``None``: nothing to pass on), at a fraction of the cost per message."""
        derived: list[Message | None] = []
        append = derived.append
        for message, value in zip(messages, values, strict=True):
            if value is None:
                append(None)
                continue
            new = _new_message(Message)
            new.value = value
            new.key = message.key
            new._id = new.offset = None
            headers = message._headers
            new._headers = dict(headers) if headers else None
            new.channel = message.channel
            new.timestamp = message.timestamp
            append(new)
        return derived

    def _fields(self) -> tuple[Any, ...]:
        return (
            self.value,
            self.key,
            self.id,
            self.headers,
            self.channel,
            self.timestamp,
            self.offset,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the values it carries

    def __repr__(self) -> str:
        names = ("value", "key", "id", "headers", "channel", "timestamp", "offset")
        shown = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True))
        return f"Message({shown})"

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON-ready dict (used by file/stdout sinks and dead letters)."""
        value = self.value
        dump = getattr(value, "to_dict", None) or getattr(value, "model_dump", None)
        if dump is not None:
            value = dump()
        return {
            "id": self.id,
            "key": self.key,
            "channel": self.channel,
            "timestamp": self.timestamp,
            "headers": self.headers,
            "value": value,
        }


def _no_wake() -> None:
    return None


@dataclass(slots=True)
class RuntimeContext:
    """What the runtime hands each component in ``start``.

    ``wake()`` may be called from any thread: the pipeline's worker then calls the
    processors' ``due_messages()`` soon, even when no input arrives (see ``Processor``).
    """

    pipeline: str
    component: str
    log: logging.Logger
    datastore: Datastore | None = None
    wake: Callable[[], None] = _no_wake


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Positions:
    """Where a source resumes once some consumed messages are done, for a sink to commit.

    Under ``exactly_once`` a transactional sink commits its outputs together with the
    source's position after the inputs they came from, so neither counts without the
    other. It asks the source for that position with ``source.positions(consumed, sink)``
    (see ``Source``) and gets one of these:

    - ``system`` names where the positions live (``"kafka"``: offsets of a consumer
      group). A sink commits only positions of a system it can write in the same
      transaction as its outputs, and raises ``SinkError`` naming the system otherwise.
    - ``value`` is what to commit, in the form that system's documentation gives (for
      ``"kafka"``, ``onto_kafka.KafkaPositions``: the offsets per partition and the group
      metadata for ``send_offsets_to_transaction``).
    - ``committed()`` is called by the sink once the transaction holding ``value`` has
      committed, and never after an abort, so the source knows what is saved.
    """

    system: str
    value: Any
    committed: Callable[[], None] = _nothing


@runtime_checkable
class Source(Protocol):
    """Where messages come from.

    Lifecycle: ``start(ctx)`` (optional) connects; ``read()`` returns the next message,
    waiting for one if none is ready, or ``None`` once a finite source is exhausted (the
    pipeline then drains and stops); ``ack(msg)`` says the message is done and must not be
    delivered again; ``nack(msg, error)`` says it was not processed, and a source that can
    redeliver should; ``close()`` (optional) releases connections and must be safe to call
    twice. An optional ``read_batch(max_messages)`` returns up to that many ready messages
    (at least one, or an empty list once exhausted) and is used when present. An optional
    ``ack_batch(msgs)`` acks several messages, in order, with one call (a source that
    saves its position per ack saves it once); when present the runtime calls it instead
    of ``ack`` for every batch delivered whole, so it must mean exactly ``ack`` on each.

    ``read`` and ``read_batch`` of a source with no end (a broker, a change feed) wait
    while nothing is ready, however long that takes: ``None`` or ``[]`` ends the pipeline.

    An optional ``positions(consumed, committer)`` returns the ``Positions`` the source
    resumes from once the messages ``consumed`` are done, for ``committer`` (a sink with
    ``write_exactly_once``) to commit inside its transaction. From the first call on, the
    source leaves saving those positions to such commits; ``ack`` is still called for
    each consumed message after ``write_exactly_once`` returned and must not save them
    again. A source whose positions only one transaction may carry raises
    ``SourceError`` when a second committer asks.

    Class attribute ``guarantees`` lists what the source can give: ``at_least_once`` needs
    a source that redelivers what was never acked (after a restart, for durable sources).

    Errors: raise ``SourceError`` for a failure worth retrying (the runtime backs off and
    reads again); any other exception stops the pipeline with that error.
    """

    guarantees: ClassVar[frozenset[Guarantee]]

    def read(self) -> Awaitable[Message | None] | Message | None: ...

    def ack(self, message: Message) -> Awaitable[None] | None: ...

    def nack(self, message: Message, error: BaseException) -> Awaitable[None] | None: ...


ProcessorResult = Message | Iterable[Message] | None
"""What ``Processor.process`` returns: one message, several, or ``None`` to drop it."""


@runtime_checkable
class Processor(Protocol):
    """Transforms messages between a source and the sinks.

    ``process(msg)`` returns a message, an iterable of messages (fan-out) or ``None`` (the
    message is filtered out and acked). An optional ``process_batch(msgs)`` returns one
    result per input, in order, and is used when present. Raising marks that one message
    failed: it is retried per the pipeline's retry policy, then dead-lettered.

    Optional, for processors that keep state:

    - ``due_messages()`` returns messages the processor emits without an input (views
      built at start-up or taken over from another worker). The worker calls it before
      the first batch and again whenever ``ctx.wake()`` was called; its messages go
      through the later processors to every sink like any other, with nothing to ack.
    - ``settled(delivered, failed)`` is called with this processor's outputs once their
      fate is known: ``delivered`` reached every sink, ``failed`` did not (dead-lettered
      or to be delivered again). It runs before the inputs are acked, so state saved
      there is never behind what the source will not deliver again.
    - ``preferred_batch_size`` (a class attribute, an int): the batch size its pipeline
      uses when the config sets none (up to the pipeline's ``buffer``).
    """

    def process(self, message: Message) -> Awaitable[ProcessorResult] | ProcessorResult: ...


@runtime_checkable
class Sink(Protocol):
    """Where messages go.

    ``write(msgs)`` delivers a batch (one message when the sink or pipeline does not batch)
    and returns only once the destination has confirmed every message in it. Raising means
    none of the batch may be counted as delivered: the runtime retries the batch with
    backoff, then writes its messages one at a time to find the failing one, which goes to
    the dead-letter sink. A sink that writes part of a batch before failing will see those
    messages again; that is the bounded duplication at_least_once allows.

    Class attributes: ``guarantees`` lists what the sink can give (``exactly_once`` needs an
    idempotent or transactional write); ``max_batch_size`` (optional, an int) caps batches.
    The runtime reads it from the instance, so a class attribute or one set in
    ``__init__`` from the config both work. ``start(ctx)`` and ``close()`` are optional;
    ``close`` flushes and must be idempotent.

    Optional, transactional: ``write_exactly_once(outputs, consumed, source)`` is called
    instead of ``write`` under ``exactly_once``. It commits ``outputs`` together with the
    source's position after ``consumed`` (from ``source.positions(consumed, self)``), or
    raises having committed neither; it may return how many outputs it wrote. The
    runtime acks ``consumed`` after it returns.
    """

    guarantees: ClassVar[frozenset[Guarantee]]

    def write(self, messages: list[Message]) -> Awaitable[None] | None: ...


@runtime_checkable
class ShardCoordinator(Protocol):
    """Decides which shards of a sharded processor (such as a sharded ``view``) this worker owns.

    Every worker of one deployment runs the same coordinator config and the same shard
    count; the coordinator gives each shard to exactly one live worker, and moves the
    shards of a worker that stops or dies to the others.

    Lifecycle: ``start(ctx, shards, on_change)`` joins (it may return before the first
    assignment); ``owned()`` is the set of shards (``0 .. shards-1``) this worker owns now,
    or ``None`` while that is not known (joining, or a reassignment under way: the worker
    then emits nothing until it is known, so a moving shard never has two owners);
    ``on_change()`` is called, from any thread, whenever ``owned()`` changed; ``close()``
    leaves, so the others take over at once, and must be safe to call twice. Any method
    may be sync or async.
    """

    def owned(self) -> frozenset[int] | None: ...
