"""The ``sqlite`` datastore: documents and their change feed in one embedded database file.

Several processes may share the file: one writes while another reads the feed. The file
runs in WAL mode, so readers never block the writer, and every committed write survives
the process being killed. Each ``set`` or ``delete`` writes the document and appends its
change in one transaction, so the feed never misses or invents a write.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from onto_core.errors import ConflictError, DatastoreError
from onto_core.models.datastore import (
    Change,
    ChangeListeners,
    ChangeOp,
    OpenInBlock,
    ViewRecord,
    decode_json,
)
from onto_core.models.query import Condition, check_conditions, matches, sort_rows
from onto_core.models.transaction import CommitWrites, DocKey
from onto_core.tracing import current_traceparent

__all__ = ["SqliteDatastore"]

log = logging.getLogger("onto.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,  -- seq of its last change (below 0: a write recording none)
    updated REAL NOT NULL,
    PRIMARY KEY (collection, doc_id)
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    op TEXT NOT NULL,
    data TEXT,
    ts REAL NOT NULL,
    trace TEXT  -- traceparent of the write, when it was traced (Change.trace)
);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS view_state (  -- what the view processor last delivered
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    root TEXT NOT NULL,
    shard INTEGER NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (name, key)
);
CREATE INDEX IF NOT EXISTS view_state_shard ON view_state (name, shard);
CREATE TABLE IF NOT EXISTS counters (  -- 'unrecorded': the last version below 0 given out
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

ChangeListener = Callable[[Change], None]


class SqliteDatastore(CommitWrites, OpenInBlock):
    """Documents and a durable change feed in a sqlite file (no server needed).

    Methods are thread-safe: one connection is shared behind a lock. Calling any method
    other than ``open``/``close`` on a store that is not open raises ``DatastoreError``
    rather than opening implicitly, so a missing ``open()`` shows up at once. Every
    sqlite failure is raised as ``DatastoreError`` naming the file.

    Beyond the ``Datastore`` protocol, so a reader of the feed need not poll for writes
    made in this process: ``watch(listener)`` calls ``listener(change)`` after each
    commit, and ``wait_for_changes(after, timeout)`` blocks until one. Writes from other
    processes are only found by reading ``changes()`` again. ``last_seq()`` is the
    newest sequence number in the feed.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: Path = Field(
            Path("onto.db"), description="Database file; created with its folders if missing."
        )
        busy_timeout: float = Field(
            5.0,
            gt=0,
            description="Seconds to wait for another process's write lock before failing.",
        )

    def __init__(self, config: Config) -> None:
        self.config = config
        self.path = config.path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # snapshot(): a read-only connection per thread, and the one a thread reads through.
        self._readers: dict[int, sqlite3.Connection] = {}
        self._readers_lock = threading.Lock()  # guards _readers
        self._reading = threading.local()
        self._changed = threading.Condition(self._lock)  # notified on every write here
        self._listeners = ChangeListeners()

    def __repr__(self) -> str:
        return f"SqliteDatastore({str(self.path)!r})"

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Create the file, its folders and tables if missing, and connect (idempotent)."""
        with self._lock:
            if self._conn is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatastoreError(f"cannot create the folder for {self.path}: {exc}") from exc
            try:
                # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.config.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise DatastoreError(f"cannot open sqlite datastore at {self.path}: {exc}") from exc
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            # In WAL mode NORMAL still keeps every commit across a process crash.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(changes)")}
            if "trace" not in columns:  # a file made before changes carried their trace
                conn.execute("ALTER TABLE changes ADD COLUMN trace TEXT")
        except sqlite3.Error as exc:
            raise DatastoreError(f"cannot open sqlite datastore at {self.path}: {exc}") from exc
        if str(mode).lower() != "wal":
            raise DatastoreError(
                f"sqlite datastore at {self.path} cannot use WAL journal mode (got {mode!r});"
                " put the file on a local disk"
            )

    def close(self) -> None:
        """Close the connection (idempotent); committed writes are already on disk."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            with self._readers_lock:
                for reader in self._readers.values():
                    reader.close()
                self._readers.clear()
            self._changed.notify_all()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads this thread makes inside the block see one state of the store.

        They go through a read-only connection of the thread's own, in one read
        transaction: no writer is waited for (WAL), and the block pays for one
        transaction rather than one per read. Writes go through the shared connection as
        always; reads inside the block do not see those made after it began. Nested
        blocks share the outer one.
        """
        if getattr(self._reading, "conn", None) is not None:
            yield
            return
        ident = threading.get_ident()
        # Not the shared connection's lock: a write transaction holds that for its length,
        # and a snapshot need not wait for one (WAL).
        with self._readers_lock:
            if self._conn is None:
                raise DatastoreError(
                    f"sqlite datastore at {self.path} is not open; call open() first"
                )
            reader = self._readers.get(ident)
            if reader is None:
                try:
                    reader = sqlite3.connect(
                        self.path,
                        timeout=self.config.busy_timeout,
                        isolation_level=None,
                        check_same_thread=False,  # close() may run on another thread
                    )
                    reader.execute("PRAGMA query_only=ON")
                except sqlite3.Error as exc:
                    raise DatastoreError(
                        f"sqlite datastore at {self.path}: opening a reader failed: {exc}"
                    ) from exc
                self._readers[ident] = reader
        try:
            reader.execute("BEGIN")
        except sqlite3.Error as exc:
            raise DatastoreError(f"sqlite datastore at {self.path}: reading failed: {exc}") from exc
        self._reading.conn = reader
        try:
            yield
        finally:
            self._reading.conn = None
            if reader.in_transaction:
                reader.execute("COMMIT")

    @contextmanager
    def _read(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The connection to read through: the thread's snapshot, else the shared one."""
        reader = getattr(self._reading, "conn", None)
        if reader is None:
            with self._connection(doing) as conn:
                yield conn
            return
        try:
            yield reader
        except sqlite3.Error as exc:
            raise DatastoreError(f"sqlite datastore at {self.path}: {doing} failed: {exc}") from exc

    @contextmanager
    def _connection(self, doing: str) -> Iterator[sqlite3.Connection]:
        """The open connection, held under the lock; sqlite errors become DatastoreError."""
        with self._lock:
            if self._conn is None:
                raise DatastoreError(
                    f"sqlite datastore at {self.path} is not open; call open() first"
                )
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise DatastoreError(
                    f"sqlite datastore at {self.path}: {doing} failed: {exc}"
                ) from exc

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction
        # fails at once (no busy wait) when another process wrote in between.
        with self._connection(doing) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # Some errors already rolled back; a second ROLLBACK would hide them.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # -- documents ---------------------------------------------------------------------

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        """The document, or ``None`` if it does not exist."""
        with self._read(f"reading {collection}/{doc_id}") as conn:
            row = conn.execute(
                "SELECT data FROM documents WHERE collection = ? AND doc_id = ?",
                (collection, doc_id),
            ).fetchone()
        return None if row is None else _decode(row[0])

    def get_versioned(self, collection: str, doc_id: str) -> tuple[dict[str, Any] | None, int]:
        """The document and its version (the seq of its last change); ``(None, 0)`` if missing."""
        with self._connection(f"reading {collection}/{doc_id}") as conn:
            row = conn.execute(
                "SELECT data, version FROM documents WHERE collection = ? AND doc_id = ?",
                (collection, doc_id),
            ).fetchone()
        return (None, 0) if row is None else (_decode(row[0]), int(row[1]))

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """An entry for every id asked, ``None`` for the missing ones."""
        ids = list(dict.fromkeys(doc_ids))
        found: dict[str, dict[str, Any] | None] = dict.fromkeys(ids)
        with self._read(f"reading {len(ids)} documents of {collection}") as conn:
            for start in range(0, len(ids), 500):  # stay under sqlite's parameter limit
                chunk = ids[start : start + 500]
                rows = conn.execute(
                    "SELECT doc_id, data FROM documents WHERE collection = ?"
                    f" AND doc_id IN ({', '.join('?' * len(chunk))})",
                    (collection, *chunk),
                ).fetchall()
                found.update((doc_id, _decode(data)) for doc_id, data in rows)
        return found

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Documents of ``collection`` matching every condition (see ``models.query``).

        Conditions are evaluated in Python over the collection's documents, exactly as the
        memory store and the reactive engine evaluate them: simple and consistent, and
        linear in the collection's size. Without conditions or an order, sqlite orders by
        id and applies ``limit``, so only the documents returned are decoded.
        """
        conditions = check_conditions(where)
        by_id = not conditions and not order_by and (limit is None or limit >= 0)
        sql = "SELECT doc_id, data FROM documents WHERE collection = ?"
        params: tuple[Any, ...] = (collection,)
        if by_id:
            sql += " ORDER BY doc_id"  # UTF-8 bytes sort as Python sorts the strings
            if limit is not None:
                sql += " LIMIT ?"
                params += (limit,)
        with self._read(f"querying {collection}") as conn:
            rows = conn.execute(sql, params).fetchall()
        decoded = [(doc_id, _decode(data)) for doc_id, data in rows]
        if by_id:
            return decoded
        return sort_rows([r for r in decoded if matches(r[1], conditions)], order_by, limit)

    def commit(
        self,
        reads: dict[DocKey, int],
        writes: dict[DocKey, dict[str, Any] | None],
        *,
        record_changes: bool = True,
    ) -> None:
        """Apply ``writes`` (``None`` deletes) in one transaction if ``reads`` still hold.

        Raises ``ConflictError`` and writes nothing when a document read has another
        version now. Each effective write appends one change; its seq is the new version.
        With ``record_changes=False`` none is appended: the new version is the next one
        below 0 (each given once, so never a version a document had before).
        """
        encoded = {key: None if d is None else _encode(d, *key) for key, d in writes.items()}
        now = time.time()
        trace = current_traceparent()
        committed: list[tuple[int, str, str, ChangeOp, str | None, float, str | None]] = []
        what = ", ".join(f"{c}/{d}" for c, d in list(writes)[:3]) or "nothing"
        with self._transaction(f"writing {what}") as conn:
            for (collection, doc_id), version in reads.items():
                if _version(conn, collection, doc_id) != version:
                    raise ConflictError(f"{collection}/{doc_id} changed since it was read")
            for (collection, doc_id), text in encoded.items():
                exists = _version(conn, collection, doc_id) != 0
                if text is None:
                    if not exists:
                        continue
                    conn.execute(
                        "DELETE FROM documents WHERE collection = ? AND doc_id = ?",
                        (collection, doc_id),
                    )
                    op = ChangeOp.DELETE
                else:
                    op = ChangeOp.UPDATE if exists else ChangeOp.CREATE
                if record_changes:
                    version = self._append_change(conn, collection, doc_id, op, text, now, trace)
                    committed.append((version, collection, doc_id, op, text, now, trace))
                elif text is not None:
                    version = _next_unrecorded(conn)
                if text is not None:
                    conn.execute(
                        "INSERT INTO documents (collection, doc_id, data, version, updated)"
                        " VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (collection, doc_id) DO UPDATE SET"
                        " data = excluded.data, version = excluded.version,"
                        " updated = excluded.updated",
                        (collection, doc_id, text, version, now),
                    )
        for entry in committed:
            self._notify(*entry)

    @staticmethod
    def _append_change(
        conn: sqlite3.Connection,
        collection: str,
        doc_id: str,
        op: ChangeOp,
        text: str | None,
        now: float,
        trace: str | None = None,
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO changes (collection, doc_id, op, data, ts, trace)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (collection, doc_id, op.value, text, now, trace),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    # -- change feed -------------------------------------------------------------------

    def changes(
        self, after: int = 0, limit: int = 1000, collections: Sequence[str] | None = None
    ) -> list[Change]:
        """Up to ``limit`` changes with ``seq > after``, oldest first, optionally filtered."""
        sql = "SELECT seq, collection, doc_id, op, data, ts, trace FROM changes WHERE seq > ?"
        params: list[Any] = [after]
        if collections is not None:
            if not collections:
                return []
            sql += f" AND collection IN ({', '.join('?' * len(collections))})"
            params.extend(collections)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._connection("reading the change feed") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            Change(
                seq, coll, doc_id, ChangeOp(op), None if data is None else _decode(data), ts, trace
            )
            for seq, coll, doc_id, op, data, ts, trace in rows
        ]

    def last_seq(self) -> int:
        """The newest sequence number in the feed, ``0`` when it is empty."""
        with self._connection("reading the change feed") as conn:
            return _last_seq(conn)

    def wait_for_changes(self, after: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a change with ``seq > after``; whether one came.

        A write committed by this process ends the wait at once; another process's
        writes are seen when the wait begins and when it ends.
        """
        deadline = time.monotonic() + timeout
        with self._connection("waiting for changes") as conn:
            while _last_seq(conn) <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)  # releases the lock, so writers can proceed
                if self._conn is not conn:
                    raise DatastoreError(f"sqlite datastore at {self.path} was closed")
            return True

    def load_cursor(self, name: str) -> int:
        """The position saved under ``name``, ``0`` if none was saved."""
        with self._connection(f"loading cursor {name!r}") as conn:
            row = conn.execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def save_cursor(self, name: str, seq: int) -> None:
        """Persist ``seq`` as the position of reader ``name`` (replacing the previous one)."""
        with self._connection(f"saving cursor {name!r}") as conn:
            conn.execute(
                "INSERT INTO cursors (name, seq) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET seq = excluded.seq",
                (name, seq),
            )

    def load_view_state(self, name: str, shards: Iterable[int] | None = None) -> list[ViewRecord]:
        """The view records saved under ``name`` (of ``shards`` only, when given)."""
        sql = "SELECT key, root, shard, version, digest FROM view_state WHERE name = ?"
        params: list[Any] = [name]
        if shards is not None:
            wanted = sorted(set(shards))
            if not wanted:
                return []
            sql += f" AND shard IN ({', '.join('?' * len(wanted))})"
            params += wanted
        with self._connection(f"loading view state {name!r}") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [
            ViewRecord(key, root, shard, version, digest)
            for key, root, shard, version, digest in rows
        ]

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None:
        """Apply ``records`` in one transaction; an older version never replaces a newer one."""
        latest = {r.key: r for r in records}.values()  # in order: the last record per key wins
        puts = [
            (r.key, r.root, r.shard, r.version, r.digest) for r in latest if r.digest is not None
        ]
        drops = [(r.key, r.version) for r in latest if r.digest is None]
        # Each set of rows goes in as one JSON array, in one statement: sqlite then runs
        # without the GIL for the whole of it, where a statement per row would take the
        # GIL back after each row (slow whenever another thread is running Python).
        with self._transaction(f"saving view state {name!r}") as conn:
            if drops:
                conn.execute(
                    "DELETE FROM view_state WHERE rowid IN (SELECT v.rowid FROM json_each(?)"
                    " AS j CROSS JOIN view_state AS v ON v.name = ?"
                    " AND v.key = json_extract(j.value, '$[0]')"
                    " AND v.version <= json_extract(j.value, '$[1]'))",
                    (_rows_json(drops), name),
                )
            if puts:
                conn.execute(
                    "INSERT INTO view_state (name, key, root, shard, version, digest)"
                    " SELECT ?, json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
                    " json_extract(value, '$[2]'), json_extract(value, '$[3]'),"
                    " json_extract(value, '$[4]') FROM json_each(?) WHERE true"
                    " ON CONFLICT (name, key) DO UPDATE SET root = excluded.root,"
                    " shard = excluded.shard, version = excluded.version,"
                    " digest = excluded.digest WHERE excluded.version >= view_state.version",
                    (name, _rows_json(puts)),
                )

    def watch(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(change)`` after every write this process commits.

        The listener runs in the writer's thread and must return quickly; an exception
        from it is logged and never fails the write. Returns a function that stops it.
        """
        return self._listeners.add(listener)

    def _notify(
        self,
        seq: int,
        collection: str,
        doc_id: str,
        op: ChangeOp,
        text: str | None,
        now: float,
        trace: str | None,
    ) -> None:
        with self._lock:
            self._changed.notify_all()
        if self._listeners:
            data = None if text is None else _decode(text)
            self._listeners.notify([Change(seq, collection, doc_id, op, data, now, trace)])


def _encode(data: dict[str, Any], collection: str, doc_id: str) -> str:
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DatastoreError(
            f"document {collection}/{doc_id} is not JSON-serializable: {exc}"
        ) from exc


def _rows_json(rows: list[tuple[Any, ...]]) -> str:
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def _next_unrecorded(conn: sqlite3.Connection) -> int:
    """The next version below 0 for a write that records no change (each given once)."""
    (version,) = conn.execute(
        "INSERT INTO counters (name, value) VALUES ('unrecorded', -1)"
        " ON CONFLICT (name) DO UPDATE SET value = value - 1 RETURNING value"
    ).fetchone()
    return int(version)


def _version(conn: sqlite3.Connection, collection: str, doc_id: str) -> int:
    row = conn.execute(
        "SELECT version FROM documents WHERE collection = ? AND doc_id = ?", (collection, doc_id)
    ).fetchone()
    return 0 if row is None else int(row[0])


def _last_seq(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT MAX(seq) FROM changes").fetchone()[0] or 0)


_decode = decode_json
