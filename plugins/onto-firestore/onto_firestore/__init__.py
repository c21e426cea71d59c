"""Firestore for onto: a datastore with a change log, a view sink, a change-feed source and
a trigger ("Query+Task") source."""

from __future__ import annotations

from onto_core import ComponentRegistrar, hookimpl
from onto_firestore.datastore import FirestoreDatastore, make_client
from onto_firestore.listen import FirestoreListenSource
from onto_firestore.sink import FirestoreSink
from onto_firestore.tasks import FirestoreTaskSource, TaskOutcome

__all__ = [
    "FirestoreDatastore",
    "FirestoreListenSource",
    "FirestoreSink",
    "FirestoreTaskSource",
    "TaskOutcome",
    "make_client",
    "register_components",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.datastore("firestore", FirestoreDatastore)
    register.sink("firestore", FirestoreSink)
    register.source("firestore_listen", FirestoreListenSource)
    register.source("firestore_tasks", FirestoreTaskSource)
