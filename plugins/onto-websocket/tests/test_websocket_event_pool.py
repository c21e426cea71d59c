"""The event pool: bounded per connection, in order, shared fairly, stopped by close."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable

import pytest

from onto_websocket import hub
from onto_websocket.events import EventJob, EventPool
from onto_websocket.testing import ViewClient

Serve = Callable[..., contextlib.AbstractContextManager[str]]
Client = Callable[[], ViewClient]
WAIT = 10.0


def recording(
    done: queue.Queue[str],
    name: str,
    hold: threading.Event | None = None,
    started: threading.Event | None = None,
) -> EventJob:
    def job(waited: float) -> None:
        if started is not None:
            started.set()
        if hold is not None:
            assert hold.wait(WAIT)
        done.put(name)

    return job


def test_a_full_connection_is_refused_while_others_still_run_first() -> None:
    pool = EventPool(workers=1, per_connection=2)
    done: queue.Queue[str] = queue.Queue()
    hold = threading.Event()
    try:
        assert pool.submit("flooder", recording(done, "flooder 1", hold))
        assert pool.submit("flooder", recording(done, "flooder 2"))
        assert not pool.submit("flooder", recording(done, "flooder 3"))  # full: refused
        assert pool.submit("other", recording(done, "other 1"))
        hold.set()
        ran = [done.get(timeout=WAIT) for _ in range(3)]
    finally:
        pool.close()
    # The one thread takes connections in turn: "other" does not wait behind the flood.
    assert ran == ["flooder 1", "other 1", "flooder 2"]
    assert done.empty()


def test_a_connections_events_run_in_the_order_sent() -> None:
    pool = EventPool(workers=4, per_connection=16)
    done: queue.Queue[str] = queue.Queue()
    try:
        for i in range(16):
            assert pool.submit("client", recording(done, str(i)))
        ran = [done.get(timeout=WAIT) for _ in range(16)]
    finally:
        pool.close()
    assert ran == [str(i) for i in range(16)]


def test_close_drops_waiting_events_and_stops_the_threads() -> None:
    before = set(threading.enumerate())
    pool = EventPool(workers=2, per_connection=4)
    done: queue.Queue[str] = queue.Queue()
    hold, started = threading.Event(), threading.Event()
    pool.submit("a", recording(done, "a 1", hold, started))
    pool.submit("a", recording(done, "a 2"))
    assert started.wait(WAIT)
    workers = [t for t in threading.enumerate() if t not in before]
    assert [t.name for t in workers] == ["onto-websocket-events"]  # one connection, one thread
    pool.close()
    hold.set()
    assert done.get(timeout=WAIT) == "a 1"  # already running: it finishes
    for thread in workers:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert done.empty()  # "a 2" never ran


def test_an_event_that_waited_past_its_limit_is_refused_and_never_runs(
    serve: Serve, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "EVENT_WAIT", 0.0)  # every wait is too long
    with serve() as url:
        joshua = client().connect(url)
        refusal = joshua.subscribe("meeting_session", "meeting-1/joshua")
        assert joshua.views.empty()
    assert refusal["ok"] is False
    assert refusal["status"] == 504
    assert "was not run" in refusal["error"]
