"""The ``kafka`` shard coordinator gives each shard to exactly one live worker, and moves
the shards of a worker that leaves or dies to the others."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from onto_core.errors import ComponentError
from onto_core.protocols import RuntimeContext
from onto_kafka import KafkaShardCoordinator

SHARDS = 8
ALL = frozenset(range(SHARDS))
TIMINGS: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
# A rebalance on Tansu takes a few seconds; a dead member is noticed after the session.
SETTLE = 40


class Worker:
    """One coordinator, started as a view worker would, counting its on_change calls."""

    def __init__(self, bootstrap: str, topic: str, group: str, **settings: Any) -> None:
        self.coordinator = KafkaShardCoordinator(
            KafkaShardCoordinator.Config(
                bootstrap_servers=[bootstrap], topic=topic, group_id=group, **TIMINGS, **settings
            )
        )
        self.changes = 0
        self._lock = threading.Lock()

    def on_change(self) -> None:
        with self._lock:
            self.changes += 1

    def start(self, shards: int = SHARDS) -> Worker:
        ctx = RuntimeContext("views", "coordinator", logging.getLogger("test"))
        asyncio.run(self.coordinator.start(ctx, shards, self.on_change))
        return self

    def owned(self) -> frozenset[int] | None:
        return self.coordinator.owned()

    def close(self) -> None:
        asyncio.run(self.coordinator.close())


@pytest.fixture
def shard_group(kafka: Any) -> Iterator[Callable[..., Worker]]:
    """``worker()`` starts a coordinator in one fresh group over one fresh shard topic."""
    name = f"onto-test-shards-{uuid.uuid4().hex[:10]}"
    kafka.topics.append(name)  # created by the first coordinator, deleted on a real cluster
    started: list[Worker] = []

    def worker() -> Worker:
        started.append(Worker(kafka.bootstrap, name, f"{name}-workers").start())
        return started[-1]

    yield worker
    for each in started:
        each.close()


def split(*workers: Worker) -> bool:
    """Whether every worker owns a share, no shard twice, and together all of them."""
    owned = [w.owned() for w in workers]
    if any(not shares for shares in owned):
        return False
    sets = [s for s in owned if s is not None]
    return sum(map(len, sets)) == SHARDS and frozenset().union(*sets) == ALL


def test_two_workers_own_disjoint_shares_and_a_closed_one_hands_its_shards_over(
    shard_group: Callable[..., Worker], wait_until: Callable[..., Any]
) -> None:
    first = shard_group()
    second = shard_group()
    wait_until(lambda: split(first, second), SETTLE, "the two workers to split the shards")
    changes = second.changes

    first.close()
    wait_until(lambda: second.owned() == ALL, SETTLE, "the survivor to own every shard")
    assert second.changes > changes


def test_a_worker_that_joins_takes_a_share(
    shard_group: Callable[..., Worker], wait_until: Callable[..., Any]
) -> None:
    first = shard_group()
    wait_until(lambda: first.owned() == ALL, SETTLE, "the only worker to own every shard")
    second = shard_group()
    third = shard_group()
    wait_until(lambda: split(first, second, third), SETTLE, "the three workers to split the shards")


KILLABLE = """
import asyncio, json, logging, sys, threading
from onto_core.protocols import RuntimeContext
from onto_kafka import KafkaShardCoordinator

coordinator = KafkaShardCoordinator(KafkaShardCoordinator.Config(**json.loads(sys.argv[1])))
def show():
    print(json.dumps(sorted(coordinator.owned() or ())), flush=True)
ctx = RuntimeContext("views", "coordinator", logging.getLogger("worker"))
asyncio.run(coordinator.start(ctx, int(sys.argv[2]), show))
threading.Event().wait()
"""


class WorkerProcess:
    """What a coordinator in a process of its own printed last, and its process."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.sets: list[frozenset[int]] = [frozenset()]

    def owned(self) -> frozenset[int]:
        return self.sets[-1]

    def kill(self) -> None:
        """SIGKILL: no leave, no goodbye; the group notices only by the missing heartbeats."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


@contextmanager
def worker_process(settings: dict[str, Any]) -> Iterator[WorkerProcess]:
    """A coordinator in a process of its own that prints its set at every change."""
    process = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, json.dumps(settings), str(SHARDS)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"},
    )
    worker = WorkerProcess(process)

    def follow() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            worker.sets.append(frozenset(json.loads(line)))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        yield worker
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        reader.join(10)


def test_a_killed_worker_loses_its_shards_to_the_survivor_after_the_session_timeout(
    kafka: Any, shard_group: Callable[..., Worker], wait_until: Callable[..., Any]
) -> None:
    survivor = shard_group()
    config = survivor.coordinator.config
    settings = {
        "bootstrap_servers": [kafka.bootstrap],
        "topic": config.topic,
        "group_id": config.group_id,
        **TIMINGS,
    }
    with worker_process(settings) as victim:
        wait_until(
            lambda: (
                (mine := survivor.owned())
                and (theirs := victim.owned())
                and not mine & theirs
                and mine | theirs == ALL
            ),
            SETTLE,
            "the survivor and the worker process to split the shards",
        )
        changes = survivor.changes
        victim.kill()
        wait_until(lambda: survivor.owned() == ALL, SETTLE, "the survivor to own every shard")
        assert survivor.changes > changes


def test_a_shard_topic_with_another_partition_count_is_refused(kafka: Any) -> None:
    topic = kafka.topic(partitions=3)
    worker = Worker(kafka.bootstrap, topic, f"{topic}-workers")
    with pytest.raises(ComponentError) as caught:
        worker.start(shards=SHARDS)
    message = str(caught.value)
    assert f"shard topic {topic!r} at {kafka.bootstrap}" in message
    assert f"has 3 partitions but the workers run {SHARDS} shards" in message
    assert "name a new topic in `topic`" in message


def test_a_missing_shard_topic_is_refused_when_it_may_not_be_created(kafka: Any) -> None:
    topic = f"onto-test-missing-{uuid.uuid4().hex[:10]}"
    worker = Worker(kafka.bootstrap, topic, f"{topic}-workers", create_topic=False)
    with pytest.raises(ComponentError) as caught:
        worker.start(shards=4)
    assert f"shard topic {topic!r} at {kafka.bootstrap} does not exist" in str(caught.value)
    assert "create it with 4 partitions" in str(caught.value)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"group_id": "g"}, "topic"),
        ({"topic": "bad topic!", "group_id": "g"}, "'bad topic!' is not a valid topic name"),
        (
            {"topic": "s", "group_id": "g", "session_timeout_ms": 1000},
            "heartbeat_interval_ms must be less than session_timeout_ms",
        ),
    ],
)
def test_a_wrong_coordinator_setting_is_refused(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        KafkaShardCoordinator.Config(**settings)


def test_the_coordinator_is_offered_as_a_component() -> None:
    from onto_core.plugins import list_components

    (found,) = [c for c in list_components() if c.kind == "coordinator" and c.name == "kafka"]
    assert found.cls is KafkaShardCoordinator


def test_an_unreachable_broker_fails_the_start_naming_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: nothing answers there
        worker = Worker(f"127.0.0.1:{port}", "shards", "workers", connect_timeout_ms=500)
        with pytest.raises(ComponentError) as caught:
            worker.start()
    assert f"cannot connect to Kafka at 127.0.0.1:{port}" in str(caught.value)
