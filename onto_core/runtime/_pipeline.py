"""One running pipeline: a reader filling a bounded buffer, a worker emptying it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from onto_core._memory import collector_paused
from onto_core.config import ComponentSpec, PipelineConfig
from onto_core.errors import ComponentError, SourceError
from onto_core.models.datastore import Datastore
from onto_core.protocols import Guarantee, Message, RuntimeContext
from onto_core.runtime._buffer import MessageBuffer
from onto_core.runtime._calls import as_async, as_messages, optional_method, share_the_gil
from onto_core.runtime._metrics import PipelineMetrics
from onto_core.runtime._tracing import PipelineTracer

__all__ = ["PipelineRunner"]

log = logging.getLogger("onto.runtime")

# Headers a dead letter carries, so whoever reads the dead-letter sink knows what happened.
ERROR_HEADER = "onto-error"
STAGE_HEADER = "onto-stage"
PIPELINE_HEADER = "onto-pipeline"
ATTEMPTS_HEADER = "onto-attempts"
SOURCE_ID_HEADER = "onto-source-id"


@dataclass(slots=True)
class _Item:
    """One message read from the source, and what became of it."""

    message: Message
    read_at: float
    outputs: list[Message] = field(default_factory=list)
    failed: BaseException | None = None  # set when it could not be delivered nor dead-lettered
    dead: bool = False
    deferred: bool = False  # failed its first try: retried aside (see ``_retry_aside``)


@dataclass
class _Component:
    spec: ComponentSpec
    instance: Any
    label: str


def _record_error(message: Message, error: BaseException, attempt: int) -> None:
    message.headers[ERROR_HEADER] = f"{type(error).__name__}: {error}"
    message.headers[ATTEMPTS_HEADER] = str(attempt)


def _alive(item: _Item) -> bool:
    """Still on its way: neither dead-lettered, failed, nor set aside for a retry."""
    return not (item.dead or item.failed is not None or item.deferred)


def _done(item: _Item) -> bool:
    """Delivered everywhere (or dead-lettered): its outputs need not be built again."""
    return not item.deferred and item.failed is None and not item.dead


def _defer_followers(items: list[_Item]) -> None:
    """Set aside, with each deferred item, the later items of the batch sharing its key."""
    keys: set[str] = set()
    for item in items:
        key = item.message.key
        if key is None:
            continue
        if item.deferred:
            keys.add(key)
        elif key in keys:
            item.deferred = True


def _flatten(results: list[Any], origins: list[int] | None) -> tuple[list[Message], list[int]]:
    """A processor's results as one list of messages, each with the input it came from."""
    messages: list[Message] = []
    came_from: list[int] = []
    for index, result in enumerate(results):
        origin = index if origins is None else origins[index]
        if type(result) is Message:
            messages.append(result)
            came_from.append(origin)
            continue
        for message in as_messages(result):
            messages.append(message)
            came_from.append(origin)
    return messages, came_from


