"""Prometheus metrics of a running ``Runtime``: its collector, the catalogue, the server.

Each ``Runtime`` has a ``prometheus_client.CollectorRegistry`` of its own,
``runtime.metrics_registry``, holding a ``RuntimeCollector``. The collector reads, at
scrape time, what the runtime counts anyway (``PipelineMetrics``, buffer depth, a
processor's ``metrics()``, a source's ``lag()``): serving metrics adds no work per
message. Plugins add collectors of their own to the registry in ``runtime_started``
(onto-web: HTTP requests, onto-websocket: connections and subscriptions) and onto-web
serves it at ``/metrics``; ``runtime.metrics: {host, port}`` serves it without a web
server (``MetricsServer``).

Every metric is declared once as a ``MetricSpec``; a collector's ``describe()`` and the
catalogue in docs/observability.md (``catalogue_markdown``) come from the same specs.
Labels are bounded: pipeline, component, view and route names, status codes and
partitions, never a message id or a view key.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from onto_core.errors import OntoError
from onto_core.runtime._metrics import LATENCY_BUCKETS

if TYPE_CHECKING:
    from onto_core.runtime import Runtime

__all__ = [
    "RUNTIME_METRICS",
    "MetricSpec",
    "MetricsServer",
    "RuntimeCollector",
    "SpecCollector",
    "catalogue_markdown",
]

log = logging.getLogger("onto.metrics")

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric as exposed: ``name`` (a counter's ends in ``_total``), its kind, help
    text and label names."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()

    def family(self) -> Any:
        """An empty metric family of this spec, for samples to be added to."""
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.labels)
        return HistogramMetricFamily(self.name, self.help, labels=self.labels)

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names it exposes (a histogram's ``_bucket``, ``_sum``, ``_count``)."""
        if self.kind == "histogram":
            return tuple(f"{self.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        return (self.name,)


MESSAGES = MetricSpec(
    "onto_messages_total",
    "counter",
    "Messages by what became of them. outcome: in (read; component: the source), out"
    " (confirmed by a sink; component: that sink), failed (failed attempts of"
    " any stage), retried, dead_lettered (component: any), acked, nacked (component:"
    " the source).",
    ("pipeline", "component", "outcome"),
)
LATENCY = MetricSpec(
    "onto_message_latency_seconds",
    "histogram",
    "Seconds from a message's read to its being done (delivered or dead-lettered).",
    ("pipeline",),
)
BUFFER = MetricSpec(
    "onto_buffer_messages",
    "gauge",
    "Messages held between the pipeline's source and its worker now.",
    ("pipeline",),
)
BUFFER_CAPACITY = MetricSpec(
    "onto_buffer_capacity_messages",
    "gauge",
    "Most messages the pipeline's buffer holds (the config's buffer).",
    ("pipeline",),
)
SOURCE_LAG = MetricSpec(
    "onto_source_lag_messages",
    "gauge",
    "Messages the source has not had processed yet, as the source knows it (source"
    " lag()): changes: feed sequence numbers after its acked position; kafka: end offset"
    " minus acked position per topic/partition; firestore_listen: documents whose newest"
    " change is not acked.",
    ("pipeline", "component", "partition"),
)
VIEWS = MetricSpec(
    "onto_views",
    "gauge",
    "Views the view processor holds now.",
    ("pipeline", "view"),
)
VIEW_RECOMPUTES = MetricSpec(
    "onto_view_recomputes_total",
    "counter",
    "View builds the view processor has run.",
    ("pipeline", "view"),
)
VIEW_SHARDS = MetricSpec(
    "onto_view_shards_owned",
    "gauge",
    "Shards of the views this worker owns.",
    ("pipeline", "view"),
)

RUNTIME_METRICS: tuple[MetricSpec, ...] = (
    MESSAGES,
    LATENCY,
    BUFFER,
    BUFFER_CAPACITY,
    SOURCE_LAG,
    VIEWS,
    VIEW_RECOMPUTES,
    VIEW_SHARDS,
)
"""What ``RuntimeCollector`` exposes."""

# A processor's metrics() keys and the metric each one feeds.
_PROCESSOR_FIGURES = {"views": VIEWS, "recomputes": VIEW_RECOMPUTES, "shards_owned": VIEW_SHARDS}


class SpecCollector(Collector):
    """A collector whose metrics are ``specs``: ``describe()`` yields them empty, and
    ``collect()`` yields them filled by ``fill(families)`` (families by metric name)."""

    specs: tuple[MetricSpec, ...] = ()

    def describe(self) -> Iterable[Metric]:
        return [spec.family() for spec in self.specs]

    def collect(self) -> Iterable[Metric]:
        families = {spec.name: spec.family() for spec in self.specs}
        try:
            self.fill(families)
        except Exception:
            # A scrape never fails for one reader: what was filled is served.
            log.exception("collecting metrics failed")
        return list(families.values())

    def fill(self, families: dict[str, Any]) -> None:
        raise NotImplementedError


class RuntimeCollector(SpecCollector):
    """Each pipeline's counters, latency, buffer, source lag and view figures."""

    specs = RUNTIME_METRICS

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def fill(self, families: dict[str, Any]) -> None:
        for name, runner in list(self.runtime.runners.items()):
            figures = runner.metrics
            source = runner.source.label
            counts = {
                ("in", source): figures.messages_in,
                **{("out", s.label): figures.out_by_sink.get(s.label, 0) for s in runner.sinks},
                ("failed", "any"): figures.failed,
                ("retried", "any"): figures.retried,
                ("dead_lettered", "any"): figures.dead_lettered,
                ("acked", source): figures.acked,
                ("nacked", source): figures.nacked,
            }
            for (outcome, component), value in counts.items():
                families[MESSAGES.name].add_metric([name, component, outcome], value)
            families[LATENCY.name].add_metric(
                [name], _cumulative(list(figures.latency_buckets)), figures.latency_sum
            )
            families[BUFFER.name].add_metric([name], len(runner.buffer))
            families[BUFFER_CAPACITY.name].add_metric([name], runner.buffer.capacity)
            for partition, behind in _source_lag(runner.source.instance, source).items():
                families[SOURCE_LAG.name].add_metric([name, source, partition], behind)
            for processor in runner.processors:
                report = _processor_figures(processor.instance, processor.label)
                view = _view_name(processor.instance, processor.label)
                for key, spec in _PROCESSOR_FIGURES.items():
                    if isinstance(report.get(key), int | float):
                        families[spec.name].add_metric([name, view], report[key])


def _cumulative(counts: list[int]) -> list[tuple[str, float]]:
    """``(le, count)`` pairs of a histogram from per-bucket counts (the last is +Inf)."""
    total = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip([*LATENCY_BUCKETS, float("inf")], counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
    return buckets


def _source_lag(source: Any, label: str) -> Mapping[str, float]:
    lag = getattr(source, "lag", None)
    if not callable(lag):
        return {}
    try:
        found = lag()
    except Exception as exc:
        log.debug("%s: lag() failed: %s", label, exc)
        return {}
    return found or {}


def _processor_figures(processor: Any, label: str) -> Mapping[str, Any]:
    report = getattr(processor, "metrics", None)
    if not callable(report):
        return {}
    # It runs on the event loop's thread too: a dict it walks may change under us.
    for _ in range(3):
        try:
            figures = report()
            return figures if isinstance(figures, Mapping) else {}
        except RuntimeError:
            continue
        except Exception as exc:
            log.debug("%s: metrics() failed: %s", label, exc)
            return {}
    return {}


def _view_name(processor: Any, label: str) -> str:
    view = getattr(processor, "view", None)
    name = getattr(view, "view_name", None)
    return name if isinstance(name, str) else label


class MetricsServer:
    """``registry`` served over HTTP on ``host``:``port`` (``/metrics``, or any path) by
    prometheus_client's own server thread, until ``stop()``."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Listen (port 0 picks a free one); ``OntoError`` naming the address if it cannot."""
        try:
            server, thread = start_http_server(self.port, self.host, self.registry)
        except OSError as exc:
            raise OntoError(
                f"runtime.metrics: cannot serve metrics on {self.host}:{self.port}: {exc}"
            ) from None
        self._server, self._thread = server, thread
        self.port = server.server_port
        log.info("serving Prometheus metrics at %s", self.url)

    def stop(self) -> None:
        """Stop listening and wait for the serving thread (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)


def catalogue_markdown(specs: Iterable[MetricSpec]) -> str:
    """The metric catalogue of docs/observability.md: one table row per metric."""
    rows = [
        "| metric | type | labels | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for spec in sorted(specs, key=lambda s: s.name):
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "none"
        rows.append(f"| `{spec.name}` | {spec.kind} | {labels} | {spec.help} |")
    return "\n".join(rows) + "\n"
