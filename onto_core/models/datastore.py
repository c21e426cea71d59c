"""The ``Datastore`` protocol: documents in collections, plus a durable change feed.

Datastore methods are synchronous and must be safe to call from several threads: view
build functions read through them directly, and async code calls them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar, runtime_checkable

import pydantic_core

if TYPE_CHECKING:
    from onto_core.models.query import Condition
    from onto_core.models.transaction import Transaction

__all__ = [
    "Change",
    "ChangeListeners",
    "ChangeOp",
    "Datastore",
    "Documents",
    "OpenInBlock",
    "ViewRecord",
    "copy_json",
    "decode_json",
]

log = logging.getLogger("onto.datastore")

R = TypeVar("R")


def copy_json(value: Any) -> Any:
    """A copy of a JSON value: new dicts and lists all the way down (scalars are shared)."""
    if type(value) is dict:
        return {k: copy_json(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if type(value) is list:
        return [copy_json(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = (dict, list)


def decode_json(text: str | bytes) -> Any:
    """A stored JSON document as Python values, as ``json.loads`` gives them.

    Parsed by pydantic-core (several times faster, which counts when a first build reads
    every document); the rare text it refuses and ``json`` takes (a lone surrogate escape)
    goes to ``json``.
    """
    try:
        return pydantic_core.from_json(text)
    except ValueError:
        return json.loads(text)


class OpenInBlock:
    """``with store:`` opens a datastore for the block and closes it after (a mixin for
    classes with ``open()`` and ``close()``)."""

    def __enter__(self) -> Self:
        self.open()  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


class ChangeOp(enum.StrEnum):
    """What happened to a document."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a change feed.

    ``seq`` increases strictly with every write to the store, so a reader that remembers
    the last ``seq`` it finished can resume exactly there. ``data`` is the document after
    the change (``None`` for a delete); ``timestamp`` is seconds since the epoch.
    ``trace`` is the W3C ``traceparent`` of the span that wrote it, when the writer was
    traced (``onto_core.tracing.current_traceparent``): the ``changes`` source hands it
    on in the message's headers. It is not part of ``to_dict``.
    """

    seq: int
    collection: str
    doc_id: str
    op: ChangeOp
    data: dict[str, Any] | None
    timestamp: float
    trace: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        """The change ``to_dict`` produced (as the ``changes`` source emits it)."""
        return cls(
            seq=int(data["seq"]),
            collection=str(data["collection"]),
            doc_id=str(data["docId"]),
            op=ChangeOp(data["op"]),
            data=data.get("data"),
            timestamp=float(data.get("timestamp", 0.0)),
            trace=data.get("trace"),
        )

    def log_entry(self) -> dict[str, Any]:
        """``to_dict`` plus the ``trace`` when there is one: what a datastore keeping its
        change log as documents stores (``from_dict`` reads it back)."""
        entry = self.to_dict()
        if self.trace is not None:
            entry["trace"] = self.trace
        return entry

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "collection": self.collection,
            "docId": self.doc_id,
            "op": self.op.value,
            "data": self.data,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class ViewRecord:
    """What the reactive engine last delivered for one view: kept in the datastore.

    ``name`` groups the records of one view pipeline. ``digest`` fingerprints the view's
    output; ``None`` records a removal (the record is deleted). ``shard`` is the shard of
    ``root`` the record belongs to, so a worker taking over a shard loads only its records.
    """

    key: str
    root: str
    shard: int
    version: int
    digest: str | None


class ChangeListeners:
    """The listeners a datastore calls after each committed write (its ``watch`` method).

    Thread-safe. Listeners run in the writer's thread and must return quickly; one that
    raises is logged and never fails the write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Change], None]] = []

    def add(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Start calling ``listener``; returns a function that stops it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def notify(self, changes: Iterable[Change]) -> None:
        """Call every listener with each of ``changes``, in order."""
        with self._lock:
            listeners = list(self._listeners)
        for change in changes:
            for listener in listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception("change listener %r failed on seq %d", listener, change.seq)


@runtime_checkable
class Documents(Protocol):
    """Reading and writing single documents: what a datastore and a transaction share."""

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None: ...

    def delete(self, collection: str, doc_id: str) -> None: ...


@runtime_checkable
class Datastore(Protocol):
    """Documents (JSON objects) addressed by collection and id, and their change feed.

    Lifecycle: ``open()`` connects (idempotent), ``close()`` releases (idempotent).
    ``get`` returns ``None`` for a missing document; ``set`` creates or replaces;
    ``delete`` of a missing document is a no-op that records no change. Every ``set`` and
    effective ``delete`` appends one ``Change`` to the feed, atomically with the write.
    ``changes(after, limit)`` returns up to ``limit`` changes with ``seq > after`` in
    ``seq`` order. ``load_cursor``/``save_cursor`` persist a reader's position under a
    name, so a change-feed source resumes after a restart.

    ``get_many`` returns a dict with an entry (``None`` if missing) for every id asked.
    ``query`` returns ``(doc_id, data)`` rows matching every ``(field, op, value)``
    condition (see ``onto_core.models.query``), ordered by ``order_by`` (``-field``
    descending; by id when not given) and cut at ``limit``. ``transaction(fn)`` runs
    ``fn(tx)`` with optimistic concurrency: the writes it buffers commit only if no
    document it read changed meanwhile, else ``fn`` runs again, up to ``max_attempts``
    times, then ``ConflictError``. ``transaction(fn, record_changes=False)`` is the same
    for bookkeeping documents (an index, a claim): its writes commit atomically under the
    same checks but append nothing to the change feed and notify no watcher, so they cost
    no feed entry and never contend for the feed's next ``seq``.

    View state (needed by the ``view`` processor, so views survive restarts and move
    between workers): ``save_view_state(name, records)`` applies ``ViewRecord``s in one
    write, in order (the last record of a key counts): each record replaces the stored
    one with its key unless the stored one has a higher ``version``, and a record whose
    ``digest`` is ``None`` deletes it under the same rule. ``load_view_state(name,
    shards=None)`` returns the stored records of ``name`` (only those of the given shards,
    when given), in no particular order. View state is not a document: it never appears
    in the change feed.

    Errors: ``DatastoreError`` for anything the store refused or could not reach.
    """

    def open(self) -> None: ...

    def close(self) -> None: ...

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None: ...

    def delete(self, collection: str, doc_id: str) -> None: ...

    def get_many(
        self, collection: str, doc_ids: Iterable[str]
    ) -> dict[str, dict[str, Any] | None]: ...

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]: ...

    def transaction(
        self, fn: Callable[[Transaction], R], max_attempts: int = 5, *, record_changes: bool = True
    ) -> R: ...

    def changes(
        self, after: int = 0, limit: int = 1000, collections: Sequence[str] | None = None
    ) -> list[Change]: ...

    def load_cursor(self, name: str) -> int: ...

    def save_cursor(self, name: str, seq: int) -> None: ...

    def load_view_state(
        self, name: str, shards: Iterable[int] | None = None
    ) -> list[ViewRecord]: ...

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None: ...
