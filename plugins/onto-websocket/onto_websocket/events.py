"""Bounded work for Socket.IO events: a queue per connection, one small pool of threads.

python-socketio starts a thread for every event it receives, so a client that emits
without waiting for acks can start thousands and starve everything else in the process.
``EventPool`` replaces that: each connection's events wait in its own queue, at most
``per_connection`` of them (running included), and ``workers`` threads shared by every
connection take one event at a time from the connections in turn, so one busy client
cannot hold the pool, and events of one connection run in the order they were sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["EventJob", "EventPool"]

log = logging.getLogger("onto.websocket")

EventJob = Callable[[float], None]
"""One event's work; called with the seconds it waited in its connection's queue."""


class EventPool:
    """Runs each connection's events in order on at most ``workers`` shared threads.

    ``submit`` never blocks: it returns ``False`` when the connection already has
    ``per_connection`` events waiting or running, and the caller refuses the event.
    Threads start on demand, up to ``workers``; ``close`` stops them and drops what
    waits (a later ``submit`` starts them again). A job's exception is logged, never
    raised: answering the client is the job's own business.
    """

    def __init__(self, workers: int, per_connection: int) -> None:
        if workers < 1 or per_connection < 1:
            raise ValueError("an event pool needs at least one worker and one slot")
        self.workers = workers
        self.per_connection = per_connection
        self._lock = threading.Condition()
        self._waiting: dict[str, deque[tuple[float, EventJob]]] = {}
        self._ready: deque[str] = deque()  # connections with waiting events, none running
        self._running: set[str] = set()
        self._threads = 0
        self._free = 0  # threads started and not running a job
        self._generation = 0  # bumped by close: threads of an older one exit

    def submit(self, connection: str, job: EventJob) -> bool:
        """Queue ``job`` for ``connection``; ``False`` (nothing queued) when it is full."""
        with self._lock:
            waiting = self._waiting.setdefault(connection, deque())
            running = connection in self._running
            if len(waiting) + running >= self.per_connection:
                return False
            waiting.append((time.monotonic(), job))
            if len(waiting) == 1 and not running:
                self._ready.append(connection)
            if len(self._ready) > self._free and self._threads < self.workers:
                self._threads += 1
                self._free += 1
                threading.Thread(
                    target=self._work,
                    args=(self._generation,),
                    name="onto-websocket-events",
                    daemon=True,
                ).start()
            self._lock.notify()
            return True

    def pending(self, connection: str) -> int:
        """How many events of ``connection`` wait or run now."""
        with self._lock:
            return len(self._waiting.get(connection, ())) + (connection in self._running)

    def forget(self, connection: str) -> None:
        """Drop the events ``connection`` has waiting (it is gone; none will be answered)."""
        with self._lock:
            self._waiting.pop(connection, None)

    def close(self) -> None:
        """Drop every waiting event and let the threads exit once their job is done."""
        with self._lock:
            self._generation += 1
            self._waiting.clear()
            self._ready.clear()
            self._threads = 0
            self._free = 0
            self._lock.notify_all()

    def _work(self, generation: int) -> None:
        while True:
            with self._lock:
                while not self._ready and self._generation == generation:
                    self._lock.wait()
                if self._generation != generation:
                    return
                connection = self._ready.popleft()
                waiting = self._waiting.get(connection)
                if not waiting:  # forgotten meanwhile
                    continue
                queued_at, job = waiting.popleft()
                self._running.add(connection)
                self._free -= 1
            try:
                job(time.monotonic() - queued_at)
            except Exception:
                log.exception("a Socket.IO event of %s failed", connection)
            finally:
                with self._lock:
                    if self._generation == generation:
                        self._free += 1
                    self._running.discard(connection)
                    waiting = self._waiting.get(connection)
                    if waiting:
                        self._ready.append(connection)
                    elif waiting is not None:
                        del self._waiting[connection]  # keep memory to live connections
