"""Records as other producers write them: librdkafka (confluent-kafka) with null and binary
header values and lz4/zstd/snappy batches, and batches no client can read."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import confluent_kafka
import pytest
from kafka import KafkaProducer
from kafka.record import default_records

from onto_core.builtin.memory import channel, drop_channels
from onto_core.testing import json_lines, running

TIMINGS = "session_timeout_ms: 6000, heartbeat_interval_ms: 1000"


@pytest.fixture(autouse=True)
def fresh_channels() -> Iterator[None]:
    drop_channels()
    yield
    drop_channels()


def librdkafka_produce(
    bootstrap: str,
    topic: str,
    values: list[bytes],
    headers: list[tuple[str, bytes | None]] | None = None,
    compression: str = "none",
) -> None:
    """Write ``values`` through confluent-kafka (librdkafka) as one batch where it can."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "compression.type": compression, "linger.ms": 100}
    )
    failed: list[Any] = []
    for value in values:
        producer.produce(
            topic,
            value=value,
            key=b"k",
            headers=headers or [],
            on_delivery=lambda err, _msg: failed.append(err) if err else None,
        )
    assert producer.flush(30) == 0, "librdkafka did not deliver every record"
    assert not failed, failed


def numbered(start: int, stop: int) -> list[bytes]:
    return [json.dumps({"n": n, "pad": "x" * 200}).encode() for n in range(start, stop)]


def source(bootstrap: str, topic: str) -> str:
    return (
        f'{{type: kafka, bootstrap_servers: "{bootstrap}", topics: [{topic}],'
        f" group_id: {topic}-g, commit_interval_ms: 0, {TIMINGS}}}"
    )


