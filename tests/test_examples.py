"""The README's demo and the examples run as documented."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def run_example(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ONTO_DB": str(tmp_path / "meeting_room.db"),
        "ONTO_VIEWS_OUT": str(tmp_path / "sessions.jsonl"),
        "ONTO_USERS_OUT": str(tmp_path / "users.jsonl"),
        "ONTO_DEMO_OUT": str(tmp_path / "orders.jsonl"),
        "ONTO_DEAD_LETTERS": str(tmp_path / "dead.jsonl"),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_meeting_room_demo_shows_attendance_changes_reaching_every_participant(
    tmp_path: Path,
) -> None:
    done = run_example(["-m", "examples.meeting_room"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "joshua leaves; the meeting's views are recomputed" in done.stdout
    views = [json.loads(line)["value"] for line in (tmp_path / "sessions.jsonl").open()]
    assert len(views) == 12  # 3 participants, at the start and after each of 3 changes
    after_tijuana_left = views[6:9]
    assert {v["key"] for v in after_tijuana_left} == {
        "meeting-1/joshua",
        "meeting-1/thomasina",
        "meeting-1/tijuana",
    }
    for view in after_tijuana_left:
        assert [a["userId"] for a in view["data"]["attending"]] == ["thomasina"]
        assert view["data"]["numHearingAidRequested"] == 0
    assert [v["version"] for v in views] == sorted(v["version"] for v in views)
    assert (tmp_path / "dead.jsonl").read_text() == ""  # opened at start, nothing failed


def test_quickstart_prices_every_order(tmp_path: Path) -> None:
    done = run_example(["-m", "onto_core", "run", "examples/quickstart/pipeline.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [p["order"] for p in printed] == list(range(20))
    assert printed[1] == {"order": 1, "drink": "latte", "quantity": 2, "total": 7.6}
    assert len((tmp_path / "orders.jsonl").read_text().splitlines()) == 20


def test_the_web_demo_on_a_taken_port_says_how_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "examples.meeting_room.serve"],
            cwd=ROOT,
            env={**os.environ, "ONTO_PORT": str(port), "ONTO_DB": str(tmp_path / "demo.db")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "set ONTO_PORT" in done.stderr
    assert len(done.stderr.splitlines()) <= 6
