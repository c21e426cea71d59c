"""The Flink job on real servers, and its restart from a checkpoint.

One chain, shared by both tests: the meeting room's sqlite store → ``onto run
kafka_publish.yaml`` (the ``changes`` source, ``kafka`` sink) → the Tansu broker →
``onto flink run`` (the compiled job on a local mini-cluster, Kafka SQL connector in and
exactly-once upsert-kafka out) → the upsert topic → ``onto run flink_websocket.yaml``
(``kafka`` source, ``websocket`` sink) → a Socket.IO client. The store is written in
this process, whose in-process engine (``InProcessViews``) keeps the reference views.
Every process is started here and stopped by its process id at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flink_workload import InProcessViews, MeetingRoomWorkload
from kafka import KafkaConsumer, TopicPartition

from examples.meeting_room.seed import open_store, seed
from onto_core.testing import onto_run
from onto_flink._job import latest_checkpoint
from onto_websocket.testing import ViewClient, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples" / "meeting_room"
VIEW = "meeting_session"
CHANGE_ATTENDANCE = [sys.executable, "-m", "examples.meeting_room.change_attendance"]
# onto-kafka's wait_until(check, timeout, what), loaded by this folder's conftest.
wait_until: Callable[..., Any] = sys.modules["onto_kafka_tests_conftest"].wait_until


class UpsertTopic:
    """Every record of the job's upsert topic (one partition), read as it comes."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
        )
        self.partition = TopicPartition(topic, 0)
        self.consumer.assign([self.partition])
        self.consumer.seek_to_beginning()
        self.records: list[tuple[int, str, dict[str, Any]]] = []  # offset, key, value

    def poll(self) -> list[tuple[int, str, dict[str, Any]]]:
        for batch in self.consumer.poll(timeout_ms=200).values():
            for record in batch:
                value = json.loads(record.value)
                self.records.append((record.offset, record.key.decode(), value))
        return self.records

    def end_offset(self) -> int:
        end: int = self.consumer.end_offsets([self.partition])[self.partition]
        return end

    def latest(self) -> dict[str, dict[str, Any]]:
        """The newest record per key (by offset)."""
        return {key: value for _, key, value in self.poll()}

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def versioned(records: list[tuple[int, str, dict[str, Any]]]) -> dict[str, tuple[bool, Any]]:
    """What a sink that drops an update not newer than the one it stored (``firestore``,
    ``leancloud``) keeps of ``records``, read in topic order: removed and data per key."""
    kept: dict[str, dict[str, Any]] = {}
    for _, key, value in records:
        if key not in kept or value["version"] > kept[key]["version"]:
            kept[key] = value
    return {k: (v["removed"], v["data"]) for k, v in kept.items()}


def rising(records: list[tuple[int, str, dict[str, Any]]]) -> bool:
    """Whether each key's versions rise from record to record."""
    last: dict[str, int] = {}
    for _, key, value in records:
        if value["version"] <= last.get(key, 0):
            return False
        last[key] = value["version"]
    return True


class FlinkRun:
    """``onto flink run`` in a process of its own; the runner (PyFlink, its JVM) in a
    process group of its own, whose id ``onto flink`` notes in ``ONTO_FLINK_JOBS``."""

    def __init__(self, env: dict[str, str], args: list[str], log: Path) -> None:
        # Flink's own log (the mini-cluster's JobManager and TaskManager), one per run.
        self.flink_logs = log.with_suffix(".flink")
        self.env = {**env, "FLINK_LOG_DIR": str(self.flink_logs)}
        self.out = log.with_suffix(".out")
        with self.out.open("ab") as out:
            self.cli = subprocess.Popen(
                [sys.executable, "-m", "onto_core", "flink", "run", *args, "--log", str(log)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.log = log
        self.runner: int | None = None
        self.stopped = False  # the CLI and the runner's whole process group are gone

    def flink_log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.flink_logs.glob("*.log"))

    def wait_submitted(self) -> None:
        def submitted() -> bool:
            if self.cli.poll() is not None:
                pytest.fail(
                    f"onto flink run exited ({self.cli.returncode}):\n"
                    + self.out.read_text()[-2000:]
                    + self.log.read_text()[-4000:]
                )
            return "submitted Flink job" in self.out.read_text()

        wait_until(submitted, 240, "onto flink run to submit the job", every=0.2)
        jobs = Path(self.env["ONTO_FLINK_JOBS"]).read_text().splitlines()
        self.runner = int(json.loads(jobs[-1])["pid"])

    def stop(self) -> None:
        """SIGINT to ``onto flink run`` (it ends the runner's process group), then make sure
        nothing of the group is left; SIGKILL by process id what is."""
        if self.cli.poll() is None:
            self.cli.send_signal(signal.SIGINT)
            try:
                self.cli.wait(60)
            except subprocess.TimeoutExpired:
                self.cli.kill()
                self.cli.wait(10)
        if self.runner is None:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.runner, 0)
            except ProcessLookupError:
                self.stopped = True
                return
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.runner, signal.SIGKILL)
        pytest.fail(f"the Flink runner's processes (group {self.runner}) outlived the job")


