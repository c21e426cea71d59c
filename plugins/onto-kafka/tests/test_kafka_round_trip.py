"""Values and keys go through a real broker and come back as they were written."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka.partitioner.default import murmur2
from pydantic import BaseModel

from onto_core.builtin.memory import channel, drop_channels
from onto_core.models import DomainModel
from onto_core.testing import running

TIMINGS = "session_timeout_ms: 6000, heartbeat_interval_ms: 1000"


class Reading(BaseModel):
    """A pydantic model for the ``model`` codec."""

    sensor: str
    celsius: float


class Sensor(DomainModel, collection="kafka_test_sensors"):
    """A domain model for the ``model`` codec: camelCase keys on the wire, id kept."""

    display_name: str
    floor: int


@pytest.fixture(autouse=True)
def fresh_channels() -> Iterator[None]:
    drop_channels()
    yield
    drop_channels()


def pipelines(bootstrap: str, topic: str, name: str, sink_format: str, decode: str) -> str:
    """A producing pipeline (memory → kafka) and a consuming one (kafka → decode → memory)."""
    return f"""
  {name}_out:
    source: {{type: memory, channel: {name}-in}}
    sinks: [{{type: kafka, bootstrap_servers: "{bootstrap}", topic: {topic},
              value_format: {sink_format}}}]
    batch: {{size: 100}}
  {name}_in:
    source: {{type: kafka, bootstrap_servers: "{bootstrap}", topics: [{topic}],
              group_id: {topic}-group, {TIMINGS}}}
    processors: [{decode}]
    sinks: [{{type: memory, channel: {name}-got}}]
    batch: {{size: 100}}
"""


CASES: list[tuple[str, str, str, list[Any]]] = [
    (
        "json",
        "json",
        "{type: kafka_decode, value_format: json}",
        [
            {"order": 1, "items": ["tea", "ünïcødé ✓"], "total": 9.5},
            [1, [2, []]],
            "a JSON string",
            42,
        ],
    ),
    ("text", "str", "{type: kafka_decode, value_format: str}", ["plain text", "日本語 🙂", ""]),
    ("raw", "bytes", "{type: kafka_decode, value_format: bytes}", [b"\x00\xff\xfe", b"abc"]),
    (
        "reading",
        "json",
        f"{{type: kafka_decode, value_format: model, model: '{__name__}:Reading'}}",
        [Reading(sensor="s1", celsius=21.5), Reading(sensor="s2", celsius=-3.0)],
    ),
    (
        "sensor",
        "json",
        f"{{type: kafka_decode, value_format: model, model: '{__name__}:Sensor'}}",
        [Sensor(id="lobby", display_name="Lobby", floor=0)],
    ),
]


def test_every_codec_round_trips_through_the_broker(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    blocks = ""
    for name, sink_format, decode, _ in CASES:
        blocks += pipelines(kafka.bootstrap, kafka.topic(), name, sink_format, decode)
    with running(f"pipelines:{blocks}", timeout=60):
        for name, _, _, values in CASES:
            channel(f"{name}-in").put(*values)
        for name, _, _, values in CASES:
            wanted = len(values)
            got = channel(f"{name}-got")
            wait_until(lambda got=got, wanted=wanted: len(got.messages) >= wanted, 60, name)
    for name, _, _, values in CASES:
        assert channel(f"{name}-got").values() == values, name


def test_a_domain_model_keeps_its_id_and_fields(kafka: Any, wait_until: Callable[..., Any]) -> None:
    topic = kafka.topic()
    decode = f"{{type: kafka_decode, value_format: model, model: '{__name__}:Sensor'}}"
    with running(f"pipelines:{pipelines(kafka.bootstrap, topic, 'dm', 'json', decode)}"):
        channel("dm-in").put(Sensor(id="roof", display_name="Roof", floor=9))
        wait_until(lambda: channel("dm-got").messages, 60, "the sensor")
    (sensor,) = channel("dm-got").values()
    assert isinstance(sensor, Sensor)
    assert (sensor.id, sensor.display_name, sensor.floor) == ("roof", "Roof", 9)
    record = kafka.read(topic, 1)[0]
    assert b'"displayName":"Roof"' in record.value  # camelCase on the wire


def test_keys_and_headers_travel_with_the_record(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    from onto_core.protocols import Message

    topic = kafka.topic()
    config = f"""
