"""``LeanCloudDatastore``: onto's Datastore protocol over LeanCloud's v1.1 REST API.

Collections are classes (``class_prefix`` + the collection name, which must be a valid
LeanCloud class name). A document is an object whose top-level fields are the document's
fields, so a LeanCloud front end queries them as they are.

Ids: LeanCloud chooses ``objectId``s itself, so a document's onto id is kept in a field
(``id_field``, ``ontoId`` by default). A document's id is its ``ontoId`` when it has one,
else its ``objectId``: objects saved by other LeanCloud clients (the SDK, the console)
are documents too, under their ``objectId``, and a ``set`` of that id updates them. A
``set`` finds the object first and updates it with ``PUT`` (fields it no longer has are
deleted), creating with ``POST`` only when there is none: an update never creates a
second object. Give ``id_field`` a unique index in every class onto writes (and ``seq``
in the change class, ``name`` in the cursor class, ``stateKey`` in the view-state class):
concurrent creates of one id are then refused (error 137) and retried as updates.

Versions: each object onto writes holds ``version_field`` (``ontoVersion``), counting
its writes. Every update and delete is conditional (``?where=``) on the version and
``updatedAt`` it read, so a write that lost a race answers 305 and is retried (plain
writes) or is a ``ConflictError`` (transactions).

What LeanCloud cannot promise: a transaction over several objects. ``transaction``
checks every object it read before writing and writes each object conditionally, but
the objects are written one by one: a conflict or failure part-way leaves the earlier
ones written. A transaction that writes one object is exact.

The change feed is a class of its own (``changes_class``): after each write, one object
``{seq, collection, docId, op, data, timestamp}``. ``seq`` is claimed by creating that
object under a unique index; writes of one process are serialized, so its changes are in
write order. The document write and its change are two requests (LeanCloud has no
multi-object transaction): a process that dies between them loses that change, and two
processes writing one document in the same moment may log the writes in the other order.
Cursors and view state are classes of their own as well and never enter the feed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from onto_core.errors import ConflictError, DatastoreError
from onto_core.models.datastore import Change, ChangeListeners, ChangeOp, OpenInBlock, ViewRecord
from onto_core.models.query import Condition, check_conditions, matches, sort_rows
from onto_core.models.transaction import DocKey, Transaction, run_transaction
from onto_core.tracing import current_traceparent
from onto_leancloud._client import (
    LeanCloudClient,
    LeanCloudConflict,
    LeanCloudDuplicate,
    LeanCloudError,
    LeanCloudNotFound,
)

__all__ = ["LeanCloudDatastore", "check_class_name", "check_field_names", "where_path"]

R = TypeVar("R")

PAGE = 1000  # LeanCloud's largest page
_CLASS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_META = ("objectId", "createdAt", "updatedAt", "ACL")
_ATTEMPTS = 50  # tries of one plain write whose object keeps changing under it
_IN_VALUES = 100  # values per $in condition
_OPERATORS = {"!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}


def check_class_name(name: str, what: str) -> str:
    """``name`` if it is a valid LeanCloud class name, else ``DatastoreError`` naming ``what``."""
    if not _CLASS_NAME.match(name):
        raise DatastoreError(
            f"{what} {name!r} is not a LeanCloud class name: start with a letter, then"
            " letters, digits and '_' only"
        )
    return name


def check_field_names(where: str, data: dict[str, Any], reserved: Iterable[str]) -> None:
    """``DatastoreError`` naming the first top-level key of ``data`` LeanCloud cannot hold."""
    taken = set(reserved)
    for key in data:
        if not isinstance(key, str) or not _FIELD_NAME.match(key):
            raise DatastoreError(
                f"{where}: field {key!r} is not a LeanCloud field name (start with a letter,"
                " then letters, digits and '_' only)"
            )
        if key in taken:
            raise DatastoreError(f"{where}: field {key!r} is reserved ({', '.join(sorted(taken))})")


def _date(iso: str) -> dict[str, str]:
    return {"__type": "Date", "iso": iso}


def _env(name: str) -> str:
    return os.environ.get(name, "")


def _env_secret(name: str) -> SecretStr | None:
    value = os.environ.get(name)
    return SecretStr(value) if value else None


class LeanCloudDatastore(OpenInBlock):
    """Documents in LeanCloud classes, with a change feed (see the module docstring).

    Thread-safe: reads run in parallel, writes of one process one at a time.
    """

    class Config(BaseModel):
        """Which LeanCloud app, how to sign in, and where onto keeps its bookkeeping."""

        model_config = ConfigDict(extra="forbid")

        server_url: str = Field(
            default_factory=lambda: _env("LEANCLOUD_API_SERVER"),
            description="The app's API server, e.g. 'https://abcd1234.api.lncldglobal.com'"
            " (default: $LEANCLOUD_API_SERVER).",
        )
        app_id: str = Field(
            default_factory=lambda: _env("LEANCLOUD_APP_ID"),
            description="The app's App ID (default: $LEANCLOUD_APP_ID).",
        )
        app_key: SecretStr | None = Field(
            default_factory=lambda: _env_secret("LEANCLOUD_APP_KEY"),
            description="The app's App Key (default: $LEANCLOUD_APP_KEY). Secret.",
        )
        master_key: SecretStr | None = Field(
            default_factory=lambda: _env_secret("LEANCLOUD_APP_MASTER_KEY"),
            description="The app's Master Key (default: $LEANCLOUD_APP_MASTER_KEY). Secret.",
        )
        use_master_key: bool | None = Field(
            default=None,
            description="Sign requests with the master key (default: when one is set).",
        )
        sign_requests: bool = Field(
            default=True,
            description="Send X-LC-Sign (md5 of timestamp and key) instead of the key itself.",
        )
        timeout: float = Field(default=15.0, gt=0, description="Seconds per request.")
        class_prefix: str = Field(
            default="", description="Prefix of the class each collection maps to."
        )
        id_field: str = Field(default="ontoId", description="Field holding a document's id.")
        version_field: str = Field(
            default="ontoVersion", description="Field counting a document's writes."
        )
        changes_class: str = Field(default="OntoChange", description="Class of the change feed.")
        cursors_class: str = Field(
            default="OntoCursor", description="Class of change-feed cursors."
        )
        view_state_class: str = Field(
            default="OntoViewState",
            description="Class of what the view processor last delivered.",
        )
        max_batch_size: int = Field(
            default=50, ge=1, le=100, description="Most requests in one /1.1/batch call."
        )

    def __init__(self, config: Config | None = None) -> None:
        self.config = config = config or LeanCloudDatastore.Config()
        for name, what in [
            (config.changes_class, "changes_class"),
            (config.cursors_class, "cursors_class"),
            (config.view_state_class, "view_state_class"),
        ]:
            check_class_name(name, what)
        for name, what in [(config.id_field, "id_field"), (config.version_field, "version_field")]:
            if not _FIELD_NAME.match(name):
                raise DatastoreError(f"leancloud datastore: {what} {name!r} is not a field name")
        if config.class_prefix and not _CLASS_NAME.match(config.class_prefix):
            raise DatastoreError(
                f"leancloud datastore: class_prefix {config.class_prefix!r} must start with a"
                " letter, then letters, digits and '_' only"
            )
        if not config.server_url or not config.app_id:
            raise DatastoreError(
                "leancloud datastore: set 'server_url' and 'app_id' (or $LEANCLOUD_API_SERVER"
                " and $LEANCLOUD_APP_ID)"
            )
        if config.app_key is None and config.master_key is None:
            raise DatastoreError(
                "leancloud datastore: set 'app_key' or 'master_key' (or $LEANCLOUD_APP_KEY /"
                " $LEANCLOUD_APP_MASTER_KEY)"
            )
        self._client: LeanCloudClient | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._next_seq = 0  # 0: not known, read from the feed before the next claim
        self._listeners = ChangeListeners()
        self._changed = threading.Condition(threading.Lock())
        self._last_seen = 0

    def __repr__(self) -> str:
        return f"LeanCloudDatastore({self.config.server_url!r}, app_id={self.config.app_id!r})"

    # --- lifecycle ----------------------------------------------------------------------

    def open(self) -> None:
        with self._lock:
            if self._client is None:
                c = self.config
                self._client = LeanCloudClient(
                    c.server_url,
                    c.app_id,
                    c.app_key,
                    c.master_key,
                    use_master_key=c.use_master_key,
                    sign=c.sign_requests,
                    timeout=c.timeout,
                )

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
        with self._changed:
            self._changed.notify_all()

    @property
    def client(self) -> LeanCloudClient:
        """The open client (``DatastoreError`` before ``open()``)."""
        client = self._client
        if client is None:
            raise DatastoreError("leancloud datastore is not open: call open() first")
        return client

    def class_name(self, collection: str) -> str:
        """The class that holds ``collection`` (``DatastoreError`` if none can)."""
        return check_class_name(self.config.class_prefix + collection, "collection")

    # --- reads --------------------------------------------------------------------------

    def _id_where(self, doc_id: str) -> dict[str, Any]:
        idf = self.config.id_field
        return {"$or": [{idf: doc_id}, {"objectId": doc_id, idf: {"$exists": False}}]}

    def _doc_id(self, obj: dict[str, Any]) -> str:
        return str(obj.get(self.config.id_field) or obj["objectId"])

    def _data(self, obj: dict[str, Any]) -> dict[str, Any]:
        skip = {*_META, self.config.id_field, self.config.version_field}
        return {k: v for k, v in obj.items() if k not in skip}

    def _find(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """The object holding document ``doc_id``, or ``None``."""
        if not isinstance(doc_id, str) or not doc_id:
            raise DatastoreError(f"document id {doc_id!r} in {collection!r}: a non-empty string")
        rows = self.client.query(self.class_name(collection), self._id_where(doc_id), limit=2)
        for row in rows:  # an ontoId match wins over an objectId one
            if row.get(self.config.id_field) == doc_id:
                return row
        return rows[0] if rows else None

    @staticmethod
    def _version(obj: dict[str, Any] | None) -> int:
        if obj is None:
            return 0
        text = json.dumps([obj["objectId"], obj.get("ontoVersion"), obj.get("updatedAt")])
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") | 1

    def get_versioned(self, collection: str, doc_id: str) -> tuple[dict[str, Any] | None, int]:
        """The document and a version that changes whenever the object does (0: missing)."""
        obj = self._find(collection, doc_id)
        return (None if obj is None else self._data(obj)), self._version(obj)

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        obj = self._find(collection, doc_id)
        return None if obj is None else self._data(obj)

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """One query per 100 ids (``$in`` on the id field, or on objectId)."""
        ids = list(doc_ids)
        result: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        unique = list(dict.fromkeys(ids))
        idf = self.config.id_field
        class_name = self.class_name(collection)
        for start in range(0, len(unique), _IN_VALUES):
            part = unique[start : start + _IN_VALUES]
            where = {
                "$or": [{idf: {"$in": part}}, {"objectId": {"$in": part}, idf: {"$exists": False}}]
            }
            for obj in self._all(class_name, where):
                doc_id = self._doc_id(obj)
                if doc_id in result and (result[doc_id] is None or obj.get(idf) == doc_id):
                    result[doc_id] = self._data(obj)
        return result

    def _all(
        self, class_name: str, where: dict[str, Any], keys: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every object matching ``where``, page by page (by objectId, past 1,000 rows)."""
        found: list[dict[str, Any]] = []
        last: str | None = None
        while True:
            page_where = where if last is None else {"$and": [where, {"objectId": {"$gt": last}}]}
            rows = self.client.query(
                class_name, page_where, order="objectId", limit=PAGE, keys=keys
            )
            found.extend(rows)
            if len(rows) < PAGE:
                return found
            last = rows[-1]["objectId"]

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Rows as the Datastore protocol describes.

        The conditions run on LeanCloud (``$lt``, ``$in``, ...) and are checked again here,
        where ordering and ``limit`` apply too, so results match every other onto store
        exactly (LeanCloud's equality also matches array elements, and its ordering puts
        documents lacking the field first).
        """
        conditions = check_conditions(where)
        lc_where: dict[str, Any] = {}
        clauses: list[dict[str, Any]] = []
        for field, op, value in conditions:
            if op == "==" or op == "array-contains":
                clauses.append({field: value})
            elif op == "in":
                clauses.append({field: {"$in": list(value)}})
            else:
                clauses.append(
                    {
                        field: {
                            {"!=": "$ne", "<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}[
                                op
                            ]: value
                        }
                    }
                )
        if len(clauses) == 1:
            lc_where = clauses[0]
        elif clauses:
            lc_where = {"$and": clauses}
        rows = [
            (self._doc_id(obj), self._data(obj))
            for obj in self._all(self.class_name(collection), lc_where)
        ]
        return sort_rows([r for r in rows if matches(r[1], conditions)], order_by, limit)

    # --- writes -------------------------------------------------------------------------

    def watch(self, listener: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``listener(change)`` after every write made through this object."""
        return self._listeners.add(listener)

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
        """Write ``writes`` if every object in ``reads`` is still at its version, else
        ``ConflictError`` (one object at a time: see the module docstring); with
        ``record_changes=False`` no change is appended (no ``seq`` claimed)."""
        self._write(reads, writes, retry=False, record_changes=record_changes)

    def transaction(
        self, fn: Callable[[Transaction], R], max_attempts: int = 5, *, record_changes: bool = True
    ) -> R:
        return run_transaction(self, fn, max_attempts, record_changes=record_changes)

    def _check(self, collection: str, doc_id: str, data: dict[str, Any] | None) -> None:
        self.class_name(collection)
        if not isinstance(doc_id, str) or not doc_id:
            raise DatastoreError(f"document id {doc_id!r} in {collection!r}: a non-empty string")
        if data is not None:
            reserved = {*_META, self.config.id_field, self.config.version_field}
            check_field_names(f"document {collection}/{doc_id}", data, reserved)

    def _write(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        retry: bool,
        record_changes: bool = True,
    ) -> None:
        for (collection, doc_id), data in writes.items():
            self._check(collection, doc_id, data)
        with self._write_lock:
            current: dict[DocKey, dict[str, Any] | None] = {}
            for key in dict.fromkeys([*reads, *writes]):
                current[key] = self._find(*key)
                if key in reads and self._version(current[key]) != reads[key]:
                    raise ConflictError(f"{key[0]}/{key[1]} changed since it was read")
            changes: list[Change] = []
            last: LeanCloudError | None = None
            for key, data in writes.items():
                for attempt in range(_ATTEMPTS if retry else 1):
                    if attempt:
                        current[key] = self._find(*key)
                    try:
                        op = self._write_one(key, current[key], data)
                    except (LeanCloudConflict, LeanCloudDuplicate, LeanCloudNotFound) as exc:
                        last = exc
                        continue
                    if op is not None and record_changes:
                        changes.append(self._append(key, op, data))
                    break
                else:
                    raise ConflictError(
                        f"write of {key[0]}/{key[1]} lost to other writers"
                        f" {_ATTEMPTS if retry else 1} time(s): {last}"
                    ) from last
        if changes:
            self._listeners.notify(changes)
            with self._changed:
                self._last_seen = max(self._last_seen, changes[-1].seq)
                self._changed.notify_all()

    def _write_one(
        self, key: DocKey, found: dict[str, Any] | None, data: dict[str, Any] | None
    ) -> ChangeOp | None:
        """Write one object conditionally on ``found`` (its state as read); the change op."""
        collection, doc_id = key
        class_name = self.class_name(collection)
        idf, vf = self.config.id_field, self.config.version_field
        if found is None:
            if data is None:
                return None
            self.client.create(class_name, {**data, idf: doc_id, vf: 1})
            return ChangeOp.CREATE
        condition: dict[str, Any] = {
            "objectId": found["objectId"],
            "updatedAt": _date(found["updatedAt"]),
            vf: found.get(vf, {"$exists": False}),
        }
        if data is None:
            self.client.delete(class_name, found["objectId"], where=condition)
            return ChangeOp.DELETE
        gone = {k: {"__op": "Delete"} for k in self._data(found) if k not in data}
        version = found.get(vf)
        body = {**data, **gone, vf: (version + 1) if isinstance(version, int) else 1}
        if idf not in found and doc_id != found["objectId"]:
            body[idf] = doc_id
        self.client.update(class_name, found["objectId"], body, where=condition)
        return ChangeOp.UPDATE

    # --- change feed --------------------------------------------------------------------

    def _append(self, key: DocKey, op: ChangeOp, data: dict[str, Any] | None) -> Change:
        """Record one change, claiming the next ``seq`` (unique) in the change class."""
        last: LeanCloudError | None = None
        for _ in range(_ATTEMPTS):
            seq = self._next_seq or self.last_seq() + 1
            data = None if op is ChangeOp.DELETE else data
            change = Change(seq, key[0], key[1], op, data, time.time(), current_traceparent())
            try:
                self.client.create(self.config.changes_class, change.log_entry())
            except LeanCloudDuplicate as exc:  # another process took this seq
                self._next_seq = 0
                last = exc
                continue
            self._next_seq = seq + 1
            return change
        raise ConflictError(f"could not claim a change seq after {_ATTEMPTS} tries: {last}")

    def last_seq(self) -> int:
        """The highest ``seq`` in the change feed (0 when empty)."""
        rows = self.client.query(self.config.changes_class, order="-seq", limit=1, keys=["seq"])
        return int(rows[0].get("seq", 0)) if rows else 0

    def changes(
        self, after: int = 0, limit: int = 1000, collections: Sequence[str] | None = None
    ) -> list[Change]:
        found: list[Change] = []
        while len(found) < limit:
            where: dict[str, Any] = {"seq": {"$gt": after}}
            if collections is not None:
                where["collection"] = {"$in": list(collections)}
            page = min(PAGE, limit - len(found))
            rows = self.client.query(self.config.changes_class, where, order="seq", limit=page)
            found.extend(Change.from_dict(row) for row in rows)
            if len(rows) < page:
                break
            after = found[-1].seq
        return found

    def wait_for_changes(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a change with ``seq > after`` made by this object."""
        with self._changed:
            return self._changed.wait_for(lambda: self._last_seen > after, timeout)

    def load_cursor(self, name: str) -> int:
        rows = self.client.query(self.config.cursors_class, {"name": name}, limit=1)
        return int(rows[0].get("seq", 0)) if rows else 0

    def save_cursor(self, name: str, seq: int) -> None:
        cls = self.config.cursors_class
        for _ in range(_ATTEMPTS):
            rows = self.client.query(cls, {"name": name}, limit=1)
            try:
                if rows:
                    self.client.update(cls, rows[0]["objectId"], {"seq": int(seq)})
                else:
                    self.client.create(cls, {"name": name, "seq": int(seq)})
                return
            except (LeanCloudDuplicate, LeanCloudNotFound):
                continue  # created or deleted meanwhile: look again
        raise ConflictError(f"save of cursor {name!r} kept racing other writers")

    # --- view state ---------------------------------------------------------------------

    @staticmethod
    def _state_key(name: str, key: str) -> str:
        return hashlib.sha256(json.dumps([name, key]).encode()).hexdigest()

    def load_view_state(self, name: str, shards: Iterable[int] | None = None) -> list[ViewRecord]:
        """The view records saved under ``name`` (of ``shards`` only, when given)."""
        where: dict[str, Any] = {"name": name}
        if shards is not None:
            wanted = sorted(set(shards))
            if not wanted:
                return []
            where["shard"] = {"$in": wanted}
        return [
            ViewRecord(
                str(row["key"]),
                str(row["root"]),
                int(row["shard"]),
                int(row["version"]),
                str(row["digest"]),
            )
            for row in self._all(self.config.view_state_class, where)
        ]

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None:
        """Apply ``records`` as the Datastore protocol says; an older version never wins.

        Stored records are read 100 keys at a time; each change is then a conditional
        request (on the stored version) in a ``/1.1/batch`` call. A request that lost a
        race (305, or 137 for a create) is decided again on a fresh read.
        """
        latest = {r.key: r for r in records}  # the last record per key counts
        cls = self.config.view_state_class
        pending = list(latest.values())
        for _ in range(_ATTEMPTS):
            if not pending:
                return
            lost: list[ViewRecord] = []
            for start in range(0, len(pending), _IN_VALUES):
                part = pending[start : start + _IN_VALUES]
                keys = [self._state_key(name, r.key) for r in part]
                stored = {
                    row["stateKey"]: row
                    for row in self.client.query(cls, {"stateKey": {"$in": keys}}, limit=PAGE)
                }
                planned: list[tuple[ViewRecord, dict[str, Any]]] = []
                for record, state_key in zip(part, keys, strict=True):
                    request = self._view_state_request(name, record, state_key, stored)
                    if request is not None:
                        planned.append((record, request))
                lost.extend(self._send(planned, f"save of view state {name!r}"))
            pending = lost
        raise ConflictError(f"save of view state {name!r} kept racing other writers")

    def _view_state_request(
        self, name: str, record: ViewRecord, state_key: str, stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        cls = self.config.view_state_class
        row = stored.get(state_key)
        if row is not None and int(row.get("version", 0)) > record.version:
            return None  # a newer owner already wrote this view
        if record.digest is None:
            if row is None:
                return None
            path = LeanCloudClient.class_path(cls, row["objectId"])
            return {"method": "DELETE", "path": where_path(path, {"version": row["version"]})}
        body = {
            "name": name,
            "key": record.key,
            "root": record.root,
            "shard": record.shard,
            "version": record.version,
            "digest": record.digest,
            "stateKey": state_key,
        }
        if row is None:
            return {"method": "POST", "path": LeanCloudClient.class_path(cls), "body": body}
        path = LeanCloudClient.class_path(cls, row["objectId"])
        return {
            "method": "PUT",
            "path": where_path(path, {"version": row["version"]}),
            "body": body,
        }

    def _send(self, planned: list[tuple[Any, dict[str, Any]]], what: str) -> list[Any]:
        """Send ``planned`` requests in batches; the items whose request lost a race."""
        lost = []
        size = self.config.max_batch_size
        for start in range(0, len(planned), size):
            part = planned[start : start + size]
            answers = self.client.batch([request for _, request in part], what=what)
            for (item, _), answer in zip(part, answers, strict=True):
                if "error" not in answer:
                    continue
                error = self.client.batch_error(what, answer)
                if isinstance(error, LeanCloudConflict | LeanCloudDuplicate | LeanCloudNotFound):
                    lost.append(item)
                else:
                    raise error
        return lost


def where_path(path: str, where: dict[str, Any]) -> str:
    """``path`` with a ``where`` condition in its query string (a conditional request)."""
    return f"{path}?where={quote(json.dumps(where, separators=(',', ':')))}"
