"""Several view workers over Kafka: every worker reads every change, each owns a share of
the views (shards of meetings, given out by a Kafka consumer group), and together they
deliver exactly what one engine building from the datastore would, through joins, leaves
and kill -9.

One process publishes the sqlite change feed to a 4-partition topic (as
examples/meeting_room/kafka_publish.yaml does); each worker is a real ``onto run`` of a
config like examples/meeting_room/kafka_views.yaml, writing its view updates to its own
file. After each step the newest version of every view key across the workers' files
must equal a fresh build from the datastore, view for view.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.models import Location, Meeting, Ticket, User
from examples.meeting_room.views import MeetingSession
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.reactive.engine import shard_of
from onto_core.testing import built_views, differing_views, final_views, json_lines, onto_run
from tests.meeting_fixtures import MeetingWorkload, give_ticket, take_ticket

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]
EXAMPLES = ROOT / "examples" / "meeting_room"
SHARDS = 8

WORKER = """
datastore: {{type: sqlite, path: "{db}"}}
pipelines:
  views:
    source:
      type: kafka
      bootstrap_servers: "{bootstrap}"
      topics: ["{changes}"]
      group_id: "{changes}-views"
      partitions: all
      poll_timeout_ms: 50
    processors:
      - {{type: kafka_decode, value_format: json}}
      - type: view
        view: "examples.meeting_room.views:MeetingSession"
        initial: false
        shards: {shards}
        coordinator:
          type: kafka
          bootstrap_servers: "{bootstrap}"
          topic: "{changes}-shards"
          group_id: "{changes}-shards"
          session_timeout_ms: 6000
          heartbeat_interval_ms: 1000
    sinks: [{{type: file, path: "${{ONTO_VIEWS_OUT}}", fsync: true}}]
    batch: {{size: 100, linger_ms: 5}}
runtime: {{stats_interval: 0}}
"""


class Deployment:
    """The store, the publisher and the workers of one test, started and stopped here."""

    def __init__(self, kafka: Any, tmp_path: Path, seed: int) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "onto.db"
        self.store = SqliteDatastore(SqliteDatastore.Config(path=self.db))
        self.store.open()
        self.workload = MeetingWorkload(self.store, seed=seed, users=14, locations=3)
        self.changes = kafka.topic(partitions=4, prefix="view-workers")
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"},
            "ONTO_DB": str(self.db),
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "ONTO_CHANGES_TOPIC": self.changes,
        }
        self.config = tmp_path / "worker.yaml"
        self.config.write_text(
            WORKER.format(
                db=self.db, bootstrap=kafka.bootstrap, changes=self.changes, shards=SHARDS
            )
        )
        self.stack = contextlib.ExitStack()
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.outputs: list[Path] = []

    def publish(self) -> None:
        self.stack.enter_context(
            onto_run(EXAMPLES / "kafka_publish.yaml", self.tmp / "publish.log", self.env, ROOT)
        )

    def start(self, name: str) -> None:
        out = self.tmp / f"{name}-{len(self.outputs)}.jsonl"
        self.outputs.append(out)
        env = {**self.env, "ONTO_VIEWS_OUT": str(out)}
        log = self.log(name)
        self.workers[name] = self.stack.enter_context(onto_run(self.config, log, env, ROOT))

    def start_built(self, wait_until: Callable[..., Any], *names: str) -> None:
        """Start workers ``names``; return once each owns shards and the views are right."""
        for name in names:
            self.start(name)
        wait_until(
            lambda: all(self.owned(n) for n in names), 60, f"{', '.join(names)} to own shards"
        )
        self.wait_correct(wait_until, "the first build")

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def kill(self, name: str) -> None:
        process = self.workers.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self, name: str) -> dict[str, Any]:
        """SIGTERM the worker; its view processor's figures from the exit metrics."""
        process = self.workers.pop(name)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, self.log(name).read_text()[-3000:]
        return exit_figures(self.log(name))

    def updates(self) -> list[dict[str, Any]]:
        return [line["value"] for out in self.outputs for line in json_lines(out)]

    def truth(self) -> dict[str, Any]:
        return built_views(MeetingSession, self.store)

    def wait_correct(self, wait_until: Callable[..., Any], what: str, timeout: float = 60) -> None:
        def correct() -> bool:
            for name, process in self.workers.items():
                if process.poll() is not None:
                    pytest.fail(f"worker {name} exited:\n{self.log(name).read_text()[-3000:]}")
            return final_views(self.updates()) == self.truth()

        try:
            wait_until(correct, timeout, what)
        except BaseException:
            wrong = differing_views(final_views(self.updates()), self.truth())
            print(f"views still wrong after {what}: {json.dumps(wrong, indent=1)[:3000]}")
            raise

    def owned(self, name: str) -> str | None:
        """The shards the worker last said it owns, as its log prints them."""
        found = None
        for line in self.log(name).read_text().splitlines():
            if "view meeting_session: shards " in line:
                found = line.split("view meeting_session: shards ", 1)[1].split(" owned", 1)[0]
        return found

    def close(self) -> None:
        self.stack.close()
        self.store.close()


