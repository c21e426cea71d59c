"""``partitions: all``: every worker reads every partition itself, from a position fixed
before its start returns, and commits what it processed under the shared group id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from onto_core.builtin.memory import channel, drop_channels
from onto_core.config import parse_config
from onto_core.errors import ConfigError
from onto_core.protocols import Message, RuntimeContext
from onto_core.testing import running
from onto_kafka import KafkaSource

TIMINGS = "session_timeout_ms: 6000, heartbeat_interval_ms: 1000"


@pytest.fixture(autouse=True)
def fresh_channels() -> Iterator[None]:
    drop_channels()
    yield
    drop_channels()


def records(first: int, count: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{n}".encode(), str(n).encode()) for n in range(first, first + count)]


def every_partition(bootstrap: str, topic: str, group: str, *workers: str) -> str:
    """A config with one ``partitions: all`` pipeline per worker name, all in ``group``."""
    pipelines = "".join(
        f"""
  {worker}:
    source: {{type: kafka, bootstrap_servers: "{bootstrap}", topics: [{topic}],
              group_id: {group}, partitions: all, commit_interval_ms: 0, {TIMINGS}}}
    sinks: [{{type: memory, channel: {worker}}}]
"""
        for worker in workers
    )
    return "pipelines:" + pipelines


def values(name: str) -> list[int]:
    return [int(m.value) for m in channel(name).messages]


def test_every_worker_reads_every_record_of_every_partition(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic(partitions=4)
    kafka.produce(topic, records(0, 40))
    config = every_partition(kafka.bootstrap, topic, f"{topic}-views", "first", "second")
    with running(config):
        for worker in ("first", "second"):
            wait_until(lambda w=worker: len(values(w)) >= 40, 60, f"{worker} to read 40 records")
        kafka.produce(topic, records(40, 20))
        for worker in ("first", "second"):
            wait_until(lambda w=worker: len(values(w)) >= 60, 60, f"{worker} to read 60 records")
    for worker in ("first", "second"):
        assert sorted(values(worker)) == list(range(60))
    partitions = {m.headers["kafka-partition"] for m in channel("first").messages}
    assert partitions == {"0", "1", "2", "3"}


def test_a_restart_resumes_after_what_was_acked_and_misses_nothing(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic(partitions=4)
    group = f"{topic}-views"
    kafka.produce(topic, records(0, 20))
    config = every_partition(kafka.bootstrap, topic, group, "worker")
    with running(config):
        wait_until(lambda: len(values("worker")) >= 20, 60, "the first 20 records")
    # Stopping committed the positions of everything acked: one past each partition's last.
    ends: dict[int, int] = {}
    for message in channel("worker").messages:
        partition, offset = (
            int(message.headers["kafka-partition"]),
            int(message.headers["kafka-offset"]),
        )
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    assert kafka.committed(group) == ends

    kafka.produce(topic, records(20, 20))
    drop_channels()
    with running(config):
        wait_until(lambda: len(values("worker")) >= 20, 60, "the 20 records written since")
    # Records of one partition arrive in order: an old one read again would have come first.
    assert sorted(values("worker")) == list(range(20, 40))


def start(config: KafkaSource.Config) -> KafkaSource:
    source = KafkaSource(config)
    source.start(RuntimeContext("views", "source", logging.getLogger("test")))
    return source


async def read(source: KafkaSource, count: int, timeout: float = 30) -> list[Message]:
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got += await source.read_batch(count - len(got))
    return got


@pytest.mark.parametrize(
    "settings",
    [{"start_from": "latest"}, {"start_from": "committed", "offset_reset": "latest"}],
    ids=["start_from-latest", "offset_reset-latest"],
)
def test_records_written_right_after_the_start_are_read_even_when_starting_at_the_end(
    kafka: Any, settings: dict[str, str]
) -> None:
    # What the sharded view relies on: it builds its views once the source has started,
    # and every record written after that must reach it, however late the first poll is.
    topic = kafka.topic(partitions=2)
    for n in range(3):
        kafka.produce(topic, records(n, 1))  # before the start: skipped
    source = start(
        KafkaSource.Config(
            bootstrap_servers=[kafka.bootstrap],
            topics=[topic],
            group_id=f"{topic}-views",
            partitions="all",
            **settings,  # type: ignore[arg-type]
        )
    )
    try:
        kafka.produce(topic, records(100, 10))
        got = asyncio.run(read(source, 10))
    finally:
        source.close()
    assert sorted(int(m.value) for m in got) == list(range(100, 110))


def test_only_partitions_group_splits_the_input_between_processes() -> None:
    def config(partitions: str) -> KafkaSource.Config:
        return KafkaSource.Config(topics=["changes"], group_id="views", partitions=partitions)  # type: ignore[arg-type]

    assert KafkaSource.splits_input(config("group")) is True
    assert KafkaSource.splits_input(config("all")) is False
    assert KafkaSource.Config(topics=["changes"], group_id="views").partitions == "group"


def test_a_pattern_is_refused_with_partitions_all() -> None:
    config = """
pipelines:
  views:
    source: {type: kafka, pattern: "changes-.*", group_id: views, partitions: all}
    sinks: [{type: stdout}]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(config, "views.yaml")
    message = str(caught.value)
    assert "pipelines.views.source" in message
    assert "with `partitions: all` name the topics in `topics`" in message


def test_a_missing_topic_fails_the_start_naming_it(kafka: Any) -> None:
    from onto_core.errors import SourceError

    config = KafkaSource.Config(
        bootstrap_servers=[kafka.bootstrap],
        topics=["onto-test-never-created"],
        group_id="views",
        partitions="all",
    )
    with pytest.raises(SourceError) as caught:
        start(config)
    assert "topic 'onto-test-never-created' does not exist at" in str(caught.value)
