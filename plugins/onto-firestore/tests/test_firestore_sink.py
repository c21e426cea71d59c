"""FirestoreSink against the emulator: paths, versions, removal, batches, bad input."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from onto_core.errors import SinkError, SourceError
from onto_core.protocols import Message, RuntimeContext
from onto_firestore import (
    FirestoreDatastore,
    FirestoreListenSource,
    FirestoreSink,
    FirestoreTaskSource,
)

PATH = "users/{user_id}/meetingSessions/{meeting_id}"


@pytest.fixture
def store(emulator_host: str, project: str) -> Iterator[FirestoreDatastore]:
    opened = FirestoreDatastore(
        FirestoreDatastore.Config(project=project, emulator_host=emulator_host)
    )
    opened.open()
    yield opened
    opened.close()


def update(user: str, version: int, data: dict[str, Any] | None) -> Message:
    fields = {"meeting_id": "meeting-1", "user_id": user}
    value = {
        "view": "meeting_session",
        "key": f"meeting-1/{user}",
        "fields": fields,
        "version": version,
        "removed": data is None,
        "data": data,
    }
    return Message(value, key=value["key"], headers={"onto-version": str(version)})


def write(store: FirestoreDatastore, *batches: list[Message], **config: Any) -> None:
    sink = FirestoreSink(FirestoreSink.Config(path=PATH, **config))
    ctx = RuntimeContext("views", "sink", logging.getLogger("test"), datastore=store)

    async def run() -> None:
        await sink.start(ctx)
        try:
            for batch in batches:
                await sink.write(batch)
        finally:
            await sink.close()

    asyncio.run(run())


def doc(store: FirestoreDatastore, user: str) -> dict[str, Any] | None:
    snap = store.client.document(f"users/{user}/meetingSessions/meeting-1").get()
    return snap.to_dict() if snap.exists else None


def test_views_land_at_their_templated_path_with_their_version(store: FirestoreDatastore) -> None:
    write(store, [update("joshua", 3, {"inSession": True}), update("tijuana", 4, {"x": 1})])
    assert doc(store, "joshua") == {"inSession": True, "_version": 3}
    assert doc(store, "tijuana") == {"x": 1, "_version": 4}


def test_an_older_version_never_overwrites_a_newer_one(store: FirestoreDatastore) -> None:
    write(
        store,
        [update("joshua", 5, {"attending": True})],
        [update("joshua", 4, {"attending": False})],  # late, older: dropped
        [update("joshua", 5, {"attending": False})],  # redelivered version: no change
    )
    assert doc(store, "joshua") == {"attending": True, "_version": 5}
    write(store, [update("joshua", 6, {"attending": False})])
    assert doc(store, "joshua") == {"attending": False, "_version": 6}


def test_a_newer_version_replaces_the_whole_document(store: FirestoreDatastore) -> None:
    write(store, [update("joshua", 1, {"a": 1, "b": 2})], [update("joshua", 2, {"a": 3})])
    assert doc(store, "joshua") == {"a": 3, "_version": 2}


def test_within_a_batch_the_newest_version_of_a_document_wins(store: FirestoreDatastore) -> None:
    write(store, [update("joshua", 9, {"n": 9}), update("joshua", 7, {"n": 7})])
    assert doc(store, "joshua") == {"n": 9, "_version": 9}


def test_removal_deletes_and_an_older_update_cannot_revive(store: FirestoreDatastore) -> None:
    write(store, [update("joshua", 1, {"n": 1})], [update("joshua", 3, None)])
    assert doc(store, "joshua") is None
    write(store, [update("joshua", 2, {"n": 2})])
    assert doc(store, "joshua") is None
    write(store, [update("joshua", 4, {"n": 4})])
    assert doc(store, "joshua") == {"n": 4, "_version": 4}


def test_a_custom_version_field(store: FirestoreDatastore) -> None:
    write(store, [update("joshua", 2, {"n": 1})], version_field="onto_version")
    assert doc(store, "joshua") == {"n": 1, "onto_version": 2}


def test_a_view_lacking_a_path_field_is_refused_by_name(store: FirestoreDatastore) -> None:
    bad = update("joshua", 1, {"n": 1})
    del bad.value["fields"]["user_id"]
    with pytest.raises(SinkError, match="needs field 'user_id'"):
        write(store, [bad])


def test_a_path_template_must_name_a_document() -> None:
    with pytest.raises(ValueError, match="must name a document"):
        FirestoreSink.Config(path="users/{user_id}/meetingSessions")


@pytest.mark.parametrize(
    ("component", "error", "name"),
    [
        (FirestoreSink(FirestoreSink.Config(path=PATH)), SinkError, "firestore sink"),
        (
            FirestoreListenSource(FirestoreListenSource.Config(collection="meetings")),
            SourceError,
            "firestore_listen source",
        ),
        (
            FirestoreTaskSource(FirestoreTaskSource.Config(collection="invites")),
            SourceError,
            "firestore_tasks source",
        ),
    ],
)
def test_a_component_without_a_project_says_what_to_set(
    component: Any, error: type[Exception], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    ctx = RuntimeContext("views", "sinks[0]", logging.getLogger("t"))  # no datastore
    with pytest.raises(error) as caught:
        asyncio.run(component.start(ctx))
    assert str(caught.value) == (
        f"{name}: set 'project' (or GOOGLE_CLOUD_PROJECT, or use a firestore datastore)"
        " (pipeline 'views', component 'sinks[0]')"
    )
