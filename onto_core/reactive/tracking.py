"""Recording what a view build reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from onto_core.errors import DatastoreError
from onto_core.models.datastore import Datastore
from onto_core.models.query import Condition, check_conditions

__all__ = ["ReadSet", "TrackingReader"]


@dataclass
class ReadSet:
    """The documents and queries one build read."""

    docs: set[tuple[str, str]] = field(default_factory=set)
    queries: list[tuple[str, tuple[Condition, ...]]] = field(default_factory=list)


class TrackingReader:
    """A read-only view of a datastore that records every read into ``read_set``.

    Every document a query returned counts as read too, so a change that makes a
    document leave a query's results is caught by the document, and one that makes a
    document enter them is caught by re-matching the query.
    """

    def __init__(self, store: Datastore) -> None:
        self.store = store
        self.read_set = ReadSet()

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        self.read_set.docs.add((collection, doc_id))
        return self.store.get(collection, doc_id)

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        ids = list(doc_ids)
        self.read_set.docs.update((collection, i) for i in ids)
        return self.store.get_many(collection, ids)

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
