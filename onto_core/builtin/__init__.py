"""Built-in components, registered through the same hook as every external plugin."""

from __future__ import annotations

from onto_core.builtin.api import ApiProcessor, ReplySink
from onto_core.builtin.changes import ChangesSource
from onto_core.builtin.files import FileSink, StdoutSink
from onto_core.builtin.generate import GenerateSource
from onto_core.builtin.memory import MemorySink, MemorySource
from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.builtin.shards import StaticCoordinator
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.builtin.transform import MapProcessor
from onto_core.builtin.view import ViewProcessor
from onto_core.hookspecs import hookimpl
from onto_core.plugins import ComponentRegistrar

__all__ = [
    "ApiProcessor",
    "ChangesSource",
    "FileSink",
    "GenerateSource",
    "MapProcessor",
    "MemoryDatastore",
    "MemorySink",
    "MemorySource",
    "ReplySink",
    "SqliteDatastore",
    "StaticCoordinator",
    "StdoutSink",
    "ViewProcessor",
    "register_components",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    register.source("memory", MemorySource)
    register.source("generate", GenerateSource)
    register.source("changes", ChangesSource)
    register.processor("map", MapProcessor)
    register.processor("view", ViewProcessor)
    register.processor("api", ApiProcessor)
    register.sink("memory", MemorySink)
    register.sink("stdout", StdoutSink)
    register.sink("file", FileSink)
    register.sink("reply", ReplySink)
    register.datastore("sqlite", SqliteDatastore)
    register.datastore("memory", MemoryDatastore)
    register.coordinator("static", StaticCoordinator)
