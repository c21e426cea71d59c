"""What the official socket.io-client can send that a well-behaved page would not.

A flood of events without waiting for acks, extra arguments, unknown events, text that is
not valid Unicode: each is answered with exactly one ack, and none of it holds up other
subscribers or grows the server's threads.
"""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from examples.meeting_room.views import MeetingSession
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import run_action
from onto_websocket.testing import ViewClient

Serve = Callable[..., contextlib.AbstractContextManager[str]]
Client = Callable[[], ViewClient]
NodeClient = Callable[[str], list[str]]
VIEW = "meeting_session"
JOSHUA = {"view": VIEW, "key": "meeting-1/joshua"}


def attendees(view: dict[str, Any]) -> list[str]:
    return [a["userId"] for a in view["data"]["attending"]]


@contextlib.contextmanager
def peak_thread_count() -> Iterator[list[int]]:
    """``[peak]``: the most threads this process ran at once while the block ran."""
    peak = [threading.active_count()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], threading.active_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


class NodeLines:
    """The JSON lines a node process prints, each awaited with a bound."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_with(self, field: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"node printed no {field!r} within {timeout}s") from None
            if line is None:
                assert self.process.stderr is not None
                raise AssertionError(f"node exited before {field!r}: {self.process.stderr.read()}")
            parsed: dict[str, Any] = json.loads(line)
            if field in parsed:
                return parsed

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


def test_a_flooding_client_neither_grows_threads_nor_holds_up_other_subscribers(
    serve: Serve, client: Client, store: SqliteDatastore, node_client: NodeClient
) -> None:
    with serve() as url:
        tijuana = client().connect(url)
        tijuana.subscribe(VIEW, "meeting-1/tijuana")
        tijuana.next_view()
        before = threading.active_count()
        with peak_thread_count() as peak:
            # 4 connections x 2,500 subscribe/unsubscribe events, none waiting for its ack.
            flood = NodeLines([*node_client("flood.js"), url, "4", "2500", VIEW, JOSHUA["key"]])
            try:
                flood.next_with("first_ack", timeout=30)
                changed = time.monotonic()
                run_action(
                    store,
                    MeetingSession,
                    "meeting-1/joshua",
                    "set_attendance",
                    {"attending": False},
                )
                tijuana.view_where(lambda v: attendees(v) == ["thomasina", "tijuana"])
                delay = time.monotonic() - changed
                summary = flood.next_with("acked", timeout=60)
            finally:
                flood.stop()

    assert delay < 5, f"the other subscriber waited {delay:.1f}s for its update"
    # Each connection holds a few threads of its own (HTTP, writer, ping); events run on
    # the hub's 8 workers, never a thread each.
    assert peak[0] - before < 40, f"{peak[0] - before} more threads during the flood"
    assert summary["acked"] == summary["sent"] == 10_000
    assert set(summary["statuses"]) <= {"200", "429"}
    assert summary["statuses"].get("429", 0) > 0  # the flood overran its queue, and was told


def emit_each(node_client: NodeClient, url: str, cases: dict[str, list[Any]]) -> dict[str, Any]:
    """``{name: [ack arguments] or "no ack"}`` for each ``name: [event, *arguments]``."""
    plan = [{"name": name, "event": event, "args": args} for name, (event, *args) in cases.items()]
    done = subprocess.run(
        [*node_client("emit.js"), url, json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers: dict[str, Any] = json.loads(done.stdout)
    return answers


def test_every_event_with_an_ack_is_answered_once_with_what_was_wrong(
    serve: Serve, node_client: NodeClient
) -> None:
    with serve() as url:
        answers = emit_each(
            node_client,
            url,
            {
                "subscribe": ["subscribe", JOSHUA],
                "subscribe, extra argument": ["subscribe", JOSHUA, "extra"],
                "unsubscribe, extra argument": ["unsubscribe", JOSHUA, {"x": 1}],
                "action, extra argument": [
                    "action",
                    {**JOSHUA, "action": "set_attendance", "arguments": {"attending": True}},
                    "extra",
                ],
                "unknown event": ["bogus", {"x": 1}],
                "lone surrogate in the key": [
                    "subscribe",
                    {"view": VIEW, "key": "meeting-1/\ud800"},
                ],
                "lone surrogate in an argument": [
                    "action",
                    {**JOSHUA, "action": "set_attendance", "arguments": {"attending": "\udfff"}},
                ],
            },
        )

    def refused(status: int, error: str, field: str | None = None) -> list[Any]:
        return [{"ok": False, "status": status, "error": error, "field": field}]

    assert answers == {
        "subscribe": [{"ok": True}],
        "subscribe, extra argument": refused(
            400, "subscribe takes one argument, its payload object; got 2"
        ),
        "unsubscribe, extra argument": refused(
            400, "unsubscribe takes one argument, its payload object; got 2"
        ),
        "action, extra argument": [
            {
                "status": 400,
                "body": {
                    "error": "action takes one argument, its payload object; got 2",
                    "field": None,
                },
            }
        ],
        "unknown event": refused(
            404, "no event 'bogus' here; events: action, subscribe, unsubscribe"
        ),
        "lone surrogate in the key": refused(
            400,
            "'key' is not valid Unicode text (it holds a lone surrogate, which has no UTF-8 "
            "encoding)",
            "key",
        ),
        "lone surrogate in an argument": [
            {
                "status": 400,
                "body": {
                    "error": "'arguments.attending' is not valid Unicode text (it holds a lone "
                    "surrogate, which has no UTF-8 encoding)",
                    "field": "arguments.attending",
                },
            }
        ],
    }
