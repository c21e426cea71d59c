"""Calling component methods that may be sync or async, and reading what they return."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from onto_core.protocols import Message

__all__ = ["as_async", "as_messages", "maybe_await", "optional_method"]


def as_async(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` as a coroutine function; plain functions run in a worker thread.

    The thread keeps a blocking client library from stalling every other pipeline.
    """
    if inspect.iscoroutinefunction(fn):
        return fn

    async def in_thread(*args: Any) -> Any:
        result = await asyncio.to_thread(fn, *args)
        return await result if inspect.isawaitable(result) else result

    return in_thread


async def maybe_await(value: Any) -> Any:
    """``value``, awaited first if it is awaitable."""
    return await value if inspect.isawaitable(value) else value


def optional_method(obj: object, name: str) -> Callable[..., Awaitable[Any]] | None:
    """``obj.name`` as a coroutine function, or ``None`` when the component doesn't have it."""
    fn = getattr(obj, name, None)
    return as_async(fn) if callable(fn) else None


def as_messages(result: Any) -> list[Message]:
    """A processor's result as a list (what the runner accepts: None, one, an iterable)."""
    if result is None:
        return []
    if isinstance(result, Message):
        return [result]
    if isinstance(result, Iterable):
        return list(result)
    raise TypeError(f"expected a Message, an iterable of messages or None, got {result!r}")
