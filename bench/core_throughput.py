"""Core throughput: memory source → map processor → memory sink, against a plain loop.

Both sides apply the same transformation to the same payloads in the same run: decode a
small JSON order, add its total, encode it again. The baseline is a bare ``for`` loop;
onto adds messages, buffering, batching, acks and metrics around the same function.

    uv run python bench/core_throughput.py [--messages 200000] [--batch 1000] [--metrics]

``--metrics`` also runs onto serving Prometheus metrics (``runtime.metrics`` on a free
port) while another process scrapes them every 0.1 s, as Prometheus would (150 times as
often as its default), and reports it against onto without.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from typing import Any

from onto_core.builtin.memory import channel, drop_channels
from onto_core.config import parse_config
from onto_core.runtime import Runtime

# Both sides keep the newest outputs only, as a real destination would not be held in memory.
KEEP = 1000


def transform(payload: bytes) -> bytes:
    order = json.loads(payload)
    order["total"] = round(order["price"] * order["quantity"], 2)
    return json.dumps(order).encode()


def payloads(count: int) -> list[bytes]:
    return [
        json.dumps({"id": i, "sku": f"sku-{i % 97}", "price": 9.99, "quantity": i % 5 + 1}).encode()
        for i in range(count)
    ]


def baseline(values: list[bytes]) -> float:
    started = time.perf_counter()
    out: deque[bytes] = deque(maxlen=KEEP)
    for value in values:
        out.append(transform(value))
    elapsed = time.perf_counter() - started
    assert out[-1] == transform(values[-1])
    return len(values) / elapsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


SCRAPER = """
import sys, time, urllib.request
while True:
    time.sleep(0.1)
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5) as response:
            if b"onto_messages_total" in response.read():
                print("scraped", flush=True)
    except OSError:
        pass  # not listening yet, or stopped
"""


def onto(values: list[bytes], batch: int, metrics: bool = False) -> float:
    drop_channels()
    source = channel("bench-in")
    source.put(*values)
    source.close()
    port = free_port()
    serve = f"runtime: {{metrics: {{port: {port}}}}}" if metrics else ""
    config = parse_config(f"""
{serve}
pipelines:
  bench:
    source: {{type: memory, channel: bench-in, keep_acked: {KEEP}}}
    processors: [{{type: map, function: "{__name__}:transform"}}]
    sinks: [{{type: memory, channel: bench-out, keep_last: {KEEP}}}]
    buffer: {batch * 10}
    batch: {{size: {batch}}}
""")
    runtime = Runtime(config)
    url = f"http://127.0.0.1:{port}/metrics"
    scraper = (
        subprocess.Popen([sys.executable, "-c", SCRAPER, url], stdout=subprocess.PIPE, text=True)
        if metrics
        else None
    )
    started = time.perf_counter()
    asyncio.run(runtime.run())
    elapsed = time.perf_counter() - started
    if scraper is not None:
        scraper.terminate()
        scrapes = scraper.communicate(timeout=30)[0].count("scraped")
        assert scrapes, "no scrape got through during the run"
    assert runtime.metrics()["bench"]["out"] == len(values)
    assert channel("bench-out").messages[-1].value == transform(values[-1])
    return len(values) / elapsed


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each; medians compared.")
    parser.add_argument(
        "--metrics", action="store_true", help="Also run with metrics served and scraped."
    )
    args = parser.parse_args(argv)
    values = payloads(args.messages)
    baseline(values[: args.messages // 10])  # warm up
    plains, ours_all, served_all = [], [], []
    for _ in range(args.rounds):  # interleaved, so both see the same machine
        plains.append(baseline(values))
        ours_all.append(onto(values, args.batch))
        if args.metrics:
            served_all.append(onto(values, args.batch, metrics=True))
    plain, ours = statistics.median(plains), statistics.median(ours_all)
    ratio = ours / plain
    print(f"baseline (plain loop): {plain:,.0f} msg/s")
    print(f"onto (batch {args.batch}): {ours:,.0f} msg/s")
    if args.metrics:
        served = statistics.median(served_all)
        print(f"onto with metrics served and scraped every 0.1 s: {served:,.0f} msg/s")
        print(
            f"RESULT core_throughput_metrics on={served:.0f}/s off={ours:.0f}/s "
            f"ratio={served / ours:.2f} target=>=0.95"
        )
    print(
        f"RESULT core_throughput onto={ours:.0f}/s baseline={plain:.0f}/s "
        f"ratio={ratio:.2f} target=>=0.9"
    )


if __name__ == "__main__":
    main()
