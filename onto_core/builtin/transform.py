"""The ``map`` processor: a Python function applied to each message's value."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onto_core.protocols import Message, ProcessorResult

__all__ = ["MapProcessor", "import_object"]


def import_object(ref: str) -> Any:
    """The object named by ``"package.module:attribute"``; ``ValueError`` saying why not."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected 'module:attribute', got {ref!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


class MapProcessor:
    """Replaces each value by ``function(value)``; a ``None`` result drops the message.

    The function runs on the event loop, which suits pure transformations (a thread would
    only add hand-over cost to CPU-bound work). Set ``thread: true`` for a plain function
    that blocks on I/O, so it runs in a worker thread, one batch at a time; or write it
    ``async def``.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        function: str = Field(description="'package.module:function' taking and returning a value.")

        @field_validator("function")
        @classmethod
        def _importable(cls, ref: str) -> str:
            if not callable(import_object(ref)):
                raise ValueError(f"{ref!r} is not callable")
            return ref

        thread: bool = Field(False, description="Run a blocking plain function in a worker thread.")

    def __init__(self, config: Config) -> None:
        self.function: Callable[[Any], Any] = import_object(config.function)
        self.is_async = inspect.iscoroutinefunction(self.function)
        self.thread = config.thread

    def _apply_all(self, messages: list[Message]) -> list[ProcessorResult]:
        function = self.function
        derived = Message.derive_each(messages, [function(m.value) for m in messages])
        return cast("list[ProcessorResult]", derived)

    async def process(self, message: Message) -> ProcessorResult:
        return (await self.process_batch([message]))[0]

    async def process_batch(self, messages: list[Message]) -> list[ProcessorResult]:
        if self.is_async:
            results: list[ProcessorResult] = []
            for m in messages:
                value = await self.function(m.value)
                results.append(None if value is None else m.derive(value))
            return results
        if self.thread:
            return await asyncio.to_thread(self._apply_all, messages)
        return self._apply_all(messages)
