"""``FirestoreTaskSource``: trigger documents processed once each ("Query+Task" mode).

A front end (or anyone) creates or updates a trigger document with ``status_field`` set
to ``pending``. The source queries pending triggers every ``poll_interval`` seconds and
emits each as ``{docId, path, data}``, remembering the update time it was read at.

``exactly_once`` (with one ``firestore`` sink): the sink calls ``commit_task`` for each
trigger, and one Firestore transaction (``commit_trigger``, which the ``cloud_event``
source of onto-functions commits its triggers with too) then

1. re-reads the trigger and its claim; if the trigger is no longer pending at the update
   time it was read at, nothing is written (``stale``: it is read again, with its new
   contents); if another worker already claimed this version, nothing is written
   (``taken``);
2. lets the sink read the view documents it is about to write;
3. creates the claim ``{claims_collection}/{path}@{update time}`` (a create: it fails if
   the claim exists), writes the views, and marks the trigger ``done`` with an
   update-time precondition (the time it was read at).

So the outputs built from a trigger's version are written if and only if that version is
marked processed, in one commit, and at most one worker commits each version. Conflicts
are retried by the transaction (``transaction_attempts``); a trigger that keeps changing
while it is processed is marked ``failed`` after ``max_attempts`` stale rounds.

``at_least_once``: when the pipeline acks a trigger (every sink confirmed) it is marked
``done`` with the same update-time precondition; if it changed meanwhile the mark is
refused and the trigger, still pending, is processed again. A crash between the sinks'
confirmation and the mark processes it again.

In both modes a nack counts an attempt in ``attempts_field`` (and ``error_field``); after
``max_attempts`` the trigger is marked ``failed`` and is not read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, ConfigDict, Field

from onto_core.builtin.view import VERSION_HEADER
from onto_core.config import PipelineConfig
from onto_core.errors import SourceError
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_firestore.datastore import check_collection, component_client, micros

__all__ = [
    "FirestoreTaskSource",
    "TaskOutcome",
    "TriggerClaims",
    "check_task_sinks",
    "claim_id",
    "commit_trigger",
]

# Handled trigger versions remembered; only queries racing the marks need them.
_HANDLED_KEPT = 10_000

# What the sink stages inside the trigger's transaction: it reads its documents with the
# transaction and returns how to write them.
Stage = Callable[[firestore.Transaction], Callable[[firestore.Transaction], None]]


class TaskOutcome(enum.Enum):
    """What ``commit_task`` did with one trigger."""

    APPLIED = "applied"  # outputs written, trigger marked done, in one commit
    STALE = "stale"  # the trigger changed since it was read: nothing written, read again
    TAKEN = "taken"  # this version was already committed (by another worker or earlier)
    GONE = "gone"  # the trigger was deleted: nothing written


def claim_id(path: str, update_time: dt.datetime) -> str:
    """The claim document id of trigger ``path`` as of ``update_time``.

    ``/`` cannot occur in a document id, so it becomes ``|`` (a ``|`` is doubled first, so
    distinct paths never share an id); the update time is added to the microsecond.
    """
    stamp = update_time.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return path.replace("|", "||").replace("/", "|") + "@" + stamp


@dataclass(frozen=True)
class TriggerClaims:
    """How a trigger version is claimed and marked done: the settings every task source
    commits with (``firestore_tasks``, and the ``cloud_event`` source's task mode)."""

    status_field: str = "status"
    pending: str = "pending"
    done: str = "done"
    claims_collection: str = "_onto_task_claims"
    claim_ttl: float = 7 * 86400.0  # seconds from the claim to its 'expireAt'
    transaction_attempts: int = 5
    worker: str = ""  # recorded in each claim

    @classmethod
    def of(cls, settings: Any) -> TriggerClaims:
        """The claims a task source's config gives (its fields of the same names; the
        worker ``host:pid`` when it names none)."""
        return cls(
            status_field=settings.status_field,
            pending=settings.pending,
            done=settings.done,
            claims_collection=settings.claims_collection,
            claim_ttl=settings.claim_ttl,
            transaction_attempts=settings.transaction_attempts,
            worker=settings.worker or f"{socket.gethostname()}:{os.getpid()}",
        )


def commit_trigger(
    client: firestore.Client,
    path: str,
    read_time: dt.datetime,
    stage: Stage,
    claims: TriggerClaims,
    ctx: RuntimeContext | None = None,
) -> TaskOutcome:
    """Commit the version of trigger ``path`` last updated at ``read_time`` once (blocking).

    One Firestore transaction: read the trigger and its claim
    ``{claims_collection}/{claim_id(path, read_time)}``; a claim that exists is ``TAKEN``,
    no trigger ``GONE``, a trigger updated since ``read_time`` or not ``pending``
    ``STALE`` (nothing written in each case). Otherwise ``stage(transaction)`` reads what
    it needs with the transaction and returns a writer; the commit creates the claim (the
    first write: a commit whose claim exists writes nothing), runs the writer and updates
    the trigger to ``done`` with ``read_time`` as its precondition: ``APPLIED``.

    Raises ``SourceError`` (with ``ctx``'s pipeline and component) when Firestore fails or
    contention outlasts ``claims.transaction_attempts``.
    """
    ref = client.document(path)
    claim = client.collection(claims.claims_collection).document(claim_id(path, read_time))

    @firestore.transactional
    def run(transaction: firestore.Transaction) -> TaskOutcome:
        snaps = {s.reference.path: s for s in transaction.get_all([ref, claim])}
        trigger, claimed = snaps[ref.path], snaps[claim.path]
        if claimed.exists:
            return TaskOutcome.TAKEN
        if not trigger.exists:
            return TaskOutcome.GONE
        status = (trigger.to_dict() or {}).get(claims.status_field)
        if trigger.update_time != read_time or status != claims.pending:
            return TaskOutcome.STALE
        write = stage(transaction)
        now = dt.datetime.now(dt.UTC)
        # The claim is the first write: a commit whose claim exists writes nothing.
        transaction.create(
            claim,
            {
                "path": path,
                "updateTime": read_time,
                "worker": claims.worker,
                "pipeline": ctx.pipeline if ctx else None,
                "claimedAt": now,
                "expireAt": now + dt.timedelta(seconds=claims.claim_ttl),
            },
        )
        write(transaction)
        transaction.update(
            ref,
            {claims.status_field: claims.done},
            option=client.write_option(last_update_time=read_time),
        )
        return TaskOutcome.APPLIED

    try:
        outcome: TaskOutcome = run(client.transaction(max_attempts=claims.transaction_attempts))
    except gexc.AlreadyExists:
        outcome = TaskOutcome.TAKEN  # another worker's claim won the race
    except (gexc.FailedPrecondition, gexc.NotFound):
        outcome = TaskOutcome.STALE  # the trigger changed (or went) before our commit
    except ValueError as exc:
        if not isinstance(exc.__cause__, gexc.Aborted):
            raise
        raise SourceError.at(
            ctx,
            f"trigger {path}: still contended after {claims.transaction_attempts}"
            f" transaction attempts: {exc.__cause__}",
        ) from exc
    except gexc.GoogleAPIError as exc:
        raise SourceError.at(ctx, f"trigger {path}: transaction failed: {exc}") from exc
    return outcome


def check_task_sinks(pipeline: PipelineConfig) -> None:
    """A task source's ``exactly_once`` needs exactly one sink, a ``firestore`` one: it
    commits the mark. ``ValueError`` naming the sinks otherwise."""
    from onto_firestore.sink import FirestoreSink  # the sink module imports this one

    sinks = pipeline.sinks
    if len(sinks) != 1 or not issubclass(sinks[0].info.cls, FirestoreSink):
        got = ", ".join(repr(s.type) for s in sinks)
        raise ValueError(
            "exactly_once commits each trigger's mark together with the views it produced,"
            " in one Firestore transaction of the 'firestore' sink, so the pipeline needs"
            f" exactly one sink of type 'firestore' (got {got})"
        )


class FirestoreTaskSource:
    """Pending trigger documents of one collection, each processed once."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        collection: str = Field(description="Collection holding trigger documents.")
        status_field: str = Field("status", description="Top-level field with the state.")
        pending: str = Field("pending", description="State of a trigger to process.")
        done: str = Field("done", description="State set once processed.")
        failed: str = Field("failed", description="State set after max_attempts failures.")
        attempts_field: str = Field("attempts", description="Field counting failed attempts.")
        error_field: str = Field("error", description="Field holding the last error.")
        max_attempts: int = Field(
            5, ge=1, description="Failed (or, exactly_once, stale) rounds before 'failed'."
        )
        poll_interval: float = Field(0.2, gt=0, description="Seconds between queries.")
        batch: int = Field(100, ge=1, description="Triggers fetched per query.")
        claims_collection: str = Field(
            "_onto_task_claims", description="exactly_once: one claim per processed version."
        )
        claim_ttl: float = Field(
            7 * 86400.0,
            gt=0,
            description=(
                "exactly_once: seconds after which a claim's 'expireAt' passes (for a"
                " Firestore TTL policy on that field)."
            ),
        )
        transaction_attempts: int = Field(
            5, ge=1, description="exactly_once: tries of one trigger's contended transaction."
        )
        worker: str | None = Field(None, description="Name recorded in claims (default: host:pid).")
        project: str | None = Field(None, description="Default: the firestore datastore's.")
        database: str = Field("(default)", description="Firestore database id.")
        emulator_host: str | None = Field(None, description="host:port of an emulator.")

    @classmethod
    def check_pipeline(cls, pipeline: PipelineConfig) -> None:
        """exactly_once needs exactly one sink, a ``firestore`` one: it commits the mark."""
        if pipeline.guarantee is Guarantee.EXACTLY_ONCE:
            check_task_sinks(pipeline)

    def __init__(self, config: Config) -> None:
        check_collection(config.collection)
        check_collection(config.claims_collection)
        if "." in config.status_field:
            raise ValueError(f"status_field {config.status_field!r} must be a top-level field")
        self.config = config
        self._claims = TriggerClaims.of(config)
        self._client: firestore.Client | None = None
        self._own_client = False
        self._ctx: RuntimeContext | None = None
        self._in_flight: set[str] = set()
        # Versions already handled: a query that ran before a trigger was marked still
        # returns it as pending, at the update time handled.
        self._handled: OrderedDict[str, dt.datetime] = OrderedDict()
        self._settled: dict[str, TaskOutcome] = {}  # committed by commit_task, not yet acked
        self._stale_rounds: dict[str, int] = {}
        self._ready: list[Message] = []
        self._closed = False
        self._wake = asyncio.Event()

    async def start(self, ctx: RuntimeContext) -> None:
        self._ctx = ctx
        config = self.config
        self._client, self._own_client = await component_client(
            ctx,
            "firestore_tasks source",
            SourceError,
            config.project,
            config.database,
            config.emulator_host,
        )

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
        """Done with the trigger: mark it, unless ``commit_task`` already settled it."""
        path = message.offset[0]
        outcome = self._settled.pop(path, None)
        if outcome is None:
            await asyncio.to_thread(
                self._mark, message, {self.config.status_field: self.config.done}
            )
            return
        self._release(message)
        if outcome is TaskOutcome.STALE:
            self._wake.set()  # read its new version without waiting for the next poll

    async def nack(self, message: Message, error: BaseException) -> None:
        """Count the failed attempt; mark the trigger failed after ``max_attempts``."""
        config = self.config
        self._settled.pop(message.offset[0], None)
        attempts = int(message.value["data"].get(config.attempts_field, 0)) + 1
        update: dict[str, Any] = {config.attempts_field: attempts, config.error_field: str(error)}
        if attempts >= config.max_attempts:
            update[config.status_field] = config.failed
        await asyncio.to_thread(self._mark, message, update)

    def commit_task(self, message: Message, stage: Stage) -> TaskOutcome:
        """Commit ``message``'s trigger version once, with what ``stage`` writes (blocking).

        ``commit_trigger`` with this source's client and settings: in one transaction,
        re-read the trigger and its claim, call ``stage(transaction)`` (it reads with the
        transaction and returns a writer), create the claim, run the writer, mark the
        trigger done with its read update time as precondition. Raises ``SourceError``
        when Firestore fails or contention outlasts ``transaction_attempts``.
        """
        client = self._client
        if client is None:
            raise SourceError.at(self._ctx, "firestore_tasks source used before start(ctx)")
        path, read_time = message.offset
        outcome = commit_trigger(client, path, read_time, stage, self._claims, self._ctx)
        self._record(message, outcome)
        return outcome

    def _record(self, message: Message, outcome: TaskOutcome) -> None:
        path = message.offset[0]
        self._settled[path] = outcome
        log = self._ctx.log if self._ctx else None
        if outcome is not TaskOutcome.STALE:
            self._stale_rounds.pop(path, None)
            if log is not None and outcome is not TaskOutcome.APPLIED:
                log.debug("trigger %s: %s, nothing written", path, outcome.value)
            return
        rounds = self._stale_rounds.get(path, 0) + 1
        self._stale_rounds[path] = rounds
        if log is not None:
            log.info("trigger %s changed while processed (round %d), read again", path, rounds)
        if rounds >= self.config.max_attempts:
            self._stale_rounds.pop(path, None)
            self._give_up(path, f"changed while being processed, {rounds} rounds in a row")

    def _give_up(self, path: str, error: str) -> None:
        config = self.config
        assert self._client is not None
        log = self._ctx.log if self._ctx is not None else logging.getLogger("onto.firestore")
        try:
            self._client.document(path).update(
                {config.status_field: config.failed, config.error_field: error}
            )
        except gexc.NotFound:
            return  # deleted meanwhile: nothing left to mark
        except gexc.GoogleAPIError as exc:  # still pending: the next round tries again
            log.warning("could not mark trigger %s %s: %s", path, config.failed, exc)
            return
        log.warning("trigger %s marked %s: %s", path, config.failed, error)

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
            path = snap.reference.path
            if path in self._in_flight or self._handled.get(path) == snap.update_time:
                continue
            self._in_flight.add(path)
            value = {"docId": snap.id, "path": path, "data": snap.to_dict() or {}}
            found.append(
                Message(
                    value,
                    key=path,
                    # Outputs derived from it carry it: a view's version, for the sink.
                    headers={VERSION_HEADER: str(micros(snap.update_time))},
                    channel=config.collection,
                    offset=(path, snap.update_time),
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
            self._release(message)

    def _release(self, message: Message) -> None:
        """``message``'s trigger version is handled: it may be read again once it changes."""
        path, read_time = message.offset
        self._handled[path] = read_time
        self._handled.move_to_end(path)
        while len(self._handled) > _HANDLED_KEPT:
            self._handled.popitem(last=False)
        self._in_flight.discard(path)
