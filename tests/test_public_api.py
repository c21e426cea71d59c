"""The names ``onto_core`` promises to users stay put."""

from __future__ import annotations

import onto_core


def test_public_names_are_pinned() -> None:
    assert onto_core.__all__ == [
        "Change",
        "ChangeOp",
        "ComponentError",
        "ComponentRegistrar",
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
        "parse_config",
        "register_plugin",
    ]
    assert onto_core.__all__ == sorted(onto_core.__all__)
    for name in onto_core.__all__:
        assert hasattr(onto_core, name), name


def test_every_error_derives_from_onto_error() -> None:
    for name in onto_core.__all__:
        obj = getattr(onto_core, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, onto_core.OntoError), name
