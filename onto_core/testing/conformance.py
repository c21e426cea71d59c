"""Conformance suites a connector's tests subclass, supplying only a factory fixture.

Each suite is a plain class of ``test_*`` methods; a subclass named ``Test...`` makes
pytest collect them. Component methods may be sync or async: the suites call them the
way the runtime does (coroutines awaited, plain functions in a worker thread), inside
``asyncio.run``, so no asyncio pytest plugin is needed. Every wait has a timeout.

A failure names the promise the component broke and the section of
docs/writing-connectors.md that states it, e.g. ``docs/writing-connectors.md#read-waits``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, overload

import pytest

from onto_core.errors import ConflictError, DatastoreError
from onto_core.models.datastore import ChangeOp, Datastore, ViewRecord
from onto_core.protocols import Guarantee, Message, RuntimeContext

__all__ = [
    "JSON_VALUES",
    "DatastoreConformance",
    "SinkConformance",
    "SourceConformance",
    "SourceHarness",
    "broken_promise",
    "call",
    "run",
]

T = TypeVar("T")

JSON_VALUES: list[Any] = [
    "text",
    "ünïcødé ✓ 日本語 🙂",
    "",
    0,
    -7,
    2**53,
    1.5,
    True,
    False,
    None,
    {"nested": {"list": [1, "two", {"three": 3.5}], "empty": {}}},
    [1, [2, [3]], []],
]
"""One value of every JSON kind, with unicode and nesting: what the suites write."""


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a component method as the runtime does: await coroutines, thread plain functions."""
    # Imported on use: the pytest plugin loads this package in every test session.
    from onto_core.runtime import as_async

    return await as_async(fn)(*args)


@overload
def run(value: Awaitable[T]) -> T: ...


@overload
def run(value: T) -> T: ...


def run(value: Any) -> Any:
    """``value``, or the result of running it when it is awaitable (from sync code only).

    For calling a possibly-async component method in a sync test: ``run(source.ack(m))``.
    """
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    return asyncio.run(wait())


GUIDE = "docs/writing-connectors.md"
"""The page that states every promise the suites check; failures link to its sections."""


def broken_promise(promise: str, section: str, found: str) -> str:
    """A failure message: what was found, the promise it breaks, where that promise is stated."""
    return f"{found}\nBroken promise: {promise} (see {GUIDE}#{section})"


_RESTART_PROMISE = (
    "what was not acked is delivered again after a restart (durable = True; set"
    " durable = False if the source keeps nothing across restarts)"
)


def _canonical(values: list[Any]) -> Counter[str]:
    """Values as a multiset that tells 1, 1.0 and true apart and ignores order."""
    return Counter(json.dumps(v, sort_keys=True) for v in values)


def _context(component: object, datastore: Datastore | None = None) -> RuntimeContext:
    return RuntimeContext(
        pipeline="conformance",
        component=type(component).__name__,
        log=logging.getLogger("onto.testing"),
        datastore=datastore,
    )


def _declared_guarantees(component: object) -> frozenset[Guarantee]:
    declared = getattr(type(component), "guarantees", None)
    assert isinstance(declared, frozenset), "class attribute `guarantees` must be a frozenset"
    assert declared, "`guarantees` must name at least one Guarantee"
    assert all(isinstance(g, Guarantee) for g in declared), declared
    return declared


def _as_messages(result: Any) -> list[Message]:
    """What ``read`` (a message or ``None``) or ``read_batch`` (a list) returned, as a list."""
    if result is None:
        return []
    return [result] if isinstance(result, Message) else list(result)


async def _close(component: object) -> None:
    close = getattr(component, "close", None)
    if callable(close):
        await call(close)


@contextlib.asynccontextmanager
async def _started(component: Any, datastore: Datastore | None = None) -> AsyncIterator[Any]:
    start = getattr(component, "start", None)
    if callable(start):
        await call(start, _context(component, datastore))
    try:
        yield component
    finally:
        await _close(component)


@dataclass
class SourceHarness:
    """What a ``source_factory`` fixture returns: sources over one shared body of data.

    ``new_source()`` returns a new, not yet started source instance reading the same data
    as every other instance from this harness, as a restarted process would.
    ``write(values)`` appends JSON values to that data (sync or async); the suite calls it
    after ``start``. ``datastore``, if set, is handed to ``start`` in the context.
    """

    new_source: Callable[[], Any]
    write: Callable[[list[Any]], Any]
    datastore: Datastore | None = None


