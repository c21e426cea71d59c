"""The ``stateless_view`` processor: views rebuilt per invocation from a reverse index."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onto_core.builtin.view import change_of, load_view, view_message
from onto_core.errors import ProcessorError
from onto_core.models.datastore import Change, Datastore
from onto_core.models.domain import use_datastore
from onto_core.models.view import ViewModel, build_views
from onto_core.protocols import Message, RuntimeContext
from onto_core.reactive.engine import ViewUpdate, digest_of
from onto_core.reactive.tracking import TrackingReader
from onto_functions._index import ReadCounter, ReverseIndex, RootRecord, doc_ref

__all__ = ["StatelessViewProcessor"]

log = logging.getLogger("onto.functions")

# The digest of a view that may have been delivered: equal to none, so it is built again.
_MAYBE_DELIVERED = ""
_REBUILD_ATTEMPTS = 5


class StatelessViewProcessor:
    """The ``view`` processor for stateless workers (functions): no read sets in memory.

    Inputs are changes, as the ``changes``, ``firestore_listen`` and ``cloud_event``
    sources emit them; outputs are view updates ``{view, key, fields, version, removed,
    data}`` as the ``view`` processor emits them. Which roots a change affects comes from
    a reverse index kept in the datastore (``index_collection``), which each build updates
    in a transaction together with the root's record; what was delivered (a digest and
    version per view) is recorded once every sink confirmed it, so a redelivered change
    builds the same views and emits nothing. Nothing is built at start: a root is built
    when a change touches it, and ``onto functions backfill`` builds every root once.
    """

    needs_datastore: ClassVar[bool] = True
    preferred_batch_size: ClassVar[int] = 100

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        view: str = Field(description="The ViewModel class, as 'package.module:Class'.")
        state: str | None = Field(
            None,
            description=(
                "Name under which the index and what was delivered are kept; default:"
                " '<pipeline>:<view name>'. A backfill and the function must share it."
            ),
        )
        index_collection: str = Field(
            "_onto_view_index",
            description="Collection holding the reverse index and the root records.",
        )

        @field_validator("view")
        @classmethod
        def _loadable(cls, ref: str) -> str:
            load_view(ref)
            return ref

    def __init__(self, config: Config) -> None:
        self.config = config
        self.view: type[ViewModel] = load_view(config.view)
        self.state = config.state or ""
        self._store: Datastore | None = None
        self._index: ReverseIndex | None = None
        self._pending: dict[str, ViewUpdate] = {}  # output message id → its update
        self.builds = 0
        self.last_reads: tuple[int, int] = (0, 0)  # (requests, documents) of the last batch
        self.reads = 0  # read requests, all batches
        self._ctx: RuntimeContext | None = None

    async def start(self, ctx: RuntimeContext) -> None:
        if ctx.datastore is None:
            raise ProcessorError.at(ctx, "the stateless_view processor needs a datastore")
        self._ctx = ctx
        self._store = ctx.datastore
        self.state = self.config.state or f"{ctx.pipeline}:{self.view.view_name}"
        self._index = ReverseIndex(ctx.datastore, self.state, self.config.index_collection)

    def process(self, message: Message) -> list[Message]:
        return self.process_batch([message])[0]

    def process_batch(self, messages: list[Message]) -> list[list[Message]]:
        """Each affected root built once; its updates go with the last change touching it."""
        changes = [change_of(m) for m in messages]
        results, counter = self.apply(changes)
        self.last_reads = (counter.requests, counter.documents)
        self.reads += counter.requests
        out: list[list[Message]] = []
        for updates in results:
            batch = []
            for update in updates:
                message = view_message(update)
                self._pending[message.id] = update
                batch.append(message)
            out.append(batch)
        views = sum(len(u) for u in results)
        log.info(
            "%s: %d change(s) [%s], %d view update(s), %d read request(s) of %d document(s)",
            self.state,
            len(changes),
            ", ".join(m.id for m in messages),
            views,
            counter.requests,
            counter.documents,
        )
        return out

    def apply(self, changes: Sequence[Change]) -> tuple[list[list[ViewUpdate]], ReadCounter]:
        """The view updates of ``changes`` (indexed and marked, not yet recorded as
        delivered), and the reads it took."""
        index = self._require_index()
        counter = ReadCounter(self._require_store())
        affected = index.affected(counter, changes, self.view.root.collection)
        due: dict[str, tuple[int, int]] = {}  # root → (index of its last change, seq)
        for position, (change, roots) in enumerate(zip(changes, affected, strict=True)):
            for root in roots:
                due[root] = (position, max(change.seq, due.get(root, (0, 0))[1]))
        results: list[list[ViewUpdate]] = [[] for _ in changes]
        records = index.records(counter, due)
        for root in sorted(due):
            position, seq = due[root]
            results[position] += self._build(root, seq, records[root], counter)
        return results, counter

    def _build(
        self, root_id: str, seq: int, record: RootRecord, counter: ReadCounter
    ) -> list[ViewUpdate]:
        """Build one root, move its index entries and mark what it will emit, in one
        transaction; built again when another build of the root committed first."""
        index = self._require_index()
        store = self._require_store()
        for _ in range(_REBUILD_ATTEMPTS):
            self.builds += 1
            new, updates = self._built(root_id, seq, record, counter)
            if new.docs == record.docs and new.queries == record.queries and not updates:
                return []  # same reads, same outputs: nothing to write
            if store.transaction(partial(index.replace, old=record, new=new), record_changes=False):
                return updates
            record = index.records(counter, [root_id])[root_id]
        raise ProcessorError(
            f"{self.view.view_name} root {root_id!r}: built {_REBUILD_ATTEMPTS} times while"
            " other builds of it kept committing first; the change is retried",
        )

    def _built(
        self, root_id: str, seq: int, record: RootRecord, counter: ReadCounter
    ) -> tuple[RootRecord, list[ViewUpdate]]:
        reader = TrackingReader(counter)  # type: ignore[arg-type]
        with use_datastore(reader):  # type: ignore[arg-type]
            root = self.view.root.find(root_id)
            views = build_views(self.view, root) if root is not None else []
        last = record.version
        version = seq if seq > last or not last else last + 1
        name = self.view.view_name
        new = RootRecord(root_id, generation=record.generation, exists=record.exists)
        if root is not None:
            new.docs = {doc_ref(c, d) for c, d in reader.read_set.docs}
            new.queries = [(c, tuple(w)) for c, w in reader.read_set.queries]
        updates: list[ViewUpdate] = []
        for view in sorted(views, key=lambda v: v.key):
            data = view.to_dict()
            digest = digest_of(data)
            held = record.outputs.get(view.key)
            if held is not None and held[0] == digest:
                new.outputs[view.key] = held
                continue
            fields = {f: str(getattr(view, f)) for f in self.view.key_fields}
            updates.append(ViewUpdate(name, view.key, fields, version, data, root_id, digest))
            new.outputs[view.key] = (_MAYBE_DELIVERED, version)
        for key in sorted(record.outputs.keys() - {v.key for v in views}):
            fields = dict(zip(self.view.key_fields, key.split("/"), strict=False))
            updates.append(ViewUpdate(name, key, fields, version, None, root_id))
            new.outputs[key] = (_MAYBE_DELIVERED, version)  # until the removal is delivered
        return new, updates

    async def settled(self, delivered: list[Message], failed: list[Message]) -> None:
        """Record what reached every sink; a failed update stays marked maybe-delivered,
        so the next build of its root emits it again."""
        for message in failed:
            self._pending.pop(message.id, None)
        by_root: dict[str, list[tuple[str, str | None, int]]] = {}
        for message in delivered:
            update = self._pending.pop(message.id, None)
            if update is not None:
                by_root.setdefault(update.root, []).append(
                    (update.key, update.digest, update.version)
                )
        index = self._require_index()
        for root, outputs in sorted(by_root.items()):
            # Awaited: a function's work ends with its reply, nothing runs after it.
            await asyncio.to_thread(index.settle, root, outputs)

    def metrics(self) -> dict[str, Any]:
        return {"builds": self.builds, "reads": self.reads}

    def _require_index(self) -> ReverseIndex:
        if self._index is None:
            raise ProcessorError("the stateless_view processor was not started")
        return self._index

    def _require_store(self) -> Datastore:
        if self._store is None:
            raise ProcessorError("the stateless_view processor was not started")
        return self._store
