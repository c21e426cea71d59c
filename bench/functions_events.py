"""Firestore writes → MeetingSession views through the built Cloud Function (served by
the local Functions Framework), against the same changes through a long-running
``onto run`` view pipeline, on one Firestore emulator.

Starts ``@firestore-emulator/server`` on 127.0.0.1 (``npm ci --prefix
plugins/onto-firestore/emulator`` first) unless ``FIRESTORE_EMULATOR_HOST`` is set.

    uv run --all-packages python bench/functions_events.py \\
        --meetings 100 --watched 20 --changes 100 --burst 60

Each side gets a project of its own on the emulator, seeded with ``--meetings`` meetings
that the demo's three users (joshua, thomasina, tijuana) all hold tickets to, and a
change is one ticket's attendance toggled (``FirestoreDatastore.set``, as the example's
writers do), which changes the meeting's three ``MeetingSession`` views.

- functions: ``onto functions build`` of the meeting room as a function (``cloud_event``
  → ``stateless_view`` → ``firestore`` sink), ``onto functions backfill``, then
  ``functions-framework --target meeting_sessions`` on a free port. Each write's
  CloudEvent is posted in binary content mode with the protobuf ``DocumentEventData``
  built from the document as written (a read of it stands in for Eventarc), as the
  tests post them.
- onto run: ``onto run`` of examples/meeting_room/firestore.yaml (``changes`` source
  polling the change log every ``--poll-interval`` s, ``view`` processor, ``firestore``
  sink) in a process of its own.

The changes go to the first ``--watched`` meetings. A change is done when snapshot
listeners on its meeting's three ``MeetingSession`` documents have seen the new
attendance; the same listeners time both sides (one per document: the npm emulator
answers any write by sending each query listener its whole result again). Cold start:
from starting the process until its first change is done (the change is written before
the process starts; ``onto run`` builds every root at start, so its figure is its time
to ready). One at a time (``--changes``): p50/p99 from the write until done. Burst
(``--burst`` changes, each to another ticket): written back to back, the function's
events posted as each write returns by ``--concurrency`` threads (one instance;
concurrent events share its runtime); events/s from the first write until every view
is final.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import queue
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from firestore_sink import start_emulator  # noqa: E402

from examples.meeting_room.models import (  # noqa: E402
    Location,
    Meeting,
    MeetingStatus,
    Ticket,
    User,
)
from onto_core.models import Ref  # noqa: E402
from onto_core.testing.processes import LoggedProcess  # noqa: E402
from onto_firestore import FirestoreDatastore, make_client  # noqa: E402

USERS = ("joshua", "thomasina", "tijuana")
_DELIVERIES = 5  # of one event whose invocations fail (500), as Eventarc retries them
VIEW_CONFIG = """\
datastore: {{type: firestore, project: "${{ONTO_FIRESTORE_PROJECT}}"}}
pipelines:
  meeting_sessions:
    source: {{type: {source}}}
    processors:
      - {{type: {processor}, view: "examples.meeting_room.views:MeetingSession"}}
    sinks:
      - {{type: firestore, path: "users/{{user_id}}/meetingSessions/{{meeting_id}}"}}
{extra}"""
FUNCTION_CONFIG = VIEW_CONFIG.format(
    source="cloud_event, collections: [meetings, tickets, users, locations]",
    processor="stateless_view",
    extra="    retry: {max_attempts: 1}\n",
)


def onto_run_config(poll_interval: float) -> str:
    """examples/meeting_room/firestore.yaml, with the change feed's poll interval."""
    source = (
        "changes, collections: [meetings, tickets, users, locations],"
        f" poll_interval: {poll_interval}"
    )
    return VIEW_CONFIG.format(
        source=source, processor="view", extra="    guarantee: at_least_once\n"
    )


