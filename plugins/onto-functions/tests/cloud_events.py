"""CloudEvents built the way Eventarc delivers Firestore events, and reading what the
meeting-room function wrote: shared by the onto-functions tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import requests
from google.cloud import firestore
from google.cloud.firestore_v1 import _helpers
from google.cloud.firestore_v1.types import document as firestore_document
from google.events.cloud.firestore_v1.types import data as event_data

from onto_firestore import FirestoreDatastore

PARTICIPANTS = ["joshua", "thomasina", "tijuana"]


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
    server: Any,
    event_id: str,
    kind: str,
    subject: str,
    body: bytes,
    extra: dict[str, str] | None = None,
) -> requests.Response:
    """Binary content mode; ``extra``: further ``ce-`` headers (extension attributes)."""
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
            **(extra or {}),
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
