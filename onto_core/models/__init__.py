"""Domain models, view models and the Datastore protocol."""

from __future__ import annotations

from onto_core.models.datastore import Change, ChangeOp, Datastore

__all__ = ["Change", "ChangeOp", "Datastore"]
