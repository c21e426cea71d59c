"""The ``view`` processor: changes in, view updates out, across restarts and workers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onto_core.builtin.transform import import_object
from onto_core.errors import DatastoreError, ProcessorError
from onto_core.models.datastore import Change, Datastore, ViewRecord
from onto_core.models.view import ViewModel
from onto_core.protocols import Message, RuntimeContext
from onto_core.reactive.engine import ReactiveEngine, ViewUpdate
from onto_core.runtime._calls import as_async, optional_method

if TYPE_CHECKING:
    from onto_core.config import PipelineConfig

__all__ = [
    "VERSION_HEADER",
    "VIEW_HEADER",
    "ViewProcessor",
    "change_of",
    "load_view",
    "load_views",
    "newest_per_target",
    "update_parts",
    "view_message",
]

VIEW_HEADER = "onto-view"
VERSION_HEADER = "onto-version"
T = TypeVar("T")

# The digest of a view that may have been delivered: equal to none, so it is built again.
_MAYBE_DELIVERED = ""


def load_view(ref: str) -> type[ViewModel]:
    """The ViewModel class named ``"package.module:Class"``; ``ValueError`` saying why not."""
    found = import_object(ref)
    if not (isinstance(found, type) and issubclass(found, ViewModel)):
        raise ValueError(f"{ref!r} is not a ViewModel subclass")
    if not hasattr(found, "root"):
        raise ValueError(f"{ref!r} declares no root model (class X(ViewModel, root=...))")
    return found


def change_of(message: Message) -> Change:
    """The change ``message`` carries (as the ``changes`` source emits them);
    ``ProcessorError`` naming the message when its value is not one."""
    value: Any = message.value
    try:
        return Change.from_dict(value)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProcessorError(
            f"expected a change (seq, collection, docId, op, data), got {value!r}: {exc}",
            message_id=message.id,
        ) from None


def load_views(refs: list[str], clash: str) -> list[type[ViewModel]]:
    """The ViewModel classes ``refs`` name (``load_view`` each), no two sharing a
    ``view_name``; ``ValueError`` naming the entry (``views[i]``) that cannot be served,
    with ``clash`` saying what to do when two share a name."""
    views: list[type[ViewModel]] = []
    names: dict[str, str] = {}
    for index, ref in enumerate(refs):
        try:
            view = load_view(ref)
        except ValueError as exc:
            raise ValueError(f"views[{index}]: {exc}") from None
        if view.view_name in names:
            raise ValueError(
                f"views[{index}]: {ref!r} and {names[view.view_name]!r} are both named "
                f"{view.view_name!r}; {clash}"
            )
        names[view.view_name] = ref
        views.append(view)
    return views


def view_message(update: ViewUpdate) -> Message:
    """A view update as a message: keyed by view key, version and view name in headers."""
    return Message(
        update.to_dict(),
        key=update.key,
        channel=update.view,
        headers={VIEW_HEADER: update.view, VERSION_HEADER: str(update.version)},
    )


def update_parts(message: Message) -> tuple[int, dict[str, Any] | None]:
    """A view update message's version (its ``version``, else the version header) and
    data (``None`` for a removal), for sinks that write views.

    ``message.value`` is a dict (the sink checked the fields it needs); ``ValueError``
    naming the message when the version or the data is malformed.
    """
    value = message.value
    raw: Any = value.get("version", message.headers.get(VERSION_HEADER))
    try:
        version = int(raw)
    except (TypeError, ValueError):
        raise ValueError(
            f"message {message.id}: 'version' must be an integer, got {raw!r}"
        ) from None
    if value.get("removed") or value.get("data") is None:
        return version, None
    data = value["data"]
    if not isinstance(data, dict):
        raise ValueError(f"message {message.id}: 'data' must be an object, got {data!r}")
    return version, data


def newest_per_target(targets: Iterable[tuple[str, int, T]]) -> dict[str, tuple[int, T]]:
    """The newest ``(version, what)`` per target among ``(target, version, what)``."""
    latest: dict[str, tuple[int, T]] = {}
    for target, version, what in targets:
        if target not in latest or latest[target][0] < version:
            latest[target] = (version, what)
    return latest


class ViewProcessor:
    """Keeps a view model up to date from the datastore's change feed.

    Each input is a change (as the ``changes`` source emits it); the outputs are the view
    updates it causes: ``{view, key, fields, version, removed, data}``, emitted only when
    a view's output changed, keyed by the view key, with the change's sequence number as
    the version so sinks can write idempotently and in order.

    What was delivered survives restarts: once every sink confirmed an update, its key,
    version and a digest of its output are saved in the datastore (``save_view_state``)
    under ``state``. On start, and whenever this worker takes shards over, the views are
    built from the datastore and compared with that record: every update and every removal
    due is emitted (with ``initial: true``, every view), at a version no lower than any
    delivered before. Views emitted there because of ``initial: true`` are recorded once,
    before they go out, as maybe delivered (which the next start emits anyway) unless
    their record already holds the same output, and not again once delivered.

    Views are split into ``shards`` by root; each worker owns the shards its
    ``coordinator`` gives it and builds, follows and emits only their views, while reading
    every change. The default coordinator owns every shard (one worker).
    """

    needs_datastore: ClassVar[bool] = True
    # Big batches by default: changes to one root in a batch are built once, and a
    # batch's view state is written in one transaction. A lone change never waits.
    preferred_batch_size: ClassVar[int] = 1000

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        view: str = Field(description="The ViewModel class, as 'package.module:Class'.")
        initial: bool = Field(
            True,
            description=(
                "Emit every view this worker takes on (at start-up and on a takeover);"
                " false emits only the views that differ from what was delivered before."
            ),
        )
        state: str | None = Field(
            None,
            description=(
                "Name under which what was delivered is kept in the datastore; default:"
                " '<pipeline>:<view name>'. Workers sharing views must share it."
            ),
        )
        shards: int = Field(
            1,
            ge=1,
            le=65536,
            description=(
                "Shards the views are split into by root; fixed per deployment, may exceed"
                " the number of workers."
            ),
        )
        coordinator: Any = Field(
            None,
            description=(
                "Which shards this worker owns: a coordinator block such as {type: kafka,"
                " topic: ..., group_id: ...}; default: {type: static}, every shard."
            ),
            json_schema_extra={"component": "coordinator"},
        )

        @field_validator("view")
        @classmethod
        def _loadable(cls, ref: str) -> str:
            load_view(ref)
            return ref

    def __init__(self, config: Config) -> None:
        self.config = config
        self.view = load_view(config.view)
        self.engine: ReactiveEngine | None = None
        self.coordinator: Any = _build_coordinator(config.coordinator)
        self.state = config.state or ""
        self._store: Datastore | None = None
        self._ctx: RuntimeContext | None = None
        self._pending: dict[str, ViewUpdate] = {}  # output message id → its update
        self._unrecorded: set[str] = set()  # pending ids recorded before they went out
        self._unsaved: dict[str, ViewRecord] = {}  # delivered, not yet saved
        self._saver: asyncio.Task[None] | None = None  # the save running, if any

    @classmethod
    def check_pipeline(cls, pipeline: PipelineConfig) -> None:
        """Refuse a source that splits the changes between processes: views would go stale."""
        source = pipeline.source
        splits = getattr(source.info.cls, "splits_input", None)
        if callable(splits) and splits(source.config):
            raise ValueError(
                f"source {source.type!r} ({source.path}) shares its messages between the"
                " processes that run it, but every view worker must read every change"
                " (a change can affect views of any root). Make each process read all of"
                " it (for kafka: `partitions: all`), and split the views between workers"
                " with `shards` and a `coordinator` on the view processor"
            )

    async def start(self, ctx: RuntimeContext) -> None:
        """Check the datastore and join the coordinator; views are built once all started.

        Building waits for ``due_messages``, which the runtime calls after the source has
        started, so the source's start position is fixed before the views are built from
        the store: every change the build does not reflect is read afterwards.
        """
        self._ctx = ctx
        store = ctx.datastore
        if store is None:
            raise ProcessorError("the view processor needs a datastore", component=ctx.component)
        missing = [m for m in ("load_view_state", "save_view_state") if not hasattr(store, m)]
        if missing:
            raise ProcessorError.at(
                ctx,
                f"datastore {type(store).__name__} cannot keep view state (no"
                f" {', '.join(missing)}): without it views would go stale across restarts",
            )
        self._store = store
        self.state = self.config.state or f"{ctx.pipeline}:{self.view.view_name}"
        self.engine = ReactiveEngine(self.view, store, shards=self.config.shards)
        await self._check_shard_count(store)
        start = optional_method(self.coordinator, "start")
        if start is not None:
            await start(ctx, self.config.shards, ctx.wake)

    async def _check_shard_count(self, store: Datastore) -> None:
        """Re-file saved view state when the shard count changed since it was written."""
        marker = f"onto-view-shards:{self.state}"
        saved = await asyncio.to_thread(store.load_cursor, marker)
        shards = self.config.shards
        if saved == shards:
            return
        if saved:
            engine = self._require_engine()
            records = await asyncio.to_thread(store.load_view_state, self.state, None)
            moved = [
                ViewRecord(r.key, r.root, engine.shard_of(r.root), r.version, r.digest)
                for r in records
            ]
            await asyncio.to_thread(store.save_view_state, self.state, moved)
            if self._ctx is not None:
                self._ctx.log.warning(
                    "view state %r was kept in %d shards, now %d: re-filed %d records"
                    " (change the shard count only while every worker is stopped)",
                    self.state,
                    saved,
                    shards,
                    len(moved),
                )
        await asyncio.to_thread(store.save_cursor, marker, shards)

    async def due_messages(self) -> list[Message]:
        """Follow the coordinator: let lost shards go, build gained ones and say what is due.

        While the coordinator does not know what this worker owns (``None``: joining or
        reassigning), every shard is suspended: nothing is emitted, changes are noted.
        Shards assigned back resume from the notes; shards assigned elsewhere are dropped.
        """
        engine = self._require_engine()
        owned = await as_async(self.coordinator.owned)()
        if owned is None:
            if engine.owned - engine.suspended:
                engine.suspend(engine.owned)
                self._log("suspended while shards are reassigned", 0, 0)
            return []
        if owned == engine.owned and not engine.suspended:
            return []
        lost = engine.owned - owned
        gained = owned - engine.owned
        if lost:
            engine.release(lost)
        updates = await asyncio.to_thread(engine.resume, owned) if engine.suspended else []
        unrecorded: set[int] = set()  # (ids of) initial views: recorded once, before
        delivered: frozenset[str] = frozenset()  # their keys whose record holds their output
        if gained:
            store = self._require_store()
            records = await asyncio.to_thread(store.load_view_state, self.state, sorted(gained))
            built = await asyncio.to_thread(engine.acquire, gained, records, self.config.initial)
            if self.config.initial:
                unrecorded, delivered = _initial_views(built, records)
            updates += built
        await asyncio.to_thread(self._mark_pending, updates, delivered)
        self._log(f"shards {_ranges(engine.owned)} owned", len(gained), len(lost))
        messages = self._messages(updates)
        if unrecorded:
            self._unrecorded.update(
                m.id for m, u in zip(messages, updates, strict=True) if id(u) in unrecorded
            )
        return messages

    def reflected_position(self) -> int | None:
        """The change-feed position the views held were built at: older changes are moot."""
        return self._require_engine().reflected_position()

    def _log(self, what: str, gained: int, lost: int) -> None:
        if self._ctx is not None and self.engine is not None:
            self._ctx.log.info(
                "view %s: %s (%d views held; gained %d, lost %d)",
                self.view.view_name,
                what,
                self.engine.view_count(),
                gained,
                lost,
            )

    def process(self, message: Message) -> list[Message]:
        return self.process_batch([message])[0]

    def process_batch(self, messages: list[Message]) -> list[list[Message]]:
        """The batch's changes, each affected root built once, one view-state write.

        A root touched by several changes of the batch is built once; its updates go
        out with the last of them (the others yield nothing).
        """
        engine = self._require_engine()
        results = engine.apply_many([change_of(m) for m in messages])
        self._mark_pending([u for updates in results for u in updates])
        return [self._messages(updates) for updates in results]

    def _mark_pending(
        self, updates: list[ViewUpdate], delivered: frozenset[str] = frozenset()
    ) -> None:
        """Record the views about to be emitted as maybe delivered, before any sink sees them.

        A view's real record is written once every sink confirmed it. Were a crash to come
        in between, the record would still describe the view before this update, and a
        restart finding the data back at that state (or the root deleted, for a view that
        had no record) would emit nothing while the sink holds this update. A view marked
        maybe-delivered is always emitted again by the next build. A view whose key is in
        ``delivered`` is at the sinks with this output already: its mark keeps the digest,
        whether this copy arrives or not.
        """
        if not updates:
            return
        engine = self._require_engine()
        marks = [
            ViewRecord(
                u.key,
                u.root,
                engine.shard_of(u.root),
                u.version,
                u.digest if u.digest and u.key in delivered else _MAYBE_DELIVERED,
            )
            for u in updates
        ]
        try:
            self._require_store().save_view_state(self.state, marks)
        except DatastoreError as exc:
            engine.forget(updates)  # emitted again when the change is retried
            raise ProcessorError(
                f"could not record the views {self.view.view_name} is about to emit: {exc}",
                component=self._ctx.component if self._ctx is not None else None,
            ) from exc

    async def settled(self, delivered: list[Message], failed: list[Message]) -> None:
        """Record what reached every sink; what did not is emitted again by the next build."""
        engine = self._require_engine()
        lost = [u for m in failed if (u := self._pending.pop(m.id, None)) is not None]
        if lost:
            engine.forget(lost)
        unrecorded = self._unrecorded
        if unrecorded:
            unrecorded.difference_update(m.id for m in failed)
        for message in delivered:
            update = self._pending.pop(message.id, None)
            if unrecorded and message.id in unrecorded:
                unrecorded.discard(message.id)  # recorded before it went out
                continue
            if update is not None and engine.owns(update.root):
                self._unsaved[update.key] = ViewRecord(
                    update.key,
                    update.root,
                    engine.shard_of(update.root),
                    update.version,
                    update.digest,
                )
        self._save_soon()

    def _save_soon(self) -> None:
        """Save the records in the background: one save at a time, each writing every
        record delivered so far (the newest per view), so a busy pipeline writes them in
        few transactions, and none waits for them.

        Until a view's record is saved, its mark says maybe delivered: a restart in
        between emits it again, and nothing is lost.
        """
        if self._unsaved and (self._saver is None or self._saver.done()):
            self._saver = asyncio.create_task(self._save(), name=f"save view state {self.state}")

    async def _save(self) -> None:
        """Save what is unsaved, again while more came meanwhile; stop at a failure."""
        while self._unsaved:
            records = list(self._unsaved.values())
            try:
                await asyncio.to_thread(self._require_store().save_view_state, self.state, records)
            except Exception as exc:  # in the background: said here, or by no one
                # Kept and tried again with the next batch; until then a restart re-emits them.
                if self._ctx is not None:
                    self._ctx.log.warning(
                        "could not save view state %r (%d records): %s: %s",
                        self.state,
                        len(records),
                        type(exc).__name__,
                        exc,
                    )
                return
            for record in records:
                if self._unsaved.get(record.key) is record:
                    del self._unsaved[record.key]

    def asyncapi_payload(self, incoming: Any) -> Any:
        """What this processor emits, for the AsyncAPI document: ``view_update_message``."""
        from onto_core.asyncapi import view_update_message

        return view_update_message(self.view, headers=True)

    def metrics(self) -> dict[str, Any]:
        """Views held, builds run and shards owned by this worker."""
        engine = self.engine
        if engine is None:
            return {}
        return {
            "views": engine.view_count(),
            "recomputes": engine.recomputes,
            "shards_owned": len(engine.owned),
        }

    async def flush(self) -> None:
        """Return once the records of every view settled so far are saved (or a save
        failed: then they stay unsaved, and are tried again with the next batch)."""
        if self._saver is not None:
            await self._saver
        if self._unsaved and self._store is not None:
            await self._save()  # what a failed save left

    async def close(self) -> None:
        """Save what is still unsaved, then leave the coordinator (others take over)."""
        await self.flush()
        close = optional_method(self.coordinator, "close")
        if close is not None:
            await close()

    def _messages(self, updates: list[ViewUpdate]) -> list[Message]:
        messages = []
        for update in updates:
            message = view_message(update)
            self._pending[message.id] = update
            messages.append(message)
        return messages

    def _require_engine(self) -> ReactiveEngine:
        if self.engine is None:
            raise ProcessorError("the view processor was not started")
        return self.engine

    def _require_store(self) -> Datastore:
        if self._store is None:
            raise ProcessorError("the view processor was not started")
        return self._store


def _initial_views(
    updates: list[ViewUpdate], records: list[ViewRecord]
) -> tuple[set[int], frozenset[str]]:
    """What a first build's ``updates`` with ``initial: true`` need recorded.

    Each view (not a removal) is recorded once, by its mark before it goes out, and not
    again once delivered: the mark says maybe delivered, which every start emits anyway,
    and holds the version emitted, so later builds go above it. A view whose record
    already holds its output keeps that digest in its mark: whether the sink got this
    copy or not, it holds that output. Returns the ``id()`` of the views recorded so, and
    the keys whose record holds their output.
    """
    held = {r.key: r.digest for r in records}
    views = [u for u in updates if not u.removed]
    return {id(u) for u in views}, frozenset(u.key for u in views if held.get(u.key) == u.digest)


def _build_coordinator(block: Any) -> Any:
    """The coordinator a ``coordinator`` setting names (a checked block, or a plain dict)."""
    from onto_core.config import ComponentSpec
    from onto_core.plugins import get_component

    if isinstance(block, ComponentSpec):
        return block.build()
    spec: dict[str, Any] = {"type": "static"} if block is None else dict(block)
    info = get_component("coordinator", str(spec.pop("type", "static")))
    return info.cls(info.config_model.model_validate(spec))


def _ranges(shards: frozenset[int]) -> str:
    """``{0, 1, 2, 5}`` as ``0-2,5``; ``-`` for none."""
    if not shards:
        return "-"
    parts: list[str] = []
    ordered = sorted(shards)
    start = prev = ordered[0]
    for shard in [*ordered[1:], None]:
        if shard is not None and shard == prev + 1:
            prev = shard
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if shard is not None:
            start = prev = shard
    return ",".join(parts)
