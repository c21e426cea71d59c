"""Read-set tracking and incremental recompute of view models."""

from __future__ import annotations

from onto_core.reactive.engine import ReactiveEngine, ViewUpdate
from onto_core.reactive.tracking import ReadSet, TrackingReader

__all__ = ["ReactiveEngine", "ReadSet", "TrackingReader", "ViewUpdate"]
