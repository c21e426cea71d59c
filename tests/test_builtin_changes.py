"""The changes source: conformance over a sqlite feed, cursor rules, waking and closing."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from onto_core.builtin.changes import ChangesSource
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.errors import SourceError
from onto_core.models.datastore import Change, Datastore
from onto_core.protocols import Message, RuntimeContext
from onto_core.testing import SourceConformance, SourceHarness


def open_store(path: Path) -> SqliteDatastore:
    store = SqliteDatastore(SqliteDatastore.Config(path=path))
    store.open()
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    opened = open_store(tmp_path / "onto.db")
    yield opened
    opened.close()


def context(datastore: Datastore | None, pipeline: str = "p") -> RuntimeContext:
    return RuntimeContext(
        pipeline=pipeline, component="c", log=logging.getLogger("test"), datastore=datastore
    )


async def started(datastore: Datastore | None, **config: Any) -> ChangesSource:
    source = ChangesSource(ChangesSource.Config(**config))
    await source.start(context(datastore))
    return source


async def read(source: ChangesSource, count: int) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(5):
        while len(got) < count:
            got.extend(await source.read_batch(count - len(got)))
    return got


class TestChangesSource(SourceConformance):
    durable = True

    @pytest.fixture
    def source_factory(self, store: SqliteDatastore) -> SourceHarness:
        numbers = itertools.count()

        def write(values: list[Any]) -> None:
            for value in values:
                # Three documents, so several messages share a key.
                store.set("items", f"doc-{next(numbers) % 3}", {"value": value})

        return SourceHarness(
            new_source=lambda: ChangesSource(ChangesSource.Config()), write=write, datastore=store
        )

    def payload_of(self, message: Message) -> Any:
        return message.value["data"]["value"]


class EmptyPollSignal:
    """The real store, plus an event set whenever a feed query comes back empty."""

    def __init__(self, store: SqliteDatastore) -> None:
        self.store = store
        self.polled_empty = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def changes(
        self, after: int = 0, limit: int = 1000, collections: Sequence[str] | None = None
    ) -> list[Change]:
        found = self.store.changes(after, limit, collections)
        if not found:
            self.polled_empty.set()
        return found


def test_message_carries_the_change(store: SqliteDatastore) -> None:
    store.set("users", "u1", {"name": "Ada"})
    (change,) = store.changes()

    async def scenario() -> Message:
        source = await started(store)
        (message,) = await read(source, 1)
        await source.close()
        return message

    message = asyncio.run(scenario())
    assert message.value == change.to_dict()
    assert message.value["op"] == "create"
    assert message.value["data"] == {"name": "Ada"}
    assert (message.key, message.id, message.channel) == ("users/u1", "users/u1@1", "users")
    assert (message.offset, message.timestamp) == (1, change.timestamp)


def test_cursor_is_the_acked_prefix_and_a_restart_redelivers_the_rest(
    store: SqliteDatastore,
) -> None:
    for n in range(1, 6):
        store.set("items", f"i{n}", {"n": n})

    async def scenario() -> None:
        first = await started(store)
        by_seq = {m.offset: m for m in await read(first, 5)}
        for seq in (4, 1, 2):  # out of order, with a gap at 3
            await first.ack(by_seq[seq])
        await first.close()
        assert store.load_cursor("p") == 2

        second = await started(store)
        redelivered = await read(second, 3)
        assert [m.offset for m in redelivered] == [3, 4, 5]
        for m in redelivered:
            await second.ack(m)
        await second.close()
        assert store.load_cursor("p") == 5

        store.set("items", "i6", {"n": 6})
        third = await started(store)
        assert [m.offset for m in await read(third, 1)] == [6]
        await third.close()

    asyncio.run(scenario())


def test_nacked_change_comes_back_first_and_holds_the_cursor(store: SqliteDatastore) -> None:
    for n in range(1, 4):
        store.set("items", f"i{n}", {"n": n})

    async def scenario() -> None:
        source = await started(store)
        one, two, three = await read(source, 3)
        await source.nack(two, RuntimeError("sink down"))
        await source.ack(one)
        await source.ack(three)
        (again,) = await read(source, 1)
        assert again.id == two.id == "items/i2@2"
        await source.close()
        assert store.load_cursor("p") == 1

        restarted = await started(store)
        assert [m.offset for m in await read(restarted, 2)] == [2, 3]
        await restarted.close()

    asyncio.run(scenario())


def test_write_in_this_process_wakes_a_waiting_reader_at_once(store: SqliteDatastore) -> None:
    signal = EmptyPollSignal(store)

    async def scenario() -> Message | None:
        source = await started(signal, poll_interval=60)  # polling alone would take a minute
        reader = asyncio.create_task(source.read())
        assert await asyncio.to_thread(signal.polled_empty.wait, 5), "reader never polled"
        await asyncio.to_thread(store.set, "users", "u1", {"name": "Ada"})
        message = await asyncio.wait_for(reader, 5)
        await source.close()
        return message

    message = asyncio.run(scenario())
    assert message is not None
    assert message.id == "users/u1@1"


def test_write_from_another_process_is_found_by_polling(
    store: SqliteDatastore, tmp_path: Path
) -> None:
    other_process = open_store(tmp_path / "onto.db")  # its writes notify no one here

    async def scenario() -> Message | None:
        source = await started(store, poll_interval=0.05)
        reader = asyncio.create_task(source.read())
        await asyncio.to_thread(other_process.set, "users", "u9", {"name": "Grace"})
        message = await asyncio.wait_for(reader, 5)
        await source.close()
        return message

    message = asyncio.run(scenario())
    other_process.close()
    assert message is not None
    assert message.value["data"] == {"name": "Grace"}


def test_close_releases_a_waiting_reader(store: SqliteDatastore) -> None:
    signal = EmptyPollSignal(store)

    async def scenario() -> Message | None:
        source = await started(signal, poll_interval=60)
        reader = asyncio.create_task(source.read())
        assert await asyncio.to_thread(signal.polled_empty.wait, 5), "reader never polled"
        await source.close()
        return await asyncio.wait_for(reader, 5)

    assert asyncio.run(scenario()) is None


def test_start_without_a_datastore_says_to_configure_one() -> None:
    source = ChangesSource(ChangesSource.Config())
    with pytest.raises(SourceError, match="none is configured") as caught:
        asyncio.run(source.start(context(None, pipeline="orders")))
    assert "pipeline 'orders'" in str(caught.value)


def test_from_start_false_begins_at_the_end_of_the_feed(store: SqliteDatastore) -> None:
    for n in range(3):
        store.set("items", f"old{n}", {"n": n})

    async def scenario() -> None:
        source = await started(store, from_start=False)
        store.set("items", "new1", {"n": 3})
        assert [m.value["docId"] for m in await read(source, 1)] == ["new1"]
        await source.close()

        # The end it started at was saved: a restart does not skip what came since.
        store.set("items", "new2", {"n": 4})
        restarted = await started(store, from_start=False)
        assert [m.value["docId"] for m in await read(restarted, 2)] == ["new1", "new2"]
        await restarted.close()

    asyncio.run(scenario())


def test_collections_filter_and_named_cursor(store: SqliteDatastore) -> None:
    store.set("tickets", "t1", {})
    store.set("users", "u1", {})
    store.set("tickets", "t2", {})
    store.set("users", "u2", {})

    async def scenario() -> None:
        source = await started(store, collections=["users"], cursor="user-feed")
        messages = await read(source, 2)
        assert [m.key for m in messages] == ["users/u1", "users/u2"]
        for m in messages:
            await source.ack(m)
        await source.close()

    asyncio.run(scenario())
    assert store.load_cursor("user-feed") == 4
    assert store.load_cursor("p") == 0
