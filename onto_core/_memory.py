"""The cyclic garbage collector around passes that allocate mostly long-lived objects."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["collector_paused"]

_lock = threading.Lock()
_pauses = 0  # passes running with the collector paused
_was_enabled = False  # whether it ran before the first of them began


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the block (reference counting goes on).

    A pass that builds many objects which live on (views, read sets, indexes) would
    have collections walk them over and over while finding next to nothing. Blocks may
    overlap, from any thread; the collector runs again once the last ends, unless it was
    off before the first began.
    """
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