class SourceConformance:
    """What every source must do. Subclass it and supply ``source_factory``::

        class TestMemorySource(SourceConformance):
            durable = False  # channels live in the process only

            @pytest.fixture
            def source_factory(self):
                config = MemorySource.Config(channel="conformance")
                write = lambda values: channel("conformance").put(*values)
                return SourceHarness(new_source=lambda: MemorySource(config), write=write)

    Class attributes a subclass may set:

    - ``durable`` (default ``True``): what was not acked survives a restart, so the
      restart tests run against two instances from one harness. A source whose data
      lives in its process only sets ``durable = False``, with the reason in a comment.
    - ``endless`` (default ``True``): the source has no end. Reading it while nothing is
      ready must wait, never return ``[]`` or ``None``, which would end the pipeline. A
      finite source (a file read once, a fixed list) sets ``endless = False``.
    - ``idle_seconds`` (default 0.5): how long a read of an idle endless source must keep
      waiting to pass.
    - ``timeout`` (default 10): the most any one read may take once data was written.

    Override ``payload_of`` when the source wraps written values.
    """

    durable: ClassVar[bool] = True
    endless: ClassVar[bool] = True
    idle_seconds: ClassVar[float] = 0.5
    timeout: ClassVar[float] = 10.0
    sample_values: ClassVar[list[Any]] = JSON_VALUES

    @pytest.fixture
    def source_factory(self) -> SourceHarness:
        raise NotImplementedError(
            f"{type(self).__name__} must define a source_factory fixture returning a SourceHarness"
        )

    def payload_of(self, message: Message) -> Any:
        """The written value a message carries."""
        return message.value

    async def read_messages(
        self,
        source: Any,
        count: int,
        promise: str = "every written value is read",
        section: str = "sources",
    ) -> list[Message]:
        """Exactly ``count`` messages, read in batches when the source offers it.

        On a timeout or an early end the test fails naming ``promise`` and ``section``.
        """
        got: list[Message] = []
        read_batch = getattr(source, "read_batch", None)

        async def fill() -> None:
            while len(got) < count:
                if callable(read_batch):
                    batch = list(await call(read_batch, count - len(got)))
                else:
                    one = await call(source.read)
                    batch = [] if one is None else [one]
                if not batch:
                    pytest.fail(
                        broken_promise(
                            promise,
                            section,
                            f"the source ended (read_batch returned [] or read returned None)"
                            f" after {len(got)} of {count} messages",
                        )
                    )
                got.extend(batch)

        try:
            await asyncio.wait_for(fill(), self.timeout)
        except TimeoutError:
            pytest.fail(
                broken_promise(
                    promise, section, f"read {len(got)} of {count} messages within {self.timeout}s"
                )
            )
        return got

    def _require_durable(self) -> None:
        if not self.durable:
            pytest.skip("durable = False: nothing survives a restart")

    def test_declares_its_guarantees(self, source_factory: SourceHarness) -> None:
        _declared_guarantees(source_factory.new_source())

    def test_every_written_value_is_read(self, source_factory: SourceHarness) -> None:
        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, self.sample_values)
                messages = await self.read_messages(source, len(self.sample_values))
            assert _canonical([self.payload_of(m) for m in messages]) == _canonical(
                self.sample_values
            )

        run(scenario())

    def test_messages_have_unique_ids(self, source_factory: SourceHarness) -> None:
        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, list(range(10)))
                messages = await self.read_messages(source, 10)
            ids = [m.id for m in messages]
            assert all(isinstance(i, str) and i for i in ids), ids
            assert len(set(ids)) == len(ids), ids

        run(scenario())

    def test_messages_with_one_key_arrive_in_written_order(
        self, source_factory: SourceHarness
    ) -> None:
        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, list(range(30)))
                messages = await self.read_messages(source, 30)
            by_key: dict[str | None, list[Any]] = {}
            for m in messages:
                by_key.setdefault(m.key, []).append(self.payload_of(m))
            for key, payloads in by_key.items():
                assert payloads == sorted(payloads), f"key {key!r} out of order: {payloads}"

        run(scenario())

    def test_nacked_message_is_delivered_again(self, source_factory: SourceHarness) -> None:
        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, ["a", "b", "c"])
                first, *rest = await self.read_messages(source, 3)
                for m in rest:
                    await call(source.ack, m)
                await call(source.nack, first, RuntimeError("sink failed"))
                (again,) = await self.read_messages(
                    source, 1, "a nacked message is delivered again", "ack-and-nack"
                )
                await call(source.ack, again)
            assert self.payload_of(again) == self.payload_of(first), broken_promise(
                "a nacked message is delivered again",
                "ack-and-nack",
                f"nacked {self.payload_of(first)!r}, then read {self.payload_of(again)!r}",
            )
            assert again.id == first.id, broken_promise(
                "a redelivered message keeps its id",
                "ack-and-nack",
                f"nacked id {first.id!r} came back as {again.id!r}",
            )

        run(scenario())

    def test_ack_batch_acks_each_message_it_is_given(self, source_factory: SourceHarness) -> None:
        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                if not callable(getattr(source, "ack_batch", None)):
                    pytest.skip("source has no ack_batch: acks come one at a time")
                await call(source_factory.write, ["a", "b", "c"])
                first, second, third = await self.read_messages(source, 3)
                await call(source.ack_batch, [first, second])
                await call(source.nack, third, RuntimeError("sink failed"))
                (again,) = await self.read_messages(source, 1)
                await call(source.ack_batch, [again])
            assert self.payload_of(again) == self.payload_of(third), (
                "after ack_batch of the first two, only the nacked third comes again"
            )
            if not self.durable:
                return
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, ["after restart"])
                (next_message,) = await self.read_messages(source, 1)
            assert self.payload_of(next_message) == "after restart", (
                "a message acked with ack_batch came again after a restart"
            )

        run(scenario())

    def test_an_idle_source_waits_and_delivers_what_arrives_later(
        self, source_factory: SourceHarness
    ) -> None:
        if not self.endless:
            pytest.skip("endless = False: a finite source may end when its data is read")
        promise = "an endless source's read waits while nothing is ready"

        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                read_batch = getattr(source, "read_batch", None)
                method = "read_batch" if callable(read_batch) else "read"
                pending = asyncio.ensure_future(
                    call(read_batch, 10) if callable(read_batch) else call(source.read)
                )
                try:
                    done, _ = await asyncio.wait({pending}, timeout=self.idle_seconds)
                    if done:
                        early = _as_messages(pending.result())
                        found = (
                            f"with nothing written, {method} returned at once with"
                            f" {[self.payload_of(m) for m in early]!r}"
                            if early
                            else f"with nothing written, {method} returned"
                            f" {pending.result()!r} at once; the runtime takes that as the"
                            " end of a finite source and stops the pipeline (set"
                            " endless = False if the source really is finite)"
                        )
                        pytest.fail(broken_promise(promise, "read-waits", found))
                    await call(source_factory.write, ["arrived later"])
                    try:
                        result = await asyncio.wait_for(pending, self.timeout)
                    except TimeoutError:
                        pytest.fail(
                            broken_promise(
                                "a waiting read delivers what arrives later",
                                "read-waits",
                                f"a value written while read was waiting was not delivered"
                                f" within {self.timeout}s",
                            )
                        )
                finally:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
            got = _as_messages(result)
            assert [self.payload_of(m) for m in got] == ["arrived later"], broken_promise(
                "a waiting read delivers what arrives later",
                "read-waits",
                f"the waiting read returned {got!r}",
            )

        run(scenario())

    def test_close_twice_is_harmless(self, source_factory: SourceHarness) -> None:
        async def scenario() -> None:
            source = source_factory.new_source()
            async with _started(source, source_factory.datastore):
                await call(source_factory.write, ["x"])
                await self.read_messages(source, 1)
            await _close(source)

        run(scenario())

    def test_acked_messages_are_not_redelivered_after_reopen(
        self, source_factory: SourceHarness
    ) -> None:
        self._require_durable()

        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, ["a", "b", "c"])
                for m in await self.read_messages(source, 3):
                    await call(source.ack, m)
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, ["after restart"])
                (next_message,) = await self.read_messages(
                    source, 1, _RESTART_PROMISE, "durability"
                )
            assert self.payload_of(next_message) == "after restart", broken_promise(
                "an acked message is not delivered again after a restart",
                "durability",
                f"after a restart the first message was {self.payload_of(next_message)!r},"
                " acked before the restart",
            )

        run(scenario())

    def test_unacked_messages_are_redelivered_after_reopen(
        self, source_factory: SourceHarness
    ) -> None:
        self._require_durable()

        async def scenario() -> None:
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                await call(source_factory.write, ["a", "b", "c", "d"])
                messages = await self.read_messages(source, 4)
                acked, unacked = messages[:2], messages[2:]
                for m in acked:
                    await call(source.ack, m)
            missing = {self.payload_of(m) for m in unacked}
            async with _started(source_factory.new_source(), source_factory.datastore) as source:
                seen = 0
                while missing and seen < 10:
                    (m,) = await self.read_messages(source, 1, _RESTART_PROMISE, "durability")
                    missing.discard(self.payload_of(m))
                    seen += 1
            assert not missing, broken_promise(
                _RESTART_PROMISE,
                "durability",
                f"never delivered again after a restart: {sorted(missing)}",
            )

        run(scenario())


