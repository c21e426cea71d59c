"""The reverse index of a stateless view: which roots read which document, in the datastore.

A long-running ``view`` processor keeps each root's read set in memory. A function has
no memory between invocations (and many instances at once), so the read sets live in the
datastore next to the views, in ``index_collection`` (default ``_onto_view_index``), as
four kinds of documents, each id a SHA-256 of its name (collection paths hold ``/``):

- ``doc``: (state, collection, doc id) → ``roots`` that read the document (by ``get``, or
  because a query returned it);
- ``shapes``: (state, collection) → ``fields`` some root queried it by equality on, and
  ``whole``, the roots that queried it with no equality condition;
- ``eq``: (state, collection, field, value) → ``roots`` whose query had ``field == value``;
- ``root``: (state, root id) → the root's read set at its last build (``docs``,
  ``queries``), what was delivered of its views (``outputs``: key, digest, version) and
  a ``generation`` that every rewrite raises.

Finding the roots one change affects reads the ``doc`` and ``shapes`` entries in one
``get_many`` (one request); only when the collection is queried by equality does a second
request read the ``eq`` entries of the changed document's values. A change to a document
no view reads therefore costs that one request, and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from onto_core.models.datastore import Change, Datastore
from onto_core.models.query import field_value

__all__ = ["ReadCounter", "ReverseIndex", "RootRecord"]

# What ``field_value`` gives for a field the document lacks.
_MISSING = field_value({}, "_")


def _entry_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def _value_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def doc_ref(collection: str, doc_id: str) -> str:
    """A read document as kept in a root record: ``collection/doc_id``."""
    return f"{collection}/{doc_id}"


def split_ref(ref: str) -> tuple[str, str]:
    collection, _, doc_id = ref.rpartition("/")
    return collection, doc_id


@dataclass
class RootRecord:
    """What the index holds for one root (see the module docstring)."""

    root: str
    docs: set[str] = field(default_factory=set)
    queries: list[tuple[str, tuple[tuple[str, str, Any], ...]]] = field(default_factory=list)
    outputs: dict[str, tuple[str, int]] = field(default_factory=dict)  # key → (digest, version)
    generation: int = 0
    exists: bool = False  # whether the record is stored

    @property
    def version(self) -> int:
        return max((v for _, v in self.outputs.values()), default=0)

    def to_dict(self, state: str) -> dict[str, Any]:
        return {
            "kind": "root",
            "state": state,
            "root": self.root,
            "docs": sorted(self.docs),
            "queries": [
                {"collection": c, "where": [{"field": f, "op": o, "value": v} for f, o, v in w]}
                for c, w in self.queries
            ],
            "outputs": [
                {"key": k, "digest": d, "version": v} for k, (d, v) in sorted(self.outputs.items())
            ],
            "generation": self.generation,
        }

    @classmethod
    def from_dict(cls, root: str, data: dict[str, Any] | None) -> RootRecord:
        if data is None:
            return cls(root)
        return cls(
            root,
            set(data.get("docs") or ()),
            [
                (q["collection"], tuple((c["field"], c["op"], c["value"]) for c in q["where"]))
                for q in data.get("queries") or ()
            ],
            {o["key"]: (o["digest"], int(o["version"])) for o in data.get("outputs") or ()},
            int(data.get("generation") or 0),
            True,
        )


class ReadCounter:
    """A read-only datastore in front of another that counts its read requests and the
    documents they asked for: what an invocation costs in reads."""

    def __init__(self, store: Datastore) -> None:
        self.store = store
        self.requests = 0
        self.documents = 0

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        self.requests += 1
        self.documents += 1
        return self.store.get(collection, doc_id)

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        ids = list(doc_ids)
        self.requests += 1
        self.documents += len(ids)
        return self.store.get_many(collection, ids)

    def query(
        self,
        collection: str,
        where: Sequence[Any] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        rows = self.store.query(collection, where, order_by=order_by, limit=limit)
        self.requests += 1
        self.documents += max(1, len(rows))  # Firestore bills an empty query as one read
        return rows


class ReverseIndex:
    """Reads and updates the reverse index of one view pipeline (``state``)."""

    def __init__(self, store: Datastore, state: str, collection: str) -> None:
        self.store = store
        self.state = state
        self.collection = collection

    # --- ids ----------------------------------------------------------------------------

    def doc_id(self, collection: str, doc_id: str) -> str:
        return _entry_id(self.state, "doc", collection, doc_id)

    def shapes_id(self, collection: str) -> str:
        return _entry_id(self.state, "shapes", collection)

    def eq_id(self, collection: str, field_name: str, value_key: str) -> str:
        return _entry_id(self.state, "eq", collection, field_name, value_key)

    def root_id(self, root: str) -> str:
        return _entry_id(self.state, "root", root)

    # --- reading ------------------------------------------------------------------------

    def affected(
        self, reader: Any, changes: Sequence[Change], root_collection: str
    ) -> list[set[str]]:
        """The roots each change affects: one ``get_many`` of every change's ``doc`` and
        ``shapes`` entries, and one more for ``eq`` entries when a collection has any."""
        first: list[str] = []
        for change in changes:
            first += [
                self.doc_id(change.collection, change.doc_id),
                self.shapes_id(change.collection),
            ]
        found = reader.get_many(self.collection, dict.fromkeys(first)) if first else {}
        wanted: dict[str, list[int]] = {}
        roots: list[set[str]] = []
        for index, change in enumerate(changes):
            entry = found.get(self.doc_id(change.collection, change.doc_id))
            affected = set(entry.get("roots") or ()) if entry else set()
            if change.collection == root_collection:
                affected.add(change.doc_id)  # a new root, or one deleted
            shapes = found.get(self.shapes_id(change.collection))
            if shapes and change.data is not None:
                # Queried without an equality: any change to the collection may match.
                affected.update(shapes.get("whole") or ())
                for name in shapes.get("fields") or ():
                    value = field_value(change.data, name)
                    if value is _MISSING or isinstance(value, list | dict):
                        continue
                    key = self.eq_id(change.collection, name, _value_key(value))
                    wanted.setdefault(key, []).append(index)
            roots.append(affected)
        if wanted:
            more = reader.get_many(self.collection, list(wanted))
            for key, indexes in wanted.items():
                entry = more.get(key)
                for index in indexes:
                    roots[index].update((entry or {}).get("roots") or ())
        return roots

    def records(self, reader: Any, roots: Iterable[str]) -> dict[str, RootRecord]:
        """Each root's record (an empty one for a root never built), in one ``get_many``."""
        ids = {self.root_id(r): r for r in roots}
        if not ids:
            return {}
        found = reader.get_many(self.collection, list(ids))
        return {root: RootRecord.from_dict(root, found.get(key)) for key, root in ids.items()}

    # --- writing ------------------------------------------------------------------------

    def replace(self, tx: Any, old: RootRecord, new: RootRecord) -> bool:
        """In transaction ``tx``: write ``new`` as the root's record and move the entries
        from ``old``'s read set to ``new``'s. False (nothing written) when the stored
        record is no longer ``old`` (another build of the root came first)."""
        stored = RootRecord.from_dict(old.root, tx.get(self.collection, self.root_id(old.root)))
        if stored.generation != old.generation:
            return False
        root = old.root
        for ref in sorted(new.docs - old.docs):
            self._add(tx, self.doc_id(*split_ref(ref)), root, doc=ref)
        for ref in sorted(old.docs - new.docs):
            self._remove(tx, self.doc_id(*split_ref(ref)), root)
        old_q = {_query_entry(c, w) for c, w in old.queries}
        new_q = {_query_entry(c, w) for c, w in new.queries}
        for collection, equality in sorted(new_q - old_q, key=str):
            self._add_query(tx, collection, equality, root)
        for collection, equality in sorted(old_q - new_q, key=str):
            self._remove_query(tx, collection, equality, root)
        new.generation = old.generation + 1
        if new.docs or new.outputs:
            tx.set(self.collection, self.root_id(root), new.to_dict(self.state))
        elif stored.exists:
            tx.delete(self.collection, self.root_id(root))
        return True

    def settle(self, root: str, delivered: Sequence[tuple[str, str | None, int]]) -> None:
        """Record the ``(key, digest or None for a removal, version)`` that reached every sink."""

        def attempt(tx: Any) -> None:
            record = RootRecord.from_dict(root, tx.get(self.collection, self.root_id(root)))
            if not record.exists:
                return
            for key, digest, version in delivered:
                held = record.outputs.get(key)
                if held is not None and held[1] > version:
                    continue  # a newer build's mark or output: not ours to overwrite
                if digest is None:
                    record.outputs.pop(key, None)
                else:
                    record.outputs[key] = (digest, version)
            record.generation += 1
            if record.docs or record.outputs:
                tx.set(self.collection, self.root_id(root), record.to_dict(self.state))
            else:
                tx.delete(self.collection, self.root_id(root))

        self.store.transaction(attempt, record_changes=False)

    def _add(self, tx: Any, entry_id: str, root: str, **fields: Any) -> None:
        entry = tx.get(self.collection, entry_id) or {"kind": "doc", "state": self.state, **fields}
        roots = set(entry.get("roots") or ())
        if root not in roots:
            entry["roots"] = sorted(roots | {root})
            tx.set(self.collection, entry_id, entry)

    def _remove(self, tx: Any, entry_id: str, root: str) -> None:
        entry = tx.get(self.collection, entry_id)
        if entry is None:
            return
        roots = set(entry.get("roots") or ())
        if root not in roots:
            return
        roots.discard(root)
        if roots:
            entry["roots"] = sorted(roots)
            tx.set(self.collection, entry_id, entry)
        else:
            tx.delete(self.collection, entry_id)

    def _shapes(self, tx: Any, collection: str) -> dict[str, Any]:
        found = tx.get(self.collection, self.shapes_id(collection))
        return found or {"kind": "shapes", "state": self.state, "collection": collection}

    def _add_query(
        self, tx: Any, collection: str, equality: tuple[str, str] | None, root: str
    ) -> None:
        shapes = self._shapes(tx, collection)
        if equality is None:
            whole = set(shapes.get("whole") or ())
            if root not in whole:
                shapes["whole"] = sorted(whole | {root})
                tx.set(self.collection, self.shapes_id(collection), shapes)
            return
        name, value_key = equality
        fields = set(shapes.get("fields") or ())
        if name not in fields:
            shapes["fields"] = sorted(fields | {name})
            tx.set(self.collection, self.shapes_id(collection), shapes)
        self._add(tx, self.eq_id(collection, name, value_key), root, collection=collection)

    def _remove_query(
        self, tx: Any, collection: str, equality: tuple[str, str] | None, root: str
    ) -> None:
        if equality is None:
            shapes = tx.get(self.collection, self.shapes_id(collection))
            if shapes and root in (shapes.get("whole") or ()):
                shapes["whole"] = sorted(set(shapes["whole"]) - {root})
                tx.set(self.collection, self.shapes_id(collection), shapes)
            return
        # The field stays in ``shapes``: it costs a lookup, never a wrong answer.
        name, value_key = equality
        self._remove(tx, self.eq_id(collection, name, value_key), root)


def _query_entry(
    collection: str, where: tuple[tuple[str, str, Any], ...]
) -> tuple[str, tuple[str, str] | None]:
    """Where a query is indexed: its collection, and its first equality condition."""
    equality = next(((f, _value_key(v)) for f, op, v in where if op == "=="), None)
    return collection, equality