pipelines:
  keyed:
    source: {{type: memory, channel: keyed-in}}
    sinks: [{{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: {topic},
              key: "{{region}}/{{id}}"}}]
  hexed:
    source: {{type: memory, channel: hexed-in}}
    sinks: [{{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: {topic},
              key_format: hex}}]
  back:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}],
              group_id: {topic}-g, key_format: hex, {TIMINGS}}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: keyed-got}}]
"""
    with running(config):
        channel("keyed-in").put(Message({"region": "eu", "id": 7}, headers={"trace": "abc"}))
        channel("hexed-in").put(Message({"id": 8}, key="00ff10"))
        channel("hexed-in").put(Message(None, key="0bad"))  # a tombstone: a key, no value
        wait_until(lambda: len(channel("keyed-got").messages) == 3, 60, "three records")
    got = channel("keyed-got").messages
    (tombstone,) = [m for m in got if m.value is None]
    assert tombstone.key == "0bad"
    by_id = {m.value["id"]: m for m in got if m.value is not None}
    assert bytes.fromhex(by_id[7].key or "") == b"eu/7"  # rendered key, read back as hex
    assert by_id[7].headers["trace"] == "abc"
    assert by_id[8].key == "00ff10"  # binary key bytes survive the round trip
    assert by_id[8].headers["kafka-topic"] == topic
    assert by_id[8].channel == topic


def test_records_of_one_key_arrive_in_the_order_they_were_written(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic(partitions=4)
    keys = [f"account-{i}" for i in range(12)]
    config = f"""
pipelines:
  write:
    source: {{type: memory, channel: ordered-in}}
    sinks: [{{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: {topic}}}]
    batch: {{size: 50}}
  read:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}],
              group_id: {topic}-g, {TIMINGS}}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: ordered-got}}]
    batch: {{size: 50}}
"""
    from onto_core.protocols import Message

    total = 600
    with running(config):
        channel("ordered-in").put(
            *(Message({"seq": n}, key=keys[n % len(keys)]) for n in range(total))
        )
        wait_until(lambda: len(channel("ordered-got").messages) >= total, 60, "every record")
    got = channel("ordered-got").messages
    assert len({m.value["seq"] for m in got}) == total
    partitions_used = {m.headers["kafka-partition"] for m in got}
    assert len(partitions_used) > 1, "the keys should spread over several partitions"
    for key in keys:
        seqs = [m.value["seq"] for m in got if m.key == key]
        assert seqs == sorted(seqs), f"{key} arrived out of order"
        (partition,) = {m.headers["kafka-partition"] for m in got if m.key == key}
        # Where Kafka's default partitioner (murmur2, as in the Java client) puts the key.
        assert int(partition) == (murmur2(key.encode()) & 0x7FFFFFFF) % 4


def test_a_pattern_subscribes_to_every_matching_topic(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    first = kafka.topic(prefix="onto-test-pattern")
    second = kafka.topic(prefix="onto-test-pattern")
    other = kafka.topic(prefix="onto-test-other")
    for topic in (first, second, other):
        kafka.produce(topic, [(None, json.dumps({"topic": topic}).encode())])
    config = f"""
pipelines:
  matched:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", pattern: "onto-test-pattern-.*",
              group_id: pattern-{first}, {TIMINGS}}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: matched}}]
"""
    with running(config):
        wait_until(lambda: len(channel("matched").messages) >= 2, 60, "both matching topics")
    topics = {m.value["topic"] for m in channel("matched").messages}
    assert {first, second} <= topics
    assert other not in topics


def test_start_from_earliest_reads_again_what_the_group_already_committed(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic()
    kafka.produce(topic, [(None, json.dumps({"n": n}).encode()) for n in range(5)])

    def config(start: str) -> str:
        return f"""
pipelines:
  replay:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}],
              group_id: {topic}-g, start_from: {start}, commit_interval_ms: 0, {TIMINGS}}}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: replay-{start}}}]
"""

    with running(config("committed")):
        wait_until(lambda: len(channel("replay-committed").messages) == 5, 60, "first read")
        wait_until(lambda: kafka.committed(f"{topic}-g") == {0: 5}, 30, "the commit")
    with running(config("earliest")):
        wait_until(lambda: len(channel("replay-earliest").messages) == 5, 60, "the replay")
    assert [m.value["n"] for m in channel("replay-earliest").messages] == list(range(5))
