"""The cyclic garbage collector around passes that allocate mostly long-lived objects."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["collector_paused", "young_threshold"]

_lock = threading.Lock()
_pauses = 0  # passes running with the collector paused
_was_enabled = False  # whether it ran before the first of them began
_raises = 0  # young_threshold blocks running
_threshold_before: tuple[int, ...] = ()  # the thresholds before the first began
_raised_to: tuple[int, ...] = ()  # what they were raised to


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


@contextlib.contextmanager
def young_threshold(allocations: int | None) -> Iterator[None]:
    """Run the youngest generation's collection at most every ``allocations`` allocations
    within the block (``gc.set_threshold``'s first value; ``None`` leaves it).

    At Python's default of 700, a pipeline that makes a message object or two per record
    runs the collector every few hundred records, each run walking the records still in
    flight and promoting them to older generations that are walked again. Blocks may
    overlap; the thresholds in place before the first are restored after the last,
    unless something else changed them meanwhile.
    """
    global _raises, _threshold_before, _raised_to
    if allocations is None:
        yield
        return
    with _lock:
        if _raises == 0:
            _threshold_before = _raised_to = gc.get_threshold()
        _raises += 1
        current = gc.get_threshold()
        if allocations > current[0]:
            gc.set_threshold(allocations, *current[1:])
            _raised_to = gc.get_threshold()
    try:
        yield
    finally:
        with _lock:
            _raises -= 1
            if _raises == 0 and gc.get_threshold() == _raised_to:
                gc.set_threshold(*_threshold_before)
