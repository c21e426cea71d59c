"""Plugin discovery and loading.

The first half installs the distributions in ``tests/plugins/`` for real and runs the
``onto`` command against them; the second half feeds the plugin manager fake entry points.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from onto_core import plugins
from onto_core.config import parse_config
from onto_core.errors import ConfigError, PluginError
from onto_core.hookspecs import hookimpl
from onto_core.protocols import Guarantee

OntoCommand = Callable[..., subprocess.CompletedProcess[str]]  # the ``onto`` fixture

SAMPLE_PIPELINE = """\
pipelines:
  counted:
    source: {type: sample_counter, count: 4, start: 10, label: demo}
    sinks:
      - {type: sample_collect, path: ./collected.jsonl, token: "${SAMPLE_TOKEN:unset}"}
"""


def plugin_entries(stdout: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in json.loads(stdout)}


# --- real installed distributions -------------------------------------------------------


def test_installed_plugin_is_listed_with_version_and_components(
    onto: OntoCommand, installed_plugins: Path
) -> None:
    done = onto("plugins", "--json", plugins=installed_plugins)
    assert done.returncode == 0, done.stderr
    sample = plugin_entries(done.stdout)["sample"]
    assert sample == {
        "name": "sample",
        "distribution": "onto-sample",
        "version": "1.2.3",
        "hooks": ["register_components"],
        "components": ["source:sample_counter", "sink:sample_collect"],
    }


def test_broken_plugin_is_skipped_with_a_warning_naming_it(
    onto: OntoCommand, installed_plugins: Path
) -> None:
    done = onto("plugins", "--json", plugins=installed_plugins)
    assert done.returncode == 0, done.stderr
    listed = plugin_entries(done.stdout)
    assert listed["broken"] == {
        "name": "broken",
        "error": "ImportError: onto_broken needs the 'frobnicate' package, which is not installed",
    }
    assert "builtin" in listed
    assert "sample" in listed
    (warning,) = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert "plugin 'broken' (distribution onto-broken) failed to load and was skipped" in warning


def test_broken_plugin_shows_as_failed_in_the_table(
    onto: OntoCommand, installed_plugins: Path
) -> None:
    done = onto("plugins", plugins=installed_plugins)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert "FAILED: ImportError: onto_broken needs the 'frobnicate' package" in rows["broken"]
    assert rows["sample"].split()[:3] == ["sample", "1.2.3", "register_components"]


def test_pipeline_of_plugin_components_delivers_every_message(
    onto: OntoCommand, installed_plugins: Path, tmp_path: Path
) -> None:
    (tmp_path / "onto.yaml").write_text(SAMPLE_PIPELINE, encoding="utf-8")
    done = onto("run", "onto.yaml", plugins=installed_plugins)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "collected.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"label": "demo", "n": n} for n in (10, 11, 12, 13)
    ]


def test_plugin_component_settings_are_validated_and_secrets_redacted(
    onto: OntoCommand, installed_plugins: Path, tmp_path: Path
) -> None:
    (tmp_path / "onto.yaml").write_text(SAMPLE_PIPELINE, encoding="utf-8")
    done = onto(
        "validate",
        "--show",
        "onto.yaml",
        plugins=installed_plugins,
        env={"SAMPLE_TOKEN": "tok-8f3a", "ONTO_LOAD_PLUGINS": "sample"},
    )
    assert done.returncode == 0, done.stderr
    assert "tok-8f3a" not in done.stdout
    assert "      token: '***'\n" in done.stdout
    assert "      path: ./collected.jsonl\n" in done.stdout


def test_plugin_component_with_unknown_setting_names_its_settings(
    onto: OntoCommand, installed_plugins: Path, tmp_path: Path
) -> None:
    (tmp_path / "onto.yaml").write_text(
        SAMPLE_PIPELINE.replace("start: 10", "begin: 10"), encoding="utf-8"
    )
    done = onto("validate", "onto.yaml", plugins=installed_plugins)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "error: onto.yaml:3: pipelines.counted.source.begin: unknown key; "
        "expected one of: count, label, start, type"
    )


def test_plugin_components_are_listed_with_their_schema(
    onto: OntoCommand, installed_plugins: Path
) -> None:
    done = onto(
        "components",
        "--json",
        "--kind",
        "sink",
        plugins=installed_plugins,
        env={"ONTO_LOAD_PLUGINS": "sample"},
    )
    assert done.returncode == 0, done.stderr
    (collect,) = [c for c in json.loads(done.stdout) if c["name"] == "sample_collect"]
    assert collect["plugin"] == "sample"
    assert collect["class"] == "onto_sample.SampleCollectSink"
    assert collect["config_schema"]["required"] == ["path"]
    assert set(collect["config_schema"]["properties"]) == {"path", "token", "sort_keys"}


def test_load_plugins_names_the_only_plugins_to_load(
    onto: OntoCommand, installed_plugins: Path
) -> None:
    done = onto("plugins", "--json", plugins=installed_plugins, env={"ONTO_LOAD_PLUGINS": "sample"})
    assert done.returncode == 0, done.stderr
    assert list(plugin_entries(done.stdout)) == ["builtin", "sample"]
    assert "broken" not in done.stderr


def test_load_plugins_accepts_distribution_names(
    onto: OntoCommand, installed_plugins: Path
) -> None:
    done = onto(
        "plugins",
        "--json",
        plugins=installed_plugins,
        env={"ONTO_LOAD_PLUGINS": " onto-sample , not-installed "},
    )
    assert done.returncode == 0, done.stderr
    assert list(plugin_entries(done.stdout)) == ["builtin", "sample"]


def test_empty_load_plugins_loads_only_the_builtins(
    onto: OntoCommand, installed_plugins: Path
) -> None:
    done = onto("plugins", "--json", plugins=installed_plugins, env={"ONTO_LOAD_PLUGINS": ""})
    assert done.returncode == 0, done.stderr
    assert list(plugin_entries(done.stdout)) == ["builtin"]
    assert done.stderr == ""


def test_type_from_a_plugin_left_out_is_unknown_and_says_why(
    onto: OntoCommand, installed_plugins: Path, tmp_path: Path
) -> None:
    (tmp_path / "onto.yaml").write_text(SAMPLE_PIPELINE, encoding="utf-8")
    done = onto("validate", "onto.yaml", plugins=installed_plugins, env={"ONTO_LOAD_PLUGINS": ""})
    assert done.returncode == 2
    # The source's problem comes first; the sink's unknown type follows on its own line.
    line, sink_problem = done.stderr.splitlines()
    assert "unknown sink type 'sample_collect'" in sink_problem
    assert line.startswith(
        "error: onto.yaml:3: pipelines.counted.source.type: unknown source type "
        "'sample_counter'; known: "
    )
    _, _, left_out = line.partition("; installed plugins not loaded because of ONTO_LOAD_PLUGINS: ")
    # Every installed plugin is named (the workspace's own ones too), in order.
    assert {"broken", "sample"} <= set(left_out.split(", "))
    assert left_out.split(", ") == sorted(left_out.split(", "))


def test_misspelt_plugin_type_gets_a_suggestion(
    onto: OntoCommand, installed_plugins: Path, tmp_path: Path
) -> None:
    (tmp_path / "onto.yaml").write_text(
        SAMPLE_PIPELINE.replace("sample_collect", "sample_colect"), encoding="utf-8"
    )
    done = onto(
        "validate", "onto.yaml", plugins=installed_plugins, env={"ONTO_LOAD_PLUGINS": "sample"}
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: onto.yaml:5: pipelines.counted.sinks[0].type: unknown sink")
    assert line.endswith("(did you mean 'sample_collect'?)")


# --- the plugin manager with fake entry points ------------------------------------------


@dataclass
class FakeDistribution:
    name: str
    version: str = "0.1"


@dataclass
class FakeEntryPoint:
    """Stands in for ``importlib.metadata.EntryPoint``; counts how often it is loaded.

    Its ``value`` (the module it names) is ``onto_fake_<name>``. ``on_load`` runs when it
    is loaded (to stand in for the modules a plugin imports).
    """

    name: str
    module: types.ModuleType | Exception
    dist: FakeDistribution | None = None
    group: str = "onto"
    on_load: Callable[[], None] | None = None
    loads: int = field(default=0, init=False)

    @property
    def value(self) -> str:
        return f"onto_fake_{self.name}"

    def load(self) -> types.ModuleType:
        self.loads += 1
        if self.on_load is not None:
            self.on_load()
        if isinstance(self.module, Exception):
            raise self.module
        return self.module


@dataclass
class FakeDeclaration:
    """An ``onto.components`` entry point: ``name`` is ``<kind>.<type>`` or ``none``."""

    name: str
    plugin: FakeEntryPoint
    group: str = "onto.components"

    @property
    def value(self) -> str:
        return self.plugin.value

    @property
    def dist(self) -> FakeDistribution | None:
        return self.plugin.dist


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


def component(name: str, *, with_config: bool = True) -> type:
    """A component class called ``name`` that validates an empty settings block."""
    body: dict[str, Any] = {"guarantees": frozenset(Guarantee), "__doc__": f"The {name}."}
    if with_config:
        body["Config"] = Settings
    return type(name, (), body)


def plugin_module(name: str, add: Callable[[plugins.ComponentRegistrar], None]) -> Any:
    """A plugin module whose ``register_components`` hands the registrar to ``add``."""
    module = types.ModuleType(name)

    @hookimpl
    def register_components(register: plugins.ComponentRegistrar) -> None:
        add(register)

    module.register_components = register_components  # type: ignore[attr-defined]
    return module


@pytest.fixture
def entry_points(
    monkeypatch: pytest.MonkeyPatch, onto_plugins_reset: None
) -> Callable[..., list[FakeEntryPoint]]:
    """``entry_points(*fakes)`` makes the plugin manager find exactly ``fakes``.

    ``fakes`` are plugins (``FakeEntryPoint``) and their declarations (``FakeDeclaration``);
    it returns the plugins.
    """
    monkeypatch.delenv("ONTO_LOAD_PLUGINS", raising=False)
    found: list[FakeEntryPoint | FakeDeclaration] = []

    def fake(**params: Any) -> Iterable[FakeEntryPoint | FakeDeclaration]:
        assert set(params) == {"group"}
        return [ep for ep in found if ep.group == params["group"]]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)

    def install(*fakes: FakeEntryPoint | FakeDeclaration) -> list[FakeEntryPoint]:
        found.extend(fakes)
        return [ep for ep in found if isinstance(ep, FakeEntryPoint)]

    return install


def sinks_named(*names: str) -> Callable[[plugins.ComponentRegistrar], None]:
    def register(registrar: plugins.ComponentRegistrar) -> None:
        for name in names:
            registrar.sink(name, component(f"{name.title()}Sink"))

    return register


def test_loading_is_lazy_and_happens_once(entry_points: Callable[..., Any]) -> None:
    (alpha,) = entry_points(FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a"))))
    assert alpha.loads == 0

    assert plugins.get_component("sink", "a").plugin == "alpha"
    plugins.list_plugins()
    plugins.list_components()
    plugins.get_plugin_manager()
    plugins.failed_plugins()

    assert alpha.loads == 1


def test_declared_plugin_is_imported_only_when_its_component_is_asked_for(
    entry_points: Callable[..., Any],
) -> None:
    alpha_ep = FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a")))
    beta_ep = FakeEntryPoint("beta", plugin_module("beta", sinks_named("b")))
    alpha, beta = entry_points(
        alpha_ep, FakeDeclaration("sink.a", alpha_ep), beta_ep, FakeDeclaration("sink.b", beta_ep)
    )

    assert plugins.get_component("sink", "stdout").plugin == "builtin"
    assert (alpha.loads, beta.loads) == (0, 0)
    assert plugins.get_component("sink", "b").plugin == "beta"
    assert (alpha.loads, beta.loads) == (0, 1)


def test_plugin_that_declares_nothing_is_imported_on_first_use(
    entry_points: Callable[..., Any],
) -> None:
    (alpha,) = entry_points(FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a"))))
    plugins.get_component("sink", "stdout")
    assert alpha.loads == 1


def test_a_type_no_plugin_declares_imports_every_plugin_to_find_it(
    entry_points: Callable[..., Any],
) -> None:
    """A plugin whose declarations miss a component it registers is still found."""
    stale = FakeEntryPoint("stale", plugin_module("stale", sinks_named("declared", "added")))
    other = FakeEntryPoint("other", plugin_module("other", sinks_named("o")))
    entry_points(
        stale, FakeDeclaration("sink.declared", stale), other, FakeDeclaration("sink.o", other)
    )

    assert plugins.get_component("sink", "added").plugin == "stale"
    assert (stale.loads, other.loads) == (1, 1)


def test_listings_import_every_plugin_in_entry_point_order(
    entry_points: Callable[..., Any],
) -> None:
    alpha_ep = FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a")))
    beta_ep = FakeEntryPoint("beta", plugin_module("beta", sinks_named("b")))
    entry_points(
        alpha_ep, FakeDeclaration("sink.a", alpha_ep), beta_ep, FakeDeclaration("sink.b", beta_ep)
    )
    plugins.get_component("sink", "b")

    assert [p.name for p in plugins.list_plugins()] == ["builtin", "alpha", "beta"]
    assert {"a", "b"} <= {c.name for c in plugins.list_components("sink")}


def test_declared_plugin_imported_by_a_loaded_one_comes_along_with_its_hooks(
    entry_points: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like onto-web, whose server hooks the web transports that import it rely on."""
    started: list[str] = []
    server = types.ModuleType("server")

    @hookimpl
    def runtime_started(runtime: Any) -> None:
        started.append("server")

    server.runtime_started = runtime_started  # type: ignore[attr-defined]
    server_ep = FakeEntryPoint("server", server)
    web_ep = FakeEntryPoint(
        "web",
        plugin_module("web", sinks_named("web")),
        on_load=lambda: monkeypatch.setitem(sys.modules, server_ep.value, server),
    )
    entry_points(
        server_ep, FakeDeclaration("none", server_ep), web_ep, FakeDeclaration("sink.web", web_ep)
    )

    plugins.get_component("sink", "stdout")
    plugins.get_plugin_manager().hook.runtime_started(runtime=None)
    assert started == []
    plugins.get_component("sink", "web")
    plugins.get_plugin_manager().hook.runtime_started(runtime=None)
    assert started == ["server"]
    assert server_ep.loads == 1


