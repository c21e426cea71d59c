"""Calling component methods that may be sync or async, and reading what they return."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from onto_core.protocols import Message

__all__ = ["as_async", "as_messages", "maybe_await", "optional_method", "share_the_gil"]

# How often a busy event loop lets other threads run, and for how long it steps aside.
THREAD_TURN_EVERY = 0.05
THREAD_TURN_FOR = 0.0001
_next_turn = 0.0


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


def share_the_gil() -> None:
    """Let threads waiting for the GIL run, at most every ``THREAD_TURN_EVERY`` seconds.

    A busy asyncio loop starves the process's other threads (web servers, the metrics
    server, ``to_thread`` workers): each pass of the loop polls its selector, which drops
    the GIL and takes it straight back, and CPython's forced switch never fires while the
    GIL keeps changing hands like that. A thread woken for a request then waits for the
    whole burst (seen: no ``/metrics`` scrape answered during a 0.9 s burst, and a thread
    waking every 10 ms ran twice in it). Sleeping ``THREAD_TURN_FOR`` seconds with the GIL
    released lets a waiting thread take it; the loop has it back within the switch
    interval. It costs about 0.2% of a busy loop's time, and nothing when idle.
    """
    global _next_turn
    now = time.monotonic()
    if now >= _next_turn:
        _next_turn = now + THREAD_TURN_EVERY
        time.sleep(THREAD_TURN_FOR)
