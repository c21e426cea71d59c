"""exactly_once Kafka → Kafka: outputs and consumed offsets commit in one transaction.

What is checked holds on Apache Kafka. The Tansu test broker accepts transactions and
commits their offsets atomically, but its read_committed readers still see the records
of aborted transactions (it does not isolate them); where that shows, the expected
output counts those records explicitly (``KafkaBroker.isolates_transactions``).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from onto_core import plugins
from onto_core.config import parse_config
from onto_core.errors import ConfigError
from onto_core.hookspecs import hookimpl
from onto_core.protocols import Message, Positions
from onto_core.testing import running
from onto_kafka import KafkaSink

TIMINGS = "session_timeout_ms: 6000, heartbeat_interval_ms: 1000"


class FlakyKafkaSink(KafkaSink):
    """The kafka sink, made to fail inside the transaction (after its records were sent)
    whenever a write holds the message ``{"n": 25}`` and failures are left."""

    failures_left: ClassVar[int] = 0
    aborted_records: ClassVar[int] = 0
    attempts_on_25: ClassVar[int] = 0

    def _confirm(self, producer: Any, futures: list[tuple[Message, Any]]) -> None:
        super()._confirm(producer, futures)
        if any(m.value == {"n": 25} for m, _ in futures):
            FlakyKafkaSink.attempts_on_25 += 1
            if FlakyKafkaSink.failures_left > 0:
                FlakyKafkaSink.failures_left -= 1
                FlakyKafkaSink.aborted_records += len(futures)
                raise ConnectionError("the link dropped before the commit")


class TestComponents:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.sink("flaky_kafka", FlakyKafkaSink)


@pytest.fixture(autouse=True)
def components() -> Iterator[None]:
    FlakyKafkaSink.failures_left = 0
    FlakyKafkaSink.aborted_records = 0
    FlakyKafkaSink.attempts_on_25 = 0
    name = plugins.register_plugin(TestComponents(), name="kafka-eos-tests")
    yield
    plugins.unregister_plugin(name)


def eos_config(bootstrap: str, source_topic: str, out_topic: str, group: str, attempts: int) -> str:
    return f"""
pipelines:
  copy:
    source: {{type: kafka, bootstrap_servers: "{bootstrap}", topics: [{source_topic}],
              group_id: {group}, {TIMINGS}}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: flaky_kafka, bootstrap_servers: "{bootstrap}", topic: {out_topic},
              value_format: json}}]
    guarantee: exactly_once
    retry: {{max_attempts: {attempts}, initial_backoff: 0.01, max_backoff: 0.05}}
    batch: {{size: 10}}
