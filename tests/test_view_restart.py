"""Views across restarts of real ``onto run`` processes: every update and removal due arrives.

What the view processor delivered is kept in the datastore; a restart rebuilds the views
and emits whatever differs from that record: views changed, created or deleted while onto
was stopped, or whose changes were still unacked when it was killed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.models import Meeting, Ticket
from examples.meeting_room.views import MeetingSession
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.testing import built_views, differing_views, final_views, json_lines, onto_run
from tests.meeting_fixtures import MeetingWorkload, take_ticket

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]


def write_config(tmp_path: Path, initial: bool, hold: bool = False) -> Path:
    config = tmp_path / "views.yaml"
    hold_step = '      - {type: map, function: "tests.view_hold:hold"}\n' if hold else ""
    config.write_text(f"""
datastore: {{type: sqlite, path: "{tmp_path / "onto.db"}"}}
pipelines:
  sessions:
    source:
      {{type: changes, collections: [meetings, tickets, users, locations], poll_interval: 0.05}}
    processors:
      - type: view
        view: "examples.meeting_room.views:MeetingSession"
        initial: {str(initial).lower()}
{hold_step}    sinks: [{{type: file, path: "{tmp_path / "out.jsonl"}", fsync: true}}]
    batch: {{size: 50, linger_ms: 5}}