def seed(store: FirestoreDatastore, meetings: int) -> None:
    """``meetings`` meetings in session in one room, each with a ticket for every user."""
    users = [User(id=u, first_name=u.title(), last_name="Bench") for u in USERS]
    location = Location(id="room-1", latitude=32.88, longitude=-117.24, address="Gilman Dr")
    first: dict[tuple[str, str], dict[str, Any] | None] = {
        (m.collection, m.id): m.to_dict() for m in (location, *users)
    }
    for m in range(meetings):
        tickets = {u.id: Ticket(id=f"m{m}-{u.id}", user=u.ref, attendance=True) for u in users}
        meeting = Meeting(
            id=f"m{m}",
            location=location.ref,
            users=[u.ref for u in users],
            tickets={uid: t.ref for uid, t in tickets.items()},
            status=MeetingStatus.IN_SESSION,
        )
        writes = {(t.collection, t.id): t.to_dict() for t in tickets.values()}
        writes[(meeting.collection, meeting.id)] = meeting.to_dict()
        store.commit({}, {**first, **writes})
        first = {}


class Views:
    """What snapshot listeners on the watched meetings' views have seen: the attending
    users of each (user, meeting) view. One listener per document: the npm emulator
    answers a write anywhere by sending a query listener its whole result again."""

    def __init__(self, client: Any, meetings: list[str]) -> None:
        self._seen: dict[tuple[str, str], tuple[str, ...]] = {}
        self._changed = threading.Condition()
        self._watches = [
            client.document(f"users/{u}/meetingSessions/{m}").on_snapshot(self._listener(u, m))
            for m in meetings
            for u in USERS
        ]

    def _listener(self, user: str, meeting: str) -> Callable[[Any, Any, Any], None]:
        def on_snapshot(docs: Any, _changes: Any, _read_time: Any) -> None:
            with self._changed:
                for doc in docs:
                    data = (doc.to_dict() or {}) if doc.exists else {}
                    attending = tuple(a["userId"] for a in data.get("attending", []))
                    self._seen[(user, meeting)] = attending
                self._changed.notify_all()

        return on_snapshot

    def wait(self, expected: dict[str, tuple[str, ...]], timeout: float, what: str) -> float:
        """Wait until every participant's view of each meeting in ``expected`` lists the
        users given there as attending; when (``time.perf_counter``)."""

        def done() -> bool:
            return all(
                self._seen.get((u, m)) == want for m, want in expected.items() for u in USERS
            )

        with self._changed:
            if not self._changed.wait_for(done, timeout):
                raise SystemExit(f"{what}: the views were not seen within {timeout}s")
        return time.perf_counter()

    def close(self) -> None:
        for watch in self._watches:
            watch.unsubscribe()


class Meetings:
    """The attendance each side's store holds, and the changes that toggle it."""

    def __init__(self, store: FirestoreDatastore, meetings: int) -> None:
        self.store = store
        self.attendance = {(f"m{m}", u): True for m in range(meetings) for u in USERS}

    def attending(self, meeting: str) -> tuple[str, ...]:
        return tuple(u for u in USERS if self.attendance[(meeting, u)])

    def toggle(self, meeting: str, user: str) -> tuple[str, dict[str, Any]]:
        """Write the toggle; the ticket's path and the document before it."""
        key = (meeting, user)
        before = Ticket(id=f"{meeting}-{user}", user=Ref(User, user), attendance=True)
        before.attendance = self.attendance[key]
        self.attendance[key] = not self.attendance[key]
        self.store.set(
            "tickets", before.id, {**before.to_dict(), "attendance": self.attendance[key]}
        )
        return f"tickets/{before.id}", before.to_dict()


