"""Per-pipeline counters and latency."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PipelineMetrics"]


@dataclass
class PipelineMetrics:
    """What a pipeline has done so far.

    ``messages_in`` counts messages read; ``messages_out`` messages confirmed by a sink
    (once per sink); ``failed`` failed attempts of any stage; ``retried`` retries made;
    ``dead_lettered`` messages handed to the dead-letter sink; ``acked`` and ``nacked``
    what went back to the source. Latency is read → done, in seconds, over the last
    ``window`` messages.
    """

    pipeline: str
    messages_in: int = 0
    messages_out: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    acked: int = 0
    nacked: int = 0
    buffer_high_water: int = 0
    latency_max: float = 0.0
    window: int = 2048
    _latencies: deque[float] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        self._latencies = deque(maxlen=self.window)

    def observe_latencies(self, now: float, read_at: list[float]) -> None:
        """Record the read → done time of each message of a batch: read at ``read_at``,
        done at ``now`` (``time.monotonic()``)."""
        if read_at:
            # map: no Python-level call per message.
            self._latencies.extend(map(now.__sub__, read_at[-self.window :]))
            self.latency_max = max(self.latency_max, now - min(read_at))

    def latency_quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of recent latencies, or ``None`` before any message."""
        if not self._latencies:
            return None
        if len(self._latencies) == 1:
            return self._latencies[0]
        cuts = statistics.quantiles(self._latencies, n=100, method="inclusive")
        return cuts[min(98, max(0, round(q * 100) - 1))]

    def snapshot(self) -> dict[str, Any]:
        """The counters and latency p50/p99/max as a flat, JSON-ready dict."""
        return {
            "pipeline": self.pipeline,
            "in": self.messages_in,
            "out": self.messages_out,
            "failed": self.failed,
            "retried": self.retried,
            "dead_lettered": self.dead_lettered,
            "acked": self.acked,
            "nacked": self.nacked,
            "buffer_high_water": self.buffer_high_water,
            "latency_p50": self.latency_quantile(0.5),
            "latency_p99": self.latency_quantile(0.99),
            "latency_max": self.latency_max,
        }
