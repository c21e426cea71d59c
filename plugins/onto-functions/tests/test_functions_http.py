"""An HTTP function (``http_function`` source, ``api`` processor, ``reply`` sink) served by
the Functions Framework next to the Firestore-triggered function of the same folder: a
request runs an action and answers, and the write's event updates every participant."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from cloud_events import PARTICIPANTS, attending, document_event, post_binary, sessions

from examples.meeting_room.seed import seed
from onto_core.cli import add_plugin_commands, cli
from onto_firestore import FirestoreDatastore
from onto_functions._backfill import backfill

pytestmark = pytest.mark.slow
VIEW = "examples.meeting_room.views:MeetingSession"
API_PIPELINE = """\
  api:
    source: {type: http_function}
    processors: [{type: api}]
    sinks: [{type: reply}]
"""


@pytest.fixture
def folder(tmp_path: Path, store: FirestoreDatastore, config_template: str) -> tuple[Path, Path]:
    """The meeting room seeded, and one function folder holding both functions: the
    HTTP one (``api``) and the trigger (``meeting_sessions``); and its config."""
    seed(store)
    config = tmp_path / "functions.yaml"
    config.write_text(config_template.format(dead=tmp_path / "dead.jsonl") + API_PIPELINE)
    add_plugin_commands(["functions"])
    built = CliRunner().invoke(
        cli, ["functions", "build", str(config), "--out", str(tmp_path / "fn")]
    )
    assert built.exit_code == 0, built.output
    assert "api: http function" in built.output, built.output
    return tmp_path / "fn", config


def action(value: bool) -> dict[str, Any]:
    return {
        "op": "action",
        "view": VIEW,
        "key": "meeting-1/joshua",
        "action": "set_attendance",
        "arguments": {"attending": value},
    }


def test_an_http_action_answers_and_its_write_updates_every_participant(
    folder, serve, store, client
):
    fn, config = folder
    assert backfill(config) == {"meeting_sessions": 1}
    # Each function is served by a Functions Framework process of its own, as each is
    # deployed on its own.
    api, trigger = serve(fn, "api"), serve(fn, "meeting_sessions")
    old = client.document("tickets/meeting-1-joshua").get().to_dict()

    answer = requests.post(api.url, json=action(False), timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["userId"] == "joshua"
    assert [a["userId"] for a in answer.json()["attending"]] == ["thomasina", "tijuana"]
    assert store.get("tickets", "meeting-1-joshua")["attendance"] is False
    # The views are the trigger's to write: none changed before its event arrives.
    assert all(attending(doc) == PARTICIPANTS for doc in sessions(store).values())

    body, _ = document_event(client, "tickets/meeting-1-joshua", old)
    delivered = post_binary(
        trigger, f"evt-{uuid.uuid4()}", "updated", "documents/tickets/meeting-1-joshua", body
    )
    assert delivered.status_code == 200, delivered.text
    assert all(attending(doc) == ["thomasina", "tijuana"] for doc in sessions(store).values())

    read = requests.post(
        api.url, json={"op": "read", "view": VIEW, "key": "meeting-1/tijuana"}, timeout=60
    )
    assert read.status_code == 200, read.text
    assert [a["userId"] for a in read.json()["attending"]] == ["thomasina", "tijuana"]


MALFORMED = {
    "not JSON": ("{not json", 400, "the body must be a JSON object"),
    "not an object": ([1, 2, 3], 400, "the body must be a JSON object"),
    "unknown op": ({"op": "explode", "view": VIEW, "key": "meeting-1/joshua"}, 400, "unknown op"),
    "bad argument": ({**action(False), "arguments": {"attending": "maybe"}}, 400, "attending"),
    "unknown action": ({**action(False), "action": "set_mood"}, 404, "set_mood"),
    "no such root": ({**action(False), "key": "meeting-404/joshua"}, 404, "meeting-404"),
}


def test_a_malformed_request_is_answered_4xx_naming_what_is_wrong(folder, serve, store):
    api = serve(folder[0], "api")
    for case, (body, status, error) in MALFORMED.items():
        if isinstance(body, str):
            answer = requests.post(
                api.url, data=body, headers={"Content-Type": "application/json"}, timeout=60
            )
        else:
            answer = requests.post(api.url, json=body, timeout=60)
        assert answer.status_code == status, (case, answer.text)
        assert error in answer.json()["error"], (case, answer.text)
        assert "Traceback" not in answer.text, case
    assert store.get("tickets", "meeting-1-joshua")["attendance"] is True  # nothing ran
    assert not [line for line in api.output if "Traceback" in line], "".join(api.output)
