"""Optimistic transactions on any store that can read versions and commit atomically.

``run_transaction(store, fn)`` calls ``fn(tx)``; ``tx.get`` reads through the store and
remembers each document's version; ``tx.set``/``tx.delete`` are buffered. On return the
store commits the writes only if every document read is still at the version read,
atomically; otherwise ``fn`` runs again on fresh data, up to ``max_attempts`` times,
after which ``ConflictError`` is raised. ``fn`` must not have side effects outside
``tx``, since it may run more than once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from onto_core.errors import ConflictError, DatastoreError

__all__ = ["CommitWrites", "DocKey", "Transaction", "VersionedStore", "run_transaction"]

R = TypeVar("R")
DocKey = tuple[str, str]


class VersionedStore(Protocol):
    """What a store provides so ``run_transaction`` can work on it.

    ``get_versioned`` returns ``(data, version)``, version 0 for a missing document.
    ``commit`` applies ``writes`` (``None`` data deletes) atomically, recording a change
    for each, if every document in ``reads`` is still at its version; otherwise it raises
    ``ConflictError`` and writes nothing. Called with ``record_changes=False`` (only then:
    a store without it still runs recorded transactions), it records no change, and the
    versions it gives the documents are still new ones: never one a document had before.
    """

    def get_versioned(self, collection: str, doc_id: str) -> tuple[dict[str, Any] | None, int]: ...

    def commit(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        *,
        record_changes: bool = True,
    ) -> None: ...


class Transaction:
    """Reads and buffered writes of one attempt; reads see this transaction's own writes."""

    def __init__(self, store: VersionedStore) -> None:
        self._store = store
        self.reads: dict[DocKey, int] = {}
        self.writes: dict[DocKey, dict[str, Any] | None] = {}

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        key = (collection, doc_id)
        if key in self.writes:
            written = self.writes[key]
            return None if written is None else dict(written)
        data, version = self._store.get_versioned(collection, doc_id)
        self.reads.setdefault(key, version)
        return data

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        self.writes[(collection, doc_id)] = dict(data)

    def delete(self, collection: str, doc_id: str) -> None:
        self.writes[(collection, doc_id)] = None

    def query(self, collection: str, *args: Any, **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
        """Rows from the store, read outside the version check (queries are not guarded)."""
        query = getattr(self._store, "query", None)
        if query is None:
            raise DatastoreError("this store cannot query inside a transaction")
        rows: list[tuple[str, dict[str, Any]]] = query(collection, *args, **kwargs)
        return rows


def run_transaction(
    store: VersionedStore,
    fn: Callable[[Transaction], R],
    max_attempts: int = 5,
    *,
    record_changes: bool = True,
) -> R:
    """Run ``fn`` in a transaction on ``store``, retrying on conflicts (see module doc);
    with ``record_changes=False`` its writes enter no change feed."""
    last: ConflictError | None = None
    for _ in range(max_attempts):
        tx = Transaction(store)
        result = fn(tx)
        try:
            if record_changes:
                store.commit(tx.reads, tx.writes)
            else:
                store.commit(tx.reads, tx.writes, record_changes=False)
        except ConflictError as exc:
            last = exc
            continue
        return result
    raise ConflictError(
        f"transaction gave up after {max_attempts} conflicting attempts: {last}"
    ) from last


class CommitWrites:
    """``set``, ``delete`` and ``transaction`` for a store whose one write path is ``commit``.

    A store inheriting this implements ``get_versioned`` and ``commit`` (``VersionedStore``)
    and gets single-document writes and optimistic transactions from them.
    """

    def get_versioned(self, collection: str, doc_id: str) -> tuple[dict[str, Any] | None, int]:
        raise NotImplementedError

    def commit(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        *,
        record_changes: bool = True,
    ) -> None:
        raise NotImplementedError

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        """Create or replace the document, recording a ``create``/``update`` change."""
        self.commit({}, {(collection, doc_id): data})

    def delete(self, collection: str, doc_id: str) -> None:
        """Remove the document, recording a ``delete`` change; a missing one is a no-op."""
        self.commit({}, {(collection, doc_id): None})

    def transaction(
        self, fn: Callable[[Transaction], R], max_attempts: int = 5, *, record_changes: bool = True
    ) -> R:
        """Run ``fn(tx)`` with optimistic concurrency (see the module docstring)."""
        return run_transaction(self, fn, max_attempts, record_changes=record_changes)
