"""Fan-out over GraphQL: one attendance change → the new view at every GraphQL subscriber.

Runs the meeting-room ``sessions`` pipeline (sqlite change feed → ``view`` processor →
a ``graphql`` sink and a ``websocket`` sink, each on a port of its own) in this process.
For each N, N GraphQL clients (raw ``websockets`` speaking graphql-transport-ws, in
worker processes) subscribe to one meeting's view and each round times, per client, the
span from an attendance change (``run_action``) to that client receiving the new view;
then N Socket.IO clients (bench/fanout.py's workers) subscribe to the same view on the
websocket sink and the same rounds are timed through it. p50 and p99 are over every
client of every round. Target: at the largest N, the GraphQL p99 at most 1.5 times the
websocket plugin's.

    uv run --all-packages python bench/graphql_fanout.py [--clients 10,100,500] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import queue
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

from fanout import WAIT, arrivals, now, report, subscribers  # noqa: E402

from examples.meeting_room.models import Meeting  # noqa: E402
from examples.meeting_room.seed import seed  # noqa: E402
from examples.meeting_room.views import MeetingSession  # noqa: E402
from onto_core.builtin.sqlite import SqliteDatastore  # noqa: E402
from onto_core.config import parse_config  # noqa: E402
from onto_core.models import run_action, use_datastore  # noqa: E402
from onto_core.runtime import running  # noqa: E402
from onto_websocket.testing import free_port  # noqa: E402

KEY = {"meetingId": "meeting-1", "userId": "tijuana"}
# Every field of the view, so each subscriber receives what a websocket client does.
SUBSCRIPTION = """subscription {
  meetingSession(meetingId: "meeting-1", userId: "tijuana") {
    meetingId userId status inSession latitude longitude address
    attending { userId name organization hearingAidRequested }
    numHearingAidRequested
  }
}"""


# (max_connections: each client holds a connection, and the default 200 would refuse N=500.)


# --- worker processes: GraphQL clients -------------------------------------------------


def graphql_worker(url: str, count: int, results: multiprocessing.Queue[Any], stop: Any) -> None:
    """Connect ``count`` graphql-transport-ws clients, subscribe each, report arrivals."""
    try:
        asyncio.run(_graphql_clients(url, count, results, stop))
    except Exception as exc:  # reported to the parent, which says why N was not held
        results.put(("failed", f"{type(exc).__name__}: {exc}", 0, now()))


async def _graphql_clients(
    url: str, count: int, results: multiprocessing.Queue[Any], stop: Any
) -> None:
    import websockets

    async def connect() -> Any:
        socket = await websockets.connect(
            url,
            subprotocols=["graphql-transport-ws"],
            open_timeout=WAIT,  # type: ignore[list-item]
        )
        await socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await socket.recv())
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"connection refused: {ack}")
        await socket.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
        )
        first = json.loads(await socket.recv())
        if first.get("type") != "next":
            raise RuntimeError(f"subscribe refused: {first}")
        return socket

    async def listen(socket: Any) -> None:
        async for raw in socket:
            arrived = now()
            message = json.loads(raw)
            if message.get("type") == "next":
                view = message["payload"]["data"]["meetingSession"]
                results.put(("view", 0, len(view["attending"]), arrived))

    sockets = []
    try:
        for start in range(0, count, 25):
            sockets += await asyncio.gather(*(connect() for _ in range(min(25, count - start))))
        results.put(("ready", count, 0, now()))
        listeners = [asyncio.create_task(listen(s)) for s in sockets]
        await asyncio.to_thread(stop.wait)
        for task in listeners:
            task.cancel()
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


def rounds_through(
    store: SqliteDatastore, results: multiprocessing.Queue[Any], count: int, rounds: int
) -> list[float]:
    """Latencies of ``rounds`` attendance changes, each awaited at all ``count`` clients."""
    latencies: list[float] = []
    with use_datastore(store):
        attends = Meeting.get("meeting-1").tickets["joshua"].get().attendance
    for _ in range(rounds):
        attending = attends = not attends  # joshua leaves, then comes back (or the reverse)
        expected = 3 if attending else 2
        started = now()
        run_action(
            store, MeetingSession, "meeting-1/joshua", "set_attendance", {"attending": attending}
        )
        latencies += arrivals(
            results,
            count,
            lambda kind, _, n, e=expected: kind == "view" and n == e,
            started,
        )
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="10,100,500", help="Comma-separated client counts.")
    parser.add_argument("--rounds", type=int, default=20, help="Changes per count and transport.")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("onto.web").setLevel(logging.ERROR)  # the open-endpoint warnings
    logging.getLogger("onto.graphql").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteDatastore(SqliteDatastore.Config(path=Path(folder) / "bench.db"))
        store.open()
        seed(store)
        graphql_port, websocket_port = free_port(), free_port()
        view = "examples.meeting_room.views:MeetingSession"
        config = parse_config(f"""
pipelines:
  sessions:
    source: {{type: changes, models: [meetings, tickets, users, locations]}}
    processors: [{{type: view, view: "{view}"}}]
    sinks:
      - {{type: graphql, port: {graphql_port}, views: ["{view}"], max_connections: 2000}}
      - {{type: websocket, port: {websocket_port}, views: ["{view}"], max_connections: 2000}}
""")
        with running(config, datastore=store):
            graphql_url = f"ws://127.0.0.1:{graphql_port}/graphql"
            websocket_url = f"http://127.0.0.1:{websocket_port}"
            for count in counts:
                try:
                    with subscribers(graphql_url, count, graphql_worker) as results:
                        graphql = rounds_through(store, results, count, args.rounds)
                    with subscribers(websocket_url, count) as results:
                        websocket = rounds_through(store, results, count, args.rounds)
                except (RuntimeError, queue.Empty) as exc:
                    print(
                        f"{count} clients could not be held on this machine ({exc or 'timed out'})"
                    )
                    break
                rows.append((count, graphql, websocket))
    print(
        f"fan-out of one meeting_session ({KEY['meetingId']}/{KEY['userId']}) to N clients; "
        f"{args.rounds} rounds per N and transport"
    )
    report(rows, ("gql", "graphql"), ("sio", "websocket"), "graphql_fanout", "<=1.5")


if __name__ == "__main__":
    main()
