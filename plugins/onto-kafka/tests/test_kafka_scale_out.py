"""Two `onto run` processes in one consumer group split a topic; one is killed with
SIGKILL mid-stream and the other takes its partitions over, missing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from onto_core.testing import json_lines, onto_run

pytestmark = pytest.mark.slow

ACCOUNTS = 40


def worker_config(bootstrap: str, topic: str, group: str) -> str:
    return f"""
pipelines:
  balances:
    source: {{type: kafka, bootstrap_servers: "{bootstrap}", topics: [{topic}],
              group_id: {group}, commit_interval_ms: 100,
              session_timeout_ms: 6000, heartbeat_interval_ms: 1000}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: file, path: "${{WORKER_OUT}}"}}]
    batch: {{size: 50}}
"""


@contextmanager
def worker(config: Path, out: Path, logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``onto run config`` in a new process writing its outputs to ``out``."""
    env = {**os.environ, "WORKER_OUT": str(out)}
    env.pop("ONTO_LOAD_PLUGINS", None)
    with onto_run(config, logs, env) as process:
        yield process


def lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines written so far (a line being written is left out)."""
    return json_lines(path)


def assignment(log: Path) -> set[int]:
    """The partitions a worker's log says it was assigned last (empty before any)."""
    if not log.exists():
        return set()
    found = [line for line in log.read_text().splitlines() if "onto.kafka: assigned " in line]
    if not found:
        return set()
    names = found[-1].split("onto.kafka: assigned ", 1)[1].split(", ")
    return {int(name.rsplit("/", 1)[1]) for name in names}


def positions(records: list[dict[str, Any]]) -> set[tuple[int, int]]:
    return {
        (int(r["headers"]["kafka-partition"]), int(r["headers"]["kafka-offset"])) for r in records
    }


def final_balances(*outputs: list[dict[str, Any]]) -> dict[str, int]:
    """Per account, the balance of the newest output (later outputs win, in order)."""
    final: dict[str, int] = {}
    for records in outputs:
        for record in records:
            final[record["value"]["account"]] = record["value"]["balance"]
    return final


def test_two_processes_split_the_partitions_and_survive_a_kill(
    kafka: Any, wait_until: Callable[..., Any], tmp_path: Path
) -> None:
    topic = kafka.topic(partitions=4)
    config = tmp_path / "worker.yaml"
    config.write_text(worker_config(kafka.bootstrap, topic, f"{topic}-workers"))
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"

    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5)
    sent: list[Any] = []

    def send(first: int, count: int, pace: float = 0.0) -> None:
        # Each account's balance is its event number: the last event decides the view.
        for n in range(first, first + count):
            account = f"acct-{n % ACCOUNTS}"
            value = {"account": account, "seq": n, "balance": n}
            sent.append(
                producer.send(topic, key=account.encode(), value=json.dumps(value).encode())
            )
            if pace and n % 50 == 0:
                producer.flush(10)
                time.sleep(pace)  # a steady stream, not one burst
        producer.flush(30)

    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    with worker(config, out_a, log_a) as worker_a, worker(config, out_b, log_b) as worker_b:
        # The group has split the partitions once each worker holds some and together all.
        wait_until(
            lambda: (a := assignment(log_a)) and (b := assignment(log_b)) and a | b == {0, 1, 2, 3},
            60,
            "the two workers to split the partitions",
        )
        split_a, split_b = assignment(log_a), assignment(log_b)
        assert not split_a & split_b
        send(0, 400)
        wait_until(
            lambda: len(positions(lines(out_a)) | positions(lines(out_b))) >= 400,
            60,
            "the first 400 messages",
        )
        assert {p for p, _ in positions(lines(out_a))} == split_a
        assert {p for p, _ in positions(lines(out_b))} == split_b

        stream = threading.Thread(target=send, args=(400, 3000, 0.02), daemon=True)
        stream.start()
        before = len(lines(out_a))
        wait_until(lambda: len(lines(out_a)) > before + 100, 60, "worker A mid-stream")
        worker_a.send_signal(signal.SIGKILL)
        worker_a.wait(10)
        assert stream.is_alive(), "the stream ended before the kill: nothing was mid-stream"
        stream.join(60)

        every = {(f.get(10).partition, f.get(10).offset) for f in sent}
        assert len(every) == 3400
        wait_until(
            lambda: every <= positions(lines(out_a)) | positions(lines(out_b)),
            90,
            "worker B to take over and process every message",
        )
        assert worker_b.poll() is None, "worker B should still be running"
    producer.close(5)
    assert {p for p, _ in positions(lines(out_b))} == {0, 1, 2, 3}  # B took A's share

    # A single process reading the same topic from the start gives the reference.
    single = tmp_path / "single.jsonl"
    config.write_text(worker_config(kafka.bootstrap, topic, f"{topic}-single"))
    with worker(config, single, tmp_path / "single.log"):
        wait_until(lambda: positions(lines(single)) >= every, 60, "the single-process run")
    reference = final_balances(lines(single))
    assert len(reference) == ACCOUNTS
    assert final_balances(lines(out_a), lines(out_b)) == reference
