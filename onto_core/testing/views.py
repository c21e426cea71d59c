"""Checking what view pipelines delivered against what the datastore says now."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from onto_core.models.datastore import Datastore
from onto_core.models.view import ViewModel
from onto_core.reactive.engine import ReactiveEngine

__all__ = ["built_views", "differing_views", "final_views"]


def final_views(updates: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a versioned sink holds after ``updates``: the newest version of each view key.

    ``updates`` are view updates (``{view, key, version, removed, data}``, the value the
    ``view`` processor emits), in the order they were written, from any number of
    workers; between equal versions the later one wins. A removal removes the key.
    """
    newest: dict[str, dict[str, Any]] = {}
    for update in updates:
        held = newest.get(update["key"])
        if held is None or update["version"] >= held["version"]:
            newest[update["key"]] = update
    return {key: u["data"] for key, u in newest.items() if not u["removed"]}


def built_views(view: type[ViewModel], store: Datastore) -> dict[str, dict[str, Any]]:
    """Every view of ``view`` built from ``store`` as it is now, by key: the truth to compare."""
    engine = ReactiveEngine(view, store)
    return {u.key: u.data for u in engine.bootstrap() if u.data is not None}


def differing_views(
    delivered: dict[str, dict[str, Any]], truth: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The keys where ``delivered`` and ``truth`` disagree, with both sides, for messages."""
    return {
        key: {"delivered": delivered.get(key), "truth": truth.get(key)}
        for key in sorted(delivered.keys() | truth.keys())
        if delivered.get(key) != truth.get(key)
    }
