"""Building every root of a stateless view once: the index a new deployment starts from."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from onto_core.builtin.view import load_view
from onto_core.config import load_config
from onto_core.models.datastore import Change, ChangeOp
from onto_core.runtime import open_datastore
from onto_functions._host import FunctionHost

__all__ = ["backfill"]


def backfill(config_path: str | Path, only: Sequence[str] = ()) -> dict[str, int]:
    """Deliver one change per root document to each ``stateless_view`` pipeline fed by a
    ``cloud_event`` source, through its processors and sinks as an event would go: each
    root is built, indexed and its views written. Returns the roots built per pipeline.
    Safe to run again (and while the function serves): a root whose views are delivered
    already is built and emits nothing."""
    config = load_config(config_path)
    host = FunctionHost(config)
    built: dict[str, int] = {}
    try:
        with open_datastore(config) as store:
            for name, pipeline in config.pipelines.items():
                if only and name not in only:
                    continue
                if pipeline.source.type != "cloud_event":
                    continue
                views = [p for p in pipeline.processors if p.type == "stateless_view"]
                count = 0
                for spec in views:
                    view = load_view(str(spec.config.model_dump()["view"]))
                    collection = view.root.collection
                    for doc_id, data in store.query(collection):
                        seq = time.time_ns() // 1000
                        change = Change(seq, collection, doc_id, ChangeOp.UPDATE, data, seq / 1e6)
                        host.deliver(name, change, f"backfill:{collection}/{doc_id}@{seq}")
                        count += 1
                built[name] = count
    finally:
        host.close()
    return built
