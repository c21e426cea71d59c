"""In-process channels: a ``memory`` source reads one, a ``memory`` sink records into one.

Channels are named and live for the life of the process. Code puts values in with
``channel(name).put(...)`` for a source to read, and reads what a sink wrote with
``channel(name).values()``. Nothing survives a restart: the memory source redelivers
nacked messages within the process only.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from onto_core.protocols import Guarantee, Message

__all__ = ["MemoryChannel", "MemorySink", "MemorySource", "channel", "drop_channels"]


class MemoryChannel:
    """A named, unbounded, thread-safe FIFO of messages with a record of acks and nacks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: list[Message] = []
        self.acked: list[Message] = []
        self.nacked: list[tuple[Message, BaseException]] = []
        self._pending: deque[Any] = deque()  # values or messages; wrapped when taken
        self._closed = False
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def put(self, *values: Any) -> None:
        """Queue values (or ready-made messages) for readers of this channel."""
        with self._lock:
            self._pending.extend(values)
            self._wake()

    def close(self) -> None:
        """No more messages will come: readers get ``None`` once the queue is empty."""
        with self._lock:
            self._closed = True
            self._wake()

    def values(self) -> list[Any]:
        """Values of every message a sink wrote here, in order."""
        with self._lock:
            return [m.value for m in self.messages]

    def _wake(self) -> None:
        for loop, fut in self._waiters:
            loop.call_soon_threadsafe(_resolve, fut)
        self._waiters.clear()

    def take(self, limit: int) -> list[Message] | None:
        """Up to ``limit`` queued messages; ``[]`` if none yet, ``None`` once closed and empty."""
        with self._lock:
            if not self._pending:
                return None if self._closed else []
            pending = self._pending
            if limit >= len(pending):
                taken = list(pending)
                pending.clear()
            else:
                popleft = pending.popleft
                taken = [popleft() for _ in range(limit)]
        return Message.wrap_all(taken)

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._pending or self._closed:
                return
            self._waiters.append((loop, fut))
        await fut

    def requeue(self, message: Message) -> None:
        with self._lock:
            self._pending.appendleft(message)
            self._wake()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_channels: dict[str, MemoryChannel] = {}
_channels_lock = threading.Lock()


def channel(name: str) -> MemoryChannel:
    """The process-wide channel called ``name``, created on first use."""
    with _channels_lock:
        found = _channels.get(name)
        if found is None:
            found = _channels[name] = MemoryChannel(name)
        return found


def drop_channels() -> None:
    """Forget every channel (for tests)."""
    with _channels_lock:
        _channels.clear()


class MemorySource:
    """Reads messages from an in-process channel, or from values listed in the config."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        channel: str | None = Field(
            None, description="Channel to read; its writers decide the end."
        )
        messages: list[Any] | None = Field(
            None, description="Values to emit, then stop (instead of a channel)."
        )
        redeliver: bool = Field(
            True, description="Put nacked messages back at the head of the channel."
        )
        keep_acked: int | None = Field(
            None, ge=0, description="Keep only the newest N acked messages (null keeps all)."
        )

    def __init__(self, config: Config) -> None:
        self.config = config
        if config.messages is not None:
            self.channel = MemoryChannel(f"inline-{id(self)}")
            self.channel.put(*config.messages)
            self.channel.close()
        else:
            self.channel = channel(config.channel or "default")

    async def read_batch(self, max_messages: int) -> list[Message]:
        while True:
            batch = self.channel.take(max_messages)
            if batch is None:
                return []
            if batch:
                return batch
            await self.channel.wait()

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        await self.ack_batch([message])

    async def ack_batch(self, messages: list[Message]) -> None:
        """Record the acks in the channel's ``acked`` (the newest ``keep_acked`` of them)."""
        keep, acked = self.config.keep_acked, self.channel.acked
        if keep is None:
            acked.extend(messages)
            return
        acked.extend(messages[len(messages) - keep :] if keep else ())
        if len(acked) > keep:
            del acked[: len(acked) - keep]

    async def nack(self, message: Message, error: BaseException) -> None:
        self.channel.nacked.append((message, error))
        if self.config.redeliver:
            self.channel.requeue(message)


class MemorySink:
    """Appends messages to an in-process channel (read them with ``channel(name)``)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        channel: str = Field("default", description="Channel to append to.")
        keep_last: int | None = Field(
            None, ge=1, description="Keep only the newest N messages (null keeps all)."
        )

    def __init__(self, config: Config) -> None:
        self.channel = channel(config.channel)
        self.keep_last = config.keep_last

    async def write(self, messages: list[Message]) -> None:
        kept = self.channel.messages
        kept.extend(messages)
        if self.keep_last is not None and len(kept) > self.keep_last:
            del kept[: len(kept) - self.keep_last]
