"""``onto functions build --firebase``: its entry points served by the Functions Framework
as the Firebase runtime serves them (a CloudEvent function per collection, which the
``firebase-functions`` SDK decodes into ``DocumentSnapshot``s before onto sees them), on
the Firestore emulator."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cloud_events import PARTICIPANTS, attending, document_event, post_binary, sessions

from examples.meeting_room.seed import seed
from onto_core.cli import add_plugin_commands, cli
from onto_firestore import FirestoreDatastore
from onto_functions._backfill import backfill

pytestmark = pytest.mark.slow


def firebase_attributes(path: str) -> dict[str, str]:
    """The extension attributes Eventarc sets, which the firebase-functions SDK reads."""
    return {
        "ce-location": "nam5",
        "ce-project": "p",
        "ce-namespace": "(default)",
        "ce-document": path,
    }


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
    path = "tickets/meeting-1-joshua"
    response = post_binary(
        server, event_id, "written", f"documents/{path}", body, firebase_attributes(path)
    )
    assert response.status_code == 200, response.text + "".join(server.output[-30:])

    after = sessions(store)
    assert all(attending(doc) == ["thomasina", "tijuana"] for doc in after.values())
    assert all(after[u]["_version"] > before[u] for u in PARTICIPANTS)
    line = server.wait_for(lambda text: f"[{event_id}]" in text, "the event's batch line")
    assert "3 view update(s)" in line, line
