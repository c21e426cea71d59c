"""The ``changes`` source on the Firestore datastore: a pipeline stopped while documents
change picks up every one of those changes when it runs again."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from onto_core.builtin.memory import channel
from onto_core.testing import running
from onto_firestore import FirestoreDatastore


@pytest.fixture
def store(emulator_host: str, project: str) -> Iterator[FirestoreDatastore]:
    opened = FirestoreDatastore(
        FirestoreDatastore.Config(project=project, emulator_host=emulator_host)
    )
    opened.open()
    yield opened
    opened.close()


def wait_for_count(name: str, count: int) -> list[dict[str, object]]:
    done = threading.Event()
    values: list[dict[str, object]] = []

    def check() -> bool:
        values[:] = channel(name).values()
        return len(values) >= count

    for _ in range(200):  # up to 20 s: the sink appends from the runtime's thread
        if check():
            return values
        done.wait(0.1)
    pytest.fail(f"{name}: expected {count} changes, got {values}")


def test_changes_made_while_stopped_are_all_delivered(
    store: FirestoreDatastore, project: str
) -> None:
    out = f"feed-{project}"
    config = f"""
pipelines:
  follow:
    source: {{type: changes, collections: [rooms]}}
    sinks: [{{type: memory, channel: {out}}}]
"""
    store.set("rooms", "r1", {"n": 1})
    with running(config, datastore=store):
        wait_for_count(out, 1)
    store.open()  # the runtime closed the datastore it was given when it stopped
    store.set("rooms", "r1", {"n": 2})
    store.set("rooms", "r2", {"n": 3})
    store.delete("rooms", "r1")
    store.set("other", "x", {"n": 0})
    with running(config, datastore=store):
        values = wait_for_count(out, 4)
    assert [(v["docId"], v["op"], v["data"]) for v in values] == [
        ("r1", "create", {"n": 1}),
        ("r1", "update", {"n": 2}),
        ("r2", "create", {"n": 3}),
        ("r1", "delete", None),
    ]