""")
    return config


def updates(out: Path) -> list[dict[str, Any]]:
    return [line["value"] for line in json_lines(out)]


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"onto run exited ({process.returncode}):\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not reached within {timeout}s: {condition!r}; log:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.05)


def open_store(tmp_path: Path) -> SqliteDatastore:
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    store.open()
    return store


class Settled:
    """Whether the sink holds exactly the views a fresh build gives; says what differs."""

    def __init__(self, store: SqliteDatastore, out: Path) -> None:
        self.store, self.out = store, out

    def __call__(self) -> bool:
        return final_views(updates(self.out)) == built_views(MeetingSession, self.store)

    def __repr__(self) -> str:
        seen, truth = final_views(updates(self.out)), built_views(MeetingSession, self.store)
        return f"views that differ: {json.dumps(differing_views(seen, truth))[:4000]}"


def settled(store: SqliteDatastore, out: Path) -> Callable[[], bool]:
    return Settled(store, out)


def changes_while_stopped(store: SqliteDatastore, meetings: list[str]) -> dict[str, str]:
    """A removal, an update, a creation and a view a build no longer yields; what each was."""
    deleted = Meeting.get(meetings[0], store)
    deleted.delete(store)
    changed = Meeting.get(meetings[1], store)
    ticket = Ticket.get(next(iter(changed.tickets.values())).doc_id, store)
    ticket.attendance = not ticket.attendance
    ticket.save(store)
    shrunk = Meeting.get(meetings[2], store)
    gone_user = sorted(shrunk.tickets)[0]
    take_ticket(shrunk, gone_user)
    shrunk.save(store)
    return {
        "deleted": deleted.id,
        "changed": changed.id,
        "left": f"{shrunk.id}/{gone_user}",
    }


@pytest.mark.parametrize("initial", [True, False], ids=["initial", "not-initial"])
def test_views_changed_and_removed_while_stopped_reach_the_sink_after_a_restart(
    tmp_path: Path, initial: bool
) -> None:
    store = open_store(tmp_path)
    out, log = tmp_path / "out.jsonl", tmp_path / "onto.log"
    workload = MeetingWorkload(store, seed=3)
    meetings = workload.setup(5)
    config = write_config(tmp_path, initial)
    with onto_run(config, log, cwd=ROOT) as first:
        if initial:
            wait_for(settled(store, out), first, log)
        else:  # nothing is emitted at a first start without initial: make one change
            workload.step()
            wait_for(lambda: bool(updates(out)), first, log)
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
    before = final_views(updates(out))
    emitted_before = len(updates(out))
    what = changes_while_stopped(store, meetings)
    new_meeting = workload.create_meeting()
    with onto_run(config, log, cwd=ROOT) as second:
        truth = built_views(MeetingSession, store)
        due = {k for k in truth.keys() | before.keys() if truth.get(k) != before.get(k)}
        # Without initial, only what changed is due: a sink that was empty holds only that.
        wait_for(lambda: due <= {u["key"] for u in updates(out)[emitted_before:]}, second, log)
        if initial:
            wait_for(settled(store, out), second, log)
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    after = updates(out)[emitted_before:]
    removed = {u["key"] for u in after if u["removed"]}
    assert any(k.startswith(f"{what['deleted']}/") for k in removed)
    assert what["left"] in removed
    assert any(u["key"].startswith(f"{new_meeting}/") for u in after if not u["removed"])
    assert any(u["key"].startswith(f"{what['changed']}/") for u in after if not u["removed"])
    if initial:
        assert final_views(updates(out)) == truth
    else:
        assert {u["key"] for u in after} == due  # only what changed, nothing else
        assert {k: v for k, v in final_views(updates(out)).items() if k in due} == {
            k: v for k, v in truth.items() if k in due
        }
    versions = [u["version"] for u in after]
    assert min(versions) > max(u["version"] for u in updates(out)[:emitted_before])
    store.close()


@pytest.mark.parametrize("initial", [True, False], ids=["initial", "not-initial"])
def test_changes_unacked_at_a_kill_reach_the_sink_after_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, initial: bool
) -> None:
    store = open_store(tmp_path)
    out, log = tmp_path / "out.jsonl", tmp_path / "onto.log"
    gate = tmp_path / "hold"
    monkeypatch.setenv("ONTO_TEST_HOLD", str(gate))
    workload = MeetingWorkload(store, seed=5)
    meetings = workload.setup(5)
    config = write_config(tmp_path, initial, hold=True)
    with onto_run(config, log, cwd=ROOT) as first:
        if initial:
            wait_for(settled(store, out), first, log)
        before = final_views(updates(out))
        gate.touch()  # from now on, view updates are computed but never delivered
        changes_while_stopped(store, meetings)
        wait_for(lambda: Path(f"{gate}.held").exists(), first, log)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert final_views(updates(out)) == before  # nothing of the changes was delivered
    gate.unlink()
    with onto_run(config, log, cwd=ROOT) as second:
        truth = built_views(MeetingSession, store)
        due = {k for k in truth.keys() | before.keys() if truth.get(k) != before.get(k)}
        assert due
        wait_for(
            lambda: (
                {k: v for k, v in final_views(updates(out)).items() if k in due}
                == {k: v for k, v in truth.items() if k in due}
                and not (due - truth.keys()) & final_views(updates(out)).keys()
            ),
            second,
            log,
        )
        if initial:
            wait_for(settled(store, out), second, log)
    store.close()


def test_repeated_kills_during_thousands_of_changes_end_in_the_clean_state(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    out, log = tmp_path / "out.jsonl", tmp_path / "onto.log"
    workload = MeetingWorkload(store, seed=11, users=20, locations=4)
    workload.setup(20)
    config = write_config(tmp_path, initial=False)
    killing = threading.Event()
    killing.set()
    steps = 0

    def keep_changing() -> None:  # thousands of changes, and more until the kills are over
        nonlocal steps
        while killing.is_set() or steps < 2000:
            workload.step()
            steps += 1

    writer = threading.Thread(target=keep_changing)
    writer.start()
    kills = 0
    try:
        while kills < 8:
            with onto_run(config, log, cwd=ROOT) as process:
                wanted = len(json_lines(out)) + 40
                wait_for(lambda n=wanted: len(json_lines(out)) >= n, process, log, timeout=120)
                process.send_signal(signal.SIGKILL)
                process.wait(10)
                kills += 1
        killing.clear()
        writer.join(timeout=300)
        with onto_run(config, log, cwd=ROOT) as last:
            wait_for(settled(store, out), last, log, timeout=120)
    finally:
        killing.clear()
        writer.join(timeout=300)
    assert steps >= 2000
    assert kills == 8
    assert final_views(updates(out)) == built_views(MeetingSession, store)
    store.close()
