"""onto: reactive, event-driven Python back ends composed from a config file.

The public API is re-exported here; everything else is an implementation detail.
"""

from __future__ import annotations

from onto_core.__about__ import __version__
from onto_core.config import ComponentSpec, OntoConfig, PipelineConfig, load_config, parse_config
from onto_core.errors import (
    ComponentError,
    ConfigError,
    ConflictError,
    DatastoreError,
    NotFoundError,
    OntoError,
    PluginError,
    ProcessorError,
    ShutdownTimeout,
    SinkError,
    SourceError,
)
from onto_core.hookspecs import hookimpl, hookspec
from onto_core.models.datastore import Change, ChangeOp, Datastore
from onto_core.plugins import ComponentRegistrar, register_plugin
from onto_core.protocols import (
    Guarantee,
    Message,
    Positions,
    Processor,
    RuntimeContext,
    Sink,
    Source,
)
from onto_core.runtime import Runtime, open_datastore

__all__ = [
    "Change",
    "ChangeOp",
    "ComponentError",
    "ComponentRegistrar",
    "ComponentSpec",
    "ConfigError",
    "ConflictError",
    "Datastore",
    "DatastoreError",
    "Guarantee",
    "Message",
    "NotFoundError",
    "OntoConfig",
    "OntoError",
    "PipelineConfig",
    "PluginError",
    "Positions",
    "Processor",
    "ProcessorError",
    "Runtime",
    "RuntimeContext",
    "ShutdownTimeout",
    "Sink",
    "SinkError",
    "Source",
    "SourceError",
    "__version__",
    "hookimpl",
    "hookspec",
    "load_config",
    "open_datastore",
    "parse_config",
    "register_plugin",
]
