"""Calling component methods that may be sync or async."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["as_async", "maybe_await", "optional_method"]


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
