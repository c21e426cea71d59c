"""``FirestoreTaskSource``: trigger documents processed once each ("Query+Task" mode).

A front end (or anyone) creates a trigger document with ``status_field`` set to
``pending``. The source queries pending triggers every ``poll_interval`` seconds and
emits each as ``{docId, path, data}``. When the pipeline acks it (every sink confirmed),
the trigger is marked ``done`` by a commit whose precondition is the trigger's update
time as read: if the trigger changed meanwhile, the mark is refused and the trigger,
still pending, is processed again with its new contents. A nack counts an attempt in
``attempts_field`` (same precondition); after ``max_attempts`` the trigger is marked
``failed`` with the error in ``error_field``, and is not read again.

Guarantee: a trigger is marked done only after its outputs were confirmed, so a crash in
between processes it again: at least once. Effectively once results when the sinks are
idempotent (the ``firestore`` sink is: a redelivered view version changes nothing).
On real Firestore two source instances may both read a trigger, but only the first mark
commits (the update-time precondition); the npm emulator ignores update-time
preconditions, so there the second mark also succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, ConfigDict, Field

from onto_core.errors import SourceError
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_firestore.datastore import FirestoreDatastore, check_collection, make_client

__all__ = ["FirestoreTaskSource"]


class FirestoreTaskSource:
    """Pending trigger documents of one collection, each marked done once processed."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        collection: str = Field(description="Collection holding trigger documents.")
        status_field: str = Field("status", description="Top-level field with the state.")
        pending: str = Field("pending", description="State of a trigger to process.")
        done: str = Field("done", description="State set once processed.")
        failed: str = Field("failed", description="State set after max_attempts failures.")
        attempts_field: str = Field("attempts", description="Field counting failed attempts.")
        error_field: str = Field("error", description="Field holding the last error.")
        max_attempts: int = Field(5, ge=1, description="Attempts before 'failed'.")
        poll_interval: float = Field(0.2, gt=0, description="Seconds between queries.")
        batch: int = Field(100, ge=1, description="Triggers fetched per query.")
        project: str | None = Field(None, description="Default: the firestore datastore's.")
        database: str = Field("(default)", description="Firestore database id.")
        emulator_host: str | None = Field(None, description="host:port of an emulator.")

    def __init__(self, config: Config) -> None:
        check_collection(config.collection)
        if "." in config.status_field:
            raise ValueError(f"status_field {config.status_field!r} must be a top-level field")
        self.config = config
        self._client: firestore.Client | None = None
        self._own_client = False
        self._ctx: RuntimeContext | None = None
        self._in_flight: set[str] = set()
        self._ready: list[Message] = []
        self._closed = False
        self._wake = asyncio.Event()

    async def start(self, ctx: RuntimeContext) -> None:
        self._ctx = ctx
        store, config = ctx.datastore, self.config
        if isinstance(store, FirestoreDatastore) and config.project in (None, store.config.project):
            store.open()
            self._client = store.client
            return
        project = config.project or FirestoreDatastore.Config().project
        if not project:
            raise SourceError.at(ctx, "firestore_tasks source: set 'project'")
        self._client = await asyncio.to_thread(
            make_client, project, config.database, config.emulator_host
        )
        self._own_client = True

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()  # type: ignore[no-untyped-call]

    async def read_batch(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` pending triggers, waiting for one; ``[]`` once closed."""
        while not self._closed:
            if not self._ready:
                self._ready = await asyncio.to_thread(self._fetch)
            if self._ready:
                batch, self._ready = self._ready[:max_messages], self._ready[max_messages:]
                return batch
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)
        return []

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        """Mark the trigger done, if it is unchanged since it was read."""
        await asyncio.to_thread(self._mark, message, {self.config.status_field: self.config.done})

    async def nack(self, message: Message, error: BaseException) -> None:
        """Count the failed attempt; mark the trigger failed after ``max_attempts``."""
        config = self.config
        attempts = int(message.value["data"].get(config.attempts_field, 0)) + 1
        update: dict[str, Any] = {config.attempts_field: attempts, config.error_field: str(error)}
        if attempts >= config.max_attempts:
            update[config.status_field] = config.failed
        await asyncio.to_thread(self._mark, message, update)

    def _fetch(self) -> list[Message]:
        assert self._client is not None
        config = self.config
        query = (
            self._client.collection(config.collection)
            .where(filter=FieldFilter(config.status_field, "==", config.pending))
            .limit(config.batch + len(self._in_flight))
        )
        try:
            snaps = list(query.stream())
        except gexc.GoogleAPIError as exc:
            raise SourceError.at(self._ctx, f"firestore query of triggers failed: {exc}") from exc
        found = []
        for snap in snaps:
            if snap.reference.path in self._in_flight:
                continue
            self._in_flight.add(snap.reference.path)
            value = {"docId": snap.id, "path": snap.reference.path, "data": snap.to_dict() or {}}
            found.append(
                Message(
                    value,
                    key=snap.reference.path,
                    channel=config.collection,
                    offset=(snap.reference.path, snap.update_time),
                )
            )
        return found

    def _mark(self, message: Message, update: dict[str, Any]) -> None:
        path, read_time = message.offset
        client = self._client
        if client is None:
            return  # closed: the trigger stays pending and is read again next time
        try:
            client.document(path).update(
                update, option=client.write_option(last_update_time=read_time)
            )
        except (gexc.FailedPrecondition, gexc.NotFound) as exc:
            # Changed (or deleted) since it was read: leave it to the next query.
            if self._ctx is not None:
                self._ctx.log.info("trigger %s changed since read, not marked: %s", path, exc)
        except gexc.GoogleAPIError as exc:
            raise SourceError.at(self._ctx, f"could not mark trigger {path}: {exc}") from exc
        finally:
            self._in_flight.discard(path)