class SinkConformance:
    """What every sink must do. Subclass it and supply ``sink_factory``::

        class TestMemorySink(SinkConformance):
            @pytest.fixture
            def sink_factory(self):
                sink = MemorySink(MemorySink.Config(channel="out"))
                return sink, channel("out").values

    The fixture returns ``(sink, read_back)``: a new, not yet started sink and a function
    (sync or async) returning the values its destination now holds. Set
    ``keeps_history = False`` for sinks that keep only the latest value per key.

    Supply a ``refusing_sink_factory`` fixture too, returning a new, not yet started sink
    whose destination refuses every write (a full disk, a read-only collection, a closed
    port), to check that ``write`` raises then; without it that test is skipped.
    """

    keeps_history: ClassVar[bool] = True
    sample_values: ClassVar[list[Any]] = JSON_VALUES

    @pytest.fixture
    def sink_factory(self) -> tuple[Any, Callable[[], Any]]:
        raise NotImplementedError(
            f"{type(self).__name__} must define a sink_factory fixture returning (sink, read_back)"
        )

    @pytest.fixture
    def refusing_sink_factory(self) -> Any:
        pytest.skip(f"{type(self).__name__} supplies no refusing_sink_factory")

    @staticmethod
    def messages(values: list[Any], key: str | None = None) -> list[Message]:
        """One message per value, each with its own key unless ``key`` is given."""
        return [Message(v, key=key if key is not None else f"k{i}") for i, v in enumerate(values)]

    def test_declares_its_guarantees(self, sink_factory: tuple[Any, Callable[[], Any]]) -> None:
        _declared_guarantees(sink_factory[0])

    def test_every_message_of_a_batch_arrives(
        self, sink_factory: tuple[Any, Callable[[], Any]]
    ) -> None:
        sink, read_back = sink_factory
        values = [{"n": n} for n in range(5)]

        async def scenario() -> list[Any]:
            async with _started(sink):
                await call(sink.write, self.messages(values))
                return list(await call(read_back))

        assert _canonical(run(scenario())) == _canonical(values)

    def test_empty_batch_is_accepted(self, sink_factory: tuple[Any, Callable[[], Any]]) -> None:
        sink, read_back = sink_factory

        async def scenario() -> list[Any]:
            async with _started(sink):
                await call(sink.write, [])
                return list(await call(read_back))

        assert run(scenario()) == []

    def test_json_values_round_trip(self, sink_factory: tuple[Any, Callable[[], Any]]) -> None:
        sink, read_back = sink_factory

        async def scenario() -> list[Any]:
            async with _started(sink):
                await call(sink.write, self.messages(self.sample_values))
                return list(await call(read_back))

        assert _canonical(run(scenario())) == _canonical(self.sample_values)

    def test_start_write_close_and_close_again(
        self, sink_factory: tuple[Any, Callable[[], Any]]
    ) -> None:
        sink, read_back = sink_factory

        async def scenario() -> list[Any]:
            async with _started(sink):
                await call(sink.write, self.messages(["before close"]))
            await _close(sink)
            return list(await call(read_back))

        assert run(scenario()) == ["before close"]

    def test_write_raises_when_its_messages_did_not_land(self, refusing_sink_factory: Any) -> None:
        sink = refusing_sink_factory

        async def scenario() -> None:
            async with _started(sink):
                try:
                    await call(sink.write, self.messages([{"n": 1}, {"n": 2}]))
                except Exception:
                    return
            pytest.fail(
                broken_promise(
                    "write raises unless every message of the batch landed",
                    "sink-errors",
                    "write returned normally although the destination refused the batch;"
                    " the runtime acks what write confirmed, so these messages are lost",
                )
            )

        run(scenario())

    def test_a_failed_batch_written_again_lands_every_message(
        self, sink_factory: tuple[Any, Callable[[], Any]]
    ) -> None:
        """The runtime writes a failed batch again, some of which may have landed already."""
        sink, read_back = sink_factory
        values = [{"n": n} for n in range(4)]
        landed_first = values[:2]  # what a write that failed halfway had written

        async def scenario() -> list[Any]:
            async with _started(sink):
                await call(sink.write, self.messages(landed_first))
                await call(sink.write, self.messages(values))
                return list(await call(read_back))

        held = _canonical(run(scenario()))
        missing = _canonical(values) - held
        assert not missing, broken_promise(
            "a batch written again after a partial failure lands each message",
            "sink-errors",
            f"after writing {landed_first!r} and then the whole batch {values!r}, the"
            f" destination lacks {sorted(missing)}",
        )
        if not self.keeps_history:
            assert held == _canonical(values), broken_promise(
                "a sink keeping the latest value per key holds each key once",
                "sink-errors",
                f"holds {sorted(held.elements())} after a batch was written again",
            )

    def test_one_key_keeps_its_order_across_batches(
        self, sink_factory: tuple[Any, Callable[[], Any]]
    ) -> None:
        sink, read_back = sink_factory
        batches = [[{"n": n} for n in range(start, start + 1 + start % 3)] for start in range(20)]
        written = [v for batch in batches for v in batch]

        async def scenario() -> list[Any]:
            async with _started(sink):
                for batch in batches:
                    await call(sink.write, self.messages(batch, key="one-key"))
                return list(await call(read_back))

        assert run(scenario()) == (written if self.keeps_history else written[-1:])


