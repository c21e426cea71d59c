"""The ``changes`` source: the pipeline datastore's change feed as messages.

Position is kept by acks. The saved cursor is the highest ``seq`` such that every change
up to it that this source delivered has been acked, so acks may arrive in any order and a
restart redelivers exactly what is not covered: the first unacked change and everything
after it (some of which may have been acked already; at_least_once allows that).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from onto_core.errors import DatastoreError, SourceError
from onto_core.models.datastore import Change, Datastore
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_core.tracing import TRACEPARENT

__all__ = ["ChangesSource", "change_message"]


def change_message(change: Change) -> Message:
    """The message for one change; its id ``collection/doc_id@seq`` is stable across reads."""
    key = f"{change.collection}/{change.doc_id}"
    return Message(
        change.to_dict(),
        key=key,
        id=f"{key}@{change.seq}",
        # The trace of the write that made the change goes on with it.
        headers=None if change.trace is None else {TRACEPARENT: change.trace},
        channel=change.collection,
        timestamp=change.timestamp,
        offset=change.seq,
    )


class ChangesSource:
    """Reads the datastore's change feed: one message per create, update or delete.

    Endless: a read waits until a change arrives (or the source is closed). Writes made
    in this process wake readers at once when the datastore supports ``watch``; writes
    from other processes are found every ``poll_interval`` seconds. A nacked change is
    delivered again by this instance and holds the saved cursor back until it is acked.
    One instance per cursor name, read by one task at a time.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )
    needs_datastore: ClassVar[bool] = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        collections: list[str] | None = Field(
            None,
            description="Collections to follow (may be written `models`); null follows all.",
            # ``models`` reads better when the collections hold domain models.
            validation_alias=AliasChoices("collections", "models"),
        )
        cursor: str | None = Field(
            None,
            description="Name under which the acked position is saved; default: the pipeline name.",
        )
        from_start: bool = Field(
            True,
            description=(
                "With no saved position, start at the beginning of the feed (true) "
                "or at its current end (false)."
            ),
        )
        poll_interval: float = Field(
            0.2, gt=0, description="Seconds between checks for changes written by other processes."
        )
        batch: int = Field(500, ge=1, description="Changes fetched per query.")

    def __init__(self, config: Config) -> None:
        self.config = config
        self._store: Datastore | None = None
        self._ctx: RuntimeContext | None = None
        self._cursor_name = ""
        self._fetched = 0  # highest seq read from the feed
        self._ready: deque[Message] = deque()  # fetched or nacked, waiting to be read
        self._unacked: set[int] = set()  # fetched and not acked yet
        self._order: deque[int] = deque()  # fetched seqs, oldest first; head is unacked
        self._saved = 0
        self._saver: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._unwatch: Callable[[], None] | None = None
        self._closed = False

    @property
    def position(self) -> int:
        """The seq up to which every delivered change is acked: what a restart resumes after."""
        return self._order[0] - 1 if self._order else self._fetched

    def asyncapi_payload(self, incoming: Any) -> Any:
        """What this source emits, for the AsyncAPI document: ``change_message``."""
        from onto_core.asyncapi import change_message

        return change_message(self.config.collections)

    def lag(self) -> dict[str, int]:
        """How many changes of the feed are past the acked ``position``: ``{"": count}``.

        Following every collection, that is the datastore's ``last_seq()`` minus the
        position (sequence numbers are dense); following some, the changes of those
        collections after it, counted up to 10,000. ``{}`` before ``start``, or
        when the datastore cannot tell. Called from the thread serving a metrics scrape.
        """
        store = self._store
        if store is None or self._closed:
            return {}
        for _ in range(3):
            try:
                position = self.position
                break
            except IndexError:  # acked meanwhile: read it again
                continue
        else:
            return {}
        if self.config.collections is None:
            last_seq = getattr(store, "last_seq", None)
            if not callable(last_seq):
                return {}
            return {"": max(0, int(last_seq()) - position)}
        return {"": len(store.changes(position, 10_000, self.config.collections))}

    async def start(self, ctx: RuntimeContext) -> None:
        """Load the saved cursor and begin watching the datastore for new writes."""
        self._ctx = ctx
        if ctx.datastore is None:
            raise SourceError.at(
                self._ctx,
                "the changes source reads the pipeline's datastore, but none is configured;"
                " add e.g. `datastore: {type: sqlite, path: ./onto.db}` to the config",
            )
        self._store = store = ctx.datastore
        self._cursor_name = self.config.cursor or ctx.pipeline
        saved = await self._call(store.load_cursor, self._cursor_name)
        if saved == 0 and not self.config.from_start:
            saved = await self._call(self._feed_end, store)
            if saved:
                await self._call(store.save_cursor, self._cursor_name, saved)
        self._fetched = self._saved = saved
        watch = getattr(store, "watch", None)
        if callable(watch):
            loop = asyncio.get_running_loop()
            wanted = set(self.config.collections) if self.config.collections is not None else None

            def on_change(change: Change) -> None:
                # Checking is_set first saves a loop wake-up per write while one is pending.
                if (wanted is None or change.collection in wanted) and not self._wake.is_set():
                    loop.call_soon_threadsafe(self._wake.set)

            self._unwatch = watch(on_change)

    async def read_batch(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` changes, waiting for one; ``[]`` only once closed."""
        store = self._require_started()
        while not self._closed:
            if self._ready:
                count = min(max_messages, len(self._ready))
                return [self._ready.popleft() for _ in range(count)]
            # Clear before querying: a write committed after the query still wakes us.
            self._wake.clear()
            found = await self._call(
                store.changes, self._fetched, self.config.batch, self.config.collections
            )
            for change in found:
                self._ready.append(change_message(change))
                self._unacked.add(change.seq)
                self._order.append(change.seq)
                self._fetched = change.seq
            if not found:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
        return []

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        """Mark the change done; the saved cursor moves once every earlier one is done.

        The cursor is saved in the background, one save at a time covering every ack so
        far; ``close()`` waits for the last one.
        """
        await self.ack_batch([message])

    async def ack_batch(self, messages: list[Message]) -> None:
        """``ack`` for each of ``messages``, with one cursor save scheduled for all."""
        for message in messages:
            self._unacked.discard(message.offset)
        self._save_soon()

    async def skip_to(self, seq: int) -> None:
        """Never deliver changes up to ``seq`` (a processor reflects them already).

        Changes not read yet are not fetched; those fetched but not handed out are
        dropped as if acked. The saved cursor moves past them, so a restart does not
        replay them either.
        """
        if seq <= self._fetched and not self._ready:
            return
        kept: deque[Message] = deque()
        for message in self._ready:
            if message.offset <= seq and message.offset in self._unacked:
                self._unacked.discard(message.offset)
            else:
                kept.append(message)
        self._ready = kept
        self._fetched = max(self._fetched, seq)
        self._save_soon()

    def _save_soon(self) -> None:
        """Move the position past what is done and save it in the background (one save at
        a time, each covering everything done so far)."""
        while self._order and self._order[0] not in self._unacked:
            self._order.popleft()
        if self._saved < self.position and (self._saver is None or self._saver.done()):
            if self._saver is not None and (failed := self._saver.exception()) is not None:
                self._log_save_failure(failed)
            self._saver = asyncio.create_task(self._save_position())

    async def nack(self, message: Message, error: BaseException) -> None:
        """Deliver the change again, ahead of everything not yet read."""
        if message.offset in self._unacked:
            self._ready.appendleft(message)
            self._wake.set()

    async def close(self) -> None:
        """Stop waiting readers, stop watching and save the acked position (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._saver is not None:
            try:
                await self._saver
            except Exception as exc:
                self._log_save_failure(exc)  # the save below tries again and raises
        if self._store is not None:
            await self._save_position()

    async def _save_position(self) -> None:
        store = self._require_started()
        while self._saved < self.position:
            seq = self.position
            await self._call(store.save_cursor, self._cursor_name, seq)
            self._saved = seq

    def _log_save_failure(self, error: BaseException) -> None:
        if self._ctx is not None:
            self._ctx.log.warning("could not save cursor %r: %s", self._cursor_name, error)

    @staticmethod
    def _feed_end(store: Datastore) -> int:
        last_seq = getattr(store, "last_seq", None)
        if callable(last_seq):
            return int(last_seq())
        # A datastore without last_seq: page through the feed once.
        end = 0
        while page := store.changes(end, 10_000):
            end = page[-1].seq
        return end

    def _require_started(self) -> Datastore:
        if self._store is None:
            raise SourceError.at(self._ctx, "the changes source was used before start(ctx)")
        return self._store

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except DatastoreError as exc:
            raise SourceError.at(self._ctx, f"change feed unavailable: {exc}") from exc
