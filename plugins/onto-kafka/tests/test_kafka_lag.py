"""Consumer lag in the runtime's Prometheus metrics: up while a consumer does not keep up,
back to 0 once it has caught up."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from kafka import KafkaProducer  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, ConfigDict

from onto_core import plugins
from onto_core.hookspecs import hookimpl
from onto_core.protocols import Guarantee, Message
from onto_core.testing import running

TIMINGS = "session_timeout_ms: 6000, heartbeat_interval_ms: 1000"


class HeldSink:
    """Holds every write while ``closed`` is set (the consumer stops keeping up)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset({Guarantee.AT_LEAST_ONCE})
    open = threading.Event()
    written: ClassVar[list[Message]] = []

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        self.config = config

    def write(self, messages: list[Message]) -> None:
        if not HeldSink.open.wait(60):
            raise TimeoutError("the test never opened the held sink")
        HeldSink.written.extend(messages)


class LagTestComponents:
    @hookimpl
    def register_components(self, register: plugins.ComponentRegistrar) -> None:
        register.sink("held", HeldSink)


@pytest.fixture(autouse=True)
def components() -> Iterator[None]:
    HeldSink.open.clear()
    HeldSink.written = []
    name = plugins.register_plugin(LagTestComponents(), name="kafka-lag-tests")
    yield
    HeldSink.open.set()
    plugins.unregister_plugin(name)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def lag_by_partition(url: str) -> dict[str, float]:
    """``onto_source_lag_messages`` by partition, scraped from ``url``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "onto_source_lag_messages":
            return {s.labels["partition"]: s.value for s in family.samples}
    return {}


def produce_one_by_one(bootstrap: str, topic: str, count: int) -> None:
    """``count`` records over partitions 0 and 1, each in a batch of its own.

    Tansu reports wrong end offsets after a multi-record batch (it counts the batch as
    one record); a record per batch keeps them right, as a real broker's always are.
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    try:
        for n in range(count):
            value = json.dumps({"n": n}).encode()
            producer.send(topic, key=f"k{n}".encode(), value=value, partition=n % 2).get(30)
    finally:
        producer.close(5)


def test_consumer_lag_rises_while_the_consumer_lags_and_returns_to_zero(
    kafka: Any, wait_until: Callable[..., Any]
) -> None:
    topic = kafka.topic(partitions=2)
    port = free_port()
    config = f"""
runtime: {{metrics: {{port: {port}}}}}
pipelines:
  lagging:
    source: {{type: kafka, bootstrap_servers: "{kafka.bootstrap}", topics: [{topic}],
              group_id: {topic}-g, {TIMINGS}}}
    sinks: [{{type: held}}]
    buffer: 10
    batch: {{size: 5}}
"""
    url = f"http://127.0.0.1:{port}/metrics"
    with running(config):
        wait_until(lambda: len(lag_by_partition(url)) == 2, 30, "both partitions assigned")
        produce_one_by_one(kafka.bootstrap, topic, 40)

        behind = wait_until(
            lambda: (lag := lag_by_partition(url)) and sum(lag.values()) == 40 and lag,
            30,
            "a lag of 40 records while the sink holds every write",
        )
        assert behind == {f"{topic}/0": 20, f"{topic}/1": 20}

        HeldSink.open.set()
        wait_until(lambda: len(HeldSink.written) == 40, 30, "every record written")
        wait_until(
            lambda: lag_by_partition(url) == {f"{topic}/0": 0, f"{topic}/1": 0},
            30,
            "the lag back at 0",
        )
