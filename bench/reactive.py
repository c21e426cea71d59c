"""Reactive latency: one ticket change → the emitted MeetingSession views, by store size.

Runs the meeting-room pipeline (sqlite change feed → view processor → a timing sink) in
this process, with 100 and then 10,000 meetings stored, and times each of ``--changes``
attendance changes from the write to the sink receiving the views. The two runs are each
other's baseline: the target is a latency that does not grow with the store.

    uv run python bench/reactive.py [--changes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

sys.path[:0] = [
    str(Path(__file__).resolve().parents[1]),
    str(Path(__file__).resolve().parents[1] / "tests"),
]

from meeting_fixtures import bulk_meetings  # noqa: E402

from examples.meeting_room.models import Ticket  # noqa: E402
from onto_core import plugins  # noqa: E402
from onto_core.builtin.sqlite import SqliteDatastore  # noqa: E402
from onto_core.config import parse_config  # noqa: E402
from onto_core.hookspecs import hookimpl  # noqa: E402
from onto_core.models import use_datastore  # noqa: E402
from onto_core.protocols import Guarantee, Message  # noqa: E402
from onto_core.runtime import Runtime  # noqa: E402

arrivals: dict[str, asyncio.Future[float]] = {}


class TimingSink:
    """Resolves the future waiting for a meeting's views with the time they arrived."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset({Guarantee.AT_LEAST_ONCE})

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        pass

    async def write(self, messages: list[Message]) -> None:
        now = time.perf_counter()
        for message in messages:
            waiting = arrivals.get(message.value["fields"]["meeting_id"])
            if waiting is not None and not waiting.done():
                waiting.set_result(now)


class BenchComponents:
    @hookimpl
    def register_components(self, register: Any) -> None:
        register.sink("timing", TimingSink)


async def measure(meetings: int, changes: int, folder: Path) -> tuple[list[float], int]:
    db = folder / f"bench-{meetings}.db"
    store = SqliteDatastore(SqliteDatastore.Config(path=db))
    store.open()
    bulk_meetings(store, meetings)
    config = parse_config(f"""
datastore: {{type: sqlite, path: "{db}"}}
pipelines:
  sessions:
    source: {{type: changes, collections: [meetings, tickets, users, locations]}}
    processors: [{{type: view, view: "examples.meeting_room.views:MeetingSession", initial: false}}]
    sinks: [{{type: timing}}]
""")
    runtime = Runtime(config, datastore=store)  # same store: writes wake the feed at once
    task = asyncio.create_task(runtime.run())
    engine, runner = None, None
    # Until the views are built and the feed's backlog (the bulk load) is behind the
    # source: skipped at start (the build reflects it) or processed.
    while (
        engine is None
        or not engine.snapshot_seq
        or runner.source.instance.position < engine.snapshot_seq
    ):
        await asyncio.sleep(0.01)
        runner = runtime.runners.get("sessions")
        engine = runner.processors[0].instance.engine if runner else None
    rng = random.Random(7)
    latencies = []
    before = engine.recomputes
    for _ in range(changes):
        m = rng.randrange(meetings)
        arrivals[f"m{m}"] = asyncio.get_running_loop().create_future()

        def toggle(m: int = m) -> float:
            with use_datastore(store):
                ticket = Ticket.get(f"t{m}-1")
                ticket.attendance = not ticket.attendance
                started = time.perf_counter()
                ticket.save()
            return started

        started = await asyncio.to_thread(toggle)
        arrived = await asyncio.wait_for(arrivals[f"m{m}"], 10)
        del arrivals[f"m{m}"]
        latencies.append(arrived - started)
    recomputes = engine.recomputes - before
    await runtime.stop()
    await asyncio.wait_for(task, 10)
    store.close()
    return latencies, recomputes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args()
    plugins.register_plugin(BenchComponents(), name="bench")
    with tempfile.TemporaryDirectory() as folder:
        small, small_recomputes = asyncio.run(measure(100, args.changes, Path(folder)))
        large, large_recomputes = asyncio.run(measure(10_000, args.changes, Path(folder)))
    p50_small, p50_large = statistics.median(small), statistics.median(large)
    p99_small = statistics.quantiles(small, n=100)[98]
    p99_large = statistics.quantiles(large, n=100)[98]
    print(
        f"100 meetings:    p50 {p50_small * 1e3:.2f} ms  p99 {p99_small * 1e3:.2f} ms  "
        f"recomputes {small_recomputes} for {args.changes} changes"
    )
    print(
        f"10,000 meetings: p50 {p50_large * 1e3:.2f} ms  p99 {p99_large * 1e3:.2f} ms  "
        f"recomputes {large_recomputes} for {args.changes} changes"
    )
    ratio = p50_large / p50_small
    print(
        f"RESULT reactive small_p50={p50_small * 1e3:.2f}ms large_p50={p50_large * 1e3:.2f}ms "
        f"recomputes_per_change={large_recomputes / args.changes:.2f} ratio={ratio:.2f} "
        "target=<=1.5"
    )


if __name__ == "__main__":
    main()