def plan(count: int, meetings: int, start: int = 0) -> list[tuple[str, str]]:
    """``count`` (meeting, user) toggles cycling over the meetings, then the users."""
    return [
        (f"m{(start + i) % meetings}", USERS[((start + i) // meetings) % len(USERS)])
        for i in range(count)
    ]


class Process(LoggedProcess):
    """A process whose output is watched; the benchmark ends if an awaited line never comes."""

    def wait_for_line(self, text: str, timeout: float) -> float:
        """``time.perf_counter()`` once ``text`` is in a line of output."""
        if self.first_line(lambda line: text in line, timeout) is None:
            self.stop(15)
            raise SystemExit(f"never logged {text!r}:\n{''.join(self.output[-40:])}")
        return time.perf_counter()


class Poster:
    """Posts a ticket write's CloudEvent to the function, as Eventarc delivers it."""

    def __init__(self, url: str, client: Any) -> None:
        from google.cloud.firestore_v1 import _helpers
        from google.cloud.firestore_v1.types import document as firestore_document
        from google.events.cloud.firestore_v1.types import (  # type: ignore[import-untyped]
            data as event_data,
        )

        self.url = url
        self.client = client
        self._helpers = _helpers
        self._native = firestore_document.Document
        self._event_data = event_data
        self._local = threading.local()
        self.redelivered = 0

    def _document(self, name: str, data: dict[str, Any], update_time: Any) -> Any:
        native = self._native(name=name, fields=self._helpers.encode_dict(data))
        if update_time is not None:
            native.update_time = update_time
        return self._event_data.Document.deserialize(self._native.serialize(native))

    def post(self, path: str, old: dict[str, Any]) -> float:
        """Deliver the event of the write at ``path`` (``old``: before it); the seconds the
        invocation took (until the function answered 200)."""
        name = f"projects/{self.client.project}/databases/(default)/documents/{path}"
        snapshot = self.client.document(path).get()
        payload = self._event_data.DocumentEventData(
            old_value=self._document(name, old, None),
            value=self._document(name, snapshot.to_dict(), snapshot.update_time),
        )
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        headers = {
            "ce-id": f"evt-{uuid.uuid4()}",
            "ce-specversion": "1.0",
            "ce-type": "google.cloud.firestore.document.v1.written",
            "ce-source": "//firestore.googleapis.com/projects/bench/databases/(default)",
            "ce-subject": f"documents/{path}",
            "ce-time": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "Content-Type": "application/protobuf",
        }
        body = self._event_data.DocumentEventData.serialize(payload)
        began = time.perf_counter()
        for _ in range(_DELIVERIES):
            response = session.post(self.url, data=body, headers=headers, timeout=120)
            if response.status_code == 200:
                return time.perf_counter() - began
            if response.status_code < 500:
                break
            self.redelivered += 1  # a failed invocation: the platform delivers it again
        raise SystemExit(f"the function answered {response.status_code}: {response.text}")


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


class Side:
    """One deployment: a project seeded, its process, its listeners."""

    def __init__(self, name: str, host: str, meetings: int, watched: int, folder: Path) -> None:
        self.name = name
        self.watched = watched  # the changes go to the first `watched` meetings
        self.project = f"bench-{name}-{uuid.uuid4().hex[:8]}"
        self.folder = folder
        self.meetings_count = meetings
        self.env = dict(os.environ)
        self.env.update(
            FIRESTORE_EMULATOR_HOST=host,
            ONTO_FIRESTORE_PROJECT=self.project,
            PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        )
        self.store = FirestoreDatastore(
            FirestoreDatastore.Config(project=self.project, emulator_host=host)
        )
        self.store.open()
        seed(self.store, meetings)
        self.meetings = Meetings(self.store, meetings)
        self.client = make_client(self.project, emulator_host=host)
        self.views: Views | None = None
        self.process: Process | None = None
        self.poster: Poster | None = None
        self.invocations: list[float] = []

    def listen(self) -> Views:
        self.views = Views(self.client, [f"m{m}" for m in range(self.watched)])
        return self.views

    def start(self) -> Process:
        raise NotImplementedError

    def change(self, meeting: str, user: str) -> None:
        """Write one toggle (and, for the function, deliver its event)."""
        path, old = self.meetings.toggle(meeting, user)
        if self.poster is not None:
            self.invocations.append(self.poster.post(path, old))

    def cold_start(self) -> float:
        """Process start → its first change's views seen (written before it started)."""
        meeting, user = plan(1, self.watched)[0]
        path, old = self.meetings.toggle(meeting, user)
        views = self.listen()
        process = self.start()
        if self.poster is not None:
            self.invocations.append(self.poster.post(path, old))
        expected = {meeting: self.meetings.attending(meeting)}
        return views.wait(expected, 300, f"{self.name} cold start") - process.started

    def one_at_a_time(self, changes: int) -> list[float]:
        assert self.views is not None
        found = []
        for meeting, user in plan(changes, self.watched, start=1):
            began = time.perf_counter()
            self.change(meeting, user)
            expected = {meeting: self.meetings.attending(meeting)}
            found.append(self.views.wait(expected, 60, f"{self.name} change") - began)
        return found

    def burst(self, count: int, concurrency: int) -> float:
        assert self.views is not None
        toggles = plan(count, self.watched, start=0)
        pending: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        errors: list[BaseException] = []

        def deliver() -> None:
            assert self.poster is not None
            while (item := pending.get()) is not None:
                try:
                    self.invocations.append(self.poster.post(*item))
                except BaseException as exc:  # reported after the burst
                    errors.append(exc)

        threads = []
        if self.poster is not None:
            threads = [threading.Thread(target=deliver) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
        began = time.perf_counter()
        for meeting, user in toggles:
            written = self.meetings.toggle(meeting, user)
            if self.poster is not None:
                pending.put(written)
        expected = {m: self.meetings.attending(m) for m, _ in toggles}
        try:
            ended = self.views.wait(expected, 600, f"{self.name} burst")
        finally:
            for _ in threads:
                pending.put(None)
            for thread in threads:
                thread.join(timeout=120)
        if errors:
            log = "".join(self.process.output[-60:]) if self.process is not None else ""
            raise SystemExit(f"{self.name} burst: {errors[0]}\n{log}")
        return count / (ended - began)

    def close(self) -> None:
        if self.views is not None:
            self.views.close()
        if self.process is not None:
            self.process.stop(15)
        self.client.close()  # type: ignore[no-untyped-call]
        self.store.close()


class FunctionSide(Side):
    def __init__(self, host: str, meetings: int, watched: int, folder: Path) -> None:
        super().__init__("functions", host, meetings, watched, folder)
        config = folder / "functions.yaml"
        config.write_text(FUNCTION_CONFIG)
        os.environ.update(FIRESTORE_EMULATOR_HOST=host, ONTO_FIRESTORE_PROJECT=self.project)
        from onto_functions._backfill import backfill
        from onto_functions._build import build_function

        build_function(config, folder / "fn")
        began = time.perf_counter()
        backfill(config)
        self.backfill_seconds = time.perf_counter() - began
        self.serving_after = 0.0

    def start(self) -> Process:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.env.update(GUNICORN_LOG_LEVEL="info")  # "Booting worker" says it serves
        command = [sys.executable, "-m", "functions_framework", "--source", "main.py"]
        command += ["--target", "meeting_sessions", "--host", "127.0.0.1", "--port", str(port)]
        self.process = Process(command, self.folder / "fn", self.env)
        self.serving_after = self.process.wait_for_line("Booting worker", 60) - self.process.started
        self.poster = Poster(f"http://127.0.0.1:{port}/", self.client)
        return self.process


class OntoRunSide(Side):
    def __init__(
        self, host: str, meetings: int, watched: int, folder: Path, poll_interval: float
    ) -> None:
        super().__init__("onto-run", host, meetings, watched, folder)
        self.config = folder / "firestore.yaml"
        self.config.write_text(onto_run_config(poll_interval))

    def start(self) -> Process:
        command = [sys.executable, "-m", "onto_core", "run", str(self.config)]
        self.process = Process(command, ROOT, self.env)
        return self.process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meetings", type=int, default=100)
    parser.add_argument("--watched", type=int, default=20, help="meetings the changes go to")
    parser.add_argument("--changes", type=int, default=100, help="one at a time")
    parser.add_argument("--burst", type=int, default=60, help="back to back")
    parser.add_argument("--concurrency", type=int, default=8, help="function posters")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="onto run's feed")
    args = parser.parse_args()
    if not 0 < args.watched <= args.meetings:
        raise SystemExit("--watched: 1 to --meetings meetings")
    if args.burst > args.watched * len(USERS):
        raise SystemExit("--burst changes distinct tickets: at most 3 x --watched")
    host, emulator = start_emulator()
    figures: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for make in (
                lambda: FunctionSide(host, args.meetings, args.watched, Path(tmp)),
                lambda: OntoRunSide(
                    host, args.meetings, args.watched, Path(tmp), args.poll_interval
                ),
            ):
                side = make()
                try:
                    progress(f"{side.name}: seeded; cold start")
                    cold = side.cold_start()
                    progress(f"{side.name}: {cold:.2f}s; {args.changes} changes one at a time")
                    latencies = side.one_at_a_time(args.changes)
                    side.invocations.clear()
                    progress(f"{side.name}: a burst of {args.burst}")
                    rate = side.burst(args.burst, args.concurrency)
                finally:
                    side.close()
                figures[side.name] = {
                    "cold": cold,
                    "rate": rate,
                    "p50": percentile(latencies, 0.5) * 1e3,
                    "p99": percentile(latencies, 0.99) * 1e3,
                }
                if isinstance(side, FunctionSide):
                    redelivered = side.poster.redelivered if side.poster is not None else 0
                    figures[side.name]["redelivered"] = redelivered
                    if redelivered and side.process is not None:
                        errors = [line for line in side.process.output if "Error" in line]
                        progress("failed invocations logged:\n" + "".join(errors[:5]))
                    figures[side.name]["backfill"] = side.backfill_seconds
                    figures[side.name]["serving"] = side.serving_after
                    figures[side.name]["invocation_p50"] = (
                        percentile(side.invocations, 0.5) * 1e3 if side.invocations else 0.0
                    )
    finally:
        if emulator is not None:
            emulator.terminate()
            emulator.wait(10)
    f, o = figures["functions"], figures["onto-run"]
    print(
        f"{args.meetings} meetings x 3 participants, changes to {args.watched} of them;"
        f" {args.changes} one at a time,"
        f" a burst of {args.burst} ({args.concurrency} concurrent invocations)"
    )
    for name, v in figures.items():
        print(
            f"{name:>9}: cold start {v['cold']:.2f}s, one at a time p50={v['p50']:.1f}ms"
            f" p99={v['p99']:.1f}ms, burst {v['rate']:.0f} events/s"
        )
    print(
        f"functions: serving {f['serving']:.2f}s after its start (then the first invocation"
        f" starts the runtime); backfill of {args.meetings} roots {f['backfill']:.2f}s;"
        f" invocation (post -> 200) p50 in the burst {f['invocation_p50']:.1f}ms;"
        f" invocations answered 500 (the event delivered again): {f['redelivered']:.0f}"
    )
    print(
        f"RESULT functions_events functions={f['rate']:.0f}/s onto_run={o['rate']:.0f}/s"
        f" functions_p50={f['p50']:.1f}ms functions_p99={f['p99']:.1f}ms"
        f" onto_run_p50={o['p50']:.1f}ms onto_run_p99={o['p99']:.1f}ms"
        f" cold_start={f['cold']:.2f}s onto_run_ready={o['cold']:.2f}s"
        f" ratio={f['rate'] / o['rate']:.2f} target=none"
    )


if __name__ == "__main__":
    main()
