"""FirestoreDatastore against the emulator: the shared conformance suite, plus Firestore paths."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from onto_core.errors import ConflictError, DatastoreError
from onto_core.models.datastore import ViewRecord
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


def test_view_state_stays_out_of_the_change_feed_and_user_collections(
    store: FirestoreDatastore,
) -> None:
    store.set("meetings", "m1", {"status": "open"})
    # Names and keys that are no valid document id: slashes, dots, a leading '__'.
    records = [ViewRecord("m1/ann", "m1", 2, 1, "d1"), ViewRecord("__/../.", "..", 0, 1, "d2")]
    store.save_view_state("pipelines/sessions", records)
    store.save_view_state("pipelines/sessions", [ViewRecord("m1/ann", "m1", 2, 2, None)])

    assert [(c.collection, c.doc_id) for c in store.changes()] == [("meetings", "m1")]
    assert store.last_seq() == 1
    assert store.query("meetings") == [("m1", {"status": "open"})]
    assert store.load_view_state("pipelines/sessions") == [records[1]]
    stored = [snap.to_dict() for snap in store.client.collection("_onto_view_state").stream()]
    assert stored == [
        {"name": "pipelines/sessions", "key": "__/../.", "root": "..", "shard": 0, "version": 1}
        | {"digest": "d2"}
    ]


def test_two_datastores_see_each_others_view_state(emulator_host: str, project: str) -> None:
    # Two store objects share nothing in memory, like two worker processes handing a shard over.
    first, second = open_store(emulator_host, project), open_store(emulator_host, project)
    try:
        first.save_view_state("sessions", [ViewRecord("m1/ann", "m1", 4, 3, "old")])
        assert second.load_view_state("sessions", shards=[4]) == [
            ViewRecord("m1/ann", "m1", 4, 3, "old")
        ]
        second.save_view_state("sessions", [ViewRecord("m1/ann", "m1", 4, 5, "new")])
        first.save_view_state("sessions", [ViewRecord("m1/ann", "m1", 4, 4, "late")])
        assert first.load_view_state("sessions") == [ViewRecord("m1/ann", "m1", 4, 5, "new")]
        assert first.changes() == second.changes() == []
    finally:
        first.close()
        second.close()


def test_view_state_collection_is_configurable_and_checked(
    emulator_host: str, project: str
) -> None:
    config = FirestoreDatastore.Config(
        project=project, emulator_host=emulator_host, view_state_collection="ops/onto/views"
    )
    store = FirestoreDatastore(config)
    store.open()
    try:
        store.save_view_state("v", [ViewRecord("k", "r", 0, 1, "d")])
        assert len(list(store.client.collection("ops/onto/views").stream())) == 1
        assert store.load_view_state("v") == [ViewRecord("k", "r", 0, 1, "d")]
    finally:
        store.close()
    with pytest.raises(DatastoreError, match="'ops/onto' is not a Firestore collection"):
        FirestoreDatastore(
            FirestoreDatastore.Config(project=project, view_state_collection="ops/onto")
        )


def test_view_state_save_that_keeps_losing_to_contention_is_a_conflict(
    store: FirestoreDatastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator never aborts a transaction; real Firestore does when another writer
    # touches what the transaction read.
    def contended(transaction: firestore.Transaction) -> None:
        raise gexc.Aborted("too much contention on these documents")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(firestore.Transaction, "_commit", contended)
    with pytest.raises(ConflictError, match="view state 'sessions': still contended after 5"):
        store.save_view_state("sessions", [ViewRecord("m1/ann", "m1", 0, 1, "d")])
    monkeypatch.undo()
    assert store.load_view_state("sessions") == []
