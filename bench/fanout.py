"""Fan-out latency: one attendance change → the new view at every subscribed Socket.IO client.

Runs the meeting-room ``sessions`` pipeline (sqlite change feed → ``view`` processor →
``websocket`` sink) in this process and connects N real Socket.IO clients (in worker
processes, over WebSocket) that all subscribe to one meeting's view. Each round times,
per client, the span from an attendance change (``run_action``) to that client receiving
the new view; the baseline round emits a payload of the same size to the same room with a
bare ``socketio.emit`` on the same server. Rounds alternate; p50 and p99 are over every
client of every round. Target: at the largest N, onto's p99 at most twice the bare emit's.

    uv run --all-packages python bench/fanout.py [--clients 10,100,500] [--rounds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from examples.meeting_room.seed import seed  # noqa: E402
from examples.meeting_room.views import MeetingSession  # noqa: E402
from onto_core.builtin.sqlite import SqliteDatastore  # noqa: E402
from onto_core.config import parse_config  # noqa: E402
from onto_core.models import find_view, run_action, use_datastore  # noqa: E402
from onto_core.runtime import running  # noqa: E402
from onto_web import get_server  # noqa: E402
from onto_websocket import hub_for, room_name  # noqa: E402

VIEW = "meeting_session"
KEY = "meeting-1/tijuana"
CLIENTS_PER_WORKER = 125
WAIT = 60.0  # seconds a round, or connecting a worker's clients, may take


def now() -> float:
    # CLOCK_MONOTONIC is one clock for every process on the machine, so a worker's
    # arrival time and this process's start time can be subtracted.
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# --- worker processes: the clients ----------------------------------------------------


def client_worker(url: str, count: int, results: multiprocessing.Queue[Any], stop: Any) -> None:
    """Connect ``count`` clients, subscribe each, report every arrival until ``stop``."""
    import socketio  # type: ignore[import-untyped]

    clients = []
    try:
        for _ in range(count):
            client = socketio.Client(reconnection=False)
            client.on(
                "view",
                lambda envelope: results.put(
                    ("view", envelope["version"], len(envelope["data"]["attending"]), now())
                ),
            )
            client.on(
                "baseline", lambda payload: results.put(("baseline", payload["round"], 0, now()))
            )
            client.connect(url, transports=["websocket"], wait_timeout=WAIT)
            clients.append(client)
            answer = client.call("subscribe", {"view": VIEW, "key": KEY}, timeout=WAIT)
            if answer != {"ok": True}:
                raise RuntimeError(f"subscribe refused: {answer}")
        results.put(("ready", count, 0, now()))
        stop.wait()
    except Exception as exc:  # reported to the parent, which says why N was not held
        results.put(("failed", f"{type(exc).__name__}: {exc}", 0, now()))
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.disconnect()


@contextlib.contextmanager
def subscribers(
    url: str, count: int, worker: Callable[..., None] | None = None
) -> Iterator[multiprocessing.Queue[Any]]:
    """``count`` subscribed clients spread over processes running ``worker`` (Socket.IO
    clients by default); yields their reports."""
    run = client_worker if worker is None else worker
    context = multiprocessing.get_context("spawn")  # no fork of a process full of threads
    results: multiprocessing.Queue[Any] = context.Queue()
    stop = context.Event()
    workers = []
    sizes = [CLIENTS_PER_WORKER] * (count // CLIENTS_PER_WORKER)
    if count % CLIENTS_PER_WORKER:
        sizes.append(count % CLIENTS_PER_WORKER)
    for size in sizes:
        process = context.Process(target=run, args=(url, size, results, stop), daemon=True)
        process.start()
        workers.append(process)
    try:
        ready = 0
        deadline = time.monotonic() + WAIT * len(sizes)
        while ready < count:
            kind, value, _, _ = results.get(timeout=max(0.1, deadline - time.monotonic()))
            if kind == "failed":
                raise RuntimeError(value)
            if kind == "ready":
                ready += value
        drain(results)  # the views each subscription delivered at once
        yield results
    finally:
        stop.set()
        for process in workers:
            process.join(timeout=WAIT)
            if process.is_alive():
                process.kill()


def drain(results: multiprocessing.Queue[Any]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            results.get(timeout=0.2)


# --- the measurement ---------------------------------------------------------------------


def arrivals(
    results: multiprocessing.Queue[Any], count: int, wanted: Any, started: float
) -> list[float]:
    """The latency of each of ``count`` arrivals matching ``wanted`` since ``started``."""
    found: list[float] = []
    deadline = time.monotonic() + WAIT
    while len(found) < count:
        kind, mark, attending, arrived = results.get(timeout=max(0.1, deadline - time.monotonic()))
        if wanted(kind, mark, attending):
            found.append(arrived - started)
    return found


def measure(
    store: SqliteDatastore, url: str, count: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Latencies of ``rounds`` onto rounds and as many bare-emit rounds with ``count`` clients."""
    socketio = hub_for(get_server("127.0.0.1", int(url.rsplit(":", 1)[1]))).socketio
    onto: list[float] = []
    bare: list[float] = []
    with subscribers(url, count) as results:
        for number in range(rounds):
            # onto: the change, the view recomputed, emitted by the websocket sink.
            attending = number % 2 == 1  # joshua leaves, then comes back
            expected = 3 if attending else 2
            started = now()
            run_action(
                store,
                MeetingSession,
                "meeting-1/joshua",
                "set_attendance",
                {"attending": attending},
            )
            onto += arrivals(
                results,
                count,
                # Attendance alternates, so the attendee count tells this round's view.
                lambda kind, _, n, e=expected: kind == "view" and n == e,
                started,
            )
            with use_datastore(store):
                current = find_view(MeetingSession, KEY)
            assert current is not None
            # baseline: the same-sized payload to the same room, a plain socketio.emit.
            payload = {"view": VIEW, "key": KEY, "round": number, "data": current.to_dict()}
            started = now()
            socketio.emit("baseline", payload, to=room_name(VIEW, KEY))
            bare += arrivals(
                results,
                count,
                lambda kind, mark, _, r=number: kind == "baseline" and mark == r,
                started,
            )
    return onto, bare


def percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="10,100,500", help="Comma-separated client counts.")
    parser.add_argument("--rounds", type=int, default=20, help="Changes (and emits) per count.")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per connection
    logging.getLogger("onto.web").setLevel(logging.ERROR)  # the open-endpoint warning
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteDatastore(SqliteDatastore.Config(path=Path(folder) / "bench.db"))
        store.open()
        seed(store)
        from onto_websocket.testing import free_port

        port = free_port()
        config = parse_config(f"""
pipelines:
  sessions:
    source: {{type: changes, models: [meetings, tickets, users, locations]}}
    processors: [{{type: view, view: "examples.meeting_room.views:MeetingSession"}}]
    sinks:
      - {{type: websocket, port: {port}, views: ["examples.meeting_room.views:MeetingSession"]}}
""")
        rows = []
        held = counts[0]
        with running(config, datastore=store):
            url = f"http://127.0.0.1:{port}"
            for count in counts:
                try:
                    onto, bare = measure(store, url, count, args.rounds)
                except (RuntimeError, queue.Empty) as exc:
                    print(
                        f"{count} clients could not be held on this machine "
                        f"({exc or 'timed out'}); the largest N measured is {held}"
                    )
                    break
                held = count
                rows.append((count, onto, bare))
    print(f"fan-out of one {VIEW} ({KEY}) to N clients; {args.rounds} rounds per N")
    report(rows, ("onto", "onto"), ("emit", "emit"), "fanout", "<=2")


def report(
    rows: list[tuple[int, list[float], list[float]]],
    measured: tuple[str, str],
    against: tuple[str, str],
    name: str,
    target: str,
) -> None:
    """A table of both sides' p50/p99 and their ratios per N, then the RESULT line for
    the largest N; ``measured`` and ``against`` are each side's (column, RESULT) names."""
    (a, a_key), (b, b_key) = measured, against
    if not rows:
        raise SystemExit(f"RESULT {name}: no client count could be measured")
    print(
        f"{'N':>5} {a + ' p50':>10} {a + ' p99':>10} {b + ' p50':>10} {b + ' p99':>10} "
        f"{'p50 ratio':>10} {'p99 ratio':>10}"
    )
    figures = []
    for count, ours, theirs in rows:
        o50, o99 = statistics.median(ours) * 1e3, percentile(ours, 99) * 1e3
        b50, b99 = statistics.median(theirs) * 1e3, percentile(theirs, 99) * 1e3
        figures.append((count, o50, o99, b50, b99))
        print(
            f"{count:>5} {o50:>8.2f}ms {o99:>8.2f}ms {b50:>8.2f}ms {b99:>8.2f}ms "
            f"{o50 / b50:>10.2f} {o99 / b99:>10.2f}"
        )
    count, o50, o99, b50, b99 = figures[-1]
    print(
        f"RESULT {name} clients={count} {a_key}_p50={o50:.2f}ms {a_key}_p99={o99:.2f}ms "
        f"{b_key}_p50={b50:.2f}ms {b_key}_p99={b99:.2f}ms ratio={o99 / b99:.2f} "
        f"target={target}"
    )


if __name__ == "__main__":
    main()
