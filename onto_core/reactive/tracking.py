"""Recording what a view build reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from onto_core.errors import DatastoreError
from onto_core.models.datastore import Datastore, copy_json
from onto_core.models.query import Condition, check_conditions

__all__ = ["ReadCache", "ReadSet", "TrackingReader"]


@dataclass
class ReadSet:
    """The documents and queries one build read."""

    docs: set[tuple[str, str]] = field(default_factory=set)
    queries: list[tuple[str, tuple[Condition, ...]]] = field(default_factory=list)


class ReadCache:
    """Documents read while building many roots in a row, each fetched from the store once.

    Meant for one pass over ``builds`` roots (the engine's ``acquire``) and dropped after
    it: every document it holds was read after the pass's start position, which is all a
    build there needs (changes after that position are applied afterwards and rebuild
    whatever read them). What ``get``/``get_many`` return is a fresh copy, as from the
    store; ``get_shared``/``get_many_shared`` return the documents as held, for callers
    that change nothing they are given (``DomainModel.from_dict(..., shared=True)``).

    A collection that the pass keeps going back to is read whole, in one query, when that
    costs at most about twice what the pass looks set to read of it one document at a time
    (projected from the documents fetched per build so far): a query for that many rows
    tells, and one returning fewer is the whole collection. A document it lacks is then
    missing (it was created after the query: its change comes after the pass).
    """

    def __init__(self, store: Datastore, builds: int = 0) -> None:
        self.store = store
        self.builds = builds  # how many roots the pass builds
        self.built = 0  # how many it has built so far (the engine counts them)
        self._docs: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._whole: set[str] = set()  # collections held whole
        self._trips: dict[str, int] = {}  # store reads per collection
        self._fetched: dict[str, int] = {}  # documents those reads asked for
        self._decided: set[str] = set()  # collections no longer considered for reading whole

    def hold(self, collection: str, rows: Iterable[tuple[str, dict[str, Any] | None]]) -> None:
        """Keep documents already read (``(doc_id, data)`` rows, ``None`` for one found
        missing), such as a query's."""
        docs = self._docs
        for doc_id, data in rows:
            docs[collection, doc_id] = data

    def hold_whole(self, collection: str, rows: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Keep every document of ``collection`` (as a query of all of it returned them)."""
        self.hold(collection, rows)
        self._whole.add(collection)
        self._decided.add(collection)

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        data = self.get_shared(collection, doc_id)
        return None if data is None else copy_json(data)

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        found = self.get_many_shared(collection, doc_ids)
        return {i: None if data is None else copy_json(data) for i, data in found.items()}

    def get_shared(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """``get`` without the copy: the document as held, which the caller must not change
        (``DomainModel`` reads use it for models whose validation copies what it keeps)."""
        key = (collection, doc_id)
        docs = self._docs
        if key in docs:
            return docs[key]
        if collection in self._whole:
            return None
        data = docs[key] = self.store.get(collection, doc_id)
        self._tripped(collection, 1)
        return data

    def get_many_shared(
        self, collection: str, doc_ids: Iterable[str]
    ) -> dict[str, dict[str, Any] | None]:
        """``get_many`` without the copies (see ``get_shared``)."""
        docs = self._docs
        ids = doc_ids if type(doc_ids) is list else list(doc_ids)
        if collection not in self._whole:
            missing = [i for i in ids if (collection, i) not in docs]
            if missing:
                for doc_id, data in self.store.get_many(collection, missing).items():
                    docs[collection, doc_id] = data
                self._tripped(collection, len(missing))
        get = docs.get
        return {doc_id: get((collection, doc_id)) for doc_id in ids}

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        return self.store.query(collection, where, order_by=order_by, limit=limit)

    def _tripped(self, collection: str, fetched: int) -> None:
        """One more store read for ``collection``: read it whole once that looks cheaper."""
        if collection in self._decided:
            return
        trips = self._trips[collection] = self._trips.get(collection, 0) + 1
        self._fetched[collection] = self._fetched.get(collection, 0) + fetched
        if trips < _TRIPS_BEFORE_WHOLE:
            return
        self._decided.add(collection)
        built = max(1, self.built)
        if self.builds < 2 * built:
            return  # past half the pass: what is left to read is no more than was read
        limit = 2 * self._fetched[collection] * self.builds // built + _TRIPS_BEFORE_WHOLE
        rows = self.store.query(collection, limit=limit + 1)
        if len(rows) <= limit:
            self.hold_whole(collection, rows)


# Store reads of one collection after which a pass considers reading it whole.
_TRIPS_BEFORE_WHOLE = 16


class TrackingReader:
    """A read-only view of a datastore that records every read into ``read_set``.

    Every document a query returned counts as read too, so a change that makes a
    document leave a query's results is caught by the document, and one that makes a
    document enter them is caught by re-matching the query. ``store`` may be a
    ``ReadCache`` in front of the datastore.
    """

    def __init__(self, store: Datastore | ReadCache) -> None:
        self.store = store
        self.read_set = ReadSet()

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        self.read_set.docs.add((collection, doc_id))
        return self.store.get(collection, doc_id)

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        ids = doc_ids if type(doc_ids) is list else list(doc_ids)
        self.read_set.docs.update([(collection, i) for i in ids])
        return self.store.get_many(collection, ids)

    def get_shared(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """``get``; without a copy where ``store`` holds documents (``ReadCache``)."""
        self.read_set.docs.add((collection, doc_id))
        shared = getattr(self.store, "get_shared", None)
        return (shared or self.store.get)(collection, doc_id)

    def get_many_shared(
        self, collection: str, doc_ids: Iterable[str]
    ) -> dict[str, dict[str, Any] | None]:
        """``get_many``; without copies where ``store`` holds documents (``ReadCache``)."""
        ids = doc_ids if type(doc_ids) is list else list(doc_ids)
        self.read_set.docs.update([(collection, i) for i in ids])
        shared = getattr(self.store, "get_many_shared", None)
        return (shared or self.store.get_many)(collection, ids)

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        conditions = tuple(check_conditions(where))
        rows = self.store.query(collection, conditions, order_by=order_by, limit=limit)
        self.read_set.queries.append((collection, conditions))
        self.read_set.docs.update((collection, doc_id) for doc_id, _ in rows)
        return rows

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise DatastoreError("a view build may only read; run writes as actions")

    set = _refuse
    delete = _refuse
