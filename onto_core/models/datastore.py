"""The ``Datastore`` protocol: documents in collections, plus a durable change feed.

Datastore methods are synchronous and must be safe to call from several threads: view
build functions read through them directly, and async code calls them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Change", "ChangeOp", "Datastore"]


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
    """

    seq: int
    collection: str
    doc_id: str
    op: ChangeOp
    data: dict[str, Any] | None
    timestamp: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "collection": self.collection,
            "docId": self.doc_id,
            "op": self.op.value,
            "data": self.data,
            "timestamp": self.timestamp,
        }


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

    Errors: ``DatastoreError`` for anything the store refused or could not reach.
    """

    def open(self) -> None: ...

    def close(self) -> None: ...

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None: ...

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None: ...

    def delete(self, collection: str, doc_id: str) -> None: ...

    def changes(
        self, after: int = 0, limit: int = 1000, collections: Sequence[str] | None = None
    ) -> list[Change]: ...

    def load_cursor(self, name: str) -> int: ...

    def save_cursor(self, name: str, seq: int) -> None: ...
