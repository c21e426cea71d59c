"""A small onto plugin: the ``sample_counter`` source and the ``sample_collect`` sink.

onto's tests install it as a real distribution to check plugin discovery end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from onto_core.hookspecs import hookimpl
from onto_core.plugins import ComponentRegistrar
from onto_core.protocols import Guarantee, Message

__all__ = ["SampleCollectSink", "SampleCounterSource", "register_components"]


class SampleCounterSource:
    """Counts from ``start``, one message ``{"n": i, "label": label}`` at a time, then stops."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = Field(3, ge=0, description="How many messages to emit.")
        start: int = Field(0, description="First number.")
        label: str = Field("sample", description="Copied into every message.")

    def __init__(self, config: Config) -> None:
        self.config = config
        self.emitted = 0
        self.redeliver: list[Message] = []

    async def read(self) -> Message | None:
        if self.redeliver:
            return self.redeliver.pop(0)
        if self.emitted >= self.config.count:
            return None
        n = self.config.start + self.emitted
        self.emitted += 1
        return Message({"n": n, "label": self.config.label}, key=str(n))

    async def ack(self, message: Message) -> None:
        pass

    async def nack(self, message: Message, error: BaseException) -> None:
        self.redeliver.append(message)


class SampleCollectSink:
    """Appends each message's value as a JSON line to ``path``."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(
        {Guarantee.AT_MOST_ONCE, Guarantee.AT_LEAST_ONCE}
    )

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: Path = Field(description="File to append to.")
        token: str | None = Field(None, description="Access token (never printed).")
        sort_keys: bool = Field(True, description="Write each object's keys in order.")

    def __init__(self, config: Config) -> None:
        self.config = config

    def write(self, messages: list[Message]) -> None:
        self.config.path.parent.mkdir(parents=True, exist_ok=True)
        with self.config.path.open("a", encoding="utf-8") as out:
            for message in messages:
                out.write(json.dumps(message.value, sort_keys=self.config.sort_keys) + "\n")


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.source("sample_counter", SampleCounterSource)
    register.sink("sample_collect", SampleCollectSink)
