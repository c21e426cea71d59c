"""Incremental recompute: which views a change affects, rebuilt and emitted only if changed.

The engine keeps, for every root document of one view model that it owns, the read set of
its last build, indexed three ways: by document read; by ``(collection, field, value)`` for
queries with an equality condition; and by collection for other queries. A change looks
up the roots whose read set it touches (a query read is re-matched against the changed
document), rebuilds exactly those, and reports each view whose output differs from what
was last emitted, with the change's sequence number as its version (raised above the
root's last version when changes arrive out of order). A view that a build no longer
yields, or whose root was deleted, is reported as removed.

Roots are split into ``shards`` by a stable hash of their id (``shard_of``). An engine
builds and follows only the shards it was given (``acquire``), so several engines, each
owning some shards, share the work of one view model; ``release`` lets shards go.
``acquire`` compares what it builds with what was delivered before (``ViewRecord``s, kept
in the datastore) and reports every update and removal that is due.

The cost of one change is the number of affected roots, not the number of views.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from onto_core._memory import collector_paused
from onto_core.errors import DatastoreError
from onto_core.models.datastore import Change, Datastore, ViewRecord
from onto_core.models.domain import use_datastore
from onto_core.models.query import Condition, field_value, matches
from onto_core.models.view import ViewModel, build_views
from onto_core.reactive.tracking import ReadCache, ReadSet, TrackingReader

__all__ = ["ReactiveEngine", "ViewUpdate", "shard_of"]

log = logging.getLogger("onto.reactive")

# Stands for an output whose delivery failed: equal to no digest, so it is emitted again.
_UNKNOWN = ""


@dataclass(frozen=True, slots=True)
class ViewUpdate:
    """One view's new output (``data``), or its removal (``data is None``).

    ``root`` is the id of the root document it was built from and ``digest`` fingerprints
    ``data`` (``None`` for a removal): what the engine records once it is delivered.
    """

    view: str
    key: str
    fields: dict[str, str]
    version: int
    data: dict[str, Any] | None
    root: str = ""
    digest: str | None = None

    @property
    def removed(self) -> bool:
        return self.data is None

    def to_dict(self) -> dict[str, Any]:
        """The update as it travels: view, key, key fields, version, removed, data."""
        return {
            "view": self.view,
            "key": self.key,
            "fields": self.fields,
            "version": self.version,
            "removed": self.removed,
            "data": self.data,
        }


def shard_of(root_id: str, shards: int) -> int:
    """The shard (``0 .. shards-1``) root ``root_id`` belongs to; the same in every process."""
    return zlib.crc32(root_id.encode()) % shards if shards > 1 else 0


def digest_of(data: dict[str, Any]) -> str:
    """A fingerprint of a view's output: equal outputs, equal digests."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _one_read(store: Any) -> contextlib.AbstractContextManager[Any]:
    """Reads of one pass in one consistent state, where the store offers it (``snapshot``).

    The sqlite store then reads through a connection of the thread's own, in one read
    transaction, instead of one transaction per read under the shared connection's lock.
    """
    snapshot = getattr(store, "snapshot", None)
    return snapshot() if callable(snapshot) else contextlib.nullcontext()


# A root's read set as kept: the documents and the queries its last build read.
_Reads = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, tuple[Condition, ...]], ...]]


def _digest(view: ViewModel, data: dict[str, Any], own_json: bool) -> str:
    """The digest of ``view``, delivered as ``data``: from its JSON as pydantic writes it
    (field order fixed by the class) when ``own_json`` (the class keeps ``to_dict``), or
    from ``data`` when the class shapes its own."""
    if not own_json:
        return digest_of(data)
    text = view.__pydantic_serializer__.to_json(view, by_alias=True)
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def _above(seq: int, delivered: int) -> int:
    """The version of a root's updates from a build at feed position ``seq``: above every
    version delivered for it before. A feed whose positions are not the versions (changes
    from LeanEngine hooks are numbered by arrival time) may have delivered past ``seq``."""
    return seq if seq > delivered or not delivered else delivered + 1


