"""A gate a pipeline's ``map`` processor waits at, so a test can hold changes in flight.

``hold`` (``engine_gate:hold`` in a config, with ``thread: true``) passes each value on
once ``GATE`` is open, waiting at most 30 seconds.
"""

from __future__ import annotations

import threading
from typing import Any

GATE = threading.Event()


def hold(value: Any) -> Any:
    if not GATE.wait(timeout=30):
        raise TimeoutError("the test never opened the gate")
    return value
