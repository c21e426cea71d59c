"""The bounded buffer between a pipeline's reader and its worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from onto_core.protocols import Message

__all__ = ["MessageBuffer"]


class MessageBuffer:
    """A FIFO holding at most ``capacity`` messages, each with the time it was read.

    ``put`` waits while the buffer is full, which is how a slow sink slows its source.
    ``high_water`` records the most messages ever held, so the bound can be checked.
    Messages are kept in the lists they were put in (with the one time they were read),
    so holding a message costs no object of its own.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.high_water = 0
        # [messages, index of the first not taken, time read]
        self._chunks: deque[list[Any]] = deque()
        self._count = 0
        self._closed = False
        self._interrupted = False
        self._changed = asyncio.Condition()
        self._pokes: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return self._count

    @property
    def free(self) -> int:
        return self.capacity - self._count

    async def wait_for_space(self) -> int:
        """Wait until at least one slot is free; return how many are."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.free > 0 or self._closed)
            return self.free

    async def put(self, messages: list[Message]) -> None:
        """Append ``messages``, waiting for room as needed."""
        now = time.monotonic()
        pending = messages
        async with self._changed:
            while pending:
                await self._changed.wait_for(lambda: self.free > 0)
                room = self.free
                part, pending = (
                    (pending, [])
                    if len(pending) <= room
                    else (
                        pending[:room],
                        pending[room:],
                    )
                )
                self._chunks.append([part, 0, now])
                self._count += len(part)
                self.high_water = max(self.high_water, self._count)
                self._changed.notify_all()

    async def take(self, max_items: int, linger: float) -> tuple[list[Message], list[float]] | None:
        """Up to ``max_items`` messages and the time each was read.

        Waits for one, then up to ``linger`` s for a full batch. ``None`` once the buffer
        is closed and empty; empty lists when ``interrupt()`` ended the wait with nothing
        to take.
        """
        async with self._changed:
            await self._changed.wait_for(
                lambda: bool(self._count) or self._closed or self._interrupted
            )
            self._interrupted = False
            if not self._count:
                return None if self._closed else ([], [])
            if linger > 0 and self._count < max_items and not self._closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._count >= max_items or self._closed),
                        linger,
                    )
            messages: list[Message] = []
            read_at: list[float] = []
            wanted = min(max_items, self._count)
            while len(messages) < wanted:
                chunk = self._chunks[0]
                held, first, when = chunk
                count = min(wanted - len(messages), len(held) - first)
                if first == 0 and count == len(held) and not messages:
                    messages = held  # the whole chunk: no copy
                else:
                    messages.extend(held[first : first + count])
                read_at.extend([when] * count)
                if first + count == len(held):
                    self._chunks.popleft()
                else:
                    chunk[1] = first + count
            self._count -= wanted
            self._changed.notify_all()
            return messages, read_at

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
