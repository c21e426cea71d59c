"""The meeting room on Firestore, as examples/meeting_room/firestore.yaml configures it:
a participant's attendance change reaches every participant's MeetingSession document,
seen through real ``on_snapshot`` listeners."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.seed import seed
from examples.meeting_room.views import MeetingSession
from onto_core.models import run_action
from onto_core.testing import running
from onto_firestore import FirestoreDatastore

CONFIG = Path(__file__).parents[3] / "examples" / "meeting_room" / "firestore.yaml"
PARTICIPANTS = ["joshua", "thomasina", "tijuana"]


class Listener:
    """The latest snapshot of each watched document, as a front end's listener sees it."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, Any] | None] = {}
        self.changed = threading.Condition()

    def callback(self, uid: str) -> Callable[[Any, Any, Any], None]:
        def on_snapshot(snapshots: Any, _changes: Any, _read_time: Any) -> None:
            with self.changed:
                for snap in snapshots:
                    self.latest[uid] = snap.to_dict() if snap.exists else None
                self.changed.notify_all()

        return on_snapshot

    def wait(self, check: Callable[[dict[str, dict[str, Any] | None]], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: check(self.latest), timeout=20):
                pytest.fail(f"within 20s, listeners never saw {what}; last: {self.latest}")


def attending(doc: dict[str, Any] | None) -> list[str] | None:
    return None if doc is None else [a["userId"] for a in doc["attending"]]


@pytest.fixture
def store(
    emulator_host: str, project: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FirestoreDatastore]:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator_host)
    monkeypatch.setenv("ONTO_FIRESTORE_PROJECT", project)
    opened = FirestoreDatastore(FirestoreDatastore.Config(project=project))
    opened.open()
    yield opened
    opened.close()


def test_attendance_change_reaches_every_participants_document(store: FirestoreDatastore) -> None:
    seed(store)
    listener = Listener()
    watches = [
        store.client.document(f"users/{uid}/meetingSessions/meeting-1").on_snapshot(
            listener.callback(uid)
        )
        for uid in PARTICIPANTS
    ]
    try:
        with running(CONFIG.read_text(encoding="utf-8")):
            listener.wait(
                lambda docs: all(attending(docs.get(u)) == PARTICIPANTS for u in PARTICIPANTS),
                "every participant's session listing all three as attending",
            )
            run_action(
                store, MeetingSession, "meeting-1/joshua", "set_attendance", {"attending": False}
            )
            listener.wait(
                lambda docs: all(
                    attending(docs.get(u)) == ["thomasina", "tijuana"] for u in PARTICIPANTS
                ),
                "joshua gone from every participant's attending list",
            )
    finally:
        for watch in watches:
            watch.unsubscribe()
    doc = store.get("users/joshua/meetingSessions", "meeting-1")
    assert doc is not None
    assert doc["numHearingAidRequested"] == 1  # only tijuana's request remains
    assert doc["inSession"] is True
