"""The emulator stops mid-stream and comes back: the sink's writes are retried, none is
lost, and the pipeline keeps running."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from onto_core.builtin.memory import channel
from onto_core.testing import running
from onto_firestore import make_client

pytestmark = pytest.mark.slow


def wait_until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll ``check`` (the emulator offers no change signal across a restart)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        threading.Event().wait(0.1)


def update(room: str, version: int, n: int) -> dict[str, Any]:
    return {
        "view": "room",
        "key": room,
        "fields": {"room_id": room},
        "version": version,
        "removed": False,
        "data": {"n": n},
    }


def test_writes_made_while_the_emulator_is_down_land_once_it_is_back(
    own_emulator: Any, project: str
) -> None:
    inbox, dead = f"outage-in-{project}", f"outage-dead-{project}"
    config = f"""
pipelines:
  rooms:
    source: {{type: memory, channel: {inbox}}}
    sinks:
      - {{type: firestore, path: "rooms/{{room_id}}", project: {project},
          emulator_host: "{own_emulator.host}", rpc_timeout: 1.0}}
    guarantee: at_least_once
    retry: {{max_attempts: 1000, initial_backoff: 0.05, max_backoff: 0.5}}
    dead_letter: {{type: memory, channel: {dead}}}
"""
    client = make_client(project, emulator_host=own_emulator.host)

    def doc(room: str) -> dict[str, Any] | None:
        try:
            snap = client.document(f"rooms/{room}").get(timeout=2)
        except Exception:  # the emulator may be down or still starting
            return None
        return snap.to_dict() if snap.exists else None

    with running(config) as runtime:
        channel(inbox).put(update("r1", 1, 1))
        wait_until(lambda: doc("r1") == {"n": 1, "_version": 1}, "r1 at version 1")
        own_emulator.stop()
        channel(inbox).put(update("r1", 2, 2), update("r2", 1, 20), update("r1", 3, 3))
        wait_until(
            lambda: runtime.metrics()["rooms"]["retried"] > 0,
            "the sink failing and being retried while the emulator is down",
        )
        own_emulator.start()  # same port, empty state: the emulator keeps nothing
        wait_until(lambda: doc("r1") == {"n": 3, "_version": 3}, "r1 at version 3")
        wait_until(lambda: doc("r2") == {"n": 20, "_version": 1}, "r2 at version 1")
        channel(inbox).put(update("r2", 2, 21))
        wait_until(lambda: doc("r2") == {"n": 21, "_version": 2}, "the pipeline still runs")
    client.close()  # type: ignore[no-untyped-call]
    assert channel(dead).values() == []