def test_reset_forgets_loaded_plugins(entry_points: Callable[..., Any]) -> None:
    (alpha,) = entry_points(FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a"))))
    plugins.list_plugins()
    plugins.reset()
    plugins.list_plugins()
    assert alpha.loads == 2


def test_plugin_info_comes_from_its_distribution(entry_points: Callable[..., Any]) -> None:
    entry_points(
        FakeEntryPoint(
            "alpha",
            plugin_module("alpha", sinks_named("a", "b")),
            FakeDistribution("onto-a", "2.0"),
        )
    )
    (_, alpha) = plugins.list_plugins()
    assert alpha.to_dict() == {
        "name": "alpha",
        "distribution": "onto-a",
        "version": "2.0",
        "hooks": ["register_components"],
        "components": ["sink:a", "sink:b"],
    }


def test_load_plugins_filters_by_entry_point_or_distribution_name(
    entry_points: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta, gamma = entry_points(
        FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a"))),
        FakeEntryPoint("beta", plugin_module("beta", sinks_named("b")), FakeDistribution("onto-b")),
        FakeEntryPoint("gamma", plugin_module("gamma", sinks_named("c"))),
    )
    monkeypatch.setenv("ONTO_LOAD_PLUGINS", "alpha,onto-b")

    assert [p.name for p in plugins.list_plugins()] == ["builtin", "alpha", "beta"]
    assert (alpha.loads, beta.loads, gamma.loads) == (1, 1, 0)


def test_empty_load_plugins_loads_none(
    entry_points: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (alpha,) = entry_points(FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a"))))
    monkeypatch.setenv("ONTO_LOAD_PLUGINS", "")

    assert [p.name for p in plugins.list_plugins()] == ["builtin"]
    assert alpha.loads == 0
    with pytest.raises(PluginError) as caught:
        plugins.get_component("sink", "a")
    assert caught.value.message.endswith(
        "; installed plugins not loaded because of ONTO_LOAD_PLUGINS: alpha"
    )


def test_duplicate_component_name_keeps_the_first_and_warns_naming_both(
    entry_points: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    entry_points(
        FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("shared", "a"))),
        FakeEntryPoint("beta", plugin_module("beta", sinks_named("shared", "b"))),
    )
    with caplog.at_level(logging.WARNING, logger="onto.plugins"):
        info = plugins.get_component("sink", "shared")

    assert info.plugin == "alpha"
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'beta' registers sink 'shared', already registered by plugin 'alpha'; "
        "keeping the first"
    ]
    beta = {p.name: p for p in plugins.list_plugins()}["beta"]
    assert beta.components == ["sink:b"]


def test_plugin_that_fails_to_import_is_reported_and_skipped(
    entry_points: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    entry_points(
        FakeEntryPoint("broken", ImportError("No module named 'grpc'"), FakeDistribution("onto-x")),
        FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a"))),
    )
    with caplog.at_level(logging.WARNING, logger="onto.plugins"):
        names = [p.name for p in plugins.list_plugins()]

    assert names == ["builtin", "alpha"]
    assert plugins.failed_plugins() == {"broken": "ImportError: No module named 'grpc'"}
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'broken' (distribution onto-x) failed to load and was skipped: "
        "ImportError: No module named 'grpc'"
    ]


def test_plugin_whose_registration_raises_is_reported_and_skipped(
    entry_points: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    def half_then_fail(registrar: plugins.ComponentRegistrar) -> None:
        registrar.sink("half", component("HalfSink"))
        raise RuntimeError("missing API key")

    entry_points(
        FakeEntryPoint("faulty", plugin_module("faulty", half_then_fail)),
        FakeEntryPoint("alpha", plugin_module("alpha", sinks_named("a"))),
    )
    with caplog.at_level(logging.WARNING, logger="onto.plugins"):
        names = [p.name for p in plugins.list_plugins()]

    assert names == ["builtin", "alpha"]
    reason = "register_components raised RuntimeError: missing API key"
    assert plugins.failed_plugins() == {"faulty": reason}
    assert [r.getMessage() for r in caplog.records] == [
        f"plugin 'faulty' failed to register its components and was skipped: {reason}"
    ]
    assert plugins.get_plugin_manager().get_plugin("faulty") is None
    with pytest.raises(PluginError, match="unknown sink type 'half'"):
        plugins.get_component("sink", "half")
    assert plugins.get_component("sink", "a").plugin == "alpha"


def test_plugin_name_taken_by_another_is_skipped_with_a_warning(
    entry_points: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    (impostor,) = entry_points(
        FakeEntryPoint(
            "builtin", plugin_module("impostor", sinks_named("x")), FakeDistribution("x")
        )
    )
    with caplog.at_level(logging.WARNING, logger="onto.plugins"):
        names = [p.name for p in plugins.list_plugins()]

    assert names == ["builtin"]
    assert impostor.loads == 0
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'builtin' (distribution x) was skipped: the name is already taken by "
        "distribution onto-core"
    ]


def test_hook_implementation_may_use_another_function_name(
    entry_points: Callable[..., Any],
) -> None:
    module = types.ModuleType("renamed")

    @hookimpl(specname="register_components")
    def add_my_sinks(register: plugins.ComponentRegistrar) -> None:
        register.sink("renamed", component("RenamedSink"))

    module.add_my_sinks = add_my_sinks  # type: ignore[attr-defined]
    entry_points(FakeEntryPoint("renamed", module))

    assert plugins.get_component("sink", "renamed").plugin == "renamed"


def test_unknown_component_lists_the_known_ones_and_the_closest(
    onto_plugins_reset: None,
) -> None:
    with pytest.raises(PluginError) as caught:
        plugins.get_component("sink", "stdot")
    known = ", ".join(c.name for c in plugins.list_components("sink"))
    assert caught.value.message == (
        f"unknown sink type 'stdot'; known: {known} (did you mean 'stdout'?)"
    )


def test_component_without_config_model_is_listed_and_refused_by_configs(
    entry_points: Callable[..., Any],
) -> None:
    def register(registrar: plugins.ComponentRegistrar) -> None:
        registrar.sink("bare", component("BareSink", with_config=False))

    entry_points(FakeEntryPoint("alpha", plugin_module("alpha", register)))

    listed = plugins.get_component("sink", "bare").to_dict()
    assert listed["config_schema"] is None
    assert listed["error"] == "sink 'bare' from plugin 'alpha' has no nested pydantic Config model"
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "pipelines:\n  p:\n    source: {type: generate}\n    sinks: [{type: bare}]\n",
            file="onto.yaml",
        )
    assert str(caught.value) == (
        "onto.yaml:4: pipelines.p.sinks[0].type: sink 'bare' from plugin 'alpha' has no "
        "nested pydantic Config model"
    )


class GreetingSink:
    """Collects greetings."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        greeting: str = "hello"

    def __init__(self, config: Config) -> None:
        self.config = config


def test_plugin_component_builds_from_a_config(entry_points: Callable[..., Any]) -> None:
    def register(registrar: plugins.ComponentRegistrar) -> None:
        registrar.sink("greeting", GreetingSink)

    entry_points(FakeEntryPoint("alpha", plugin_module("alpha", register)))

    config = parse_config(
        "pipelines:\n  p:\n    source: {type: generate}\n"
        "    sinks: [{type: greeting, greeting: hi}]\n    guarantee: at_most_once\n"
    )
    sink = config.pipelines["p"].sinks[0].build()
    assert isinstance(sink, GreetingSink)
    assert sink.config.greeting == "hi"


def test_plugin_registered_from_code_that_fails_is_refused(
    entry_points: Callable[..., Any],
) -> None:
    class Faulty:
        @hookimpl
        def register_components(self, register: plugins.ComponentRegistrar) -> None:
            register.sink("half", component("HalfSink"))
            raise RuntimeError("no credentials")

    with pytest.raises(PluginError) as caught:
        plugins.register_plugin(Faulty(), name="faulty")

    assert caught.value.message == (
        "plugin 'faulty' was not registered: register_components raised RuntimeError: "
        "no credentials"
    )
    assert "faulty" not in [p.name for p in plugins.list_plugins()]
    assert plugins.failed_plugins() == {}
    with pytest.raises(PluginError, match="unknown sink type 'half'"):
        plugins.get_component("sink", "half")


def test_a_type_of_an_onto_plugin_not_installed_says_what_to_install(
    onto_plugins_reset: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "onto-rest":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setenv("ONTO_LOAD_PLUGINS", "")
    plugins.reset()
    with pytest.raises(PluginError) as caught:
        plugins.get_component("source", "rest")
    assert caught.value.message.endswith(
        "; source 'rest' comes with the onto-rest plugin: `pip install onto-rest`"
        " (in a checkout of onto: `uv run --all-packages onto ...`)"
    )


def test_the_install_hints_name_every_component_of_the_projects_plugins(
    onto_plugins_reset: None,
) -> None:
    """Each component an onto plugin registers is in the hint table, with its distribution."""
    found = {
        (c.kind, c.name): plugins._hub.plugins[c.plugin].distribution
        for c in plugins.list_components()
        if c.plugin != "builtin"
        and (plugins._hub.plugins[c.plugin].distribution or "").startswith("onto-")
    }
    assert found
    assert found == plugins._PROVIDED_BY


def test_every_onto_plugin_declares_exactly_the_components_it_registers(
    onto_plugins_reset: None,
) -> None:
    """The ``onto.components`` entry points of the project's plugins match their registrations."""
    declared: set[tuple[str, str, str]] = set()
    for entry in importlib.metadata.entry_points(group=plugins.COMPONENTS_GROUP):
        if entry.dist is not None and entry.dist.name.startswith("onto-"):
            kind, _, name = entry.name.partition(".")
            declared.add((entry.dist.name, kind, name))
    registered = {
        (plugins._hub.plugins[c.plugin].distribution or "", c.kind, c.name)
        for c in plugins.list_components()
        if c.plugin != "builtin"
    }
    onto_registered = {r for r in registered if r[0].startswith("onto-")}
    components_only = {d for d in declared if d[1] != plugins.NO_COMPONENTS}
    assert components_only == onto_registered
    # A plugin declaring ``none`` registers nothing.
    assert {d[0] for d in declared if d[1] == "none"} == {"onto-flink", "onto-web"}


# --- which plugin modules a command imports ---------------------------------------------


def plugin_modules() -> set[str]:
    """The module of every installed ``onto`` plugin."""
    return {
        ep.value.partition(":")[0]
        for ep in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP)
    }


# Runs the ``onto`` command in-process and, on exit, prints the modules it had imported.
# (``python -X importtime`` misses modules loaded through ``importlib.import_module``.)
IMPORTS_REPORTER = """\
import atexit, json, sys
atexit.register(lambda: print("IMPORTED " + json.dumps(sorted(sys.modules)), file=sys.stderr))
from onto_core.cli import main
sys.argv[0] = "onto"
main()
"""


def imported_plugins(
    tmp_path: Path, config: str, *args: str, plugin_dir: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``onto <args> onto.yaml``; return it and the ``onto_*`` packages it imported."""
    (tmp_path / "onto.yaml").write_text(config, encoding="utf-8")
    (tmp_path / "imports_reporter.py").write_text(IMPORTS_REPORTER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"}
    if plugin_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin_dir), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "imports_reporter.py", *args, "onto.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    (report,) = [line for line in done.stderr.splitlines() if line.startswith("IMPORTED ")]
    modules = json.loads(report.removeprefix("IMPORTED "))
    return done, {m for m in modules if m.startswith("onto_") and "." not in m} - {"onto_core"}


GENERATE_TO_STDOUT = """\
pipelines:
  one:
    source: {type: generate, count: 1}
    sinks: [{type: stdout}]
"""


@pytest.mark.parametrize(
    "command",
    [["run"], ["validate"], ["--log-level", "warning", "run"], ["--log-level=info", "run"]],
)
def test_config_of_builtins_imports_no_installed_plugin(tmp_path: Path, command: list[str]) -> None:
    done, imported = imported_plugins(tmp_path, GENERATE_TO_STDOUT, *command)
    assert done.returncode == 0, done.stderr
    if command[-1] == "run":
        assert len(done.stdout.splitlines()) == 1
    assert {"onto_kafka", "onto_firestore", "onto_web"} <= plugin_modules()
    assert imported == set()


def test_config_naming_kafka_imports_onto_kafka_and_no_other_plugin(tmp_path: Path) -> None:
    config = GENERATE_TO_STDOUT.replace(
        "{type: stdout}", "{type: kafka, bootstrap_servers: 127.0.0.1:1, topic: t}"
    )
    done, imported = imported_plugins(tmp_path, config, "validate")
    assert done.returncode == 0, done.stderr
    assert imported == {"onto_kafka"}


def test_config_naming_rest_brings_the_web_server_plugin_with_its_hooks(tmp_path: Path) -> None:
    config = (
        "pipelines:\n"
        "  api:\n"
        '    source: {type: rest, port: 8000, views: ["examples.meeting_room.views:UserView"]}\n'
        "    processors: [{type: api}]\n"
        "    sinks: [{type: reply}]\n"
    )
    (tmp_path / "check.py").write_text(
        "import sys\n"
        "from onto_core.config import load_config\n"
        "from onto_core.plugins import get_plugin_manager\n"
        "load_config(sys.argv[1])\n"
        "print(sorted(name for name, _ in get_plugin_manager().list_name_plugin()))\n",
        encoding="utf-8",
    )
    (tmp_path / "onto.yaml").write_text(config, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "check.py", "onto.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['builtin', 'rest', 'web']"


def test_third_party_plugin_declaring_nothing_is_found_without_importing_declared_ones(
    tmp_path: Path, installed_plugins: Path
) -> None:
    done, imported = imported_plugins(
        tmp_path, SAMPLE_PIPELINE, "run", plugin_dir=installed_plugins
    )
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "collected.jsonl").read_text(encoding="utf-8").splitlines()) == 4
    # onto_broken declares nothing either: it is tried (and reported) like onto_sample.
    assert imported == {"onto_sample"}
    assert "plugin 'broken' (distribution onto-broken) failed to load" in done.stderr
