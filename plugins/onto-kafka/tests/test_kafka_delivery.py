"""At least once on a real broker: failures hold offsets back, poison goes to the DLQ,
and a rebalance never commits past what was processed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from kafka import KafkaConsumer
from pydantic import BaseModel, ConfigDict

from onto_core import plugins
from onto_core.builtin.memory import channel, drop_channels
from onto_core.hookspecs import hookimpl
from onto_core.protocols import Guarantee, Message
from onto_core.testing import running

TIMINGS = "session_timeout_ms: 6000, heartbeat_interval_ms: 1000"


class GateSink:
    """A test sink that refuses values with ``n >= 10`` while ``refusing`` is set, and
    holds any write once it has accepted ``limit`` messages until the limit is lifted.
    It records what it accepted."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )
    refusing = threading.Event()
    limit: int | None = None
    held = threading.Event()  # a write is waiting for the limit to be lifted
    refused = 0
    accepted: ClassVar[list[Message]] = []
    lock = threading.Condition()

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        self.config = config

    def write(self, messages: list[Message]) -> None:
        with GateSink.lock:
            while GateSink.limit is not None and len(GateSink.accepted) >= GateSink.limit:
                GateSink.held.set()
                if not GateSink.lock.wait(30):
                    raise TimeoutError("the test never lifted the gate sink's limit")
            if GateSink.refusing.is_set() and any(m.value["n"] >= 10 for m in messages):
                GateSink.refused += 1
                raise ConnectionError("the destination is down")
            GateSink.accepted.extend(messages)

    @classmethod
    def reset(cls) -> None:
        cls.refusing.clear()
        cls.lift()
        cls.held.clear()
        cls.refused = 0
        cls.accepted = []

    @classmethod
    def lift(cls) -> None:
        with cls.lock:
            cls.limit = None
            cls.lock.notify_all()

    @classmethod
    def values(cls) -> list[int]:
        with cls.lock:
            return [m.value["n"] for m in cls.accepted]


class TestComponents:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.sink("gate", GateSink)


@pytest.fixture(autouse=True)
def components() -> Iterator[None]:
    drop_channels()
    GateSink.reset()
    name = plugins.register_plugin(TestComponents(), name="kafka-delivery-tests")
    yield
    GateSink.lift()
    plugins.unregister_plugin(name)
    drop_channels()


def numbered(count: int, start: int = 0) -> list[tuple[bytes, bytes]]:
    return [(f"k{n}".encode(), json.dumps({"n": n}).encode()) for n in range(start, count)]


