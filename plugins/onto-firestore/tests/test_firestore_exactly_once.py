"""exactly_once with the ``firestore_tasks`` source and the ``firestore`` sink ("Query+Task"):
a trigger's outputs are written in the transaction that marks it done, only if the
trigger is still at the version that was read, and each version is applied once, also by
competing workers. Against the emulator (which checks ``exists`` preconditions but not
update times, nor transaction conflicts: see docs/firestore.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from onto_core.config import load_config, parse_config
from onto_core.errors import ConfigError
from onto_core.protocols import Message, RuntimeContext
from onto_core.testing import onto_run, running
from onto_firestore import FirestoreDatastore, FirestoreSink, FirestoreTaskSource, make_client
from onto_firestore.tasks import TaskOutcome, claim_id

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parents[2]
EXAMPLE = ROOT / "examples" / "meeting_room" / "firestore_tasks.yaml"
CLAIMS = "_onto_task_claims"


@pytest.fixture
def client(emulator_host: str, project: str) -> Iterator[Any]:
    opened = make_client(project, emulator_host=emulator_host)
    yield opened
    opened.close()


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes ``firestore_task_steps`` importable by the pipelines of this process."""
    monkeypatch.syspath_prepend(str(TESTS))


class Watch:
    """A collection's documents as an ``on_snapshot`` listener sees them."""

    def __init__(self, client: Any, collection: str) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self._handle = client.collection(collection).on_snapshot(self._on_snapshot)

    def _on_snapshot(self, snapshots: Any, _changes: Any, _read_time: Any) -> None:
        with self.changed:
            self.docs = {s.id: s.to_dict() or {} for s in snapshots}
            self.changed.notify_all()

    def wait(self, check: Callable[[dict[str, dict[str, Any]]], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: check(self.docs), timeout=60):
                pytest.fail(f"not within 60s: {what}; documents: {self.docs}")

    def close(self) -> None:
        self._handle.unsubscribe()


@contextlib.contextmanager
def watching(client: Any, collection: str) -> Iterator[Watch]:
    watch = Watch(client, collection)
    try:
        yield watch
    finally:
        watch.close()


def settled(docs: dict[str, dict[str, Any]]) -> bool:
    """Every trigger is done or failed (and there is at least one)."""
    return bool(docs) and all(d.get("status") in ("done", "failed") for d in docs.values())


def existing(client: Any, paths: list[str]) -> dict[str, dict[str, Any]]:
    snaps = client.get_all([client.document(p) for p in paths])
    return {s.reference.path: s.to_dict() for s in snaps if s.exists}


def claims(client: Any) -> list[dict[str, Any]]:
    return [s.to_dict() for s in client.collection(CLAIMS).stream()]


def pipeline(project: str, host: str, function: str, path: str, **source: Any) -> str:
    options = {"type": "firestore_tasks", "collection": "invites", "poll_interval": 0.05}
    return f"""
datastore: {{type: firestore, project: {project}, emulator_host: "{host}"}}
pipelines:
  invites:
    source: {json.dumps({**options, **source})}
    processors: [{{type: map, function: "{function}"}}]
    sinks: [{{type: firestore, path: "{path}"}}]
    guarantee: exactly_once
    retry: {{max_attempts: 2, initial_backoff: 0.01}}
    dead_letter: {{type: memory, channel: dead-{project}}}
"""


def test_invites_become_invitations_in_the_commit_that_marks_them_done(
    client: Any, emulator_host: str, project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator_host)
    monkeypatch.setenv("ONTO_FIRESTORE_PROJECT", project)
    monkeypatch.setenv("ONTO_DEAD_LETTERS", str(tmp_path / "dead.jsonl"))
    invites = client.collection("invites")
    invites.document("i1").set(
        {"meetingId": "meeting-1", "userId": "joshua", "message": "hi", "status": "pending"}
    )
    invites.document("i2").set({"meetingId": "meeting-1", "userId": "tijuana", "status": "pending"})
    invites.document("i3").set({"meetingId": "meeting-1", "status": "pending"})  # no userId
    invites.document("i4").set({"meetingId": "meeting-2", "userId": "joshua", "status": "done"})
    joshua, tijuana = "users/joshua/invitations/meeting-1", "users/tijuana/invitations/meeting-1"

    with running(load_config(EXAMPLE)), watching(client, "invites") as watch:
        watch.wait(settled, "every invite done")
        views = existing(client, [joshua, tijuana, "users/joshua/invitations/meeting-2"])
        assert set(views) == {joshua, tijuana}  # i4 was done already: not processed
        assert {k: v for k, v in views[joshua].items() if k != "_version"} == {
            "inviteId": "i1",
            "meetingId": "meeting-1",
            "userId": "joshua",
            "message": "hi",
        }
        # One claim per processed invite version; the version read is the view's version.
        by_path = {c["path"]: c for c in claims(client)}
        assert set(by_path) == {"invites/i1", "invites/i2", "invites/i3"}
        first_claim = by_path["invites/i1"]["updateTime"]
        assert views[joshua]["_version"] == int(first_claim.timestamp()) * 1_000_000 + (
            first_claim.microsecond
        )
        # An edit makes the invite pending again: a new version, applied once more.
        invites.document("i1").update({"message": "see you there", "status": "pending"})
        watch.wait(
            lambda docs: docs["i1"] == {**docs["i1"], "message": "see you there", "status": "done"},
            "the edited invite done",
        )
        assert existing(client, [joshua])[joshua]["message"] == "see you there"
        assert [c["path"] for c in claims(client)].count("invites/i1") == 2

    # The invite the function refused is kept as a dead letter, naming it, and done.
    [letter] = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert "invite invites/i3: missing userId" in letter["headers"]["onto-error"]
    assert watch.docs["i3"]["status"] == "done"


def test_a_trigger_edited_while_processed_is_applied_at_its_new_version_only(
    client: Any, emulator_host: str, project: str, steps: None
) -> None:
    common = {"project": project, "host": emulator_host, "status": "pending", "note": "original"}
    client.collection("invites").document("once").set({**common, "edits": 1})
    client.collection("invites").document("always").set({**common, "edits": 99})
    config = pipeline(
        project,
        emulator_host,
        "firestore_task_steps:edited_while_processed",
        "applied/{invite}/notes/{note}",
        max_attempts=3,
    )
    with running(config) as runtime, watching(client, "invites") as watch:
        watch.wait(settled, "both triggers settled")
        metrics = runtime.metrics()["invites"]
    notes = [f"applied/{t}/notes/{n}" for t in ("once", "always") for n in ("original", "edit-1")]
    # The output built from the original version was never written; the edited one was.
    assert set(existing(client, notes)) == {"applied/once/notes/edit-1"}
    assert watch.docs["once"]["status"] == "done"
    # A trigger that changes during every round gives up after max_attempts, unwritten.
    assert watch.docs["always"]["status"] == "failed"
    assert watch.docs["always"]["error"] == "changed while being processed, 3 rounds in a row"
    assert [c["path"] for c in claims(client)] == ["invites/once"]
    assert (metrics["dead_lettered"], metrics["out"]) == (0, 1)  # only once@edit-1 written


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_each_trigger_version_is_read_once_though_queries_race_the_marks(
    client: Any, emulator_host: str, project: str, guarantee: str
) -> None:
    n = 150  # several query rounds, each started while earlier triggers are being marked
    batch = client.batch()
    for i in range(n):
        batch.set(
            client.document(f"invites/i{i:03d}"),
            {"meetingId": "meeting-1", "userId": f"u{i}", "status": "pending"},
        )
    batch.commit()
    config = pipeline(
        project,
        emulator_host,
        "examples.meeting_room.invites:invitation",
        "users/{user_id}/invitations/{meeting_id}",
        batch=40,
    ).replace("exactly_once", guarantee)
    with running(config) as runtime, watching(client, "invites") as watch:
        watch.wait(settled, f"{n} invites done")
        metrics = runtime.metrics()["invites"]
    assert (metrics["in"], metrics["out"], metrics["acked"]) == (n, n, n)


def test_a_version_another_worker_commits_first_is_not_written_again(
    client: Any, emulator_host: str, project: str
) -> None:
    store = FirestoreDatastore(
        FirestoreDatastore.Config(project=project, emulator_host=emulator_host)
    )
    store.open()
    ctx = RuntimeContext("invites", "source", logging.getLogger("t"), store)
    source = FirestoreTaskSource(FirestoreTaskSource.Config(collection="invites"))
    sink = FirestoreSink(FirestoreSink.Config(path="applied/{invite}"))
    client.collection("invites").document("early").set({"status": "pending"})
    client.collection("invites").document("late").set({"status": "pending"})

    def other_worker_claims(message: Message) -> None:
        path, read_time = message.offset
        client.collection(CLAIMS).document(claim_id(path, read_time)).create({"path": path})

    def update(message: Message) -> Message:
        invite = message.value["docId"]
        out = message.derive({"fields": {"invite": invite}, "data": {"by": "me"}})
        out.headers["onto-source-id"] = message.id
        return out

    async def scenario() -> tuple[int, TaskOutcome]:
        await source.start(ctx)
        await sink.start(ctx)
        read = {m.value["docId"]: m for m in await source.read_batch(2)}
        # "early": the other worker committed before this one's transaction read the claim.
        other_worker_claims(read["early"])
        written = await sink.write_exactly_once([update(read["early"])], [read["early"]], source)

        # "late": it commits between this transaction's reads and its commit.
        def racing_stage(transaction: Any) -> Callable[[Any], None]:
            other_worker_claims(read["late"])
            return lambda txn: txn.set(client.document("applied/late"), {"by": "me"})

        late = await asyncio.to_thread(source.commit_task, read["late"], racing_stage)
        await source.close()
        await sink.close()
        return written, late

    try:
        assert asyncio.run(scenario()) == (0, TaskOutcome.TAKEN)  # nothing written, either
    finally:
        store.close()
    assert existing(client, ["applied/early", "applied/late"]) == {}
    # Marking is the claiming worker's job: this one wrote nothing, the triggers included.
    assert {s.id: s.get("status") for s in client.collection("invites").stream()} == {
        "early": "pending",
        "late": "pending",
    }


def test_exactly_once_needs_exactly_one_firestore_sink(project: str) -> None:
    two_sinks = f"""
pipelines:
  invites:
    source: {{type: firestore_tasks, collection: invites, project: {project}}}
    sinks:
      - {{type: firestore, path: "a/{{id}}", project: {project}}}
      - {{type: firestore, path: "b/{{id}}", project: {project}}}
    guarantee: exactly_once
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(two_sinks, "two.yaml")
    assert str(caught.value) == (
        "two.yaml:4: pipelines.invites.source: source 'firestore_tasks': exactly_once commits"
        " each trigger's mark together with the views it produced, in one Firestore"
        " transaction of the 'firestore' sink, so the pipeline needs exactly one sink of type"
        " 'firestore' (got 'firestore', 'firestore')"
    )
    parse_config(two_sinks.replace("exactly_once", "at_least_once"), "two.yaml")  # fine


@pytest.mark.slow
def test_two_competing_workers_apply_each_trigger_exactly_once(
    client: Any, emulator_host: str, project: str, tmp_path: Path
) -> None:
    config = tmp_path / "tasks.yaml"
    config.write_text(
        pipeline(
            project,
            emulator_host,
            "firestore_task_steps:applied",
            "applied/{invite}/by/{worker}",
            worker="${ONTO_TEST_WORKER}",
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT), *sys.path])}
    n, workers = 120, ("a", "b")
    logs = {w: tmp_path / f"{w}.log" for w in workers}
    with contextlib.ExitStack() as stack:
        for w in workers:
            stack.enter_context(onto_run(config, logs[w], {**env, "ONTO_TEST_WORKER": w}, ROOT))
        for w in workers:  # both polling before the triggers appear, so they race for each
            wait_for_log(logs[w], "started: invites")
        batch = client.batch()
        for i in range(n):
            batch.set(client.document(f"invites/t{i:03d}"), {"n": i, "status": "pending"})
        batch.commit()
        with watching(client, "invites") as watch:
            watch.wait(lambda docs: len(docs) == n and settled(docs), f"{n} triggers done")
    paths = [f"applied/t{i:03d}/by/{w}" for i in range(n) for w in workers]
    written = existing(client, paths)
    per_trigger = {f"t{i:03d}": 0 for i in range(n)}
    for path in written:
        per_trigger[path.split("/")[1]] += 1
    assert set(per_trigger.values()) == {1}, "a trigger applied twice or not at all"
    assert len(claims(client)) == n
    applied_by = {w: sum(p.endswith(f"/by/{w}") for p in written) for w in workers}
    # Both raced through the same triggers from the start, so both committed some...
    assert all(applied_by.values()), f"one worker did all the work: {applied_by}"
    # ...and each says so in its final metrics: what it wrote, not what it tried.
    out = {w: final_metrics(logs[w])["out"] for w in workers}
    assert out == applied_by
    assert sum(final_metrics(logs[w])["in"] for w in workers) > n  # they did compete


def final_metrics(log: Path) -> dict[str, Any]:
    """The figures ``onto run`` logged last (on stopping)."""
    lines = [line for line in log.read_text().splitlines() if " metrics {" in line]
    figures: dict[str, Any] = json.loads(lines[-1].split(" metrics ", 1)[1])
    return figures


def wait_for_log(path: Path, text: str, timeout: float = 60) -> None:
    """Wait until the process writing ``path`` logged ``text`` (files offer no signal)."""
    done = threading.Event()
    deadline = threading.Timer(timeout, done.set)
    deadline.start()
    try:
        while not (path.exists() and text in path.read_text()):
            if done.wait(0.05):
                pytest.fail(f"{path.name} did not log {text} within {timeout}s")
    finally:
        deadline.cancel()