@dataclass
class Chain:
    tmp: Path
    env: dict[str, str]
    store: Any
    views: InProcessViews
    topic: UpsertTopic
    kafka: Any
    port: int
    flink_args: list[str]
    flink: FlinkRun | None = None
    runs: int = 0

    def start_flink(self, *extra: str) -> FlinkRun:
        self.runs += 1
        run = FlinkRun(self.env, [*self.flink_args, *extra], self.tmp / f"flink-{self.runs}.log")
        self.flink = run
        run.wait_submitted()
        return run

    def flink_matches(self) -> bool:
        """Whether the upsert topic's newest record per key is the in-process view."""
        expected = self.views.latest
        found = self.topic.latest()
        if found.keys() != expected.keys():
            return False
        return all(
            found[k]["removed"] == u["removed"] and found[k]["data"] == u["data"]
            for k, u in expected.items()
        )


def _accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def chain(
    kafka: Any,
    flink_job_python: str,
    kafka_jars: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Chain]:
    tmp = tmp_path_factory.mktemp("flink-kafka")
    db = tmp / "meeting_room.db"
    store = open_store(db)
    views = InProcessViews(store)
    seed(store)
    views.catch_up()
    changes_topic = kafka.topic(partitions=2, prefix="meeting-room-changes")
    views_topic = kafka.topic(partitions=1, prefix="meeting-sessions")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"},
        "PYTHONUNBUFFERED": "1",
        "ONTO_DB": str(db),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "ONTO_CHANGES_TOPIC": changes_topic,
        "ONTO_VIEWS_TOPIC": views_topic,
        "ONTO_VIEWS_GROUP": f"{views_topic}-websocket",
        "ONTO_PORT": str(port),
        "ONTO_FLINK_CHECKPOINTS": str(tmp / "checkpoints"),
        "ONTO_FLINK_CHECKPOINT_MS": "1000",
        "ONTO_FLINK_JOBS": str(tmp / "flink-jobs.jsonl"),
    }
    flink_args = [
        str(HERE / "meeting_sessions.yaml"),
        "--python",
        flink_job_python,
        "--jars",
        kafka_jars,
    ]
    topic = UpsertTopic(kafka.bootstrap, views_topic)
    built = Chain(tmp, env, store, views, topic, kafka, port, flink_args)
    with contextlib.ExitStack() as stack:
        stack.callback(store.close)
        stack.callback(topic.close)
        stack.enter_context(
            onto_run(EXAMPLES / "kafka_publish.yaml", tmp / "publish.log", env, ROOT)
        )
        stack.enter_context(
            onto_run(HERE / "flink_websocket.yaml", tmp / "websocket.log", env, ROOT)
        )
        stack.callback(lambda: built.flink.stop() if built.flink else None)
        built.start_flink()
        yield built


def attending(view: dict[str, Any]) -> list[str]:
    return [a["userId"] for a in view["data"]["attending"]]


