"""The names ``onto_core`` promises to users stay put."""

from __future__ import annotations

import onto_core


def test_public_names_are_pinned() -> None:
    assert onto_core.__all__ == [
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
    assert onto_core.__all__ == sorted(onto_core.__all__)
    for name in onto_core.__all__:
        assert hasattr(onto_core, name), name


def test_every_error_derives_from_onto_error() -> None:
    for name in onto_core.__all__:
        obj = getattr(onto_core, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, onto_core.OntoError), name


def test_the_connector_kit_names_are_pinned() -> None:
    import onto_core.testing

    assert onto_core.testing.__all__ == [
        "JSON_VALUES",
        "DatastoreConformance",
        "SinkConformance",
        "SourceConformance",
        "SourceHarness",
        "broken_promise",
        "built_views",
        "call",
        "differing_views",
        "final_views",
        "json_lines",
        "npm_ci",
        "onto_run",
        "run",
        "running",
    ]
    for name in onto_core.testing.__all__:
        assert hasattr(onto_core.testing, name), name


def test_check_pipeline_receives_public_types() -> None:
    from onto_core import config

    assert onto_core.PipelineConfig is config.PipelineConfig
    assert onto_core.ComponentSpec is config.ComponentSpec
    fields = onto_core.PipelineConfig.__dataclass_fields__
    assert fields["source"].type == "ComponentSpec"
    assert fields["sinks"].type == "list[ComponentSpec]"
