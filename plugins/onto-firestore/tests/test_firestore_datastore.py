"""FirestoreDatastore against the emulator: the shared conformance suite, plus Firestore paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from onto_core.errors import DatastoreError
from onto_core.testing import DatastoreConformance
from onto_firestore import FirestoreDatastore


def open_store(emulator_host: str, project: str) -> FirestoreDatastore:
    store = FirestoreDatastore(
        FirestoreDatastore.Config(project=project, emulator_host=emulator_host)
    )
    store.open()
    return store


class TestFirestoreDatastore(DatastoreConformance):
    @pytest.fixture
    def datastore_factory(self, emulator_host: str, project: str) -> Iterator[FirestoreDatastore]:
        store = open_store(emulator_host, project)
        yield store
        store.close()


@pytest.fixture
def store(emulator_host: str, project: str) -> Iterator[FirestoreDatastore]:
    opened = open_store(emulator_host, project)
    yield opened
    opened.close()


def test_nested_paths_are_real_subcollections(store: FirestoreDatastore) -> None:
    store.set("users/joshua/meetingSessions", "meeting-1", {"inSession": True})
    snap = store.client.document("users/joshua/meetingSessions/meeting-1").get()
    assert snap.to_dict() == {"inSession": True}
    assert store.query("users/joshua/meetingSessions") == [("meeting-1", {"inSession": True})]
    [change] = store.changes(collections=["users/joshua/meetingSessions"])
    assert (change.collection, change.doc_id) == ("users/joshua/meetingSessions", "meeting-1")


def test_bad_paths_are_refused_with_the_path_named(store: FirestoreDatastore) -> None:
    with pytest.raises(DatastoreError, match="'users/joshua' is not a Firestore collection"):
        store.set("users/joshua", "x", {})
    with pytest.raises(DatastoreError, match="document id 'a/b'"):
        store.set("users", "a/b", {})


def test_a_second_writer_process_never_reuses_a_seq(emulator_host: str, project: str) -> None:
    # Two store objects share nothing in memory, like two processes: their seq claims collide
    # on the log document and the loser moves on.
    first, second = open_store(emulator_host, project), open_store(emulator_host, project)
    try:
        first.set("items", "a", {"n": 1})
        second.set("items", "b", {"n": 2})
        first.set("items", "c", {"n": 3})  # first's cached next seq is taken by second
        changes = first.changes()
        assert [(c.seq, c.doc_id) for c in changes] == [(1, "a"), (2, "b"), (3, "c")]
    finally:
        first.close()
        second.close()
