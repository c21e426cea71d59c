"""LeanCloud for onto: storage over the v1.1 REST API and LeanEngine's hooks and cloud
functions, spoken directly (the official SDK's pins cannot share an environment with
Flask 3; see the README)."""

from __future__ import annotations

from onto_core import ComponentRegistrar, hookimpl
from onto_leancloud._client import (
    LeanCloudClient,
    LeanCloudConflict,
    LeanCloudDuplicate,
    LeanCloudError,
    LeanCloudNotFound,
)
from onto_leancloud.datastore import LeanCloudDatastore
from onto_leancloud.engine import LeanEngineFunctionsSource, LeanEngineSource
from onto_leancloud.sink import LeanCloudSink

__all__ = [
    "LeanCloudClient",
    "LeanCloudConflict",
    "LeanCloudDatastore",
    "LeanCloudDuplicate",
    "LeanCloudError",
    "LeanCloudNotFound",
    "LeanCloudSink",
    "LeanEngineFunctionsSource",
    "LeanEngineSource",
    "register_components",
]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    """Registers this plugin's components (each module adds its own line here)."""
    register.datastore("leancloud", LeanCloudDatastore)
    register.sink("leancloud", LeanCloudSink)
    register.source("leanengine", LeanEngineSource)
    register.source("leanengine_functions", LeanEngineFunctionsSource)
