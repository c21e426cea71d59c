"""The meeting room over Kafka: one process publishes the sqlite change feed, another
consumes it and keeps the MeetingSession views, as examples/meeting_room configures."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.seed import seed_file
from onto_core.testing import json_lines, onto_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "examples" / "meeting_room"
CHANGE_ATTENDANCE = [sys.executable, "-m", "examples.meeting_room.change_attendance"]


def views(path: Path) -> list[dict[str, Any]]:
    return [line["value"] for line in json_lines(path)]


def attending(view: dict[str, Any]) -> list[str]:
    return [a["userId"] for a in view["data"]["attending"]]


def test_changes_published_by_one_process_update_the_views_another_keeps(
    kafka: Any, wait_until: Callable[..., Any], tmp_path: Path
) -> None:
    db = tmp_path / "meeting_room.db"
    seed_file(db)
    topic = kafka.topic(partitions=3, prefix="meeting-room-changes")
    out = tmp_path / "sessions.jsonl"
    env = {
        **{k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"},
        "ONTO_DB": str(db),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "ONTO_CHANGES_TOPIC": topic,
        "ONTO_VIEWS_GROUP": f"{topic}-views",
        "ONTO_VIEWS_OUT": str(out),
        "ONTO_DEAD_LETTERS": str(tmp_path / "dead.jsonl"),
    }
    with (
        onto_run(EXAMPLES / "kafka_publish.yaml", tmp_path / "publish.log", env, ROOT),
        onto_run(EXAMPLES / "kafka_views.yaml", tmp_path / "views.log", env, ROOT),
    ):
        # The worker builds every participant's view at start...
        wait_until(lambda: len(views(out)) == 3, 60, "the three initial views")
        # ...and the seed's changes reach the topic, keyed by collection/docId.
        seeded = kafka.read(topic, 8)  # 3 users, 3 tickets, a location and a meeting
        assert b"tickets/meeting-1-joshua" in {r.key for r in seeded}
        # A group member reads once assigned; a `partitions: all` reader from its start.
        wait_until(
            lambda: any(
                line in (tmp_path / "views.log").read_text()
                for line in ("onto.kafka: assigned", "onto.kafka: reading every partition")
            ),
            60,
            "the view worker to read the topic",
        )

        leave = subprocess.run(
            [*CHANGE_ATTENDANCE, "joshua", "--absent", "--db", str(db)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert leave.returncode == 0, leave.stderr

        def updated() -> list[dict[str, Any]]:
            return [v for v in views(out)[3:] if "joshua" not in attending(v)]

        wait_until(lambda: len(updated()) == 3, 60, "every participant's updated view")
    after = updated()
    assert {v["key"] for v in after} == {
        "meeting-1/joshua",
        "meeting-1/thomasina",
        "meeting-1/tijuana",
    }
    initial_version = views(out)[0]["version"]
    for view in after:
        assert attending(view) == ["thomasina", "tijuana"]
        assert view["data"]["numHearingAidRequested"] == 1
        assert view["version"] > initial_version
    assert (tmp_path / "dead.jsonl").read_text() == ""