def _in_two_threads(rounds: int, call: Callable[[], Any]) -> list[BaseException]:
    """``call()`` ``rounds`` times in each of two threads at once; the errors raised."""
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(rounds):
                call()
        except Exception as exc:  # returned: a thread's error must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return errors


class DatastoreConformance:
    """What every datastore must do. Subclass it and supply ``datastore_factory``::

        class TestSqliteDatastore(DatastoreConformance):
            @pytest.fixture
            def datastore_factory(self, tmp_path):
                store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "db"))
                store.open()
                yield store
                store.close()

    The fixture yields a new, opened, empty datastore and closes it afterwards.
    """

    @pytest.fixture
    def datastore_factory(self) -> Iterator[Datastore]:
        raise NotImplementedError(
            f"{type(self).__name__} must define a datastore_factory fixture yielding an open,"
            " empty datastore"
        )

    def test_set_then_get_returns_the_document(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        doc = {"name": "Zoë", "tags": ["a", "ü"], "nested": {"n": 1, "x": 2.5, "ok": True}}
        store.set("users", "u1", doc)
        assert store.get("users", "u1") == doc

    def test_get_of_a_missing_document_is_none(self, datastore_factory: Datastore) -> None:
        assert datastore_factory.get("users", "nobody") is None

    def test_set_replaces_the_whole_document(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("users", "u1", {"a": 1, "b": 2})
        store.set("users", "u1", {"a": 3})
        assert store.get("users", "u1") == {"a": 3}

    def test_documents_are_not_shared_with_the_caller(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        doc: dict[str, Any] = {"items": [1]}
        store.set("users", "u1", doc)
        doc["items"].append(2)
        read = store.get("users", "u1")
        assert read == {"items": [1]}
        read["items"].append(3)
        assert store.get("users", "u1") == {"items": [1]}

    def test_delete_removes_and_ignores_missing(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("users", "u1", {"a": 1})
        store.delete("users", "u1")
        assert store.get("users", "u1") is None
        before = store.changes()
        store.delete("users", "u1")
        store.delete("users", "never-existed")
        assert store.changes() == before

    def test_change_feed_records_each_write_in_order(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("users", "u1", {"v": 1})
        store.set("users", "u1", {"v": 2})
        store.delete("users", "u1")
        changes = store.changes()
        assert [(c.collection, c.doc_id, c.op, c.data) for c in changes] == [
            ("users", "u1", ChangeOp.CREATE, {"v": 1}),
            ("users", "u1", ChangeOp.UPDATE, {"v": 2}),
            ("users", "u1", ChangeOp.DELETE, None),
        ]
        seqs = [c.seq for c in changes]
        assert seqs == sorted(set(seqs)), "seq must increase strictly"
        assert all(isinstance(c.timestamp, float) and c.timestamp > 0 for c in changes)

    def test_change_feed_resumes_after_a_seq(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        for n in range(5):
            store.set("items", f"i{n}", {"n": n})
        everything = store.changes()
        later = store.changes(after=everything[1].seq)
        assert [c.data for c in later] == [{"n": 2}, {"n": 3}, {"n": 4}]
        assert store.changes(after=everything[-1].seq) == []

    def test_change_feed_honours_limit(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        for n in range(5):
            store.set("items", f"i{n}", {"n": n})
        first = store.changes(limit=2)
        assert [c.data for c in first] == [{"n": 0}, {"n": 1}]
        rest = store.changes(after=first[-1].seq, limit=10)
        assert [c.data for c in rest] == [{"n": 2}, {"n": 3}, {"n": 4}]

    def test_change_feed_filters_by_collection(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("users", "u1", {"n": 1})
        store.set("tickets", "t1", {"n": 2})
        store.set("rooms", "r1", {"n": 3})
        store.set("users", "u2", {"n": 4})
        picked = store.changes(collections=["users", "rooms"])
        assert [(c.collection, c.doc_id) for c in picked] == [
            ("users", "u1"),
            ("rooms", "r1"),
            ("users", "u2"),
        ]

    def test_cursors_are_saved_and_loaded(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        assert store.load_cursor("reader") == 0
        store.save_cursor("reader", 7)
        store.save_cursor("other", 3)
        store.save_cursor("reader", 9)
        assert store.load_cursor("reader") == 9
        assert store.load_cursor("other") == 3

    def test_view_state_is_saved_loaded_and_kept_out_of_the_feed(
        self, datastore_factory: Datastore
    ) -> None:
        store = datastore_factory
        store.save_view_state(
            "sessions",
            [
                ViewRecord("m1/ann", "m1", 0, 5, "d1"),
                ViewRecord("m1/bob", "m1", 0, 5, "d2"),
                ViewRecord("m2/ann", "m2", 3, 6, "d3"),
            ],
        )
        store.save_view_state("other", [ViewRecord("m1/ann", "m1", 0, 1, "x")])
        loaded = {r.key: r for r in store.load_view_state("sessions")}
        assert loaded == {
            "m1/ann": ViewRecord("m1/ann", "m1", 0, 5, "d1"),
            "m1/bob": ViewRecord("m1/bob", "m1", 0, 5, "d2"),
            "m2/ann": ViewRecord("m2/ann", "m2", 3, 6, "d3"),
        }
        assert [r.key for r in store.load_view_state("sessions", shards=[3])] == ["m2/ann"]
        assert store.load_view_state("sessions", shards=[]) == []
        assert store.load_view_state("nobody") == []
        assert store.changes() == []

    def test_view_state_never_goes_back_to_an_older_version(
        self, datastore_factory: Datastore
    ) -> None:
        store = datastore_factory
        store.save_view_state(
            "v", [ViewRecord("k1", "r", 0, 10, "new"), ViewRecord("k2", "r", 0, 10, "a")]
        )
        store.save_view_state(
            "v",
            [
                ViewRecord("k1", "r", 0, 7, "older"),  # a late write from a previous owner
                ViewRecord("k2", "r", 0, 9, None),  # an older removal
                ViewRecord("k3", "r", 0, 4, None),  # removal of what was never stored
            ],
        )
        assert {r.key: r.digest for r in store.load_view_state("v")} == {"k1": "new", "k2": "a"}
        store.save_view_state(
            "v", [ViewRecord("k1", "r", 0, 11, None), ViewRecord("k2", "r", 0, 10, "b")]
        )
        assert {r.key: r.digest for r in store.load_view_state("v")} == {"k2": "b"}

    def test_view_state_writes_many_records_at_once(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        records = [ViewRecord(f"m{i}/u", f"m{i}", i % 7, i + 1, f"d{i}") for i in range(1200)]
        store.save_view_state("many", records)
        assert len(store.load_view_state("many")) == 1200
        assert len(store.load_view_state("many", shards=range(0, 7, 2))) == sum(
            1 for i in range(1200) if i % 7 in (0, 2, 4, 6)
        )
        store.save_view_state(
            "many", [ViewRecord(r.key, r.root, r.shard, r.version + 1, None) for r in records]
        )
        assert store.load_view_state("many") == []

    def test_concurrent_writers_get_one_change_each(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        threads, per_thread = 4, 100
        barrier = threading.Barrier(threads, timeout=30)
        errors: list[BaseException] = []

        def write(t: int) -> None:
            try:
                barrier.wait()
                for i in range(per_thread):
                    store.set("items", f"t{t}-{i}", {"t": t, "i": i})
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert not any(w.is_alive() for w in workers), "writers did not finish within 60s"
        assert not errors, errors
        changes = store.changes(limit=threads * per_thread + 10)
        assert len(changes) == threads * per_thread
        assert len({c.seq for c in changes}) == len(changes)
        assert {c.doc_id for c in changes} == {
            f"t{t}-{i}" for t in range(threads) for i in range(per_thread)
        }
        assert store.get("items", "t3-99") == {"t": 3, "i": 99}

    def test_get_many_has_an_entry_for_every_id(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("users", "u1", {"n": 1})
        store.set("users", "u2", {"n": 2})
        assert store.get_many("users", ["u2", "nobody", "u1"]) == {
            "u2": {"n": 2},
            "nobody": None,
            "u1": {"n": 1},
        }

    def test_query_operators(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        for i in range(6):
            store.set("items", f"i{i}", {"n": i, "tags": ["even" if i % 2 == 0 else "odd"]})
        store.set("items", "bare", {"other": True})
        store.set("elsewhere", "x", {"n": 1})

        def ids(*where: tuple[str, str, Any]) -> list[str]:
            return [doc_id for doc_id, _ in store.query("items", list(where))]

        assert ids(("n", "==", 2)) == ["i2"]
        assert ids(("n", "!=", 2)) == ["i0", "i1", "i3", "i4", "i5"]
        assert ids(("n", "<", 2)) == ["i0", "i1"]
        assert ids(("n", "<=", 2)) == ["i0", "i1", "i2"]
        assert ids(("n", ">", 3)) == ["i4", "i5"]
        assert ids(("n", ">=", 4)) == ["i4", "i5"]
        assert ids(("n", "in", [1, 5, 9])) == ["i1", "i5"]
        assert ids(("tags", "array-contains", "odd")) == ["i1", "i3", "i5"]
        assert ids(("n", ">", 0), ("tags", "array-contains", "even")) == ["i2", "i4"]
        assert len(ids()) == 7

    def test_query_orders_and_limits(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        for doc_id, n in [("a", 3), ("b", 1), ("c", 2)]:
            store.set("items", doc_id, {"n": n, "nested": {"n": -n}})
        assert [d for d, _ in store.query("items", order_by="n")] == ["b", "c", "a"]
        assert [d for d, _ in store.query("items", order_by="-n", limit=2)] == ["a", "c"]
        assert [d for d, _ in store.query("items", order_by="nested.n")] == ["a", "c", "b"]
        assert [d for d, _ in store.query("items", [("nested.n", "==", -2)])] == ["c"]

    def test_query_rejects_an_unknown_operator(self, datastore_factory: Datastore) -> None:
        with pytest.raises(DatastoreError, match="unknown operator 'like'"):
            datastore_factory.query("items", [("name", "like", "a%")])

    def test_transaction_commits_all_writes_together(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("accounts", "a", {"balance": 10})
        store.set("accounts", "b", {"balance": 0})

        def transfer(tx: Any) -> str:
            a = tx.get("accounts", "a")
            b = tx.get("accounts", "b")
            tx.set("accounts", "a", {"balance": a["balance"] - 4})
            tx.set("accounts", "b", {"balance": b["balance"] + 4})
            return "moved"

        after = store.changes()[-1].seq
        assert store.transaction(transfer) == "moved"
        assert store.get("accounts", "a") == {"balance": 6}
        assert store.get("accounts", "b") == {"balance": 4}
        assert [(c.doc_id, c.op) for c in store.changes(after)] == [
            ("a", ChangeOp.UPDATE),
            ("b", ChangeOp.UPDATE),
        ]

    def test_transaction_error_writes_nothing(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("accounts", "a", {"balance": 10})
        after = store.changes()[-1].seq

        def overdraw(tx: Any) -> None:
            tx.set("accounts", "a", {"balance": -5})
            raise ValueError("insufficient funds")

        with pytest.raises(ValueError, match="insufficient funds"):
            store.transaction(overdraw)
        assert store.get("accounts", "a") == {"balance": 10}
        assert store.changes(after) == []

    def test_concurrent_transactions_lose_no_update(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("counters", "c", {"n": 0})
        rounds = 50

        def increment(tx: Any) -> None:
            current = tx.get("counters", "c")
            tx.set("counters", "c", {"n": current["n"] + 1})

        assert _in_two_threads(rounds, lambda: store.transaction(increment, 1000)) == []
        assert store.get("counters", "c") == {"n": 2 * rounds}

    def test_transaction_gives_up_after_max_attempts(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("counters", "c", {"n": 0})
        calls = []

        def always_raced(tx: Any) -> None:
            calls.append(1)
            tx.get("counters", "c")
            store.set("counters", "c", {"n": len(calls)})  # another writer gets in first
            tx.set("counters", "c", {"n": -1})

        with pytest.raises(ConflictError, match="gave up after 3"):
            store.transaction(always_raced, max_attempts=3)
        assert len(calls) == 3
        assert store.get("counters", "c") == {"n": 3}

    def test_unrecorded_transaction_writes_without_changes(
        self, datastore_factory: Datastore
    ) -> None:
        """``record_changes=False``: bookkeeping documents (indexes, claims) are written
        and deleted atomically, but the change feed and its watchers never see them."""
        store = datastore_factory
        store.set("index", "old", {"roots": ["r0"]})
        store.set("users", "u1", {"name": "a"})
        after = store.changes()[-1].seq
        seen: list[Any] = []
        watch = getattr(store, "watch", None)
        stop = watch(seen.append) if watch is not None else None

        def bookkeeping(tx: Any) -> None:
            entry = tx.get("index", "old")
            tx.set("index", "new", {"roots": entry["roots"] + ["r1"]})
            tx.delete("index", "old")

        store.transaction(bookkeeping, record_changes=False)
        if stop is not None:
            stop()
        assert store.get("index", "new") == {"roots": ["r0", "r1"]}
        assert store.get("index", "old") is None
        assert store.changes(after) == []
        assert seen == []
        store.set("users", "u1", {"name": "b"})  # the feed goes on from where it was
        assert [(c.doc_id, c.seq) for c in store.changes(after)] == [("u1", after + 1)]

    def test_unrecorded_transactions_keep_the_conflict_check(
        self, datastore_factory: Datastore
    ) -> None:
        store = datastore_factory
        store.transaction(lambda tx: tx.set("index", "c", {"n": 0}), record_changes=False)
        rounds = 25

        def increment(tx: Any) -> None:
            current = tx.get("index", "c")
            tx.set("index", "c", {"n": current["n"] + 1})

        def once() -> None:
            store.transaction(increment, max_attempts=1000, record_changes=False)

        assert _in_two_threads(rounds, once) == []
        assert store.get("index", "c") == {"n": 2 * rounds}
        assert store.changes() == []
        # A recorded write in between is a conflict for an unrecorded transaction too.
        calls: list[int] = []

        def raced(tx: Any) -> None:
            calls.append(1)
            current = tx.get("index", "c")
            if len(calls) == 1:
                store.set("index", "c", {"n": 100})
            tx.set("index", "c", {"n": current["n"] + 1})

        store.transaction(raced, record_changes=False)
        assert len(calls) == 2
        assert store.get("index", "c") == {"n": 101}

    def test_open_and_close_are_idempotent(self, datastore_factory: Datastore) -> None:
        store = datastore_factory
        store.set("users", "u1", {"a": 1})
        store.open()
        assert store.get("users", "u1") == {"a": 1}
        store.close()
        store.close()
