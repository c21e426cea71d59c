"""OpenTelemetry traces: the W3C trace context a message carries, and the tracer setup.

A message carries its trace context in its headers, as W3C ``traceparent`` (and
``tracestate``) entries, so it crosses every transport that keeps headers (Kafka
records, the datastore's change feed, HTTP requests turned into messages). With
``runtime.tracing`` set, the runtime makes a span per message per stage (read, each
processor, each sink write, ack) and rewrites ``traceparent`` to the stage a message
came out of; without it the runtime makes none and a transport's ``traceparent`` is
passed on untouched. docs/observability.md#traces tells the whole story.

Nothing here imports OpenTelemetry until tracing is switched on: the SDK is the
optional extra ``onto-core[tracing]`` (``onto-core[tracing-otlp]`` for the OTLP
exporter).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onto_core.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    from onto_core.config import TracingSettings

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "FileSpanExporter",
    "carried",
    "current_traceparent",
    "tracer_provider",
]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# How many runtimes record traces in this process now: while none does, a datastore
# asks nothing of OpenTelemetry when it records a change.
_tracing_runtimes = 0
_count_lock = threading.Lock()


def carried(headers: Any) -> dict[str, str] | None:
    """The W3C trace context in ``headers`` (an HTTP request's headers, an event's
    payload), as message headers; ``None`` when there is no ``traceparent``.

    Only the shape is checked (text of the W3C length); a malformed value is simply not
    continued by the runtime, which starts a new trace instead.
    """
    if not headers:
        return None
    parent = headers.get(TRACEPARENT)
    if not isinstance(parent, str) or len(parent) > 128:
        return None
    found = {TRACEPARENT: parent.strip()}
    state = headers.get(TRACESTATE)
    if isinstance(state, str) and state and len(state) <= 512:
        found[TRACESTATE] = state
    return found


def current_traceparent() -> str | None:
    """The ``traceparent`` of the span current in this thread, if a runtime records traces.

    Datastores call it when they record a change, so the change feed continues the trace
    of the action that wrote it. ``None`` at once while no runtime traces.
    """
    if not _tracing_runtimes:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def _runtime_traces(delta: int) -> None:
    global _tracing_runtimes
    with _count_lock:
        _tracing_runtimes += delta


def tracer_provider(settings: TracingSettings) -> TracerProvider:
    """A tracer provider exporting as ``settings`` say, spans batched on their way out.

    Raises ``ConfigError`` naming the extra to install when the SDK (or the OTLP
    exporter) is missing.
    """
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:
        raise ConfigError(
            "runtime.tracing needs the OpenTelemetry SDK, which is not installed:"
            f" install onto-core[tracing] ({exc})"
        ) from None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    if settings.exporter == "none":
        return provider
    exporter: Any
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter()
    elif settings.exporter == "file":
        assert settings.path is not None  # the config requires it
        exporter = FileSpanExporter(settings.path)
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                "runtime.tracing.exporter 'otlp' needs the OTLP exporter, which is not"
                f" installed: install onto-core[tracing-otlp] ({exc})"
            ) from None
        exporter = OTLPSpanExporter(endpoint=settings.endpoint)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class FileSpanExporter:
    """Appends each finished span to ``path`` as one JSON line (the SDK's ``to_json``).

    For a process whose spans are read back from disk (tests, a collector tailing the
    file); a span exporter as the OpenTelemetry SDK defines one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.sdk.trace.export import SpanExportResult

        lines = "".join(json.dumps(json.loads(span.to_json())) + "\n" for span in spans)
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(lines)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