def exit_figures(log: Path) -> dict[str, Any]:
    for line in reversed(log.read_text().splitlines()):
        if " metrics {" in line:
            figures = json.loads(line.split(" metrics ", 1)[1])
            return dict(figures["processors"]["processors[1] (view)"])
    raise AssertionError(f"no metrics line in {log}")


@pytest.fixture
def deployment(kafka: Any, tmp_path: Path) -> Iterator[Deployment]:
    made = Deployment(kafka, tmp_path, seed=21)
    yield made
    made.close()


def meetings_by_shard(store: SqliteDatastore) -> dict[int, list[Meeting]]:
    found: dict[int, list[Meeting]] = {}
    for doc_id, data in store.query("meetings"):
        found.setdefault(shard_of(doc_id, SHARDS), []).append(Meeting.from_dict(data, doc_id))
    return found


def two_meetings_in_different_shards(store: SqliteDatastore) -> tuple[Meeting, Meeting]:
    groups = [ms for _, ms in sorted(meetings_by_shard(store).items())]
    return groups[0][0], groups[-1][0]


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_together_deliver_what_one_engine_builds(
    deployment: Deployment, wait_until: Callable[..., Any], workers: int
) -> None:
    d, store = deployment, deployment.store
    d.workload.setup(16)
    d.publish()
    d.start_built(wait_until, *(f"w{i}" for i in range(workers)))

    # A participant added to a meeting in one shard, then changed from another shard.
    a, b = two_meetings_in_different_shards(store)
    newcomer = next(u for u in d.workload.users if u not in a.tickets and u not in b.tickets)
    ticket = Ticket(id="ticket-newcomer", user=User.get(newcomer, store).ref)
    ticket.save(store)
    give_ticket(a, newcomer, ticket.ref)
    a.save(store)
    d.wait_correct(wait_until, "a participant added")
    user = User.get(newcomer, store)
    user.hearing_aid_requested = not user.hearing_aid_requested
    user.save(store)
    d.wait_correct(wait_until, "the new participant's hearing aid")

    # A user shared by meetings of different shards.
    b = Meeting.get(b.id, store)
    shared = User.get(sorted(b.tickets)[0], store)
    if shared.id not in a.tickets:
        extra = Ticket(id="ticket-shared", user=shared.ref)
        extra.save(store)
        a = Meeting.get(a.id, store)
        give_ticket(a, shared.id, extra.ref)
        a.save(store)
    shared.first_name = "Shared"
    shared.save(store)
    d.wait_correct(wait_until, "a user shared by two shards renamed")

    # A ticket re-homed from one meeting to another: absent in one, then present again.
    a = Meeting.get(a.id, store)
    moved = Ticket.get(a.tickets[newcomer].doc_id, store)
    moved.attendance = False
    moved.save(store)
    take_ticket(a, newcomer)
    a.save(store)
    b = Meeting.get(b.id, store)
    give_ticket(b, newcomer, moved.ref)
    b.save(store)
    moved.attendance = True
    moved.save(store)
    d.wait_correct(wait_until, "a ticket re-homed between meetings")

    # One location shared by every meeting, then edited.
    for meeting in Meeting.where(store=store):
        meeting.location = Location.get(d.workload.locations[0], store).ref
        meeting.save(store)
    place = Location.get(d.workload.locations[0], store)
    place.address = "1 Shared Square"
    place.save(store)
    d.wait_correct(wait_until, "a location shared by every meeting edited")

    for _ in range(150):
        d.workload.step()
    d.wait_correct(wait_until, "150 random changes")


