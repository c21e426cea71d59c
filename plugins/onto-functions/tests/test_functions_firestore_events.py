"""The built function served by the Functions Framework on a real port, the Firestore
emulator as its datastore, fed CloudEvents built the way Eventarc delivers them."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import document as firestore_document
from google.events.cloud.firestore_v1.types import data as event_data

from examples.meeting_room.seed import seed
from onto_core.cli import add_plugin_commands, cli
from onto_firestore import FirestoreDatastore
from onto_functions._backfill import backfill

pytestmark = pytest.mark.slow
PARTICIPANTS = ["joshua", "thomasina", "tijuana"]


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


def document_event(
    client: firestore.Client, path: str, old: dict[str, Any] | None, *, deleted: bool = False
) -> tuple[bytes, str]:
    """``DocumentEventData`` for the document's current state (``value``) after ``old``,
    serialized as Eventarc sends it; and the document's resource name."""
    name = f"projects/{client.project}/databases/(default)/documents/{path}"
    payload = event_data.DocumentEventData()
    if old is not None:
        payload.old_value = _document(name, old, None)
    if not deleted:
        snapshot = client.document(path).get()
        payload.value = _document(name, snapshot.to_dict(), snapshot.update_time)
    return event_data.DocumentEventData.serialize(payload), name


def _document(name: str, data: dict[str, Any], update_time: Any) -> Any:
    # Firestore's own Document type encodes the fields; the wire format is the one the
    # google-events Document reads.
    native = firestore_document.Document(name=name, fields=_helpers.encode_dict(data))
    if update_time is not None:
        native.update_time = update_time
    return event_data.Document.deserialize(firestore_document.Document.serialize(native))


def post_binary(
    server: Any, event_id: str, kind: str, subject: str, body: bytes
) -> requests.Response:
    return requests.post(
        server.url,
        data=body,
        headers={
            "ce-id": event_id,
            "ce-specversion": "1.0",
            "ce-type": f"google.cloud.firestore.document.v1.{kind}",
            "ce-source": "//firestore.googleapis.com/projects/p/databases/(default)",
            "ce-subject": subject,
            "ce-time": "2026-01-01T00:00:00.000000Z",
            "ce-database": "(default)",
            "Content-Type": "application/protobuf",
        },
        timeout=60,
    )


def post_structured(
    server: Any, event_id: str, kind: str, subject: str, body: bytes
) -> requests.Response:
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "type": kind if "." in kind else f"google.cloud.firestore.document.v1.{kind}",
        "source": "//firestore.googleapis.com/projects/p/databases/(default)",
        "subject": subject,
        "time": "2026-01-01T00:00:00.000000Z",
        "datacontenttype": "application/protobuf",
        "data_base64": base64.b64encode(body).decode(),
    }
    return requests.post(
        server.url,
        data=json.dumps(envelope),
        headers={"Content-Type": "application/cloudevents+json"},
        timeout=60,
    )


def read_lines(path: Path) -> list[Any]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sessions(store: FirestoreDatastore) -> dict[str, dict[str, Any] | None]:
    return {u: store.get(f"users/{u}/meetingSessions", "meeting-1") for u in PARTICIPANTS}


def attending(doc: dict[str, Any] | None) -> list[str] | None:
    return None if doc is None else [a["userId"] for a in doc["attending"]]


def set_attendance(
    client: firestore.Client, store: FirestoreDatastore, user: str, value: bool
) -> tuple[bytes, str]:
    path = f"tickets/meeting-1-{user}"
    old = client.document(path).get().to_dict()
    ticket = store.get("tickets", f"meeting-1-{user}")
    assert ticket is not None
    store.set("tickets", f"meeting-1-{user}", {**ticket, "attendance": value})
    body, _ = document_event(client, path, old)
    return body, f"documents/{path}"


def test_attendance_change_reaches_every_participant(function, store, client):
    server, _dead, _ = function
    assert all(attending(doc) == PARTICIPANTS for doc in sessions(store).values())
    before = {u: doc["_version"] for u, doc in sessions(store).items()}
    last_seq = store.last_seq()

    body, subject = set_attendance(client, store, "joshua", False)
    response = post_binary(server, f"evt-{uuid.uuid4()}", "updated", subject, body)
    cold = time.monotonic() - server.started
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
