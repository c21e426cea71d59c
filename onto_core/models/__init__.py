"""Domain models, view models and the Datastore protocol."""

from __future__ import annotations

from onto_core.models.datastore import Change, ChangeOp, Datastore, Documents
from onto_core.models.declarative import (
    DeclarationError,
    children,
    collect,
    concat,
    count,
    declaration_of,
    declared,
    fan_out,
    first_nonempty,
    follow,
    if_,
    root,
    sum_of,
)
from onto_core.models.domain import DomainModel, Embedded, Ref, current_datastore, use_datastore
from onto_core.models.transaction import Transaction, run_transaction
from onto_core.models.view import ViewModel, action, find_view, run_action

__all__ = [
    "Change",
    "ChangeOp",
    "Datastore",
    "DeclarationError",
    "Documents",
    "DomainModel",
    "Embedded",
    "Ref",
    "Transaction",
    "ViewModel",
    "action",
    "children",
    "collect",
    "concat",
    "count",
    "current_datastore",
    "declaration_of",
    "declared",
    "fan_out",
    "find_view",
    "first_nonempty",
    "follow",
    "if_",
    "root",
    "run_action",
    "run_transaction",
    "sum_of",
    "use_datastore",
]