def test_a_socketio_client_sees_thomasina_leave_through_kafka_and_flink(
    chain: Chain,
) -> None:
    # The job reads the seed's changes from the change topic and writes each view.
    wait_until(chain.flink_matches, 120, "the Flink job's first views on the upsert topic")
    assert {k for k, _ in chain.topic.latest().items()} == {
        "meeting-1/joshua",
        "meeting-1/thomasina",
        "meeting-1/tijuana",
    }
    # onto's kafka source has read them (its group committed past them) and serves them.
    read = chain.topic.records[-1][0] + 1
    group = chain.env["ONTO_VIEWS_GROUP"]
    wait_until(lambda: chain.kafka.committed(group).get(0, 0) >= read, 60, "onto to read them")
    wait_until(lambda: _accepting(chain.port), 30, "the websocket sink to listen")

    client = ViewClient(timeout=60).connect(f"http://127.0.0.1:{chain.port}")
    try:
        assert client.subscribe(VIEW, "meeting-1/joshua") == {"ok": True}
        first = client.next_view()
        assert sorted(attending(first)) == ["joshua", "thomasina", "tijuana"]
        assert first["version"] > 0, "the sink has delivered Flink's view of joshua"

        leave = subprocess.run(
            [*CHANGE_ATTENDANCE, "thomasina", "--absent", "--db", chain.env["ONTO_DB"]],
            cwd=ROOT,
            env=chain.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert leave.returncode == 0, leave.stderr
        chain.views.catch_up()

        left = client.view_where(lambda v: "thomasina" not in attending(v))
    finally:
        client.close()
    assert left["key"] == "meeting-1/joshua"
    assert sorted(attending(left)) == ["joshua", "tijuana"]
    assert left["version"] > first["version"]
    assert left["data"] == chain.views.latest["meeting-1/joshua"]["data"]
    wait_until(chain.flink_matches, 60, "every view to follow thomasina's change")


def _checkpoint_number(chain: Chain) -> int:
    found = latest_checkpoint(chain.env["ONTO_FLINK_CHECKPOINTS"])
    return int(found.name.removeprefix("chk-")) if found else 0


def test_the_job_resumes_from_its_checkpoint_mid_stream_without_loss(
    chain: Chain,
) -> None:
    stopped = chain.flink
    assert stopped is not None
    workload = MeetingRoomWorkload(seed=16)
    workload.meetings = 100  # its meetings are meeting-101 on; the seed's meeting-1 stays
    with_store = chain.store
    workload.run(with_store, mutations=150, after_each=chain.views.catch_up)
    wait_until(chain.flink_matches, 120, "the job to process the first changes", every=0.2)
    # A sink keeping each key's newest version ends with the in-process views too: no
    # record of a key has a version below one before it.
    assert rising(chain.topic.poll())
    expected = {k: (u["removed"], u["data"]) for k, u in chain.views.latest.items()}
    assert versioned(chain.topic.poll()) == expected
    # Every change so far is in a checkpoint completed from now on: the second to complete
    # began after the job had processed them (and its transaction holds their updates).
    # So do the records on the topic now: they are committed, whatever Tansu shows later.
    committed_end = chain.topic.end_offset()
    number = _checkpoint_number(chain)
    wait_until(lambda: _checkpoint_number(chain) >= number + 2, 30, "two more checkpoints")

    # Stop the job while changes keep coming, and go on writing while it is down.
    stopper = threading.Thread(target=stopped.stop)
    calls = 0

    def after_each() -> None:
        nonlocal calls
        calls += 1
        chain.views.catch_up()
        if calls == 40:
            stopper.start()

    workload.run(with_store, mutations=150, after_each=after_each)
    stopper.join(90)
    assert stopped.stopped, "the stopped job's processes are gone"
    resumed_at = chain.topic.end_offset()

    run = chain.start_flink("--from-checkpoint", "latest")
    wait_until(chain.flink_matches, 180, "the resumed job to catch up", every=0.2)

    records = chain.topic.poll()
    # It resumed from the newest checkpoint of the stopped job, which covers those changes.
    restored = re.search(r"Restoring job \w+ from Savepoint (\d+) @", run.flink_log())
    assert restored, "the resumed job names the checkpoint it restored"
    assert int(restored.group(1)) >= number + 2
    # It resumed from that checkpoint's state and offsets (not from the topic's start) and
    # wrote the changes made while it was down, each key's versions rising.
    after = [(o, k, v) for o, k, v in records if o >= resumed_at]
    assert after, "the resumed job wrote the changes made while it was down"
    assert rising(after)
    # No rollback: the resumed job's versions of a key are above every committed one.
    # (Tansu also shows the stopped job's records after its last checkpoint, an aborted
    # transaction's, which a read_committed consumer on Apache Kafka never sees: those
    # between committed_end and resumed_at are not compared; docs/flink.md, "Over Kafka".)
    newest_committed: dict[str, int] = {}
    for offset, key, value in records:
        if offset < committed_end:
            newest_committed[key] = max(newest_committed.get(key, 0), value["version"])
    resumed_keys = {k for _, k, _ in after}
    assert resumed_keys & newest_committed.keys(), "the resumed job wrote keys written before"
    for _, key, value in after:
        assert value["version"] > newest_committed.get(key, 0), (key, value["version"])
    # No loss: the newest record of every key is the in-process engine's view
    # (flink_matches, above), removed views included.
    assert any(v["removed"] for v in chain.topic.latest().values())