def test_null_and_binary_header_values_are_delivered_and_reading_goes_on(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic()
    librdkafka_produce(kafka.bootstrap, topic, numbered(0, 3))
    librdkafka_produce(
        kafka.bootstrap,
        topic,
        numbered(3, 5),
        headers=[("trace", b"abc"), ("gone", None), ("blob", b"\xff\x00\xfe")],
    )
    librdkafka_produce(kafka.bootstrap, topic, numbered(5, 8))
    config = f"""
pipelines:
  foreign:
    source: {source(kafka.bootstrap, topic)}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: got}}]
"""
    with running(config):
        wait_until(lambda: len(channel("got").messages) == 8, 30, "all eight records")
        wait_until(lambda: kafka.committed(f"{topic}-g").get(0) == 8, 30, "offset 8 committed")
    messages = channel("got").messages
    assert [m.value["n"] for m in messages] == list(range(8))
    headers = messages[3].headers
    assert headers["trace"] == "abc"
    assert headers["gone"] == ""
    assert headers["kafka-null-headers"] == "gone"
    assert base64.b64decode(headers["blob"]) == b"\xff\x00\xfe"
    assert headers["kafka-base64-headers"] == "blob"
    assert "kafka-null-headers" not in messages[0].headers


@pytest.mark.parametrize("codec", ["lz4", "zstd", "snappy"])
def test_batches_compressed_by_librdkafka_are_all_delivered(
    kafka: Any, wait_until: Callable[..., Any], codec: str
) -> None:
    topic = kafka.topic(partitions=2)
    librdkafka_produce(kafka.bootstrap, topic, numbered(0, 50), compression=codec)
    config = f"""
pipelines:
  compressed:
    source: {source(kafka.bootstrap, topic)}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: got}}]
    batch: {{size: 100}}
"""
    with running(config):
        wait_until(lambda: len(channel("got").messages) >= 50, 30, f"fifty {codec} records")
    assert sorted(m.value["n"] for m in channel("got").messages) == list(range(50))


def test_an_unreadable_batch_is_dead_lettered_with_its_position_and_reading_goes_on(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic()
    dlq = kafka.topic(prefix="onto-test-dlq")
    librdkafka_produce(kafka.bootstrap, topic, numbered(0, 3))
    # A batch that says lz4 but holds bytes no lz4 decoder reads (the CRC is right).
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, compression_type="lz4")
    try:
        with mock.patch.object(default_records, "lz4_encode", return_value=b"not lz4"):
            producer.send(topic, value=b"y" * 500).get(10)
    finally:
        producer.close(5)
    librdkafka_produce(kafka.bootstrap, topic, numbered(4, 7), compression="lz4")
    config = f"""
pipelines:
  foreign:
    source: {source(kafka.bootstrap, topic)}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: got}}]
    dead_letter: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: {dlq}}}
    retry: {{max_attempts: 2, initial_backoff: 0.01}}
"""
    with running(config):
        wait_until(lambda: len(channel("got").messages) == 6, 30, "the six readable records")
        wait_until(lambda: kafka.committed(f"{topic}-g").get(0) == 7, 30, "offset 7 committed")
    assert [m.value["n"] for m in channel("got").messages] == [0, 1, 2, 4, 5, 6]

    (letter,) = kafka.read(dlq, 1)
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["kafka-topic"] == topic
    assert headers["kafka-partition"] == "0"
    assert headers["kafka-offset"] == "3"
    assert headers["kafka-last-offset"] == "3"
    assert "LZ4" in headers["kafka-error"]
    assert headers["onto-error"].startswith(f"ProcessorError: records {topic}/0@3 cannot be read")
    assert json.loads(letter.value)["offset"] == 3


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_the_sink_writes_every_compression_type_and_reads_it_back(
    kafka: Any, wait_until: Callable[..., Any], codec: str
) -> None:
    topic = kafka.topic()
    config = f"""
pipelines:
  out:
    source: {{type: memory, channel: in}}
    sinks: [{{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topic: {topic},
              compression_type: {codec}}}]
    batch: {{size: 100}}
  back:
    source: {source(kafka.bootstrap, topic)}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: memory, channel: got}}]
    batch: {{size: 100}}
"""
    values = [{"n": n, "pad": "compressible " * 20} for n in range(30)]
    with running(config):
        channel("in").put(*values)
        wait_until(lambda: len(channel("got").messages) >= 30, 30, f"thirty {codec} records")
    assert [m.value for m in channel("got").messages] == values


# kafka-python without an lz4 library, as it ran before lz4 was a dependency of onto-kafka.
WITHOUT_LZ4 = """
import sys, runpy
import kafka.codec
kafka.codec.has_lz4 = lambda: False
sys.argv = ["onto", "run", sys.argv[1]]
runpy.run_module("onto_core", run_name="__main__")
"""


@pytest.mark.slow
def test_a_batch_in_a_codec_the_client_lacks_is_dead_lettered_and_sigterm_drains_in_time(
    kafka: Any, wait_until: Callable[..., Any], tmp_path: Path
) -> None:
    topic = kafka.topic()
    librdkafka_produce(kafka.bootstrap, topic, numbered(0, 3))
    librdkafka_produce(kafka.bootstrap, topic, numbered(3, 6), compression="lz4")
    librdkafka_produce(kafka.bootstrap, topic, numbered(6, 9))
    out, letters = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    config = tmp_path / "onto.yaml"
    config.write_text(f"""
runtime: {{drain_timeout: 3}}
pipelines:
  foreign:
    source: {source(kafka.bootstrap, topic)}
    processors: [{{type: kafka_decode}}]
    sinks: [{{type: file, path: "{out}"}}]
    dead_letter: {{type: file, path: "{letters}"}}
    retry: {{max_attempts: 1}}
""")
    env = {k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"}
    with (tmp_path / "onto.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", WITHOUT_LZ4, str(config)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: len(json_lines(out)) == 6, 60, "the six readable records")
        wait_until(lambda: json_lines(letters), 10, "the dead letter")
        wait_until(lambda: kafka.committed(f"{topic}-g").get(0) == 9, 30, "offset 9 committed")
        process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        process.wait(15)
        assert time.monotonic() - sent < 3 + 1, "SIGTERM took longer than drain_timeout"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, (tmp_path / "onto.log").read_text()
    assert [r["value"]["n"] for r in json_lines(out)] == [0, 1, 2, 6, 7, 8]
    (letter,) = json_lines(letters)
    assert letter["headers"]["kafka-offset"] == "3"
    assert letter["headers"]["kafka-last-offset"] == "5"
    assert letter["headers"]["kafka-error"] == (
        "UnsupportedCodecError: Libraries for lz4 compression codec not found"
    )
