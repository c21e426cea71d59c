"""Domain models, view models and the Datastore protocol."""

from __future__ import annotations

from onto_core.models.datastore import Change, ChangeOp, Datastore, Documents
from onto_core.models.domain import DomainModel, Embedded, Ref, current_datastore, use_datastore
from onto_core.models.transaction import Transaction, run_transaction
from onto_core.models.view import ViewModel, action, find_view, run_action

__all__ = [
    "Change",
    "ChangeOp",
    "Datastore",
    "Documents",
    "DomainModel",
    "Embedded",
    "Ref",
    "Transaction",
    "ViewModel",
    "action",
    "current_datastore",
    "find_view",
    "run_action",
    "run_transaction",
    "use_datastore",
]