"""


def produce_numbers(kafka: Any, topic: str, count: int) -> dict[int, int]:
    """Write ``{"n": i}`` for i < count; the number of records per partition."""
    kafka.produce(topic, [(f"k{n}".encode(), json.dumps({"n": n}).encode()) for n in range(count)])
    per_partition: Counter[int] = Counter(r.partition for r in kafka.read(topic, count))
    return dict(per_partition)


def output_numbers(kafka: Any, topic: str, count: int) -> list[int]:
    records = kafka.read(topic, count, isolation="read_committed")
    records += kafka.read_quietly(topic, 0.5)[len(records) :]
    return [json.loads(r.value)["n"] for r in records]


def test_offsets_commit_with_the_outputs_and_each_input_is_written_once(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    source, out = kafka.topic(partitions=2), kafka.topic()
    group = f"{source}-g"
    ends = produce_numbers(kafka, source, 40)
    with running(eos_config(kafka.bootstrap, source, out, group, attempts=5)):
        wait_until(lambda: kafka.committed(group) == ends, 60, "every offset committed")
    numbers = output_numbers(kafka, out, 40)
    assert Counter(numbers) == Counter(range(40))  # no duplicate, nothing missing


def even_only(value: dict[str, int]) -> dict[str, int] | None:
    """Drops odd numbers: their offsets must commit all the same."""
    return value if value["n"] % 2 == 0 else None


def test_offsets_of_filtered_messages_commit_in_a_transaction_without_outputs(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    source, out = kafka.topic(partitions=2), kafka.topic()
    group = f"{source}-g"
    ends = produce_numbers(kafka, source, 20)
    config = eos_config(kafka.bootstrap, source, out, group, attempts=3).replace(
        "processors: [{type: kafka_decode}]",
        f"processors: [{{type: kafka_decode}}, {{type: map, function: '{__name__}:even_only'}}]",
    )
    with running(config):
        wait_until(lambda: kafka.committed(group) == ends, 60, "every offset committed")
    assert sorted(output_numbers(kafka, out, 10)) == list(range(0, 20, 2))


def test_an_aborted_transaction_commits_no_offset_and_its_messages_come_again(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    source, out = kafka.topic(partitions=2), kafka.topic()
    group = f"{source}-g"
    ends = produce_numbers(kafka, source, 40)
    twenty_five = next(r for r in kafka.read(source, 40) if json.loads(r.value) == {"n": 25})
    # Two attempts per message and no dead-letter sink: the failing transactions are
    # aborted, the message is nacked, and the source delivers it again, four times over.
    FlakyKafkaSink.failures_left = 4
    with running(eos_config(kafka.bootstrap, source, out, group, attempts=2)):
        wait_until(lambda: FlakyKafkaSink.attempts_on_25 >= 3, 60, "failed transactions")
        # While the transactions with 25 are aborted, its partition stays before it.
        assert kafka.committed(group).get(twenty_five.partition, 0) <= twenty_five.offset
        wait_until(lambda: kafka.committed(group) == ends, 60, "every offset committed")
    assert FlakyKafkaSink.failures_left == 0
    aborted = 0 if kafka.isolates_transactions() else FlakyKafkaSink.aborted_records
    numbers = output_numbers(kafka, out, 40 + aborted)
    assert set(numbers) == set(range(40))  # nothing missing after recovery
    # Committed transactions hold each input once; on a broker that does not isolate,
    # the only extra records are those of the aborted transactions.
    assert len(numbers) == 40 + aborted


def test_exactly_once_is_accepted_only_when_both_ends_are_kafka(kafka: Any) -> None:
    kafka_to_kafka = f"""
pipelines:
  copy:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [a], group_id: g}}
    sinks: [{{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: b}}]
    guarantee: exactly_once
"""
    assert parse_config(kafka_to_kafka).pipelines["copy"].guarantee.value == "exactly_once"
    kafka_to_file = kafka_to_kafka.replace(
        f'{{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: b}}',
        "{type: file, path: out.jsonl}",
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(kafka_to_file)
    assert "sink 'file' supports only at_most_once, at_least_once" in str(caught.value)


class ForeignPositionsSource:
    """A source of another system, handing out positions the kafka sink cannot commit."""

    def __init__(self) -> None:
        self.committed = 0

    def positions(self, consumed: list[Message], committer: object) -> Positions:
        def committed() -> None:
            self.committed += 1

        return Positions(system="postgres", value={"lsn": 42}, committed=committed)


def test_the_kafka_sink_refuses_positions_it_cannot_commit_and_commits_nothing(
    kafka: Any,
) -> None:
    import logging

    from onto_core.errors import SinkError
    from onto_core.protocols import RuntimeContext

    sink = KafkaSink(KafkaSink.Config(bootstrap_servers=kafka.bootstrap, topic="refused"))
    sink.start(RuntimeContext("copy", "sinks[0] (kafka)", logging.getLogger("test")))
    try:
        with pytest.raises(SinkError, match="needs a source that hands out its positions"):
            sink.write_exactly_once([Message({"n": 1})], [Message({"n": 1})], object())
        source = ForeignPositionsSource()
        with pytest.raises(SinkError, match="gives positions of 'postgres'"):
            sink.write_exactly_once([Message({"n": 1})], [Message({"n": 1})], source)
        assert source.committed == 0
    finally:
        sink.close()
