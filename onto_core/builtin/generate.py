"""A source that makes up messages: for demos, benchmarks and smoke tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from onto_core.protocols import Guarantee, Message

__all__ = ["GenerateSource"]


class GenerateSource:
    """Emits ``count`` messages ``{"n": i, **fields}``, optionally paced by ``interval``."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int | None = Field(10, ge=0, description="How many messages; null for endless.")
        interval: float = Field(0.0, ge=0, description="Seconds between messages.")
        fields: dict[str, Any] = Field(
            default_factory=dict, description="Extra fields copied into every value."
        )
        key_field: str | None = Field(
            None, description="Field whose value becomes the message key (default: none)."
        )

    def __init__(self, config: Config) -> None:
        self.config = config
        self.next = 0
        self.redeliver: list[Message] = []
        self.acked = 0

    def _make(self) -> Message:
        value = {"n": self.next, **self.config.fields}
        self.next += 1
        key = value.get(self.config.key_field) if self.config.key_field else None
        return Message(value, key=None if key is None else str(key), offset=value["n"])

    def _exhausted(self) -> bool:
        return self.config.count is not None and self.next >= self.config.count

    async def read_batch(self, max_messages: int) -> list[Message]:
        if self.redeliver:
            batch, self.redeliver = self.redeliver[:max_messages], self.redeliver[max_messages:]
            return batch
        if self._exhausted():
            return []
        if self.config.interval:
            await asyncio.sleep(self.config.interval)
            return [self._make()]
        batch = []
        while len(batch) < max_messages and not self._exhausted():
            batch.append(self._make())
        return batch

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    async def ack(self, message: Message) -> None:
        self.acked += 1

    async def ack_batch(self, messages: list[Message]) -> None:
        self.acked += len(messages)

    async def nack(self, message: Message, error: BaseException) -> None:
        message.timestamp = time.time()
        self.redeliver.append(message)