def test_a_failing_sink_holds_the_offset_back_and_nothing_is_missing_after_recovery(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic(partitions=1)
    group = f"{topic}-g"
    kafka.produce(topic, numbered(20))
    GateSink.refusing.set()
    config = f"""
pipelines:
  flaky:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}],
              group_id: {group}, commit_interval_ms: 0, {TIMINGS}}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: gate}}]
    retry: {{max_attempts: 2, initial_backoff: 0.01, max_backoff: 0.05}}
    batch: {{size: 5}}
"""
    with running(config):
        # Messages 0-9 go through; from 10 on every write fails, and with no dead-letter
        # sink the failed messages are nacked and delivered again, over and over.
        wait_until(lambda: kafka.committed(group).get(0) == 10, 30, "offset 10 committed")
        refused_before = GateSink.refused
        wait_until(lambda: GateSink.refused >= refused_before + 6, 30, "more failed writes")
        assert kafka.committed(group)[0] == 10  # not one offset past the failing message
        assert sorted(set(GateSink.values())) == list(range(10))

        GateSink.refusing.clear()  # the destination is back
        wait_until(lambda: set(GateSink.values()) == set(range(20)), 30, "every message")
        wait_until(lambda: kafka.committed(group).get(0) == 20, 30, "offset 20 committed")
    assert set(GateSink.values()) == set(range(20))


def test_a_poison_message_is_dead_lettered_with_its_origin_and_the_rest_flows(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic(partitions=1)
    dlq = kafka.topic(prefix="onto-test-dlq")
    group = f"{topic}-g"
    kafka.produce(topic, numbered(5))
    kafka.produce(topic, [(b"bad", b"\xff this is not JSON")])
    kafka.produce(topic, numbered(10, start=5))
    config = f"""
pipelines:
  orders:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}],
              group_id: {group}, commit_interval_ms: 0, {TIMINGS}}}
    processors: [{{type: kafka_decode, value_format: json}}]
    sinks: [{{type: memory, channel: good}}]
    dead_letter: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: {dlq}}}
    retry: {{max_attempts: 2, initial_backoff: 0.01}}
"""
    with running(config):
        wait_until(lambda: len(channel("good").messages) == 10, 30, "the ten good messages")
        wait_until(lambda: kafka.committed(group).get(0) == 11, 30, "offset 11 committed")
    assert [v["n"] for v in channel("good").values()] == list(range(10))

    (letter,) = kafka.read(dlq, 1)
    headers = {name: value.decode() for name, value in letter.headers}
    assert letter.value == b"\xff this is not JSON"  # the original bytes, untouched
    assert letter.key == b"bad"
    assert headers["kafka-topic"] == topic
    assert headers["kafka-partition"] == "0"
    assert headers["kafka-offset"] == "5"
    assert headers["onto-error"].startswith("ProcessorError: cannot decode message")
    assert headers["onto-stage"] == "processors[0] (kafka_decode)"
    assert headers["onto-pipeline"] == "orders"


def test_a_revoked_partition_is_committed_only_up_to_what_was_processed(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic(partitions=2)
    group = f"{topic}-g"
    kafka.produce(topic, numbered(10), partition=0)
    kafka.produce(topic, numbered(20, start=10), partition=1)
    config = f"""
pipelines:
  slow:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}],
              group_id: {group}, commit_interval_ms: 0, revoke_timeout_ms: 300, {TIMINGS}}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: gate}}]
    batch: {{size: 1}}
"""
    other_stop = threading.Event()
    other_assigned: list[Any] = []

    def other_member() -> None:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        try:
            while not other_stop.is_set():
                consumer.poll(timeout_ms=100, max_records=1)
                other_assigned[:] = list(consumer.assignment())
        finally:
            consumer.close(autocommit=False)

    GateSink.limit = 3
    with running(config):
        # Three messages go through; the fourth is held in flight, others wait behind it.
        wait_until(GateSink.held.is_set, 30, "a write held at the gate")
        processed = GateSink.values()
        member = threading.Thread(target=other_member, daemon=True)
        member.start()
        try:
            wait_until(lambda: len(other_assigned) == 1, 30, "the second member's partition")
            (taken,) = other_assigned
            committed = kafka.committed(group)
            seen_there = [n for n in processed if (n >= 10) == (taken.partition == 1)]
            position = (max(seen_there) % 10 + 1) if seen_there else 0
            # The revoked partition's commit covers what was processed there, no more.
            assert committed.get(taken.partition, 0) == position
            GateSink.lift()  # the in-flight messages finish and are acked late...
            kept = 1 - taken.partition
            wait_until(lambda: kafka.committed(group).get(kept) == 10, 30, "the kept partition")
            # ...after them the kept partition was committed to its end, but the revoked
            # one belongs to the other member now: its offset did not move.
            assert kafka.committed(group).get(taken.partition, 0) == position
        finally:
            GateSink.lift()
            other_stop.set()
            member.join(15)


def test_a_record_the_producer_refuses_is_dead_lettered_and_the_rest_is_delivered(
    kafka: Any, wait_until: Callable[..., Any], tmp_path: Any
) -> None:
    out = kafka.topic()
    dead = tmp_path / "dead.jsonl"
    config = f"""
pipelines:
  big:
    source: {{type: memory, channel: sizes}}
    sinks: [{{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: {out},
              options: {{max_request_size: 2000}}}}]
    dead_letter: {{type: file, path: "{dead}"}}
    retry: {{max_attempts: 2, initial_backoff: 0.01}}
    batch: {{size: 10}}
"""
    with running(config):
        channel("sizes").put({"n": 1}, {"n": 2, "blob": "x" * 5000}, {"n": 3})
        wait_until(lambda: dead.exists() and dead.read_text().strip(), 30, "the dead letter")
        delivered = kafka.read(out, 2)
    delivered += kafka.read_quietly(out, 0.5)[len(delivered) :]
    # 1 went out before the batch failed and again when its messages were retried one by
    # one: the bounded duplication at least once allows. 2 never reached the topic.
    assert sorted({json.loads(r.value)["n"] for r in delivered}) == [1, 3]
    (letter,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert letter["value"]["n"] == 2
    assert "SinkError: cannot send message" in letter["headers"]["onto-error"]
    assert "MessageSizeTooLarge" in letter["headers"]["onto-error"]
    assert letter["headers"]["onto-stage"] == "sinks[0] (kafka)"
