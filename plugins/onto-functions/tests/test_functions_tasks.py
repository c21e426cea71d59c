"""The ``cloud_event`` source in task mode ("Query+Task" exactly once per invocation):
examples/meeting_room/functions_invites.yaml built with ``onto functions build``, served
by the Functions Framework on a real port, the Firestore emulator as its datastore, fed
the events Eventarc would send for the writes to ``invites``.

The emulator's transactions are not isolated (docs/functions.md): nothing here races two
commits; what is shown holds on real Firestore too."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cloud_events import document_event, post_binary, post_structured, read_lines
from google.cloud import firestore

from onto_core.cli import add_plugin_commands, cli
from onto_functions._events import micros

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "meeting_room" / "functions_invites.yaml"
CLAIMS = "_onto_task_claims"


def build(config: Path, out: Path) -> Any:
    add_plugin_commands(["functions"])
    return CliRunner().invoke(cli, ["functions", "build", str(config), "--out", str(out)])


@pytest.fixture
def folder(tmp_path: Path, function_env: dict[str, str]) -> tuple[Path, Path]:
    """The example built into a function folder; and its dead-letter file."""
    dead = tmp_path / "dead.jsonl"
    function_env["ONTO_DEAD_LETTERS"] = str(dead)
    built = build(EXAMPLE, tmp_path / "fn")
    assert built.exit_code == 0, built.output
    assert "invitations: cloud_event function" in built.output
    return tmp_path / "fn", dead


@pytest.fixture
def invitations(folder: tuple[Path, Path], serve: Callable[..., Any]) -> Any:
    """The invitations function, served."""
    return serve(folder[0], "invitations")


def invite(client: firestore.Client, doc_id: str, **fields: Any) -> tuple[bytes, str]:
    """Write ``invites/{doc_id}`` (pending unless told) and the event of that write."""
    path = f"invites/{doc_id}"
    old = client.document(path).get().to_dict()
    data = {"meetingId": "meeting-1", "userId": "joshua", "status": "pending", **fields}
    client.document(path).set(data)
    body, _ = document_event(client, path, old)
    return body, f"documents/{path}"


def claims(client: firestore.Client) -> list[dict[str, Any]]:
    return [s.to_dict() or {} for s in client.collection(CLAIMS).stream()]


def test_a_pending_invite_is_applied_and_marked_done_in_one_commit(invitations, client):
    body, subject = invite(client, "i1", message="see you there")
    written_at = client.document("invites/i1").get().update_time

    response = post_binary(invitations, f"evt-{uuid.uuid4()}", "created", subject, body)

    assert response.status_code == 200, response.text
    assert response.text == "applied"
    view = client.document("users/joshua/invitations/meeting-1").get().to_dict()
    assert view == {
        "inviteId": "i1",
        "meetingId": "meeting-1",
        "userId": "joshua",
        "message": "see you there",
        "_version": micros(written_at),  # the invite's update time
    }
    assert client.document("invites/i1").get().get("status") == "done"
    assert [c["path"] for c in claims(client)] == ["invites/i1"]


def test_a_redelivered_event_is_taken_and_writes_nothing(invitations, client):
    body, subject = invite(client, "i1", message="first")
    event_id = f"evt-{uuid.uuid4()}"
    assert post_binary(invitations, event_id, "written", subject, body).text == "applied"
    view = client.document("users/joshua/invitations/meeting-1").get()
    marked = client.document("invites/i1").get()

    again = post_structured(invitations, event_id, "written", subject, body)  # a platform retry

    assert again.status_code == 200, again.text
    assert again.text == "taken"
    after = client.document("users/joshua/invitations/meeting-1").get()
    assert (after.update_time, after.to_dict()) == (view.update_time, view.to_dict())
    assert client.document("invites/i1").get().update_time == marked.update_time
    assert len(claims(client)) == 1


def test_the_done_marks_event_and_a_delete_are_answered_without_a_read(folder, serve, client):
    # The event the commit's own mark causes: the invite, now done, after pending.
    pending = {"meetingId": "meeting-1", "userId": "joshua", "status": "pending"}
    client.document("invites/i1").set(pending)
    before = client.document("invites/i1").get().to_dict()
    client.document("invites/i1").update({"status": "done"})
    mark, _ = document_event(client, "invites/i1", before)
    client.document("invites/i1").delete()  # a read would now find it gone
    removal, _ = document_event(client, "invites/i1", before, deleted=True)
    server = serve(folder[0], "invitations")  # fresh: nothing started yet

    answered = post_binary(server, "evt-mark", "updated", "documents/invites/i1", mark)
    deleted = post_binary(server, "evt-delete", "deleted", "documents/invites/i1", removal)

    assert answered.status_code == 200, answered.text
    assert answered.text == "not a task: status is 'done', not 'pending'"
    assert deleted.status_code == 200, deleted.text
    assert deleted.text == "not a task: deleted"
    # Answered from the payload: the runtime (and with it Firestore) is started only by
    # the first task, after both answers were logged.
    body, subject = invite(client, "i2")
    assert post_binary(server, "evt-task", "created", subject, body).text == "applied"
    started = server.wait_for(lambda line: "onto pipelines started" in line, "the runtime start")
    log = server.output
    assert log.index(started) > max(
        i for i, line in enumerate(log) if "evt-mark" in line or "evt-delete" in line
    )
    assert client.document("users/joshua/invitations/meeting-1").get().exists  # i2's
    assert [c["path"] for c in claims(client)] == ["invites/i2"]


def test_a_stale_event_writes_nothing_and_the_newer_version_is_applied(invitations, client):
    old_body, subject = invite(client, "i1", message="old")
    new_body, _ = invite(client, "i1", message="new")  # changed before its first event

    stale = post_binary(invitations, f"evt-{uuid.uuid4()}", "created", subject, old_body)

    assert stale.status_code == 200, stale.text
    assert stale.text == "stale"
    assert not client.document("users/joshua/invitations/meeting-1").get().exists
    assert client.document("invites/i1").get().get("status") == "pending"
    assert claims(client) == []

    newer = post_binary(invitations, f"evt-{uuid.uuid4()}", "updated", subject, new_body)
    assert newer.text == "applied"
    view = client.document("users/joshua/invitations/meeting-1").get().to_dict()
    assert view is not None
    assert view["message"] == "new"


def test_an_invite_its_map_function_refuses_is_dead_lettered_and_marked_done(
    folder, invitations, client
):
    body, subject = invite(client, "broken", userId="")
    event_id = f"evt-{uuid.uuid4()}"

    response = post_binary(invitations, event_id, "created", subject, body)

    assert response.status_code == 200, response.text
    assert response.text == "applied"  # the claim and the mark, with no outputs
    letters = [d for d in read_lines(folder[1]) if d["id"] == event_id]
    assert len(letters) == 1
    assert "missing userId" in letters[0]["headers"]["onto-error"]
    assert client.document("invites/broken").get().get("status") == "done"
    assert [c["path"] for c in claims(client)] == ["invites/broken"]


def test_task_mode_refuses_a_sink_other_than_firestore(tmp_path):
    config = tmp_path / "tasks.yaml"
    config.write_text(
        EXAMPLE.read_text().replace(
            '{type: firestore, path: "users/{user_id}/invitations/{meeting_id}"}',
            f"{{type: file, path: {tmp_path / 'out.jsonl'}}}",
        )
    )

    built = build(config, tmp_path / "fn")

    assert built.exit_code != 0
    assert "pipelines.invitations.source: source 'cloud_event'" in built.output
    assert "exactly one sink of type 'firestore' (got 'file')" in built.output
    assert not (tmp_path / "fn").exists()
