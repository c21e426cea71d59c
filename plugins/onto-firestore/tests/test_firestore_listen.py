"""FirestoreListenSource against the emulator: live changes, and resuming after a restart
without missing what changed while it was down."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from onto_core.protocols import Message, RuntimeContext
from onto_firestore import FirestoreDatastore, FirestoreListenSource


@pytest.fixture
def store(emulator_host: str, project: str) -> Iterator[FirestoreDatastore]:
    opened = FirestoreDatastore(
        FirestoreDatastore.Config(project=project, emulator_host=emulator_host)
    )
    opened.open()
    yield opened
    opened.close()


def summary(messages: list[Message]) -> set[tuple[str, str, Any]]:
    return {(m.value["docId"], m.value["op"], str(m.value["data"])) for m in messages}


async def read_n(source: FirestoreListenSource, n: int) -> list[Message]:
    got: list[Message] = []
    while len(got) < n:
        got += await asyncio.wait_for(source.read_batch(n - len(got)), timeout=15)
    return got


async def started(store: FirestoreDatastore) -> FirestoreListenSource:
    source = FirestoreListenSource(
        FirestoreListenSource.Config(collection="meetings", check_interval=0.1)
    )
    await source.start(RuntimeContext("follow", "source", logging.getLogger("t"), store))
    return source


def test_live_changes_and_a_restart_that_misses_nothing(store: FirestoreDatastore) -> None:
    store.set("meetings", "a", {"n": 1})
    store.set("meetings", "b", {"n": 2})
    store.set("elsewhere", "x", {"n": 0})

    async def scenario() -> None:
        source = await started(store)
        first = await read_n(source, 2)
        assert summary(first) == {("a", "create", "{'n': 1}"), ("b", "create", "{'n': 2}")}
        for message in first:
            await source.ack(message)
        await asyncio.to_thread(store.set, "meetings", "a", {"n": 10})
        [live] = await read_n(source, 1)
        assert (live.value["docId"], live.value["op"], live.value["data"]) == (
            "a",
            "update",
            {"n": 10},
        )
        await source.ack(live)
        await source.close()

        # Down: an update, a delete and a create happen meanwhile.
        await asyncio.to_thread(store.set, "meetings", "a", {"n": 11})
        await asyncio.to_thread(store.delete, "meetings", "b")
        await asyncio.to_thread(store.set, "meetings", "c", {"n": 3})

        again = await started(store)
        caught_up = await read_n(again, 3)
        assert summary(caught_up) == {
            ("a", "update", "{'n': 11}"),
            ("b", "delete", "None"),
            ("c", "create", "{'n': 3}"),
        }
        # Only c is left unacked: it alone comes again after the next restart.
        for message in caught_up:
            if message.value["docId"] != "c":
                await again.ack(message)
        await again.close()
        third = await started(store)
        [redelivered] = await read_n(third, 1)
        assert (redelivered.value["docId"], redelivered.value["op"]) == ("c", "create")
        await third.ack(redelivered)
        await asyncio.to_thread(store.set, "meetings", "c", {"n": 4})
        [update] = await read_n(third, 1)
        assert (update.value["docId"], update.value["data"]) == ("c", {"n": 4})
        await third.close()

    asyncio.run(scenario())


def test_versions_of_one_document_increase(store: FirestoreDatastore) -> None:
    async def scenario() -> list[int]:
        source = await started(store)
        seqs = []
        for n in range(3):
            await asyncio.to_thread(store.set, "meetings", "a", {"n": n})
            [message] = await read_n(source, 1)
            await source.ack(message)
            seqs.append(message.value["seq"])
        await source.close()
        return seqs

    seqs = asyncio.run(scenario())
    assert seqs == sorted(set(seqs))


async def lag_becomes(source: FirestoreListenSource, count: int) -> None:
    """Wait (up to 15 s) until the listener has reported ``count`` unacked documents."""
    deadline = asyncio.get_running_loop().time() + 15
    while source.lag() != {"": count}:
        assert asyncio.get_running_loop().time() < deadline, f"lag {source.lag()}, not {count}"
        await asyncio.sleep(0.02)


def test_lag_counts_the_documents_whose_change_is_not_acked(store: FirestoreDatastore) -> None:
    async def scenario() -> None:
        source = FirestoreListenSource(
            FirestoreListenSource.Config(collection="backlog", check_interval=0.1)
        )
        assert source.lag() == {}
        await source.start(RuntimeContext("backlog", "source", logging.getLogger("t"), store))
        assert source.lag() == {"": 0}
        for n in range(3):
            await asyncio.to_thread(store.set, "backlog", f"d{n}", {"n": n})
        await lag_becomes(source, 3)
        read = await read_n(source, 3)
        assert source.lag() == {"": 3}, "read but not acked is still behind"
        await source.ack_batch(read[:2])
        assert source.lag() == {"": 1}
        await source.ack(read[2])
        assert source.lag() == {"": 0}
        # Two writes of one document are one document behind, however they are reported.
        await asyncio.to_thread(store.set, "backlog", "d0", {"n": 10})
        await asyncio.to_thread(store.set, "backlog", "d0", {"n": 11})
        await lag_becomes(source, 1)
        newest: list[Message] = []
        while not newest or newest[-1].value["data"] != {"n": 11}:
            assert source.lag() == {"": 1}
            newest += await read_n(source, 1)
        await source.ack_batch(newest)
        assert source.lag() == {"": 0}
        await asyncio.to_thread(store.delete, "backlog", "d1")
        await lag_becomes(source, 1)
        [deleted] = await read_n(source, 1)
        await source.ack(deleted)
        assert source.lag() == {"": 0}
        await source.close()
        assert source.lag() == {}

    asyncio.run(scenario())