class PipelineRunner:
    """Runs one pipeline until its source is exhausted or ``stop()`` is called."""

    def __init__(
        self,
        config: PipelineConfig,
        datastore: Datastore | None = None,
        freeze_gc: bool = False,
        tracer: PipelineTracer | None = None,
    ) -> None:
        self.config = config
        # Decided once, here: an untraced pipeline's components are never wrapped, so its
        # messages pay nothing for tracing (see _tracing.py).
        self._tracer = tracer
        # Whether what processors build at start is still to be frozen (see _emit_due).
        self._freeze_built = freeze_gc
        self.name = config.name
        self.datastore = datastore
        self.metrics = PipelineMetrics(config.name)
        self.buffer = MessageBuffer(config.buffer)
        self.log = logging.getLogger(f"onto.pipeline.{config.name}")
        self.source = self._build(config.source, "source")
        self.processors = [
            self._build(spec, f"processors[{i}]") for i, spec in enumerate(config.processors)
        ]
        self.sinks = [self._build(spec, f"sinks[{i}]") for i, spec in enumerate(config.sinks)]
        self.dead_letter = (
            self._build(config.dead_letter, "dead_letter") if config.dead_letter else None
        )
        self._ack = as_async(self.source.instance.ack)
        self._ack_batch = optional_method(self.source.instance, "ack_batch")
        self._nack = as_async(self.source.instance.nack)
        self._batch_fns = [optional_method(p.instance, "process_batch") for p in self.processors]
        self._writes = {id(sink): as_async(sink.instance.write) for sink in self.sinks}
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._woken = False
        # Set once the processors' first due messages are out: only then does reading
        # start, so what they reflect is skipped at the source (see _skip_reflected).
        self._may_read = asyncio.Event()
        # Processors told the fate of their outputs (``settled``), by index.
        self._settled = {
            i: fn
            for i, p in enumerate(self.processors)
            if (fn := optional_method(p.instance, "settled")) is not None
        }
        self._reader: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        # Messages that failed a first try are retried here, in arrival order, while the
        # worker goes on with the others; their keys wait behind them (see _retry_aside).
        self._aside: deque[_Item] = deque()
        self._aside_keys: Counter[str] = Counter()
        self._aside_changed = asyncio.Condition()
        self._aside_task: asyncio.Task[None] | None = None
        self._retry_aside = (
            config.guarantee is Guarantee.AT_LEAST_ONCE and config.retry.max_attempts > 1
        )
        # Retries are skipped at most once: a retried write could land twice.
        self._attempts = (
            1 if config.guarantee is Guarantee.AT_MOST_ONCE else config.retry.max_attempts
        )

    def _build(self, spec: ComponentSpec, where: str) -> _Component:
        label = f"{where} ({spec.type})"
        instance = spec.build()
        if self._tracer is not None:
            instance = self._tracer.traced(instance, spec.kind, label)
        return _Component(spec, instance, label)

    def _components(self) -> list[_Component]:
        extra = [self.dead_letter] if self.dead_letter else []
        return [*extra, *self.sinks, *self.processors, self.source]

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start sinks first and the source last, so nothing is read before it can go out."""
        self._loop = asyncio.get_running_loop()
        for component in self._components():
            start = optional_method(component.instance, "start")
            if start is None:
                continue
            ctx = RuntimeContext(
                pipeline=self.name,
                component=component.label,
                log=logging.getLogger(f"onto.pipeline.{self.name}.{component.spec.type}"),
                datastore=self.datastore,
                wake=self.wake,
            )
            try:
                await start(ctx)
            except Exception as exc:
                raise ComponentError(
                    f"{component.spec.kind} {component.spec.type!r} failed to start: {exc}",
                    pipeline=self.name,
                    component=component.label,
                ) from exc

    def snapshot(self) -> dict[str, Any]:
        """The pipeline's counters, plus what processors with ``metrics()`` report by label."""
        self.metrics.buffer_high_water = self.buffer.high_water
        figures = self.metrics.snapshot()
        for processor in self.processors:
            report = getattr(processor.instance, "metrics", None)
            if callable(report):
                figures.setdefault("processors", {})[processor.label] = report()
        return figures

    def wake(self) -> None:
        """Have the worker call the processors' ``due_messages`` soon; from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: none to wake
            loop.call_soon_threadsafe(self._wake_worker)

    def _wake_worker(self) -> None:
        self._woken = True
        self.buffer.interrupt()

    async def close(self) -> None:
        """Close every component, source first; errors are logged, never raised."""
        for component in reversed(self._components()):
            close = optional_method(component.instance, "close")
            if close is None:
                continue
            try:
                await close()
            except Exception:
                self.log.exception("closing %s failed", component.label)

    async def run(self) -> None:
        """Read, process and deliver until the source is exhausted or ``stop`` drains it."""
        reader = self._reader = asyncio.create_task(self._read_loop(), name=f"{self.name}-read")
        worker = self._worker = asyncio.create_task(self._work_loop(), name=f"{self.name}-work")
        try:
            # The worker ends once the reader has closed the buffer and it is drained.
            await worker
        except asyncio.CancelledError:
            reader.cancel()
            if not self._stopping:
                raise
        except BaseException:
            reader.cancel()
            raise
        finally:
            self.metrics.buffer_high_water = self.buffer.high_water
        await asyncio.gather(reader, return_exceptions=True)
        if not reader.cancelled() and reader.exception() is not None:
            raise reader.exception()  # type: ignore[misc]

    def stop_reading(self) -> None:
        """Read nothing more, from now on (what is read already is still delivered)."""
        self._stopping = True
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()

    async def stop(self, timeout: float) -> bool:
        """Stop reading, finish what is buffered within ``timeout`` s; False if cut short.

        Messages not finished in time are neither acked nor nacked: a durable source
        delivers them again after a restart.
        """
        self.stop_reading()
        await self.buffer.close()
        if self._worker is None:
            return True
        done, _ = await asyncio.wait({self._worker}, timeout=timeout)
        if done:
            return True
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)
        return False

    # --- reading ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        await self._may_read.wait()
        source = self.source.instance
        read_batch = optional_method(source, "read_batch")
        read_one = as_async(source.read)
        attempt = 0
        try:
            while True:
                room = await self.buffer.wait_for_space()
                try:
                    if read_batch is not None:
                        batch = list(await read_batch(min(room, self.config.batch.size)))
                    else:
                        one = await read_one()
                        batch = [] if one is None else [one]
                except SourceError as exc:
                    attempt += 1
                    self.metrics.failed += 1
                    delay = self.config.retry.backoff(attempt)
                    self.log.warning("reading failed, retrying in %.2fs: %s", delay, exc)
                    await asyncio.sleep(delay)
                    continue
                attempt = 0
                if not batch:
                    return  # a finite source is exhausted
                self.metrics.messages_in += len(batch)
                if self.config.guarantee is Guarantee.AT_MOST_ONCE:
                    await self._ack_all(batch)
                await self.buffer.put(batch)
        finally:
            await self.buffer.close()

    # --- processing and delivery --------------------------------------------------------

    async def _work_loop(self) -> None:
        try:
            await self._emit_due()
        finally:
            self._may_read.set()
        linger = self.config.batch.linger_ms / 1000
        try:
            while True:
                taken = await self.buffer.take(self.config.batch.size, linger)
                if taken is None:
                    break
                if self._woken:
                    self._woken = False
                    await self._emit_due()
                if not taken[0]:
                    continue
                messages, read_at = taken
                if self._aside_keys and any(m.key in self._aside_keys for m in messages):
                    await self._run_behind_retries(messages, read_at)
                else:
                    await self._flow(messages, read_at)
                # A batch whose stages never wait would otherwise keep the event loop
                # from every other pipeline and server on it until the buffer is empty,
                # and the process's other threads from the GIL.
                share_the_gil()
                await asyncio.sleep(0)
            await self._drain_aside()
        finally:
            if self._aside_task is not None:
                self._aside_task.cancel()
                await asyncio.gather(self._aside_task, return_exceptions=True)

    async def _run_behind_retries(self, messages: list[Message], read_at: list[float]) -> None:
        """A batch some of whose keys wait behind a retry: those messages join it, untried."""
        items = [_Item(m, t) for m, t in zip(messages, read_at, strict=True)]
        ready = []
        for item in items:
            if item.message.key is not None and item.message.key in self._aside_keys:
                item.deferred = True
            else:
                ready.append(item)
        produced = await self._handle(ready, 0, first_try=True) if ready else []
        await self._finish(items, produced)

    async def _finish(
        self,
        items: list[_Item],
        produced: list[tuple[int, list[tuple[_Item, Message]]]],
        due: bool = False,
    ) -> None:
        """Tell processors how their outputs fared, then ack, nack or set items aside."""
        if due:  # nothing to ack behind due messages
            await self._tell_settled(produced)
            return
        if not self._retry_aside:
            await self._settle(items, produced)
            return
        await self._settle([i for i in items if not i.deferred], produced)
        await self._set_aside([i for i in items if i.deferred])

    async def _flow(
        self, messages: list[Message], read_at: list[float], first: int = 0, due: int | None = None
    ) -> None:
        """Run a batch through processors ``first``.. and every sink, then settle it.

        The common case, every stage taking the whole batch, costs no object per message
        beyond the messages themselves. At the first stage that fails or cannot take a
        batch, the batch continues message by message (``_handle``, ``_deliver``), which
        isolates the failure and applies retries, retrying aside and dead letters.
        ``due``: the messages are the due messages of processor ``due`` (nothing to ack).
        """
        first_try = self._retry_aside and due is None
        current = messages
        origins: list[int] | None = None  # which input each of ``current`` came from
        stages: list[tuple[int, list[Message], list[int] | None]] = []
        if due is not None and due in self._settled:
            stages.append((due, messages, None))
        for index in range(first, len(self.processors)):
            batch_fn = self._batch_fns[index]
            results: Any = None
            if batch_fn is not None:
                try:
                    results = await batch_fn(current[:])
                    if type(results) is not list:
                        results = list(results)
                    if len(results) != len(current):
                        raise TypeError(
                            f"process_batch returned {len(results)} results "
                            f"for {len(current)} messages"
                        )
                except Exception:
                    self.metrics.failed += 1  # found by processing one at a time
                    results = None
            if results is None:
                items = self._items(messages, read_at)
                produced = await self._handle(
                    items,
                    index,
                    first_try,
                    current=self._entries(items, current, origins),
                    produced=self._produced(items, stages),
                    batch_failed=batch_fn is not None,
                )
                await self._finish(items, produced, due is not None)
                return
            for result in results:
                if type(result) is not Message:
                    current, origins = _flatten(results, origins)
                    break
            else:
                current = results
            if index in self._settled:
                stages.append((index, current, origins))
        if self.config.guarantee is Guarantee.EXACTLY_ONCE:
            failures: list[tuple[int, BaseException | None] | None] = [(0, None)] * len(self.sinks)
        elif len(self.sinks) == 1:  # no task to gather: one sink is written inline
            failures = [await self._write(self.sinks[0], current)]
        else:
            failures = await asyncio.gather(*(self._write(sink, current) for sink in self.sinks))
        if any(failure is not None for failure in failures):
            items = self._items(messages, read_at)
            for item, out in self._entries(items, current, origins):
                item.outputs.append(out)
            await asyncio.gather(
                *(
                    self._deliver(sink, items, first_try, begin=failure[0], failure=failure[1])
                    for sink, failure in zip(self.sinks, failures, strict=True)
                    if failure is not None
                )
            )
            await self._finish(items, self._produced(items, stages), due is not None)
            return
        for index, outputs, _ in stages:
            try:
                await self._settled[index](outputs, [])
            except Exception:
                self.log.exception("%s failed in settled()", self.processors[index].label)
        if due is None:
            now = time.monotonic()
            self.metrics.observe_latencies(now, read_at)
            if self.config.guarantee is not Guarantee.AT_MOST_ONCE:
                await self._ack_all(messages)

    async def _write(
        self, sink: _Component, outputs: list[Message]
    ) -> tuple[int, BaseException | None] | None:
        """Write ``outputs`` to ``sink`` in batches; ``None`` once all are confirmed.

        Otherwise where delivery must go on message by message: the index of the batch
        that failed, with its error (``None`` for a lone message, which ``_deliver``
        writes itself so its attempts are counted as for any message).
        """
        cap = getattr(sink.instance, "max_batch_size", None) or len(outputs) or 1
        whole = self.config.guarantee is Guarantee.AT_MOST_ONCE
        write = self._writes[id(sink)]
        for start in range(0, len(outputs), cap):
            chunk = outputs[start : start + cap]
            if len(chunk) == 1 and not whole:
                return start, None
            try:
                await write(chunk)
            except Exception as exc:
                return start, exc
            self.metrics.sunk(sink.label, len(chunk))
        return None

    def _items(self, messages: list[Message], read_at: list[float]) -> list[_Item]:
        return [_Item(m, t) for m, t in zip(messages, read_at, strict=True)]

    @staticmethod
    def _entries(
        items: list[_Item], current: list[Message], origins: list[int] | None
    ) -> list[tuple[_Item, Message]]:
        if origins is None:
            return list(zip(items, current, strict=True))
        return [(items[o], m) for o, m in zip(origins, current, strict=True)]

    def _produced(
        self, items: list[_Item], stages: list[tuple[int, list[Message], list[int] | None]]
    ) -> list[tuple[int, list[tuple[_Item, Message]]]]:
        return [(index, self._entries(items, out, origins)) for index, out, origins in stages]

    async def _ack_all(self, messages: list[Message]) -> None:
        """Ack ``messages`` in order: in one call when the source has ``ack_batch``."""
        if self._ack_batch is not None:
            await self._ack_batch(messages)
        else:
            for message in messages:
                await self._ack(message)
        self.metrics.acked += len(messages)

    async def _set_aside(self, items: list[_Item]) -> None:
        """Queue items that failed their first try (or wait behind one) for retrying aside.

        Bounded by ``buffer``: when that many wait, the worker waits too (backpressure).
        """
        if not items:
            return
        async with self._aside_changed:
            for item in items:
                await self._aside_changed.wait_for(lambda: len(self._aside) < self.config.buffer)
                self._aside.append(item)
                if item.message.key is not None:
                    self._aside_keys[item.message.key] += 1
            self._aside_changed.notify_all()
        if self._aside_task is None or self._aside_task.done():
            self._aside_task = asyncio.create_task(self._retry_loop(), name=f"{self.name}-retry")

    async def _retry_loop(self) -> None:
        """Retry set-aside items one at a time, in order: with backoff, then dead letters."""
        while True:
            async with self._aside_changed:
                await self._aside_changed.wait_for(lambda: bool(self._aside))
                item = self._aside[0]
            item.outputs, item.failed, item.dead, item.deferred = [], None, False, False
            produced = await self._handle([item], 0, attempts=max(1, self._attempts - 1))
            await self._settle([item], produced)
            async with self._aside_changed:
                self._aside.popleft()
                key = item.message.key
                if key is not None:
                    self._aside_keys[key] -= 1
                    if not self._aside_keys[key]:
                        del self._aside_keys[key]
                self._aside_changed.notify_all()

    async def _drain_aside(self) -> None:
        """Wait until every set-aside item is done (the source is exhausted or stopping)."""
        async with self._aside_changed:
            await self._aside_changed.wait_for(lambda: not self._aside)

    async def _emit_due(self) -> None:
        """Deliver what processors emit without an input (``due_messages``).

        These have no source message behind them, so nothing is acked for them; the
        processor hears how they fared through ``settled`` like any other output.
        """
        for index, processor in enumerate(self.processors):
            due = optional_method(processor.instance, "due_messages")
            if due is None:
                continue
            messages = await self._due(due)
            await self._skip_reflected(processor)
            size = self.config.batch.size
            for start in range(0, len(messages), size):
                chunk = messages[start : start + size]
                await self._flow(chunk, [time.monotonic()] * len(chunk), index + 1, due=index)

    async def _due(self, due: Callable[[], Awaitable[Iterable[Message]]]) -> list[Message]:
        """What ``due`` returns; the first time it returns any, with ``freeze_gc``, what was
        built for them is moved out of the garbage collector's reach.

        That build (views and their indexes, at start) allocates mostly objects that live
        on: the collector is paused while it runs, and what it left is frozen
        (``gc.freeze``) rather than collected, so no collection walks all of it, now or
        later. Unreachable cycles it made, if any, are kept with it: one build's worth.
        """
        if not self._freeze_built:
            return list(await due())
        with collector_paused():
            messages = list(await due())
            if messages:
                gc.freeze()
                self._freeze_built = False
        return messages

    async def _skip_reflected(self, processor: _Component) -> None:
        """Let the source skip what a processor says it already reflects (start ready).

        A processor's ``reflected_position()`` is a source position up to which every
        message would change nothing (the ``view`` processor: the change-feed position its
        views were built at); a source with ``skip_to(position)`` then stops delivering
        those, instead of replaying history only to have it skipped.
        """
        reflected = optional_method(processor.instance, "reflected_position")
        skip = optional_method(self.source.instance, "skip_to")
        if reflected is None or skip is None or processor is not self.processors[0]:
            return
        position = await reflected()
        if position is not None:
            await skip(position)

    async def _handle(
        self,
        items: list[_Item],
        first: int,
        first_try: bool = False,
        attempts: int | None = None,
        *,
        current: list[tuple[_Item, Message]] | None = None,
        produced: list[tuple[int, list[tuple[_Item, Message]]]] | None = None,
        batch_failed: bool = False,
    ) -> list[tuple[int, list[tuple[_Item, Message]]]]:
        """Run processors ``first``.. and deliver; what each ``settled`` processor produced.

        ``first_try``: one attempt per stage, and a message that fails it is marked
        ``deferred`` (to be retried aside) instead of retried here, together with the
        messages of the batch after it that share its key, so a key keeps its order.
        ``current`` and ``produced`` carry on a batch that earlier stages took whole;
        ``batch_failed``: processor ``first`` already failed on it as a batch.
        """
        if current is None:
            current = [(item, item.message) for item in items]
        produced = [] if produced is None else produced
        for index in range(first, len(self.processors)):
            current = await self._process(
                self.processors[index],
                current,
                first_try,
                attempts,
                batch_failed=batch_failed and index == first,
            )
            if index in self._settled:
                produced.append((index, current))
        if first_try:
            _defer_followers(items)
            current = [(item, out) for item, out in current if not item.deferred]
        for item, out in current:
            item.outputs.append(out)
        await asyncio.gather(
            *(self._deliver(sink, items, first_try, attempts) for sink in self.sinks)
        )
        return produced

    async def _tell_settled(self, produced: list[tuple[int, list[tuple[_Item, Message]]]]) -> None:
        for index, entries in produced:
            delivered = [m for item, m in entries if _done(item)]
            failed = [m for item, m in entries if not _done(item)]
            try:
                await self._settled[index](delivered, failed)
            except Exception:
                self.log.exception("%s failed in settled()", self.processors[index].label)

    async def _process(
        self,
        processor: _Component,
        entries: list[tuple[_Item, Message]],
        first_try: bool = False,
        attempts: int | None = None,
        batch_failed: bool = False,
    ) -> list[tuple[_Item, Message]]:
        entries = [(item, msg) for item, msg in entries if _alive(item)]
        instance = processor.instance
        batch_fn = optional_method(instance, "process_batch")
        results: list[Any] | None = None
        if batch_fn is not None and not batch_failed:
            try:
                results = list(await batch_fn([msg for _, msg in entries]))
                if len(results) != len(entries):
                    raise TypeError(
                        f"process_batch returned {len(results)} results for {len(entries)} messages"
                    )
            except Exception:
                results = None  # find the failing message by processing one at a time
                self.metrics.failed += 1
        out: list[tuple[_Item, Message]] = []
        one = as_async(instance.process)
        for index, (item, msg) in enumerate(entries):
            if results is not None:
                result = results[index]
                if type(result) is Message:  # the common case, kept cheap
                    out.append((item, result))
                    continue
                produced = as_messages(result)
            else:
                produced_or_none = await self._attempt(
                    functools.partial(one, msg), msg, processor.label, attempts, first_try
                )
                if produced_or_none is None:
                    if first_try:
                        item.deferred = True
                        continue
                    await self._dead_letter(item, msg, processor.label)
                    continue
                produced = as_messages(produced_or_none[0])
            for produced_message in produced:
                out.append((item, produced_message))
        return out

    async def _attempt(
        self,
        call: Callable[[], Awaitable[Any]],
        message: Message,
        stage: str,
        attempts: int | None = None,
        first_try: bool = False,
    ) -> tuple[Any] | None:
        """Run ``call`` up to ``attempts`` times with backoff.

        Returns ``(result,)`` on success, ``None`` after the last failure, whose error is
        kept in ``message.headers`` for the dead letter. ``first_try``: one attempt, and
        a failure is reported as set aside for retrying, not as final.
        """
        attempts = 1 if first_try else attempts or self._attempts
        for attempt in range(1, attempts + 1):
            try:
                return (await call(),)
            except Exception as exc:
                self.metrics.failed += 1
                _record_error(message, exc, attempt)
                if first_try:  # only ever with retries left (see _retry_aside)
                    self.metrics.retried += 1
                    self.log.warning(
                        "%s failed on message %s; retrying it aside while later messages go on: %s",
                        stage,
                        message.id,
                        exc,
                    )
                    return None
                if attempt == attempts:
                    self.log.error(
                        "%s failed on message %s after %d attempt(s): %s",
                        stage,
                        message.id,
                        attempt,
                        exc,
                    )
                    return None
                self.metrics.retried += 1
                await asyncio.sleep(self.config.retry.backoff(attempt))
        return None

    async def _deliver(
        self,
        sink: _Component,
        items: list[_Item],
        first_try: bool = False,
        attempts: int | None = None,
        begin: int = 0,
        failure: BaseException | None = None,
    ) -> None:
        """Write every output to ``sink``: in batches, then one by one to isolate a failure.

        After a failed batch each message is tried alone up to ``retry.max_attempts``
        times in all (here and retried aside), so a message reaches one sink at most
        ``max_attempts + 1`` times (docs/runtime.md#retries-and-dead-letters). At most once, a
        failed batch is dead-lettered whole: writing any of it again could duplicate.
        ``first_try``: after a failed batch each message gets one try alone; one that
        fails it is marked ``deferred``, with the messages after it sharing its key.
        ``begin``: the outputs before it were written already (``_write``); ``failure``:
        the batch at ``begin`` was tried and failed with it.
        """
        if self.config.guarantee is Guarantee.EXACTLY_ONCE:
            transactional = optional_method(sink.instance, "write_exactly_once")
            if transactional is not None:
                await self._deliver_exactly_once(sink, transactional, items)
                return
        entries = [(item, out) for item in items if _alive(item) for out in item.outputs]
        if not entries:
            return
        write = self._writes[id(sink)]
        cap = getattr(sink.instance, "max_batch_size", None) or len(entries)
        for start in range(begin, len(entries), cap):
            chunk = entries[start : start + cap]
            left = attempts or self._attempts
            # At most once, a message is never written twice: a failed batch is given up.
            whole = self.config.guarantee is Guarantee.AT_MOST_ONCE
            if len(chunk) > 1 or whole:
                error = failure if start == begin else None
                if error is None:
                    try:
                        await write([out for _, out in chunk])
                        self.metrics.sunk(sink.label, len(chunk))
                        continue
                    except Exception as exc:
                        error = exc
                self.metrics.failed += 1
                self.log.warning("%s failed on a batch of %d: %s", sink.label, len(chunk), error)
                if whole:
                    for item, out in chunk:
                        _record_error(out, error, 1)
                        await self._dead_letter(item, out, sink.label)
                    continue
                self.metrics.retried += 1
                left = max(1, left - 1)
            if first_try:
                await self._try_alone(sink, write, chunk)
                continue
            for item, out in chunk:
                if await self._attempt(functools.partial(write, [out]), out, sink.label, left):
                    self.metrics.sunk(sink.label, 1)
                else:
                    await self._dead_letter(item, out, sink.label)

    async def _try_alone(
        self,
        sink: _Component,
        write: Callable[..., Awaitable[Any]],
        chunk: list[tuple[_Item, Message]],
    ) -> None:
        """One try per message; a failure defers it and the later ones of its key."""
        failed_keys: set[str] = set()
        for item, out in chunk:
            key = item.message.key
            if item.deferred or (key is not None and key in failed_keys):
                item.deferred = True
                continue
            if await self._attempt(
                functools.partial(write, [out]), out, sink.label, first_try=True
            ):
                self.metrics.sunk(sink.label, 1)
            else:
                item.deferred = True
                if key is not None:
                    failed_keys.add(key)

    async def _deliver_exactly_once(
        self, sink: _Component, write: Callable[..., Awaitable[Any]], items: list[_Item]
    ) -> None:
        """exactly_once through a transactional sink: outputs and inputs commit together.

        ``write(outputs, consumed, source)`` commits the outputs together with the source's
        position after ``consumed`` (``source.positions(consumed, sink)``; a Kafka sink
        sends the consumed offsets inside its transaction), or raises having committed
        neither. The consumed messages are acked (or nacked) afterwards as usual. Each
        output's ``onto-source-id`` header names the consumed message it came from. It may
        return how many outputs it wrote (for ``out``), when it skipped some already
        written. It is called even when no output is left, so the position of filtered
        and dead-lettered inputs moves too.
        After a failed batch, each input gets its own transaction, retried and then
        dead-lettered alone; a dead-lettered input's position rides with the next one.
        """
        done = [item for item in items if item.failed is None]
        if not done:
            return
        source = self.source.instance

        def outputs(group: list[_Item]) -> list[Message]:
            return [out for item in group if not item.dead for out in item.outputs]

        for item in done:  # which consumed message each output came from
            for out in item.outputs:
                out.headers[SOURCE_ID_HEADER] = item.message.id

        batch = outputs(done)
        try:
            written = await write(batch, [item.message for item in done], source)
            self.metrics.sunk(sink.label, written if isinstance(written, int) else len(batch))
            return
        except Exception as exc:
            self.metrics.failed += 1
            self.metrics.retried += 1
            self.log.warning("%s failed on a batch of %d: %s", sink.label, len(done), exc)
        carried: list[Message] = []  # dead-lettered inputs no transaction has covered yet
        for item in done:
            outs = outputs([item])
            probe = outs[0] if outs else item.message
            call = functools.partial(write, outs, [*carried, item.message], source)
            result = await self._attempt(call, probe, sink.label, max(1, self._attempts - 1))
            if result is not None:
                written = result[0]
                self.metrics.sunk(sink.label, written if isinstance(written, int) else len(outs))
                carried = []
                continue
            for out in outs:
                out.headers[ERROR_HEADER] = probe.headers[ERROR_HEADER]
                out.headers[ATTEMPTS_HEADER] = probe.headers[ATTEMPTS_HEADER]
                await self._dead_letter(item, out, sink.label)
            if item.failed is None:
                carried.append(item.message)

    async def _dead_letter(self, item: _Item, message: Message, stage: str) -> None:
        """Hand ``message`` to the dead-letter sink; without one, the item is nacked later."""
        error = message.headers.get(ERROR_HEADER, "unknown error")
        if self.dead_letter is None:
            item.failed = ComponentError(error, pipeline=self.name, component=stage)
            return
        letter = message.derive(
            message.value,
            id=message.id,
            headers={
                **message.headers,
                STAGE_HEADER: stage,
                PIPELINE_HEADER: self.name,
                SOURCE_ID_HEADER: item.message.id,
            },
        )
        write = as_async(self.dead_letter.instance.write)
        if await self._attempt(lambda: write([letter]), letter, "dead_letter") is None:
            item.failed = ComponentError(
                f"{error}; the dead-letter sink failed too",
                pipeline=self.name,
                component=stage,
                message_id=message.id,
            )
            return
        item.dead = True
        self.metrics.dead_lettered += 1

    async def _settle(
        self, items: list[_Item], produced: list[tuple[int, list[tuple[_Item, Message]]]]
    ) -> None:
        await self._tell_settled(produced)
        now = time.monotonic()
        at_most_once = self.config.guarantee is Guarantee.AT_MOST_ONCE
        self.metrics.observe_latencies(now, [item.read_at for item in items])
        if at_most_once:
            return  # acked when read
        done: list[Message] = []  # acked together, in order, up to the next nack
        for item in items:
            if item.failed is None:
                done.append(item.message)
                continue
            if done:
                await self._ack_all(done)
                done = []
            await self._nack(item.message, item.failed)
            self.metrics.nacked += 1
        if done:
            await self._ack_all(done)
