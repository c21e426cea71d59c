"""FirestoreTaskSource against the emulator: pending triggers are delivered, marked done
once acked, retried after a nack, and marked failed after max_attempts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from onto_core.protocols import Message, RuntimeContext
from onto_firestore import FirestoreDatastore, FirestoreTaskSource


@pytest.fixture
def store(emulator_host: str, project: str) -> Iterator[FirestoreDatastore]:
    opened = FirestoreDatastore(
        FirestoreDatastore.Config(project=project, emulator_host=emulator_host)
    )
    opened.open()
    yield opened
    opened.close()


async def started(store: FirestoreDatastore) -> FirestoreTaskSource:
    source = FirestoreTaskSource(
        FirestoreTaskSource.Config(collection="invites", max_attempts=2, poll_interval=0.05)
    )
    await source.start(RuntimeContext("tasks", "source", logging.getLogger("t"), store))
    return source


async def read_n(source: FirestoreTaskSource, n: int) -> list[Message]:
    got: list[Message] = []
    while len(got) < n:
        got += await asyncio.wait_for(source.read_batch(n - len(got)), timeout=10)
    return got


def test_triggers_are_done_once_retried_and_failed_after_max(store: FirestoreDatastore) -> None:
    store.set("invites", "i1", {"to": "joshua", "status": "pending"})
    store.set("invites", "i2", {"to": "tijuana", "status": "pending"})
    store.set("invites", "i3", {"to": "thomasina", "status": "done"})

    async def scenario() -> None:
        source = await started(store)
        first = {m.value["docId"]: m for m in await read_n(source, 2)}
        assert set(first) == {"i1", "i2"}  # i3 is already done
        await source.ack(first["i1"])
        await source.nack(first["i2"], RuntimeError("mail server down"))
        [again] = await read_n(source, 1)  # i2 comes back; i1 does not
        assert (again.value["docId"], again.value["data"]["attempts"]) == ("i2", 1)
        await source.nack(again, RuntimeError("still down"))
        await source.close()

    asyncio.run(scenario())
    assert store.query("invites", [("status", "==", "pending")]) == []  # nothing to redo
    assert store.get("invites", "i1") == {"to": "joshua", "status": "done"}
    assert store.get("invites", "i2") == {
        "to": "tijuana",
        "status": "failed",
        "attempts": 2,
        "error": "still down",
    }
