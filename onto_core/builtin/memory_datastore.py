"""An in-process datastore: every feature of the sqlite one, nothing kept after exit.

For tests, demos and embedding. Documents are stored as JSON text, so what goes in must
be JSON-serializable and what comes out is always a fresh copy.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from onto_core.errors import ConflictError, DatastoreError
from onto_core.models.datastore import (
    Change,
    ChangeListeners,
    ChangeOp,
    OpenInBlock,
    ViewRecord,
    decode_json,
)
from onto_core.models.query import Condition, check_conditions, matches, sort_rows
from onto_core.models.transaction import CommitWrites, DocKey
from onto_core.tracing import current_traceparent

__all__ = ["MemoryDatastore"]


def _encode(data: dict[str, Any], key: DocKey) -> str:
    try:
        return json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise DatastoreError(f"{key[0]}/{key[1]} is not JSON-serializable: {exc}") from None


class MemoryDatastore(CommitWrites, OpenInBlock):
    """Documents and change feed in this process's memory."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config | None = None) -> None:
        self._docs: dict[DocKey, tuple[str, int]] = {}
        self._changes: list[Change] = []
        self._unrecorded = 0  # the last version given by a write recording no change
        self._cursors: dict[str, int] = {}
        self._views: dict[str, dict[str, ViewRecord]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listeners = ChangeListeners()

    def open(self) -> None:
        pass

    def close(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- reads --------------------------------------------------------------------------

    def get_versioned(self, collection: str, doc_id: str) -> tuple[dict[str, Any] | None, int]:
        with self._lock:
            found = self._docs.get((collection, doc_id))
        if found is None:
            return None, 0
        return decode_json(found[0]), found[1]

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        return self.get_versioned(collection, doc_id)[0]

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        return {doc_id: self.get(collection, doc_id) for doc_id in doc_ids}

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        conditions = check_conditions(where)
        with self._lock:
            texts = [(k[1], text) for k, (text, _) in self._docs.items() if k[0] == collection]
        if not conditions and not order_by and (limit is None or limit >= 0):
            texts.sort(key=lambda row: row[0])  # by id: only the documents returned are decoded
            if limit is not None:
                texts = texts[:limit]
            return [(doc_id, decode_json(text)) for doc_id, text in texts]
        rows = [(doc_id, decode_json(text)) for doc_id, text in texts]
        return sort_rows([r for r in rows if matches(r[1], conditions)], order_by, limit)

    # --- writes -------------------------------------------------------------------------

    def commit(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        *,
        record_changes: bool = True,
    ) -> None:
        encoded = {k: None if v is None else _encode(v, k) for k, v in writes.items()}
        with self._changed:
            for key, version in reads.items():
                current = self._docs.get(key)
                if (current[1] if current else 0) != version:
                    raise ConflictError(f"{key[0]}/{key[1]} changed since it was read")
            if not record_changes:
                # Versions below zero, each used once: never a seq, never one seen before.
                for key, text in encoded.items():
                    if text is None:
                        self._docs.pop(key, None)
                    else:
                        self._unrecorded -= 1
                        self._docs[key] = (text, self._unrecorded)
                return
            now = time.time()
            trace = current_traceparent()
            committed: list[Change] = []
            for key, text in encoded.items():
                current = self._docs.get(key)
                seq = len(self._changes) + 1
                if text is None:
                    if current is None:
                        continue
                    del self._docs[key]
                    op, data = ChangeOp.DELETE, None
                else:
                    self._docs[key] = (text, seq)  # a document's version is its last seq
                    op = ChangeOp.UPDATE if current else ChangeOp.CREATE
                    data = decode_json(text)
                change = Change(seq, key[0], key[1], op, data, now, trace)
                self._changes.append(change)
                committed.append(change)
            self._changed.notify_all()
        self._listeners.notify(committed)

    def watch(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``listener(change)`` after every write; returns a function that stops it."""
        return self._listeners.add(listener)

    # --- change feed --------------------------------------------------------------------

    def changes(
        self, after: int = 0, limit: int = 1000, collections: Sequence[str] | None = None
    ) -> list[Change]:
        with self._lock:
            tail = self._changes[after:]  # seq n sits at index n - 1
        wanted = None if collections is None else set(collections)
        return [c for c in tail if wanted is None or c.collection in wanted][:limit]

    def last_seq(self) -> int:
        with self._lock:
            return len(self._changes)

    def wait_for_changes(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a change with ``seq > after``; whether one came."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._changes) > after, timeout)

    def load_cursor(self, name: str) -> int:
        with self._lock:
            return self._cursors.get(name, 0)

    def save_cursor(self, name: str, seq: int) -> None:
        with self._lock:
            self._cursors[name] = seq

    def load_view_state(self, name: str, shards: Iterable[int] | None = None) -> list[ViewRecord]:
        wanted = None if shards is None else set(shards)
        with self._lock:
            records = list(self._views.get(name, {}).values())
        return [r for r in records if wanted is None or r.shard in wanted]

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None:
        with self._lock:
            held = self._views.setdefault(name, {})
            for record in records:
                stored = held.get(record.key)
                if stored is not None and stored.version > record.version:
                    continue  # a newer owner already wrote this view
                if record.digest is None:
                    held.pop(record.key, None)
                else:
                    held[record.key] = record
