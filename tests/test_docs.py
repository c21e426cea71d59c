"""The reference docs keep up with the code: every hook, registrar method and config key."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from onto_core import hookspecs
from onto_core.config import (
    BatchPolicy,
    MetricsEndpoint,
    RetryPolicy,
    RuntimeSettings,
    TracingSettings,
    _PipelineShape,
    _RootShape,
)
from onto_core.plugins import ComponentRegistrar

DOCS = Path(__file__).parent.parent / "docs"
HOOKS = (DOCS / "hooks.md").read_text(encoding="utf-8")
CONFIGURATION = (DOCS / "configuration.md").read_text(encoding="utf-8")


class _Written:
    """An annotation shown as written in the source (``ComponentRegistrar``, not quoted)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def signature_line(function: Callable[..., Any], *, drop_self: bool = False) -> str:
    """``name(arg: Type, ...) -> Return`` as ``inspect.signature`` renders it, with the
    string annotations (``from __future__ import annotations``) shown unquoted."""
    signature = inspect.signature(function)
    parameters = [
        p.replace(annotation=_Written(p.annotation)) if isinstance(p.annotation, str) else p
        for p in signature.parameters.values()
    ]
    if drop_self:
        parameters = parameters[1:]
    returns = signature.return_annotation
    signature = signature.replace(
        parameters=parameters,
        return_annotation=_Written(returns) if isinstance(returns, str) else returns,
    )
    return f"{function.__name__}{signature}"


def hook_specs() -> list[Callable[..., Any]]:
    """Every function in ``onto_core.hookspecs`` marked by the ``hookspec`` marker."""
    marker = f"{hookspecs.hookspec.project_name}_spec"
    return [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, marker)]


def test_hookspecs_are_found() -> None:
    assert [f.__name__ for f in hook_specs()] == [
        "register_commands",
        "register_components",
        "runtime_started",
        "runtime_stopped",
    ]


def test_signature_rendering() -> None:
    _, register_components, runtime_started, _ = hook_specs()
    assert signature_line(register_components) == (
        "register_components(register: ComponentRegistrar) -> None"
    )
    assert signature_line(runtime_started) == "runtime_started(runtime: Runtime) -> None"


@pytest.mark.parametrize("spec", hook_specs(), ids=lambda f: f.__name__)
def test_every_hook_is_documented_with_its_exact_signature(spec: Callable[..., Any]) -> None:
    assert f"## `{spec.__name__}`" in HOOKS, f"docs/hooks.md has no section for {spec.__name__}"
    assert f"\n{signature_line(spec)}\n" in HOOKS


@pytest.mark.parametrize("method", ["source", "processor", "sink", "datastore", "coordinator"])
def test_every_registrar_method_is_documented_with_its_signature(method: str) -> None:
    line = signature_line(getattr(ComponentRegistrar, method), drop_self=True)
    assert f"\n{line}\n" in HOOKS


def test_registrar_methods_are_all_listed() -> None:
    public = [n for n, _ in inspect.getmembers(ComponentRegistrar, inspect.isfunction)]
    assert sorted(n for n in public if not n.startswith("_")) == sorted(
        ["source", "processor", "sink", "datastore", "coordinator"]
    )


def test_hooks_doc_shows_the_entry_point_group_and_plugin_switch() -> None:
    assert "[project.entry-points.onto]" in HOOKS
    assert "ONTO_LOAD_PLUGINS" in HOOKS


def written(field: FieldInfo) -> str:
    """A key's default as the reference table writes it."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, Enum):
        value = value.value
    return f"`{value}`" if isinstance(value, str) else f"`{json.dumps(value)}`"


SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("", _RootShape),
    ("runtime.", RuntimeSettings),
    ("runtime.metrics.", MetricsEndpoint),
    ("runtime.tracing.", TracingSettings),
    ("", _PipelineShape),
    ("retry.", RetryPolicy),
    ("batch.", BatchPolicy),
]


@pytest.mark.parametrize(
    ("key", "field"),
    [
        (prefix + name, field)
        for prefix, model in SECTIONS
        for name, field in model.model_fields.items()
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_config_key_is_in_the_reference_with_its_default(key: str, field: FieldInfo) -> None:
    row = re.search(rf"^\| `{re.escape(key)}` \| (?P<default>[^|]+) \|", CONFIGURATION, re.M)
    assert row, f"docs/configuration.md has no table row for `{key}`"
    assert row["default"].strip() == written(field)


def test_component_reference_matches_the_component_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/components.md is what ``onto components --markdown`` prints for the built-ins."""
    from onto_core import plugins
    from onto_core.cli import components_markdown

    monkeypatch.setenv("ONTO_LOAD_PLUGINS", "")
    plugins.reset()
    try:
        expected = components_markdown(plugins.list_components())
    finally:
        plugins.reset()
    written = (Path(__file__).parents[1] / "docs" / "components.md").read_text()
    assert written == expected, "regenerate: ONTO_LOAD_PLUGINS= onto components --markdown"


OBSERVABILITY = DOCS / "observability.md"
GRAFANA = DOCS / "grafana" / "meeting_room.json"


def every_metric_spec() -> list[Any]:
    """The runtime's metrics and those of the web and websocket plugins."""
    from onto_core.prometheus import RUNTIME_METRICS
    from onto_web.metrics import WEB_METRICS
    from onto_websocket.metrics import SOCKET_METRICS

    return [*RUNTIME_METRICS, *WEB_METRICS, *SOCKET_METRICS]


def test_metric_catalogue_matches_the_collectors() -> None:
    """docs/observability.md's catalogue is what ``catalogue_markdown`` makes of the specs."""
    from onto_core.prometheus import catalogue_markdown

    text = OBSERVABILITY.read_text(encoding="utf-8")
    found = re.search(
        r"<!-- metric-catalogue:begin -->\n(.*)<!-- metric-catalogue:end -->", text, re.S
    )
    assert found, "docs/observability.md has no metric-catalogue markers"
    assert found[1] == catalogue_markdown(every_metric_spec()), (
        "regenerate the catalogue between the markers with: uv run --all-packages python -c "
        '"from tests.test_docs import every_metric_spec; '
        "from onto_core.prometheus import catalogue_markdown; "
        'print(catalogue_markdown(every_metric_spec()), end=str())"'
    )


def test_grafana_dashboard_names_only_metrics_that_exist() -> None:
    dashboard = json.loads(GRAFANA.read_text(encoding="utf-8"))
    exposed = {name for spec in every_metric_spec() for name in spec.samples}
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {name for expr in expressions for name in re.findall(r"\bonto_[a-z_]+", expr)}
    assert named, "the dashboard queries no onto metric"
    assert named <= exposed, f"not exported: {sorted(named - exposed)}"
    assert "grafana/meeting_room.json" in OBSERVABILITY.read_text(encoding="utf-8")
