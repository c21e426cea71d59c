"""``FirestoreListenSource``: a change feed from ``on_snapshot`` listeners.

Follows a collection (optionally narrowed by conditions) as Firestore reports it, so it
sees every writer, including front ends writing documents directly. Each message is a
change, as the ``changes`` source emits it: ``{seq, collection, docId, op, data,
timestamp}``; ``seq`` is the document's update time in microseconds (for a delete: the time
the listener saw it), which increases with every write of one document, so a versioned sink
orders them correctly. Messages of different documents are not ordered by ``seq``.

Resuming: the source keeps, in a state document (``{state_collection}/{cursor}``), the
update time of every document it delivered and saw acked. On start, and whenever the
listener has to be re-created (the server went away), the listener's first snapshot is the
catch-up: each document whose update time is newer than the one remembered is delivered as
a create or update, and each remembered document missing from it as a delete. So a change
made while the source was down is delivered once it is back; several changes of one
document while it was down arrive as one (its latest state). A change is remembered only
once acked, so an unacked change is delivered again after a restart: at least once.

The state document holds one entry per followed document; Firestore's 1 MiB document limit
puts the practical bound near 20,000 documents per cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import Any, ClassVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, ConfigDict, Field

from onto_core.errors import SourceError
from onto_core.models.datastore import Change, ChangeOp
from onto_core.models.query import check_conditions
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_firestore.datastore import check_collection, component_client, micros

__all__ = ["FirestoreListenSource"]

_FIRESTORE_OPS = {"array-contains": "array_contains"}


class FirestoreListenSource:
    """Changes of one collection from a Firestore snapshot listener (see module doc)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        collection: str = Field(description="Collection path to follow, e.g. 'meetings'.")
        where: list[tuple[str, str, Any]] = Field(
            default_factory=list, description="Conditions [field, op, value] narrowing it."
        )
        cursor: str | None = Field(
            None, description="Name of the saved state; default: the pipeline name."
        )
        project: str | None = Field(
            None, description="Google Cloud project; default: the firestore datastore's."
        )
        database: str = Field("(default)", description="Firestore database id.")
        emulator_host: str | None = Field(None, description="host:port of an emulator.")
        state_collection: str = Field(
            "_onto_listen", description="Collection holding each cursor's state document."
        )
        check_interval: float = Field(
            0.5, gt=0, description="Seconds between checks that the listener is alive."
        )

    def __init__(self, config: Config) -> None:
        check_collection(config.collection)
        check_collection(config.state_collection)
        check_conditions(config.where)
        self.config = config
        self._client: firestore.Client | None = None
        self._own_client = False
        self._ctx: RuntimeContext | None = None
        self._cursor = ""
        self._known: dict[str, int] = {}  # acked: doc id -> update time (µs)
        self._seen: dict[str, int] = {}  # delivered or queued: doc id -> update time (µs)
        self._ready: deque[Message] = deque()
        self._wake = asyncio.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: Any = None
        self._first = True
        self._supervisor: asyncio.Task[None] | None = None
        self._saving: asyncio.Lock | None = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, ctx: RuntimeContext) -> None:
        """Load the saved state and start listening; the first snapshot is the catch-up."""
        self._ctx = ctx
        self._loop = asyncio.get_running_loop()
        self._saving = asyncio.Lock()
        self._cursor = self.config.cursor or ctx.pipeline
        config = self.config
        self._client, self._own_client = await component_client(
            ctx,
            "firestore_listen source",
            SourceError,
            config.project,
            config.database,
            config.emulator_host,
        )
        state = await asyncio.to_thread(self._state_ref().get)
        known = (state.to_dict() or {}).get("known", {}) if state.exists else {}
        self._known = {str(k): int(v) for k, v in known.items()}
        self._seen = dict(self._known)
        self._listen()
        self._supervisor = asyncio.create_task(self._supervise())

    async def close(self) -> None:
        """Stop listening and save the state (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._watch is not None:
            await asyncio.to_thread(self._watch.unsubscribe)
            self._watch = None
        client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()  # type: ignore[no-untyped-call]

    # --- reading ------------------------------------------------------------------------

    async def read_batch(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` changes, waiting for one; ``[]`` only once closed."""
        while not self._closed:
            with self._lock:
                if self._ready:
                    count = min(max_messages, len(self._ready))
                    return [self._ready.popleft() for _ in range(count)]
                self._wake.clear()
            await self._wake.wait()
        return []

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        """Remember the change as done and save the state."""
        await self.ack_batch([message])

    async def ack_batch(self, messages: list[Message]) -> None:
        """Remember the changes as done, in order, and save the state once."""
        with self._lock:
            for message in messages:
                doc_id, stamp = message.offset
                if stamp is None:
                    self._known.pop(doc_id, None)
                elif stamp > self._known.get(doc_id, -1):
                    self._known[doc_id] = stamp
        await self._save()

    async def nack(self, message: Message, error: BaseException) -> None:
        """Deliver the change again, ahead of everything not yet read."""
        with self._lock:
            self._ready.appendleft(message)
        self._wake.set()

    # --- metrics ------------------------------------------------------------------------

    def lag(self) -> dict[str, int]:
        """The listener's backlog: documents whose newest change it reported is not acked
        yet (queued, or read and in the pipeline), as ``{"": count}``; several changes of
        one document count once, as the catch-up delivers them. ``{}`` before ``start``
        and once closed. Called from the thread serving a metrics scrape."""
        if self._loop is None or self._closed:
            return {}
        with self._lock:
            changed = sum(1 for d, t in self._seen.items() if self._known.get(d) != t)
            deleted = sum(1 for d in self._known if d not in self._seen)
        return {"": changed + deleted}

    # --- internals ----------------------------------------------------------------------

    def _state_ref(self) -> Any:
        assert self._client is not None
        return self._client.collection(self.config.state_collection).document(self._cursor)

    async def _save(self) -> None:
        assert self._saving is not None
        async with self._saving:  # one save at a time, each with everything acked so far
            with self._lock:
                known = dict(self._known)
            try:
                await asyncio.to_thread(self._state_ref().set, {"known": known})
            except gexc.GoogleAPIError as exc:
                # Not fatal: the changes are delivered again after a restart (at least once).
                if self._ctx is not None:
                    self._ctx.log.warning("could not save listen state %r: %s", self._cursor, exc)

    def _query(self) -> Any:
        assert self._client is not None
        query: Any = self._client.collection(self.config.collection)
        for field, op, value in self.config.where:
            query = query.where(filter=FieldFilter(field, _FIRESTORE_OPS.get(op, op), value))
        return query

    def _listen(self) -> None:
        self._first = True
        self._watch = self._query().on_snapshot(self._on_snapshot)

    async def _supervise(self) -> None:
        # The client's listener retries transient errors itself; when it gives up it closes,
        # and a new listener (whose first snapshot catches up) takes over.
        while not self._closed:
            await asyncio.sleep(self.config.check_interval)
            watch = self._watch
            if watch is not None and not watch.is_active and not self._closed:
                if self._ctx is not None:
                    self._ctx.log.warning("firestore listener closed; listening again")
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(watch.unsubscribe)
                try:
                    await asyncio.to_thread(self._listen)
                except Exception as exc:  # the server may still be away: try next round
                    if self._ctx is not None:
                        self._ctx.log.warning("cannot listen yet: %s", exc)

    def _on_snapshot(self, docs: Any, changes: Any, read_time: Any) -> None:
        """Runs in the client's listener thread: queue what changed, wake the reader."""
        collection = self.config.collection
        now = micros(read_time) if read_time is not None else time.time_ns() // 1000
        found: list[Change] = []
        with self._lock:
            if self._first:
                # Catch-up: compare the whole result with what was delivered before.
                self._first = False
                present = {}
                for snap in docs:
                    present[snap.id] = snap
                for doc_id, snap in present.items():
                    stamp = micros(snap.update_time)
                    if stamp > self._seen.get(doc_id, -1):
                        op = ChangeOp.UPDATE if doc_id in self._seen else ChangeOp.CREATE
                        found.append(
                            Change(stamp, collection, doc_id, op, snap.to_dict(), stamp / 1e6)
                        )
                for doc_id in [d for d in self._seen if d not in present]:
                    found.append(Change(now, collection, doc_id, ChangeOp.DELETE, None, now / 1e6))
            else:
                for change in changes:
                    snap = change.document
                    kind = change.type.name  # ADDED, MODIFIED, REMOVED
                    if kind == "REMOVED":
                        if snap.id in self._seen:
                            found.append(
                                Change(now, collection, snap.id, ChangeOp.DELETE, None, now / 1e6)
                            )
                        continue
                    stamp = micros(snap.update_time)
                    if stamp <= self._seen.get(snap.id, -1):
                        continue
                    op = ChangeOp.UPDATE if snap.id in self._seen else ChangeOp.CREATE
                    found.append(
                        Change(stamp, collection, snap.id, op, snap.to_dict(), stamp / 1e6)
                    )
            for change in found:
                if change.op is ChangeOp.DELETE:
                    self._seen.pop(change.doc_id, None)
                    offset: tuple[str, int | None] = (change.doc_id, None)
                else:
                    self._seen[change.doc_id] = change.seq
                    offset = (change.doc_id, change.seq)
                self._ready.append(
                    Message(
                        change.to_dict(),
                        key=f"{collection}/{change.doc_id}",
                        channel=collection,
                        timestamp=change.timestamp,
                        offset=offset,
                    )
                )
        if found and self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self._wake.set)
