"""Per-pipeline counters and latency."""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BUCKETS", "PipelineMetrics"]

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the read → done latency histogram's buckets; +Inf follows."""


@dataclass
class PipelineMetrics:
    """What a pipeline has done so far.

    ``messages_in`` counts messages read; ``messages_out`` messages confirmed by a sink
    (once per sink), and ``out_by_sink`` the same per sink (by its label, through
    ``sunk``); ``failed`` failed attempts of any stage; ``retried`` retries made;
    ``dead_lettered`` messages handed to the dead-letter sink; ``acked`` and ``nacked``
    what went back to the source. Latency is read → done, in seconds, over the last
    ``window`` messages; ``latency_buckets`` counts every message since the start by
    ``LATENCY_BUCKETS`` (the last count is above them all), ``latency_sum`` adds up
    their latencies.
    """

    pipeline: str
    messages_in: int = 0
    messages_out: int = 0
    out_by_sink: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    acked: int = 0
    nacked: int = 0
    buffer_high_water: int = 0
    latency_max: float = 0.0
    window: int = 2048
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    _latencies: deque[float] = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        self._latencies = deque(maxlen=self.window)

    def sunk(self, sink: str, count: int) -> None:
        """``count`` messages confirmed by the sink labelled ``sink``."""
        self.messages_out += count
        self.out_by_sink[sink] = self.out_by_sink.get(sink, 0) + count

    def observe_latencies(self, now: float, read_at: list[float]) -> None:
        """Record the read → done time of each message of a batch: read at ``read_at``,
        done at ``now`` (``time.monotonic()``)."""
        if read_at:
            # map: no Python-level call per message.
            self._latencies.extend(map(now.__sub__, read_at[-self.window :]))
            self.latency_max = max(self.latency_max, now - min(read_at))
            self._count_buckets(now, read_at)

    def _count_buckets(self, now: float, read_at: list[float]) -> None:
        """Add the batch to the histogram by runs of equal read times, not per message.

        Messages read together share one time and the buffer hands them out in read
        order (``read_at`` never decreases), so a batch is a few runs of equal times,
        usually one, each found by bisection.
        """
        buckets = self.latency_buckets
        end = len(read_at)
        if read_at[0] == read_at[-1]:  # the usual case: one read, one run
            latency = now - read_at[0]
            buckets[bisect_left(LATENCY_BUCKETS, latency)] += end
            self.latency_sum += latency * end
            return
        start = 0
        while start < end:
            when = read_at[start]
            stop = bisect_right(read_at, when, start, end)
            latency = now - when
            buckets[bisect_left(LATENCY_BUCKETS, latency)] += stop - start
            self.latency_sum += latency * (stop - start)
            start = stop

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
            "out_by_sink": dict(self.out_by_sink),
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
