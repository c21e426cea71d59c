"""The bounded buffer between a pipeline's reader and its worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque

from onto_core.protocols import Message

__all__ = ["MessageBuffer"]


class MessageBuffer:
    """A FIFO holding at most ``capacity`` messages, each with the time it was read.

    ``put`` waits while the buffer is full, which is how a slow sink slows its source.
    ``high_water`` records the most messages ever held, so the bound can be checked.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.high_water = 0
        self._items: deque[tuple[Message, float]] = deque()
        self._closed = False
        self._interrupted = False
        self._changed = asyncio.Condition()
        self._pokes: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def free(self) -> int:
        return self.capacity - len(self._items)

    async def wait_for_space(self) -> int:
        """Wait until at least one slot is free; return how many are."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.free > 0 or self._closed)
            return self.free

    async def put(self, messages: list[Message]) -> None:
        """Append ``messages``, waiting for room as needed."""
        now = time.monotonic()
        pending = list(messages)
        async with self._changed:
            while pending:
                await self._changed.wait_for(lambda: self.free > 0)
                room = self.free
                self._items.extend((m, now) for m in pending[:room])
                pending = pending[room:]
                self.high_water = max(self.high_water, len(self._items))
                self._changed.notify_all()

    async def take(self, max_items: int, linger: float) -> list[tuple[Message, float]] | None:
        """Up to ``max_items`` entries; waits for one, then up to ``linger`` s for a full batch.

        ``None`` once the buffer is closed and empty; ``[]`` when ``interrupt()`` ended the
        wait with nothing to take.
        """
        async with self._changed:
            await self._changed.wait_for(
                lambda: bool(self._items) or self._closed or self._interrupted
            )
            self._interrupted = False
            if not self._items:
                return None if self._closed else []
            if linger > 0 and len(self._items) < max_items and not self._closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(
                            lambda: len(self._items) >= max_items or self._closed
                        ),
                        linger,
                    )
            count = min(max_items, len(self._items))
            batch = [self._items.popleft() for _ in range(count)]
            self._changed.notify_all()
            return batch

    def interrupt(self) -> None:
        """End a waiting (or the next) ``take`` at once; call on the event loop's thread."""
        self._interrupted = True
        task = asyncio.ensure_future(self._notify())
        self._pokes.add(task)  # held until done, so it is not collected mid-way
        task.add_done_callback(self._pokes.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        """No more puts; ``take`` drains what is left, then returns ``None``."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()
