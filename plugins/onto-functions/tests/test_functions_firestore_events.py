"""The built function served by the Functions Framework on a real port, the Firestore
emulator as its datastore, fed CloudEvents built the way Eventarc delivers them."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cloud_events import (
    PARTICIPANTS,
    attending,
    document_event,
    post_binary,
    post_structured,
    read_lines,
    sessions,
    set_attendance,
)

from examples.meeting_room.seed import seed
from onto_core.cli import add_plugin_commands, cli
from onto_firestore import FirestoreDatastore
from onto_functions._backfill import backfill

pytestmark = pytest.mark.slow


@pytest.fixture
def function(
    tmp_path: Path,
    store: FirestoreDatastore,
    serve: Callable[..., Any],
    config_template: str,
) -> tuple[Any, Path, Path]:
    """The meeting room seeded and backfilled, its function built and served."""
    seed(store)
    dead = tmp_path / "dead.jsonl"
    config = tmp_path / "functions.yaml"
    config.write_text(config_template.format(dead=dead))
    add_plugin_commands(["functions"])
    built = CliRunner().invoke(
        cli, ["functions", "build", str(config), "--out", str(tmp_path / "fn")]
    )
    assert built.exit_code == 0, built.output
    assert "meeting_sessions: cloud_event function" in built.output
    assert backfill(config) == {"meeting_sessions": 1}
    server = serve(tmp_path / "fn", "meeting_sessions")
    return server, dead, config


def test_attendance_change_reaches_every_participant(function, store, client):
    server, _dead, _ = function
    assert all(attending(doc) == PARTICIPANTS for doc in sessions(store).values())
    before = {u: doc["_version"] for u, doc in sessions(store).items()}
    last_seq = store.last_seq()

    body, subject = set_attendance(client, store, "joshua", False)
    response = post_binary(server, f"evt-{uuid.uuid4()}", "updated", subject, body)
    cold = time.perf_counter() - server.started
    assert response.status_code == 200, response.text
    print(f"\ncold start (process start to first event handled): {cold:.3f}s")
    after = sessions(store)
    assert all(attending(doc) == ["thomasina", "tijuana"] for doc in after.values())
    assert all(after[u]["_version"] > before[u] for u in PARTICIPANTS)
    # The function's reverse-index writes are bookkeeping: its change log holds only the
    # ticket's change, so index writes neither cost a log entry nor race for its seq.
    assert [(c.collection, c.doc_id) for c in store.changes(last_seq)] == [
        ("tickets", "meeting-1-joshua")
    ]

    body, subject = set_attendance(client, store, "joshua", True)
    response = post_structured(server, f"evt-{uuid.uuid4()}", "written", subject, body)
    assert response.status_code == 200, response.text
    assert all(attending(doc) == PARTICIPANTS for doc in sessions(store).values())


def test_a_redelivered_event_writes_no_view_again(function, store, client):
    server, _dead, _ = function
    body, subject = set_attendance(client, store, "thomasina", False)
    event_id = f"evt-{uuid.uuid4()}"
    assert post_binary(server, event_id, "updated", subject, body).status_code == 200
    first = sessions(store)
    assert post_binary(server, event_id, "updated", subject, body).status_code == 200
    assert sessions(store) == first  # versions and contents unchanged
    line = server.wait_for(
        lambda text: f"[{event_id}]" in text and "0 view update" in text, "the retry"
    )
    assert "0 view update(s)" in line


def test_deleting_the_meeting_removes_its_views(function, store, client):
    server, _dead, _ = function
    old = client.document("meetings/meeting-1").get().to_dict()
    store.delete("meetings", "meeting-1")
    body, _ = document_event(client, "meetings/meeting-1", old, deleted=True)
    response = post_structured(
        server, f"evt-{uuid.uuid4()}", "deleted", "documents/meetings/meeting-1", body
    )
    assert response.status_code == 200, response.text
    assert sessions(store) == {u: None for u in PARTICIPANTS}


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("google.cloud.storage.object.v1.finalized", b"\x0a\x03abc"),
        ("updated", b"\xff\xff\xff not protobuf"),
    ],
    ids=["unknown type", "malformed payload"],
)
def test_a_bad_event_is_refused_and_dead_lettered(function, kind, body):
    server, dead, _ = function
    event_id = f"evt-{uuid.uuid4()}"
    response = post_structured(server, event_id, kind, "documents/tickets/x", body)
    assert 400 <= response.status_code < 500, response.text
    assert event_id in response.text
    letters = [d for d in read_lines(dead) if d["id"] == event_id]
    assert len(letters) == 1
    assert letters[0]["headers"]["onto-source-id"] == event_id
    assert (
        "rejected" in letters[0]["headers"]["onto-error"]
        or "Event" in letters[0]["headers"]["onto-error"]
    )


def test_a_document_no_view_reads_costs_one_read_request(function, store, client):
    server, _dead, _ = function
    store.set("notes", "n1", {"text": "nobody builds a view from this"})
    body, _ = document_event(client, "notes/n1", None)
    event_id = f"evt-{uuid.uuid4()}"
    before = sessions(store)
    response = post_binary(server, event_id, "created", "documents/notes/n1", body)
    assert response.status_code == 200, response.text
    line = server.wait_for(lambda text: f"[{event_id}]" in text, "the event's reads")
    print(f"reads of a change no view reads: {line.strip()}")
    assert re.search(r"0 view update\(s\), 1 read request\(s\)", line), line
    assert sessions(store) == before
