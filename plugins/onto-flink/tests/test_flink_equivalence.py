"""One declaration, two engines: the compiled Flink job gives the in-process views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flink_workload import InProcessViews, MeetingRoomWorkload, write_changes

from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_flink._job import FlinkConfig, start_job

pytestmark = pytest.mark.slow


def run_bounded(python: str, changes: Path, out: Path, tmp: Path, parallelism: int = 1) -> None:
    config = FlinkConfig.model_validate(
        {
            "views": ["examples.meeting_room.views:MeetingSession"],
            "changes": {"path": str(changes)},
            "sink": {"path": str(out)},
            "parallelism": parallelism,
            "checkpoint_dir": str(tmp / "checkpoints"),
        }
    )
    run = start_job(config, python=python, log=tmp / "runner.log")
    run.wait_submitted()
    assert run.process.wait(timeout=600) == 0, (tmp / "runner.log").read_text()[-3000:]


def newest(path: Path) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        latest[record["key"]] = record["value"]
    return latest


def versioned(path: Path) -> dict[str, dict[str, Any]]:
    """What a sink that drops an update not newer than the one it stored keeps (the
    ``firestore`` and ``leancloud`` sinks): the records read in topic order."""
    kept: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        stored = kept.get(record["key"])
        if stored is None or record["value"]["version"] > stored["version"]:
            kept[record["key"]] = record["value"]
    return kept


def test_random_mutations_give_identical_views_on_flink(
    flink_job_python: str, tmp_path: Path
) -> None:
    store = MemoryDatastore()
    views = InProcessViews(store)
    MeetingRoomWorkload(seed=16).run(store, mutations=1200, after_each=views.catch_up)
    changes = tmp_path / "changes.jsonl"
    assert write_changes(store, changes) > 1200

    run_bounded(flink_job_python, changes, tmp_path / "views.jsonl", tmp_path)
    flink = newest(tmp_path / "views.jsonl")
    by_version = versioned(tmp_path / "views.jsonl")

    in_process = views.latest
    removed = {k for k, u in in_process.items() if u["removed"]}
    assert removed, "the workload removes views"
    assert {k for k, u in flink.items() if u["removed"]} == removed
    live = {k: u["data"] for k, u in in_process.items() if not u["removed"]}
    assert {k: u["data"] for k, u in flink.items() if not u["removed"]} == live
    assert any(u["data"]["attending"] == [] for u in flink.values() if u["data"])
    for key, update in flink.items():
        assert update["view"] == "meeting_session"
        assert update["fields"] == in_process[key]["fields"]
    # Each key's versions rise record after record, so a sink that keeps the newest
    # version ends where the topic ends: no update is dropped as older than one before.
    assert {k: (u["removed"], u["data"]) for k, u in by_version.items()} == {
        k: (u["removed"], u["data"]) for k, u in flink.items()
    }
