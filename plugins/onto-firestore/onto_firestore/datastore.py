"""``FirestoreDatastore``: onto's Datastore protocol on Cloud Firestore.

Documents live where their collection path says (``users``, or nested like
``users/u1/meetingSessions``), so a front end reads and listens to them directly.

The change feed is a collection of its own (``_onto_changes`` by default): every write of
a document commits, in the same Firestore commit, one change-log document whose id is the
zero-padded ``seq``. A writer claims its ``seq`` by *creating* that log document (an
``exists=False`` precondition), so two writers, in one process or many, can never record
the same ``seq``; the loser re-reads the feed's end and tries again. The log entry is the
first write of each commit, so even a store that applies a commit's writes one by one
(the npm emulator) writes nothing when the claim fails.

Transactions are optimistic: a transaction reads documents, buffers writes, and commits
only if every document it read is unchanged. Inside one process the check is exact
(commits are serialized and every read document is re-read before committing). Across
processes the commit also carries an ``update_time`` precondition for each document read,
which real Firestore enforces atomically; the npm emulator ignores ``update_time``
preconditions, so there only ``exists`` preconditions guard against other processes.

View state (``save_view_state``/``load_view_state``) is bookkeeping, not documents: one
document per (name, key) in ``_onto_view_state``, written in Firestore transactions that
apply the version rule against what is stored, and never entered in the change log.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from pydantic import BaseModel, ConfigDict, Field

from onto_core.errors import ComponentError, ConflictError, DatastoreError
from onto_core.models.datastore import Change, ChangeListeners, ChangeOp, OpenInBlock, ViewRecord
from onto_core.models.query import Condition, check_conditions, matches, sort_rows
from onto_core.models.transaction import DocKey, Transaction, run_transaction
from onto_core.protocols import RuntimeContext
from onto_core.tracing import current_traceparent

__all__ = ["FirestoreDatastore", "make_client"]

R = TypeVar("R")

# How many times a plain set/delete re-claims a seq when other writers keep taking it.
_CLAIM_ATTEMPTS = 50
_FIRESTORE_OPS = {"array-contains": "array_contains"}  # the client's spelling
_SEQ_WIDTH = 20  # ids sort like the numbers they hold up to 10**20 changes
_COMMIT_WRITES = 500  # Firestore's most writes in one commit (a transaction's too)
_IN_VALUES = 30  # Firestore's most values in one 'in' filter
_VIEW_STATE_ATTEMPTS = 5  # tries of one contended view-state transaction


def make_client(
    project: str, database: str = "(default)", emulator_host: str | None = None
) -> firestore.Client:
    """A Firestore client for ``project``; talks to ``emulator_host`` when given.

    Without ``emulator_host`` the client honours ``FIRESTORE_EMULATOR_HOST`` and otherwise
    uses Application Default Credentials, as google-cloud-firestore does.
    """
    if emulator_host:
        # The client reads the emulator address from the environment only; setting it for
        # the duration of construction keeps other clients in this process unaffected.
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator_host
        try:
            anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
            return firestore.Client(project=project, database=database, credentials=anonymous)
        finally:
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous
    return firestore.Client(project=project, database=database)


def check_collection(collection: str) -> str:
    """``collection`` if it is a collection path (odd number of non-empty segments)."""
    parts = collection.split("/")
    if not collection or len(parts) % 2 == 0 or any(not p for p in parts):
        raise DatastoreError(
            f"collection {collection!r} is not a Firestore collection path: expected "
            "'name' or 'name/{doc_id}/name' (an odd number of non-empty segments)"
        )
    return collection


def check_doc_id(collection: str, doc_id: str) -> str:
    if not doc_id or "/" in doc_id or doc_id in {".", ".."} or doc_id.startswith("__"):
        raise DatastoreError(
            f"document id {doc_id!r} in {collection!r} is not a valid Firestore id: "
            "non-empty, no '/', not '.' or '..', not starting with '__'"
        )
    return doc_id


def _digest(update_time_ns: int, data: dict[str, Any]) -> int:
    """A nonzero version number for one read of a document."""
    # The update time alone is not enough: the npm emulator's clock has millisecond
    # resolution, so two writes in one millisecond share it. Their data tells them apart;
    # identical data at an identical time is the same state, for a conflict check too.
    text = f"{update_time_ns}:{json.dumps(data, sort_keys=True, default=str)}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") | 1


def micros(stamp: dt.datetime) -> int:
    """Microseconds since the epoch of a Firestore timestamp: Firestore's precision, and
    exact in a double (JavaScript clients and the npm emulator hold integers as doubles)."""
    return int(stamp.timestamp()) * 1_000_000 + stamp.microsecond


def _time_ns(stamp: Any) -> int:
    """Nanoseconds since the epoch of a Firestore timestamp (0 when absent)."""
    if stamp is None:
        return 0
    nanos = getattr(stamp, "nanosecond", None)
    seconds = int(stamp.timestamp())
    if nanos is None:
        return int(stamp.timestamp() * 1e9)
    return seconds * 1_000_000_000 + int(nanos)


@dataclass(slots=True)
class _Current:
    """A document as a commit found it."""

    exists: bool
    data: dict[str, Any] | None
    update_time: Any
    version: int


class FirestoreDatastore(OpenInBlock):
    """Documents in Cloud Firestore (or its emulator) with a durable change log.

    Thread-safe. See the module docstring for how ``seq`` and transactions work.
    """

    class Config(BaseModel):
        """Where the store lives and where it keeps its own bookkeeping."""

        model_config = ConfigDict(extra="forbid")

        project: str = Field(
            default_factory=lambda: os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
            description="Google Cloud project id (default: $GOOGLE_CLOUD_PROJECT).",
        )
        database: str = Field(default="(default)", description="Firestore database id.")
        emulator_host: str | None = Field(
            default=None,
            description="host:port of a Firestore emulator (default: $FIRESTORE_EMULATOR_HOST).",
        )
        changes_collection: str = Field(
            default="_onto_changes", description="Collection holding the change log."
        )
        cursors_collection: str = Field(
            default="_onto_cursors", description="Collection holding change-feed cursors."
        )
        view_state_collection: str = Field(
            default="_onto_view_state",
            description="Collection holding what the view processor last delivered.",
        )

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or FirestoreDatastore.Config()
        if not self.config.project:
            raise DatastoreError(
                "firestore datastore: 'project' is required (or set GOOGLE_CLOUD_PROJECT)"
            )
        check_collection(self.config.changes_collection)
        check_collection(self.config.cursors_collection)
        check_collection(self.config.view_state_collection)
        self._client: firestore.Client | None = None
        self._lock = threading.RLock()
        # Serializes this process's view-state transactions: exact on the emulator too,
        # whose transactions are not isolated (real Firestore's are, across processes).
        self._view_state_lock = threading.Lock()
        self._next_seq = 0  # 0: not known yet, read from the log before the next claim
        self._listeners = ChangeListeners()
        self._changed = threading.Condition(threading.Lock())
        self._last_seen = 0

    # --- lifecycle ----------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._client is None:
                self._client = make_client(
                    self.config.project, self.config.database, self.config.emulator_host
                )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]
        with self._changed:
            self._changed.notify_all()

    @property
    def client(self) -> firestore.Client:
        """The open client (``DatastoreError`` before ``open()``)."""
        client = self._client
        if client is None:
            raise DatastoreError("firestore datastore is not open: call open() first")
        return client

    def _doc(self, collection: str, doc_id: str) -> Any:
        check_collection(collection)
        check_doc_id(collection, doc_id)
        return self.client.collection(collection).document(doc_id)

    # --- reads --------------------------------------------------------------------------

    def _read(self, collection: str, doc_id: str) -> _Current:
        try:
            snap = self._doc(collection, doc_id).get()
        except gexc.GoogleAPIError as exc:
            raise DatastoreError(f"firestore read of {collection}/{doc_id} failed: {exc}") from exc
        if not snap.exists:
            return _Current(False, None, None, 0)
        data = snap.to_dict() or {}
        return _Current(True, data, snap.update_time, _digest(_time_ns(snap.update_time), data))

    def get_versioned(self, collection: str, doc_id: str) -> tuple[dict[str, Any] | None, int]:
        """The document and a version that changes whenever the document does (0: missing)."""
        current = self._read(collection, doc_id)
        return current.data, current.version

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        return self._read(collection, doc_id).data

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        ids = list(doc_ids)
        result: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        if not ids:
            return result
        refs = [self._doc(collection, doc_id) for doc_id in dict.fromkeys(ids)]
        try:
            for snap in self.client.get_all(refs):
                if snap.exists:
                    result[snap.id] = snap.to_dict() or {}
        except gexc.GoogleAPIError as exc:
            raise DatastoreError(f"firestore get_many in {collection} failed: {exc}") from exc
        return result

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Rows as the Datastore protocol describes.

        Conditions on top-level fields run on the server (so Firestore indexes apply);
        every condition is (re-)checked here,
        so results match every other onto store exactly; ordering and ``limit`` apply
        here, because Firestore leaves documents lacking the order field out entirely.
        """
        conditions = check_conditions(where)
        check_collection(collection)
        query: Any = self.client.collection(collection)
        for field, op, value in conditions:
            if "." in field:
                # Nested-field filters are checked below only: the npm emulator cannot
                # evaluate them, and the server-side filters are only a pre-selection.
                continue
            operand = list(value) if op == "in" else value
            query = query.where(filter=FieldFilter(field, _FIRESTORE_OPS.get(op, op), operand))
        try:
            rows = [(snap.id, snap.to_dict() or {}) for snap in query.stream()]
        except gexc.GoogleAPIError as exc:
            raise DatastoreError(f"firestore query on {collection} failed: {exc}") from exc
        return sort_rows([r for r in rows if matches(r[1], conditions)], order_by, limit)

    # --- writes -------------------------------------------------------------------------

    def set(self, collection: str, doc_id: str, data: dict[str, Any]) -> None:
        self._write({}, {(collection, doc_id): dict(data)}, retry=True)

    def delete(self, collection: str, doc_id: str) -> None:
        self._write({}, {(collection, doc_id): None}, retry=True)

    def commit(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        *,
        record_changes: bool = True,
    ) -> None:
        """Apply ``writes`` if every document in ``reads`` is at its version, else conflict;
        with ``record_changes=False`` no log entry is written (no ``seq`` claimed)."""
        self._write(reads, writes, retry=False, record_changes=record_changes)

    def transaction(
        self, fn: Callable[[Transaction], R], max_attempts: int = 5, *, record_changes: bool = True
    ) -> R:
        return run_transaction(self, fn, max_attempts, record_changes=record_changes)

    def watch(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``listener(change)`` after every write made through this object."""
        return self._listeners.add(listener)

    def _write(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        retry: bool,
        record_changes: bool = True,
    ) -> None:
        for key in [*reads, *writes]:
            self._doc(*key)  # validates paths before anything is sent
        attempts = _CLAIM_ATTEMPTS if retry else 1
        last: Exception | None = None
        for _ in range(attempts):
            try:
                committed = self._try_write(reads, writes, record_changes)
            except ConflictError as exc:
                last = exc
                continue
            if committed:
                self._listeners.notify(committed)
                with self._changed:
                    self._last_seen = max(self._last_seen, committed[-1].seq)
                    self._changed.notify_all()
            return
        raise ConflictError(str(last)) from last

    def _try_write(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        record_changes: bool = True,
    ) -> list[Change]:
        with self._lock:  # one commit at a time per process: exact in-process conflict checks
            keys = list(dict.fromkeys([*reads, *writes]))
            current = {key: self._read(*key) for key in keys}
            for key, version in reads.items():
                if current[key].version != version:
                    raise ConflictError(f"{key[0]}/{key[1]} changed since it was read")
            planned: list[tuple[DocKey, ChangeOp, dict[str, Any]]] = []
            for key, data in writes.items():
                if data is None:
                    if current[key].exists:
                        planned.append((key, ChangeOp.DELETE, {}))
                else:
                    op = ChangeOp.UPDATE if current[key].exists else ChangeOp.CREATE
                    planned.append((key, op, data))
            if not planned:
                return []
            # Unrecorded writes (bookkeeping) claim no seq: the log is neither read nor written.
            first = (self._next_seq or self.last_seq() + 1) if record_changes else 0
            batch = self.client.batch()
            log = self.client.collection(self.config.changes_collection)
            now = time.time()
            trace = current_traceparent()  # the writer's span, so the feed continues its trace
            changes: list[Change] = []
            # Log entries first: a store applying writes one by one stops at a lost claim
            # before touching any document.
            for offset, (key, op, data) in enumerate(planned if record_changes else ()):
                stored = None if op is ChangeOp.DELETE else data
                change = Change(first + offset, key[0], key[1], op, stored, now, trace)
                changes.append(change)
                batch.create(log.document(f"{change.seq:0{_SEQ_WIDTH}d}"), change.log_entry())
            for key, op, data in planned:
                found = current[key]
                ref = self._doc(*key)
                if op is ChangeOp.DELETE:
                    option = self.client.write_option(last_update_time=found.update_time)
                    batch.delete(ref, option=option)
                elif found.exists and set(found.data or {}) - set(data):
                    # Fields would be left over: delete, then create, in this one commit
                    # (Commit applies its writes in order). A plain set would do on real
                    # Firestore, but the npm emulator merges a set into the old fields.
                    option = self.client.write_option(last_update_time=found.update_time)
                    batch.delete(ref, option=option)
                    batch.set(ref, data)
                elif found.exists:
                    batch.set(ref, data)
                    # set() takes no precondition; guard the replace with the update time
                    # read above, so another process's write in between is a conflict.
                    batch._write_pbs[-1].current_document.update_time = found.update_time
                else:
                    batch.create(ref, data)
            try:
                results = batch.commit()
            except (gexc.AlreadyExists, gexc.FailedPrecondition, gexc.NotFound) as exc:
                if record_changes:
                    self._next_seq = 0  # someone else wrote: re-read the log's end next time
                raise ConflictError(f"a concurrent writer got in first: {exc.message}") from exc
            except gexc.GoogleAPIError as exc:
                self._next_seq = 0
                raise DatastoreError(f"firestore commit failed: {exc}") from exc
            except TypeError as exc:
                raise DatastoreError(f"a document is not storable in Firestore: {exc}") from exc
            if not record_changes:
                return []
            self._next_seq = first + len(planned)
            commit_time = getattr(results[0], "update_time", None) if results else None
            if commit_time is not None:
                stamp = commit_time.timestamp()
                changes = [
                    Change(c.seq, c.collection, c.doc_id, c.op, c.data, stamp, c.trace)
                    for c in changes
                ]
            return changes

    # --- change feed --------------------------------------------------------------------

    def last_seq(self) -> int:
        """The highest ``seq`` in the change log (0 when empty)."""
        log = self.client.collection(self.config.changes_collection)
        query = log.order_by("seq", direction=firestore.Query.DESCENDING).limit(1)
        try:
            rows = list(query.stream())
        except gexc.GoogleAPIError as exc:
            raise DatastoreError(f"firestore read of the change log failed: {exc}") from exc
        return int((rows[0].to_dict() or {}).get("seq", 0)) if rows else 0

    def changes(
        self, after: int = 0, limit: int = 1000, collections: Sequence[str] | None = None
    ) -> list[Change]:
        wanted = None if collections is None else set(collections)
        log = self.client.collection(self.config.changes_collection)
        found: list[Change] = []
        page = max(limit, 100)
        while len(found) < limit:
            query = log.where(filter=FieldFilter("seq", ">", after)).order_by("seq").limit(page)
            try:
                rows = [Change.from_dict(snap.to_dict() or {}) for snap in query.stream()]
            except gexc.GoogleAPIError as exc:
                raise DatastoreError(f"firestore read of the change log failed: {exc}") from exc
            found.extend(c for c in rows if wanted is None or c.collection in wanted)
            if len(rows) < page:
                break
            after = rows[-1].seq
        return found[:limit]

    def wait_for_changes(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a change with ``seq > after`` made by this object.

        Changes written by other processes are not signalled; callers poll ``changes``.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._last_seen > after, timeout)

    def load_cursor(self, name: str) -> int:
        snap = self._doc(self.config.cursors_collection, name).get()
        return int((snap.to_dict() or {}).get("seq", 0)) if snap.exists else 0

    def save_cursor(self, name: str, seq: int) -> None:
        try:
            self._doc(self.config.cursors_collection, name).set({"seq": int(seq)})
        except gexc.GoogleAPIError as exc:
            raise DatastoreError(f"firestore save of cursor {name!r} failed: {exc}") from exc

    # --- view state ---------------------------------------------------------------------

    def _view_state_ref(self, name: str, key: str) -> Any:
        # Names and keys may hold any character ('/' among them) and be of any length;
        # a hash of the pair is always a valid id. The fields say what it stands for.
        pair = json.dumps([name, key]).encode()
        doc_id = hashlib.sha256(pair).hexdigest()
        return self.client.collection(self.config.view_state_collection).document(doc_id)

    def load_view_state(self, name: str, shards: Iterable[int] | None = None) -> list[ViewRecord]:
        """The view records saved under ``name`` (of ``shards`` only, when given)."""
        query: Any = self.client.collection(self.config.view_state_collection).where(
            filter=FieldFilter("name", "==", name)
        )
        if shards is None:
            queries = [query]
        else:
            wanted = sorted(set(shards))
            queries = [
                query.where(filter=FieldFilter("shard", "in", wanted[start : start + _IN_VALUES]))
                for start in range(0, len(wanted), _IN_VALUES)
            ]
        records: list[ViewRecord] = []
        try:
            for part in queries:
                for snap in part.stream():
                    data = snap.to_dict() or {}
                    records.append(
                        ViewRecord(
                            str(data["key"]),
                            str(data["root"]),
                            int(data["shard"]),
                            int(data["version"]),
                            str(data["digest"]),
                        )
                    )
        except gexc.GoogleAPIError as exc:
            raise DatastoreError(f"firestore load of view state {name!r} failed: {exc}") from exc
        return records

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None:
        """Apply ``records`` as the Datastore protocol says; an older version never wins.

        Each run of up to 500 records is one Firestore transaction: it reads the stored
        records and writes only those not older, so a concurrent writer (another worker
        process) cannot slip in between. The rule is per record, so a save larger than one
        transaction is still exact record by record.
        """
        latest = list({r.key: r for r in records}.values())  # the last record per key counts
        with self._view_state_lock:
            for start in range(0, len(latest), _COMMIT_WRITES):
                self._save_view_state_part(name, latest[start : start + _COMMIT_WRITES])

    def _save_view_state_part(self, name: str, records: list[ViewRecord]) -> None:
        refs = [self._view_state_ref(name, r.key) for r in records]

        @firestore.transactional
        def apply(transaction: firestore.Transaction) -> None:
            stored = {snap.id: snap for snap in transaction.get_all(refs)}
            for record, ref in zip(records, refs, strict=True):
                snap = stored[ref.id]
                if snap.exists and int((snap.to_dict() or {}).get("version", 0)) > record.version:
                    continue  # a newer owner already wrote this view
                if record.digest is None:
                    if snap.exists:
                        transaction.delete(ref)
                else:
                    transaction.set(
                        ref,
                        {
                            "name": name,
                            "key": record.key,
                            "root": record.root,
                            "shard": record.shard,
                            "version": record.version,
                            "digest": record.digest,
                        },
                    )

        what = f"firestore save of view state {name!r}"
        try:
            apply(self.client.transaction(max_attempts=_VIEW_STATE_ATTEMPTS))
        except ValueError as exc:
            if not isinstance(exc.__cause__, gexc.Aborted):
                raise
            raise ConflictError(
                f"{what}: still contended after {_VIEW_STATE_ATTEMPTS} transaction attempts:"
                f" {exc.__cause__}"
            ) from exc
        except gexc.GoogleAPIError as exc:
            raise DatastoreError(f"{what} failed: {exc}") from exc


async def component_client(
    ctx: RuntimeContext,
    what: str,
    error: type[ComponentError],
    project: str | None,
    database: str,
    emulator_host: str | None,
) -> tuple[firestore.Client, bool]:
    """The client the firestore source or sink ``what`` of ``ctx``'s pipeline works with.

    The pipeline's firestore datastore's client when ``project`` is unset or the same;
    otherwise a client of its own (the ``bool`` is True: the caller closes it). Without
    a project from either, ``error`` says what to set.
    """
    store = ctx.datastore
    if isinstance(store, FirestoreDatastore) and project in (None, store.config.project):
        store.open()
        return store.client, False
    project = project or FirestoreDatastore.Config().project
    if not project:
        raise error.at(
            ctx, f"{what}: set 'project' (or GOOGLE_CLOUD_PROJECT, or use a firestore datastore)"
        )
    client = await asyncio.to_thread(make_client, project, database, emulator_host)
    return client, True
