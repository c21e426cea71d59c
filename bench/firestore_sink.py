"""View documents written per second through the firestore sink, against a plain client
loop, and change → document latency (p50/p99) seen by an ``on_snapshot`` listener.

Starts ``@firestore-emulator/server`` on 127.0.0.1 (``npm ci --prefix
plugins/onto-firestore/emulator`` first) unless ``FIRESTORE_EMULATOR_HOST`` is set.

    uv run --all-packages python bench/firestore_sink.py --views 2000 --batch 200 --rounds 3

Throughput: both sides write the same ``--views`` view documents (with a version field)
at ``rooms/{room_id}``; the sink commits a batch at a time with its version checks, the
baseline calls ``document.set`` once per view, as a hand-written loop would. Latency: one
update at a time through a running pipeline (memory source → firestore sink), timed from
``put`` until a snapshot listener on the document reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from onto_core.builtin.memory import channel
from onto_core.protocols import Message, RuntimeContext
from onto_core.testing import running
from onto_firestore import FirestoreSink, make_client

EMULATOR = Path(__file__).resolve().parents[1] / "plugins" / "onto-firestore" / "emulator"


def start_emulator() -> tuple[str, subprocess.Popen[str] | None]:
    if host := os.environ.get("FIRESTORE_EMULATOR_HOST"):
        return host, None
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is needed to run the Firestore emulator")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [node, str(EMULATOR / "launch.js"), str(port)],
        cwd=EMULATOR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "listening ..." once it accepts calls
    if not line.startswith("listening"):
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return f"127.0.0.1:{port}", process


def update(room: str, version: int) -> dict[str, Any]:
    return {
        "view": "room",
        "key": room,
        "fields": {"room_id": room},
        "version": version,
        "removed": False,
        "data": {"name": f"room {room}", "seats": version % 50, "open": True},
    }


def sink_rate(host: str, views: int, batch: int) -> float:
    project = f"bench-{uuid.uuid4().hex[:8]}"
    sink = FirestoreSink(
        FirestoreSink.Config(path="rooms/{room_id}", project=project, emulator_host=host)
    )
    messages = [Message(update(f"r{i}", 1)) for i in range(views)]

    async def run() -> float:
        await sink.start(RuntimeContext("bench", "sink", logging.getLogger("bench")))
        began = time.perf_counter()
        for start in range(0, views, batch):
            await sink.write(messages[start : start + batch])
        elapsed = time.perf_counter() - began
        await sink.close()
        return views / elapsed

    return asyncio.run(run())


def loop_rate(host: str, views: int) -> float:
    client = make_client(f"bench-{uuid.uuid4().hex[:8]}", emulator_host=host)
    began = time.perf_counter()
    for i in range(views):
        value = update(f"r{i}", 1)
        client.document(f"rooms/{value['fields']['room_id']}").set(
            {**value["data"], "_version": value["version"]}
        )
    elapsed = time.perf_counter() - began
    client.close()  # type: ignore[no-untyped-call]
    return views / elapsed


def latencies(host: str, changes: int) -> list[float]:
    project = f"bench-{uuid.uuid4().hex[:8]}"
    inbox = f"bench-{project}"
    config = f"""
pipelines:
  rooms:
    source: {{type: memory, channel: {inbox}}}
    sinks:
      - {{type: firestore, path: "rooms/{{room_id}}", project: {project},
          emulator_host: "{host}"}}
"""
    client = make_client(project, emulator_host=host)
    seen = threading.Condition()
    latest = {"version": 0}

    def on_snapshot(docs: Any, _changes: Any, _read_time: Any) -> None:
        with seen:
            for snap in docs:
                if snap.exists:
                    latest["version"] = int((snap.to_dict() or {}).get("_version", 0))
            seen.notify_all()

    watch = client.document("rooms/r1").on_snapshot(on_snapshot)
    found: list[float] = []
    with running(config):
        for version in range(1, changes + 1):
            began = time.perf_counter()
            channel(inbox).put(update("r1", version))
            with seen:
                if not seen.wait_for(lambda v=version: latest["version"] >= v, timeout=30):
                    raise SystemExit(f"version {version} never reached the listener")
            found.append(time.perf_counter() - began)
    watch.unsubscribe()
    client.close()  # type: ignore[no-untyped-call]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--views", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    host, process = start_emulator()
    try:
        ours, plain = [], []
        for _ in range(args.rounds):  # interleaved: both sides see the same machine load
            ours.append(sink_rate(host, args.views, args.batch))
            plain.append(loop_rate(host, args.views))
        lat = sorted(latencies(host, args.changes))
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
    o, p = statistics.median(ours), statistics.median(plain)
    p50 = lat[len(lat) // 2] * 1e3
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
    print(f"sink: {o:.0f} views/s, plain loop: {p:.0f} views/s (medians of {args.rounds})")
    print(f"change -> document latency: p50={p50:.2f}ms p99={p99:.2f}ms over {len(lat)}")
    print(
        f"RESULT firestore_sink onto={o:.0f}/s baseline={p:.0f}/s p50={p50:.2f}ms "
        f"p99={p99:.2f}ms ratio={o / p:.2f} target=>=1.0"
    )


if __name__ == "__main__":
    main()
