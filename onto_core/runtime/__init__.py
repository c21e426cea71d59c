"""Running pipelines: bounded buffers, ack/nack, retries, dead letters, guarantees, drain."""

from __future__ import annotations

from onto_core.runtime._background import running
from onto_core.runtime._calls import as_async, maybe_await
from onto_core.runtime._metrics import PipelineMetrics
from onto_core.runtime._pipeline import SOURCE_ID_HEADER, PipelineRunner
from onto_core.runtime._runtime import Runtime, open_datastore, run

__all__ = [
    "SOURCE_ID_HEADER",
    "PipelineMetrics",
    "PipelineRunner",
    "Runtime",
    "as_async",
    "maybe_await",
    "open_datastore",
    "run",
    "running",
]
