"""``onto functions build --firebase``: its entry points served by the Functions Framework
as the Firebase runtime serves them (a CloudEvent function per collection, which the
``firebase-functions`` SDK decodes into ``DocumentSnapshot``s before onto sees them), on
the Firestore emulator."""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from examples.meeting_room.seed import seed
from onto_core.cli import add_plugin_commands, cli
from onto_firestore import FirestoreDatastore
from onto_functions._backfill import backfill

_spec = importlib.util.spec_from_file_location(
    "onto_functions_test_events_firebase",
    Path(__file__).with_name("test_functions_firestore_events.py"),
)
assert _spec is not None
assert _spec.loader is not None
_events = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_events)  # the CloudEvent helpers of the trigger tests
attending = _events.attending
document_event = _events.document_event
sessions = _events.sessions
PARTICIPANTS = _events.PARTICIPANTS

pytestmark = pytest.mark.slow


def post_firebase(
    server: Any, event_id: str, kind: str, path: str, body: bytes
) -> requests.Response:
    """A Firestore event in binary mode with the extension attributes Eventarc sets, which
    the firebase-functions SDK reads (``document``, ``database``, ``project``, ...)."""
    return requests.post(
        server.url,
        data=body,
        headers={
            "ce-id": event_id,
            "ce-specversion": "1.0",
            "ce-type": f"google.cloud.firestore.document.v1.{kind}",
            "ce-source": "//firestore.googleapis.com/projects/p/databases/(default)",
            "ce-subject": f"documents/{path}",
            "ce-time": "2026-01-01T00:00:00.000000Z",
            "ce-location": "nam5",
            "ce-project": "p",
            "ce-namespace": "(default)",
            "ce-database": "(default)",
            "ce-document": path,
            "Content-Type": "application/protobuf",
        },
        timeout=60,
    )


def test_the_firebase_entry_point_updates_every_participant(
    tmp_path: Path,
    store: FirestoreDatastore,
    client: Any,
    serve: Any,
    config_template: str,
    function_env: dict[str, str],
    project: str,
) -> None:
    seed(store)
    config = tmp_path / "functions.yaml"
    config.write_text(config_template.format(dead=tmp_path / "dead.jsonl"))
    add_plugin_commands(["functions"])
    out = tmp_path / "fn"
    built = CliRunner().invoke(
        cli, ["functions", "build", str(config), "--out", str(out), "--firebase"]
    )
    assert built.exit_code == 0, built.output
    main = (out / "main.py").read_text()
    assert '@firestore_fn.on_document_written(document="tickets/{docId}")' in main
    assert "firebase-functions" in (out / "requirements.txt").read_text()
    assert backfill(config) == {"meeting_sessions": 1}
    # The SDK's firebase_admin app takes the project from the environment, as deployed.
    function_env["GOOGLE_CLOUD_PROJECT"] = project
    server = serve(out, "meeting_sessions_tickets", signature_type="cloudevent")
    before = {u: doc["_version"] for u, doc in sessions(store).items()}

    old = client.document("tickets/meeting-1-joshua").get().to_dict()
    store.set("tickets", "meeting-1-joshua", {**old, "attendance": False})
    body, _ = document_event(client, "tickets/meeting-1-joshua", old)
    event_id = f"evt-{uuid.uuid4()}"
    response = post_firebase(server, event_id, "written", "tickets/meeting-1-joshua", body)
    assert response.status_code == 200, response.text + "".join(server.output[-30:])

    after = sessions(store)
    assert all(attending(doc) == ["thomasina", "tijuana"] for doc in after.values())
    assert all(after[u]["_version"] > before[u] for u in PARTICIPANTS)
    line = server.wait_for(lambda text: f"[{event_id}]" in text, "the event's batch line")
    assert "3 view update(s)" in line, line
