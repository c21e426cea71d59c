"""Incremental recompute: which views a change affects, rebuilt and emitted only if changed.

The engine keeps, for every root document of one view model, the read set of its last
build, indexed three ways: by document read; by ``(collection, field, value)`` for
queries with an equality condition; and by collection for other queries. A change looks
up the roots whose read set it touches (a query read is re-matched against the changed
document), rebuilds exactly those, and reports each view whose output differs from what
was last emitted, with the change's sequence number as its version. A view that a build
no longer yields, or whose root was deleted, is reported as removed.

The cost of one change is the number of affected roots, not the number of views.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from onto_core.models.datastore import Change, Datastore
from onto_core.models.domain import use_datastore
from onto_core.models.query import field_value, matches
from onto_core.models.view import ViewModel, build_views
from onto_core.reactive.tracking import ReadSet, TrackingReader

__all__ = ["ReactiveEngine", "ViewUpdate"]


@dataclass(frozen=True)
class ViewUpdate:
    """One view's new output (``data``), or its removal (``data is None``)."""

    view: str
    key: str
    fields: dict[str, str]
    version: int
    data: dict[str, Any] | None

    @property
    def removed(self) -> bool:
        return self.data is None

    def to_dict(self) -> dict[str, Any]:
        """The update as it travels: view, key, key fields, version, removed, data."""
        return {
            "view": self.view,
            "key": self.key,
            "fields": self.fields,
            "version": self.version,
            "removed": self.removed,
            "data": self.data,
        }


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class ReactiveEngine:
    """Keeps the views of one ``ViewModel`` class up to date from a change feed.

    Not thread-safe by design beyond a lock around each call: one pipeline feeds it
    changes in order.
    """

    def __init__(self, view: type[ViewModel], store: Datastore) -> None:
        self.view = view
        self.store = store
        self.snapshot_seq = 0
        self.recomputes = 0
        self._lock = threading.Lock()
        self._outputs: dict[str, dict[str, str]] = {}  # root id → view key → output json
        self._read_sets: dict[str, ReadSet] = {}
        self._by_doc: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._by_equality: dict[str, dict[str, dict[str, set[str]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(set))
        )
        self._by_collection: dict[str, set[str]] = defaultdict(set)

    @property
    def root_collection(self) -> str:
        return self.view.root.collection

    def view_count(self) -> int:
        """How many views the engine currently holds."""
        return sum(len(outputs) for outputs in self._outputs.values())

    def bootstrap(self) -> list[ViewUpdate]:
        """Build every view from the store as it is now; changes up to now are skipped."""
        with self._lock:
            last_seq = getattr(self.store, "last_seq", None)
            seq = last_seq() if last_seq is not None else 0
            self.snapshot_seq = seq
            updates: list[ViewUpdate] = []
            for root_id, _ in self.store.query(self.root_collection):
                updates += self._rebuild(root_id, seq)
            return updates

    def apply(self, change: Change) -> list[ViewUpdate]:
        """Rebuild the views ``change`` affects; the updates to emit, in key order."""
        with self._lock:
            if change.seq <= self.snapshot_seq:
                return []  # already reflected by the bootstrap
            updates: list[ViewUpdate] = []
            for root_id in sorted(self.affected_roots(change)):
                updates += self._rebuild(root_id, change.seq)
            return updates

    def affected_roots(self, change: Change) -> set[str]:
        """Root ids whose last build read something ``change`` touches."""
        roots = set(self._by_doc.get((change.collection, change.doc_id), ()))
        if change.collection == self.root_collection:
            roots.add(change.doc_id)  # a new root, or one being deleted
        data = change.data
        if data is None:
            return roots
        candidates = set(self._by_collection.get(change.collection, ()))
        for field, by_value in self._by_equality.get(change.collection, {}).items():
            value = field_value(data, field)
            candidates.update(by_value.get(_hashable(value), ()))
        for root_id in candidates - roots:
            read_set = self._read_sets.get(root_id)
            if read_set and any(
                collection == change.collection and matches(data, conditions)
                for collection, conditions in read_set.queries
            ):
                roots.add(root_id)
        return roots

    def current(self, key: str) -> dict[str, Any] | None:
        """The last output emitted for view ``key``, if any."""
        root_id = key.split("/", 1)[0]
        text = self._outputs.get(root_id, {}).get(key)
        return None if text is None else dict(json.loads(text))

    # --- internals ----------------------------------------------------------------------

    def _rebuild(self, root_id: str, version: int) -> list[ViewUpdate]:
        self.recomputes += 1
        reader = TrackingReader(self.store)
        with use_datastore(reader):  # type: ignore[arg-type]
            root = self.view.root.find(root_id)
            views = build_views(self.view, root) if root is not None else []
        new = {v.key: (v, json.dumps(v.to_dict(), sort_keys=True)) for v in views}
        old = self._outputs.get(root_id, {})
        updates = [
            ViewUpdate(self.view.view_name, key, self._fields(view), version, view.to_dict())
            for key, (view, text) in sorted(new.items())
            if old.get(key) != text
        ]
        updates += [
            ViewUpdate(self.view.view_name, key, self._split(key), version, None)
            for key in sorted(old.keys() - new.keys())
        ]
        self._unindex(root_id)
        if root is None:
            self._outputs.pop(root_id, None)
        else:
            self._outputs[root_id] = {key: text for key, (_, text) in new.items()}
            self._index(root_id, reader.read_set)
        return updates

    def _fields(self, view: ViewModel) -> dict[str, str]:
        return {f: str(getattr(view, f)) for f in self.view.key_fields}

    def _split(self, key: str) -> dict[str, str]:
        return dict(zip(self.view.key_fields, key.split("/"), strict=False))

    def _index(self, root_id: str, read_set: ReadSet) -> None:
        self._read_sets[root_id] = read_set
        for doc in read_set.docs:
            self._by_doc[doc].add(root_id)
        for collection, conditions in read_set.queries:
            equality = next(((f, v) for f, op, v in conditions if op == "=="), None)
            if equality is None:
                self._by_collection[collection].add(root_id)
            else:
                field, value = equality
                self._by_equality[collection][field][_hashable(value)].add(root_id)

    def _unindex(self, root_id: str) -> None:
        read_set = self._read_sets.pop(root_id, None)
        if read_set is None:
            return
        for doc in read_set.docs:
            holders = self._by_doc.get(doc)
            if holders is not None:
                holders.discard(root_id)
                if not holders:
                    del self._by_doc[doc]
        for collection, conditions in read_set.queries:
            equality = next(((f, v) for f, op, v in conditions if op == "=="), None)
            if equality is None:
                self._by_collection[collection].discard(root_id)
            else:
                field, value = equality
                self._by_equality[collection][field][_hashable(value)].discard(root_id)