def test_killed_worker_is_taken_over_and_a_rejoining_one_takes_a_share_back(
    deployment: Deployment, wait_until: Callable[..., Any]
) -> None:
    d = deployment
    d.workload.setup(16)
    d.publish()
    d.start_built(wait_until, "w0", "w1")
    for _ in range(30):
        d.workload.step()
    d.kill("w1")  # mid-stream: some of its changes may be in flight, unacked
    for _ in range(40):
        d.workload.step()
    wait_until(lambda: d.owned("w0") == f"0-{SHARDS - 1}", 60, "the survivor to own every shard")
    d.wait_correct(wait_until, "the takeover of a killed worker")

    d.start("w1")  # restarted: takes a share back
    wait_until(
        lambda: d.owned("w0") not in (None, f"0-{SHARDS - 1}") and d.owned("w1"),
        60,
        "the restarted worker to take a share back",
    )
    for _ in range(40):
        d.workload.step()
    d.wait_correct(wait_until, "changes after the rejoin")


def test_a_worker_joining_mid_stream_never_sends_a_view_backwards(
    deployment: Deployment, wait_until: Callable[..., Any]
) -> None:
    d = deployment
    d.workload.setup(16)
    d.publish()
    d.start_built(wait_until, "w0")
    before = {u["key"]: u["version"] for u in d.updates()}
    d.start("w1")
    for _ in range(60):  # changes keep coming while the new worker joins
        d.workload.step()
    wait_until(lambda: d.owned("w1"), 60, "the new worker to own shards")
    d.wait_correct(wait_until, "the join")
    for out in d.outputs:  # each worker's versions per key only ever go up
        last: dict[str, int] = {}
        for line in json_lines(out):
            update = line["value"]
            assert update["version"] >= last.get(update["key"], 0), update["key"]
            last[update["key"]] = update["version"]
    newest: dict[str, int] = {}
    for update in d.updates():
        newest[update["key"]] = max(newest.get(update["key"], 0), update["version"])
    assert all(newest[k] >= v for k, v in before.items())


def test_each_worker_holds_and_recomputes_its_share(
    deployment: Deployment, wait_until: Callable[..., Any], tmp_path: Path
) -> None:
    d = deployment
    d.workload.setup(40)
    single_out = tmp_path / "single.jsonl"
    single = tmp_path / "single.yaml"
    single.write_text(
        d.config.read_text()
        .replace("shards: 8", "shards: 1\n        state: single")
        .replace(f'group_id: "{d.changes}-views"', f'group_id: "{d.changes}-single"')
        .split("        coordinator:")[0]
        + '    sinks: [{type: file, path: "'
        + str(single_out)
        + '"}]\n'
        + "    batch: {size: 100, linger_ms: 5}\n"  # batched as the workers are
    )
    d.publish()
    with onto_run(single, tmp_path / "single.log", d.env, ROOT) as alone:
        d.start_built(wait_until, "w0", "w1")
        for _ in range(200):
            d.workload.step()
        d.wait_correct(wait_until, "200 changes")
        wait_until(
            lambda: final_views(u["value"] for u in json_lines(single_out)) == d.truth(),
            60,
            "the single worker to catch up",
        )
        alone.send_signal(signal.SIGTERM)
        assert alone.wait(30) == 0
    one = exit_figures(tmp_path / "single.log")
    shares = [d.stop("w0"), d.stop("w1")]
    assert sum(s["views"] for s in shares) == one["views"]
    for share in shares:
        assert 0.25 <= share["views"] / one["views"] <= 0.75, (share, one)
        assert share["recomputes"] <= 0.8 * one["recomputes"], (share, one)