def _first(entry: tuple[str, Any, Any]) -> str:
    return entry[0]


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class ReactiveEngine:
    """Keeps the views of one ``ViewModel`` class up to date from a change feed.

    Not thread-safe by design beyond a lock around each call: one pipeline feeds it
    changes in order. ``owned`` is the set of shards it holds; a new engine holds none
    until ``acquire`` (``bootstrap`` acquires them all).
    """

    def __init__(self, view: type[ViewModel], store: Datastore, shards: int = 1) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self.view = view
        self.store = store
        self.shards = shards
        self.owned: frozenset[int] = frozenset()
        self.snapshot_seq = 0  # the feed position the last acquire built at
        self.recomputes = 0
        self._own_json = view.to_dict is ViewModel.to_dict  # digests from pydantic's JSON
        self._own_key = view.key is ViewModel.key  # keys made as ViewModel.key makes them
        self._lock = threading.Lock()
        self._built_at: dict[int, int] = {}  # shard → seq it was built at; older changes skip
        self.suspended: frozenset[int] = frozenset()  # held, but not emitting for now
        self._dirty: dict[str, int] = {}  # root of a suspended shard → seq of its last change
        self._outputs: dict[str, dict[str, str]] = {}  # root id → view key → output digest
        # Root id → the version of its last emitted update. Changes may arrive out of seq
        # order (a topic's partitions interleave) while every build reads the store as it
        # is now, so an update gets a version above its root's last one: the newest version
        # always holds the newest data, even for sinks that skip equal versions.
        self._versions: dict[str, int] = {}
        self._read_sets: dict[str, _Reads] = {}
        # Document → the roots that read it: one root as its id, several as a set. Most
        # documents have one reader; ids and tuples of them cost the collector nothing.
        self._by_doc: dict[tuple[str, str], str | set[str]] = {}
        self._by_equality: dict[str, dict[str, dict[str, set[str]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(set))
        )
        self._by_collection: dict[str, set[str]] = defaultdict(set)

    @property
    def root_collection(self) -> str:
        return self.view.root.collection

    def view_count(self) -> int:
        """How many views the engine currently holds."""
        return sum(len(outputs) for outputs in self._outputs.values())

    def shard_of(self, root_id: str) -> int:
        return shard_of(root_id, self.shards)

    def bootstrap(self) -> list[ViewUpdate]:
        """Own every shard: build every view from the store as it is now (all reported)."""
        return self.acquire(range(self.shards), (), emit_all=True)

    def acquire(
        self, shards: Iterable[int], delivered: Iterable[ViewRecord], emit_all: bool = False
    ) -> list[ViewUpdate]:
        """Take ``shards`` on: build their roots from the store and say what is due.

        ``delivered`` are the records of what was delivered for those shards before (by
        this process or another). The result holds an update for every view whose output
        differs from its record (every view, with ``emit_all``) and a removal for every
        record no build yields any more. Their version is the feed position the build
        started at, or one above a root's delivered version when that is not below it
        (``_above``); changes up to the position are then skipped for these shards, since
        the build already reflects them.
        """
        with self._lock:
            gained = {s for s in shards if 0 <= s < self.shards} - self.owned
            if not gained:
                return []
            last_seq = getattr(self.store, "last_seq", None)
            seq = last_seq() if last_seq is not None else 0
            self.snapshot_seq = seq
            self.owned |= gained
            for shard in gained:
                self._built_at[shard] = seq
            previous: dict[str, dict[str, str]] = defaultdict(dict)
            floor: dict[str, int] = defaultdict(int)
            for record in delivered:
                if record.digest is not None and self.shard_of(record.root) in gained:
                    previous[record.root][record.key] = record.digest
                    floor[record.root] = max(floor[record.root], record.version)
            updates: list[ViewUpdate] = []
            # One pass over many roots: each document read once, the roots in one query.
            with _one_read(self.store), collector_paused():
                every_root = self.store.query(self.root_collection)
                roots = [(r, data) for r, data in every_root if self.shard_of(r) in gained]
                cache = ReadCache(self.store, builds=len(roots))
                cache.hold_whole(self.root_collection, every_root)
                for root_id, data in roots:
                    old = previous.pop(root_id, {})
                    version = _above(seq, floor[root_id])
                    updates += self._tolerant_rebuild(
                        root_id, version, old, emit_all, reads=cache, root_data=data
                    )
                    cache.built += 1
            for root_id, old in sorted(previous.items()):  # roots deleted meanwhile
                version = _above(seq, floor[root_id])
                updates += [self._removal(root_id, key, version) for key in sorted(old)]
            return updates

    def release(self, shards: Iterable[int]) -> None:
        """Let ``shards`` go: forget their views and stop following their roots."""
        with self._lock:
            lost = set(shards) & self.owned
            if not lost:
                return
            self.owned -= lost
            self.suspended -= lost
            for shard in lost:
                self._built_at.pop(shard, None)
            for root_id in [r for r in self._dirty if self.shard_of(r) in lost]:
                del self._dirty[root_id]
            for root_id in [r for r in self._outputs if self.shard_of(r) in lost]:
                self._unindex(root_id)
                del self._outputs[root_id]
                self._versions.pop(root_id, None)

    def suspend(self, shards: Iterable[int]) -> None:
        """Stop emitting for ``shards`` but keep them: changes to them are noted, not built."""
        with self._lock:
            self.suspended |= set(shards) & self.owned

    def resume(self, shards: Iterable[int]) -> list[ViewUpdate]:
        """Emit for ``shards`` again: rebuild the roots changes touched while suspended."""
        with self._lock:
            back = set(shards) & self.suspended
            self.suspended -= back
            due = sorted(r for r in self._dirty if self.shard_of(r) in back)
            updates: list[ViewUpdate] = []
            for root_id in due:
                updates += self._tolerant_rebuild(root_id, self._dirty.pop(root_id))
            return updates

    def reflected_position(self) -> int | None:
        """The feed position every shard held was built at or after (``None``: none held).

        Changes up to it change nothing here; shards taken on later are built later.
        """
        with self._lock:
            if not self.owned:
                return None
            return min(self._built_at.get(shard, 0) for shard in self.owned)

    def owns(self, root_id: str) -> bool:
        """Whether root ``root_id`` is in a shard this engine holds."""
        return self.shard_of(root_id) in self.owned

    def forget(self, updates: Iterable[ViewUpdate]) -> None:
        """Updates that were not delivered: the next build of their roots emits them again."""
        with self._lock:
            self._forget(updates)

    def _forget(self, updates: Iterable[ViewUpdate]) -> None:
        for update in updates:
            if self.owns(update.root):
                self._outputs.setdefault(update.root, {})[update.key] = _UNKNOWN

    def apply(self, change: Change) -> list[ViewUpdate]:
        """Rebuild the views ``change`` affects; the updates to emit, in key order."""
        return self.apply_many([change])[0]

    def apply_many(self, changes: list[Change]) -> list[list[ViewUpdate]]:
        """``apply`` for a batch, building each affected root once: its updates go with the
        last change that touched it, at the highest version among those changes.

        One build per root is enough: a build reads the store as it is now, which holds
        every change of the batch, and any root whose reads a change of the batch widens
        is affected by that change already.
        """
        with self._lock:
            due: dict[str, tuple[int, int]] = {}  # root → (index of its last change, seq)
            for index, change in enumerate(changes):
                for root_id in self.affected_roots(change):
                    shard = self.shard_of(root_id)
                    if change.seq <= self._built_at.get(shard, change.seq):
                        continue
                    if shard in self.suspended:
                        self._dirty[root_id] = max(change.seq, self._dirty.get(root_id, 0))
                        continue
                    seq = max(change.seq, due.get(root_id, (0, 0))[1])
                    due[root_id] = (index, seq)
            results: list[list[ViewUpdate]] = [[] for _ in changes]
            built: list[ViewUpdate] = []
            try:
                with _one_read(self.store):
                    reads = self._prefetched(due)
                    for root_id in sorted(due):
                        index, seq = due[root_id]
                        updates = self._rebuild(root_id, seq, reads=reads)
                        results[index] += updates
                        built += updates
            except Exception:
                self._forget(built)  # the batch is retried change by change
                raise
            return results

    def _prefetched(self, roots: Iterable[str]) -> ReadCache | None:
        """What ``roots`` read at their last build, fetched in one read per collection.

        Rebuilding them mostly reads the same documents again (roots often share some):
        they then come from here instead of a store read each. A build that reads
        something else reads it from the store, as always; all within the caller's one
        read of the store (``_one_read``), so everything is read in one state.
        """
        wanted: dict[str, set[str]] = defaultdict(set)
        count = 0
        for root_id in roots:
            reads = self._read_sets.get(root_id)
            if reads is not None:
                for collection, doc_id in reads[0]:
                    wanted[collection].add(doc_id)
                count += 1
        if count < 2:
            return None  # one root: its reads go to the store directly, as they would here
        cache = ReadCache(self.store)
        for collection, ids in wanted.items():
            cache.hold(collection, self.store.get_many(collection, sorted(ids)).items())
        return cache

    def affected_roots(self, change: Change) -> set[str]:
        """Root ids (of the shards held) whose last build read something ``change`` touches."""
        holders = self._by_doc.get((change.collection, change.doc_id))
        roots = set() if holders is None else {holders} if type(holders) is str else set(holders)
        if change.collection == self.root_collection and self.owns(change.doc_id):
            roots.add(change.doc_id)  # a new root, or one being deleted
        data = change.data
        if data is None:
            return roots
        candidates = set(self._by_collection.get(change.collection, ()))
        for field, by_value in self._by_equality.get(change.collection, {}).items():
            value = field_value(data, field)
            candidates.update(by_value.get(_hashable(value), ()))
        for root_id in candidates - roots:
            reads = self._read_sets.get(root_id)
            if reads and any(
                collection == change.collection and matches(data, conditions)
                for collection, conditions in reads[1]
            ):
                roots.add(root_id)
        return roots

    # --- internals ----------------------------------------------------------------------

    def _tolerant_rebuild(
        self,
        root_id: str,
        version: int,
        old: dict[str, str] | None = None,
        emit_all: bool = False,
        reads: ReadCache | None = None,
        root_data: dict[str, Any] | None = None,
    ) -> list[ViewUpdate]:
        """``_rebuild``, logging a root whose build fails instead of failing every root."""
        try:
            return self._rebuild(root_id, version, old, emit_all, reads, root_data)
        except DatastoreError:
            raise  # the store, not this root: nothing else would build either
        except Exception as exc:
            log.error(
                "building %s of root %s failed: %s: %s; its views stay as they were"
                " delivered until a change to what it read builds it again",
                self.view.view_name,
                root_id,
                type(exc).__name__,
                exc,
            )
            return []

    def _rebuild(
        self,
        root_id: str,
        version: int,
        old: dict[str, str] | None = None,
        emit_all: bool = False,
        reads: ReadCache | None = None,
        root_data: dict[str, Any] | None = None,
    ) -> list[ViewUpdate]:
        """Build root ``root_id`` and say what changed; ``reads`` serves its reads when
        given, and ``root_data`` is the root document when already read."""
        self.recomputes += 1
        if old is None:
            old = self._outputs.get(root_id, {})
        reader = TrackingReader(self.store if reads is None else reads)
        try:
            with use_datastore(reader):  # type: ignore[arg-type]
                if root_data is None:
                    root = self.view.root.find(root_id)
                else:
                    reader.read_set.docs.add((self.root_collection, root_id))
                    root = self.view.root.from_dict(root_data, root_id, shared=True)
                views = build_views(self.view, root) if root is not None else []
        except Exception:
            # Keep what was delivered, and follow what the build read up to its failure
            # (and the root itself), so a change there builds it again.
            self._unindex(root_id)
            self._outputs[root_id] = dict(old)
            reader.read_set.docs.add((self.root_collection, root_id))
            self._index(root_id, reader.read_set)
            raise
        last = self._versions.get(root_id)
        if last is not None and version <= last:
            # Above the last, yet never past the store: the data differs, so the store
            # moved at least one seq beyond the build that gave the last version.
            version = last + 1
        name, own_json, key_fields = self.view.view_name, self._own_json, self.view.key_fields
        new: dict[str, str] = {}
        updates: list[ViewUpdate] = []
        keyed = []
        for view in views:
            fields = {f: str(getattr(view, f)) for f in key_fields}
            # The view's key, as ViewModel.key makes it, unless the class makes its own.
            keyed.append(("/".join(fields.values()) if self._own_key else view.key, fields, view))
        for key, fields, view in sorted(keyed, key=_first):
            data = view.to_dict()
            digest = new[key] = _digest(view, data, own_json)
            if emit_all or old.get(key) != digest:
                updates.append(ViewUpdate(name, key, fields, version, data, root_id, digest))
        updates += [self._removal(root_id, key, version) for key in sorted(old.keys() - new)]
        # Most builds read what the last one read: then the index already says so.
        same_reads = root is not None and self._reads_again(root_id, reader.read_set)
        if not same_reads:
            self._unindex(root_id)
        if root is None:
            self._outputs.pop(root_id, None)
            self._versions.pop(root_id, None)
        else:
            self._outputs[root_id] = new
            if updates or last is None:
                self._versions[root_id] = version
            if not same_reads:
                self._index(root_id, reader.read_set)
        return updates

    def _reads_again(self, root_id: str, read_set: ReadSet) -> bool:
        """Whether ``read_set`` is what the index holds for ``root_id`` already."""
        held = self._read_sets.get(root_id)
        if held is None:
            return False
        docs, queries = held
        return (
            len(docs) == len(read_set.docs)
            and read_set.docs.issuperset(docs)
            and queries == tuple(read_set.queries)
        )

    def _removal(self, root_id: str, key: str, version: int) -> ViewUpdate:
        return ViewUpdate(self.view.view_name, key, self._split(key), version, None, root_id)

    def _split(self, key: str) -> dict[str, str]:
        return dict(zip(self.view.key_fields, key.split("/"), strict=False))

    def _index(self, root_id: str, read_set: ReadSet) -> None:
        docs, queries = self._read_sets[root_id] = (tuple(read_set.docs), tuple(read_set.queries))
        by_doc = self._by_doc
        for doc in docs:
            holders = by_doc.get(doc)
            if holders is None:
                by_doc[doc] = root_id
            elif type(holders) is str:
                if holders != root_id:
                    by_doc[doc] = {holders, root_id}
            else:
                holders.add(root_id)  # type: ignore[union-attr]
        for collection, conditions in queries:
            equality = next(((f, v) for f, op, v in conditions if op == "=="), None)
            if equality is None:
                self._by_collection[collection].add(root_id)
            else:
                field, value = equality
                self._by_equality[collection][field][_hashable(value)].add(root_id)

    def _unindex(self, root_id: str) -> None:
        reads = self._read_sets.pop(root_id, None)
        if reads is None:
            return
        docs, queries = reads
        by_doc = self._by_doc
        for doc in docs:
            holders = by_doc.get(doc)
            if holders is None:
                continue
            if type(holders) is str:
                if holders == root_id:
                    del by_doc[doc]
                continue
            holders.discard(root_id)  # type: ignore[union-attr]
            if len(holders) == 1:
                by_doc[doc] = next(iter(holders))
            elif not holders:
                del by_doc[doc]
        for collection, conditions in queries:
            equality = next(((f, v) for f, op, v in conditions if op == "=="), None)
            if equality is None:
                self._by_collection[collection].discard(root_id)
            else:
                field, value = equality
                self._by_equality[collection][field][_hashable(value)].discard(root_id)
