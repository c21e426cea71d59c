"""Spans per message per stage, for a pipeline whose runtime records traces.

Only a traced pipeline pays: the runner wraps each component in a traced stand-in when
it is built, and an untraced runner never looks here again. Each stage's span is a
child of the context in the message's ``traceparent`` header, and a stage that hands a
message on writes its own span's context there, so the next stage (in this process, or
after a Kafka record or a datastore change in another) continues the trace:

    read (parent: what the message arrived with) → process <type> (one per processor)
    → write <type> (one per sink) and ack (both children of the last stage before them)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from onto_core.__about__ import __version__
from onto_core.protocols import Message
from onto_core.runtime._calls import as_async, as_messages
from onto_core.tracing import TRACEPARENT

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

__all__ = ["PipelineTracer"]


class _Traced:
    """A component with some methods traced; every other attribute is the component's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"traced {self._inner!r}"


class PipelineTracer:
    """Makes the spans of one pipeline's messages with ``provider``'s tracer."""

    def __init__(self, provider: TracerProvider, pipeline: str) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._kinds = trace.SpanKind
        self._tracer = provider.get_tracer("onto_core", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self.pipeline = pipeline

    # --- contexts and spans ---------------------------------------------------------

    def _parent(self, message: Message) -> Context | None:
        headers = message._headers
        if not headers or TRACEPARENT not in headers:
            return None
        return self._propagator.extract(headers)

    def _carry(self, span: Span, message: Message) -> None:
        """Write ``span``'s context into ``message``'s headers: the next stage's parent."""
        self._propagator.inject(message.headers, context=self._trace.set_span_in_context(span))

    def _start(self, name: str, message: Message, kind: Any, component: str) -> Span:
        return self._tracer.start_span(
            f"{self.pipeline} {name}",
            context=self._parent(message),
            kind=kind,
            attributes={
                "onto.pipeline": self.pipeline,
                "onto.component": component,
                "onto.message.id": message.id,
                **({"onto.message.key": message.key} if message.key is not None else {}),
            },
        )

    @contextlib.contextmanager
    def _spans(
        self, name: str, messages: list[Message], kind: Any, component: str
    ) -> Iterator[list[Span]]:
        """A span per message around the block; all marked failed if the block raises."""
        spans = [self._start(name, m, kind, component) for m in messages]
        try:
            if len(spans) == 1:  # a lone message's stage runs inside its span
                with self._trace.use_span(
                    spans[0],
                    end_on_exit=False,
                    record_exception=False,
                    set_status_on_exception=False,
                ):
                    yield spans
            else:
                yield spans
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)))
            raise
        finally:
            for span in spans:
                span.end()

    # --- components ------------------------------------------------------------------

    def traced(self, instance: Any, kind: str, label: str) -> Any:
        """``instance`` with its per-message methods traced (``kind``: source, processor,
        sink or dead_letter); methods it lacks stay missing."""
        wrapped = _Traced(instance)
        traced_methods: dict[str, Callable[..., Any]]
        if kind == "source":
            traced_methods = self._source(instance, label)
        elif kind == "processor":
            traced_methods = self._processor(instance, label)
        else:
            traced_methods = self._sink(instance, label)
        for name, method in traced_methods.items():
            setattr(wrapped, name, method)
        return wrapped

    def _source(self, source: Any, label: str) -> dict[str, Callable[..., Any]]:
        methods: dict[str, Callable[..., Any]] = {}
        consumer, internal = self._kinds.CONSUMER, self._kinds.INTERNAL

        def read_spans(batch: list[Message]) -> None:
            for message in batch:
                span = self._start("read", message, consumer, label)
                self._carry(span, message)
                span.end()

        if callable(getattr(source, "read_batch", None)):
            read_batch = as_async(source.read_batch)

            async def traced_read_batch(max_messages: int) -> Any:
                batch = list(await read_batch(max_messages))
                read_spans(batch)
                return batch

            methods["read_batch"] = traced_read_batch
        if callable(getattr(source, "read", None)):
            read = as_async(source.read)

            async def traced_read() -> Any:
                one = await read()
                if one is not None:
                    read_spans([one])
                return one

            methods["read"] = traced_read
        if callable(getattr(source, "ack", None)):
            ack = as_async(source.ack)

            async def traced_ack(message: Message) -> Any:
                with self._spans("ack", [message], internal, label):
                    return await ack(message)

            methods["ack"] = traced_ack
        if callable(getattr(source, "ack_batch", None)):
            ack_batch = as_async(source.ack_batch)

            async def traced_ack_batch(messages: list[Message]) -> Any:
                with self._spans("ack", messages, internal, label):
                    return await ack_batch(messages)

            methods["ack_batch"] = traced_ack_batch
        if callable(getattr(source, "nack", None)):
            nack = as_async(source.nack)

            async def traced_nack(message: Message, error: BaseException) -> Any:
                with self._spans("nack", [message], internal, label) as spans:
                    spans[0].set_status(
                        self._trace.Status(self._trace.StatusCode.ERROR, str(error))
                    )
                    return await nack(message, error)

            methods["nack"] = traced_nack
        return methods

    def _processor(self, processor: Any, label: str) -> dict[str, Callable[..., Any]]:
        methods: dict[str, Callable[..., Any]] = {}
        internal = self._kinds.INTERNAL
        name = f"process {label.split(' (', 1)[-1].rstrip(')')}"

        def hand_on(span: Span, result: Any) -> list[Message]:
            outputs = as_messages(result)
            for output in outputs:
                self._carry(span, output)
            return outputs

        if callable(getattr(processor, "process", None)):
            process = as_async(processor.process)

            async def traced_process(message: Message) -> Any:
                with self._spans(name, [message], internal, label) as spans:
                    # Inside the span: an action the processor runs records its changes
                    # with this span's context (see onto_core.tracing.current_traceparent).
                    return hand_on(spans[0], await process(message))

            methods["process"] = traced_process
        if callable(getattr(processor, "process_batch", None)):
            process_batch = as_async(processor.process_batch)

            async def traced_process_batch(messages: list[Message]) -> Any:
                with self._spans(name, messages, internal, label) as spans:
                    results = list(await process_batch(messages))
                    if len(results) != len(spans):
                        return results  # the runner reports the mismatch
                    return [hand_on(s, r) for s, r in zip(spans, results, strict=True)]

            methods["process_batch"] = traced_process_batch
        return methods

    def _sink(self, sink: Any, label: str) -> dict[str, Callable[..., Any]]:
        methods: dict[str, Callable[..., Any]] = {}
        producer = self._kinds.PRODUCER
        name = f"write {label.split(' (', 1)[-1].rstrip(')')}"
        if callable(getattr(sink, "write", None)):
            write = as_async(sink.write)

            async def traced_write(messages: list[Message]) -> Any:
                with self._spans(name, list(messages), producer, label):
                    return await write(messages)

            methods["write"] = traced_write
        if callable(getattr(sink, "write_exactly_once", None)):
            write_exactly_once = as_async(sink.write_exactly_once)

            async def traced_write_exactly_once(
                messages: list[Message], consumed: list[Message], source: Any
            ) -> Any:
                with self._spans(name, list(messages), producer, label):
                    return await write_exactly_once(messages, consumed, source)

            methods["write_exactly_once"] = traced_write_exactly_once
        return methods
