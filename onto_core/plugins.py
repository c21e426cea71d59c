"""The plugin manager: finds plugins in the ``onto`` entry-point group and collects components.

Loading is lazy (on first use) and idempotent. ``ONTO_LOAD_PLUGINS=a,b`` loads only the
plugins whose entry-point or distribution name is listed; set it empty to load none. The
built-in components register through the same hook and are always present. A plugin that
fails to import is logged as a warning naming it, recorded in ``failed_plugins()`` and
skipped.

Plugins are found without importing them (``importlib.metadata``). A plugin that declares
its components in the ``onto.components`` entry-point group (one entry per component,
named ``<kind>.<type>``, whose value is the plugin's module; ``none`` for a plugin with no
component of its own) is imported only when a component it declares is asked for
(``get_component``), or when everything is listed (``list_plugins``, ``list_components``,
``failed_plugins``). A declared plugin whose module another plugin has already imported is
registered at once, since that costs nothing: so onto-web's server hooks come along with
the web transports that import it. A plugin that declares nothing is imported on first use,
as are all remaining plugins when a type nobody declared is asked for, so an undeclared or
wrongly declared plugin is still found.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import logging
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import pluggy
from pydantic import BaseModel

from onto_core import hookspecs
from onto_core.errors import PluginError
from onto_core.protocols import Guarantee

__all__ = [
    "COMPONENTS_GROUP",
    "ENTRY_POINT_GROUP",
    "ComponentInfo",
    "ComponentKind",
    "ComponentRegistrar",
    "PluginInfo",
    "closest_name",
    "failed_plugins",
    "get_component",
    "get_plugin_manager",
    "list_components",
    "list_plugins",
    "register_plugin",
    "reset",
    "unregister_plugin",
]

ENTRY_POINT_GROUP = "onto"
# Entry points ``<kind>.<type> = "<plugin module>"``: which plugin to import for a type.
COMPONENTS_GROUP = "onto.components"
# The entry name a plugin without components of its own declares (then imported on demand).
NO_COMPONENTS = "none"
ComponentKind = Literal["source", "processor", "sink", "datastore", "coordinator"]
KINDS: tuple[ComponentKind, ...] = ("source", "processor", "sink", "datastore", "coordinator")

log = logging.getLogger("onto.plugins")

_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_ROLE = re.compile(r":[a-z:]+:`~?([^`]+)`")

# Components of the project's own plugins, so an unknown type can say what to install.
_PROVIDED_BY: dict[tuple[str, str], str] = {
    ("source", "rest"): "onto-rest",
    ("source", "jsonrpc"): "onto-jsonrpc",
    ("source", "websocket"): "onto-websocket",
    ("sink", "websocket"): "onto-websocket",
    ("source", "graphql"): "onto-graphql",
    ("sink", "graphql"): "onto-graphql",
    ("source", "kafka"): "onto-kafka",
    ("sink", "kafka"): "onto-kafka",
    ("coordinator", "kafka"): "onto-kafka",
    ("processor", "kafka_decode"): "onto-kafka",
    ("datastore", "firestore"): "onto-firestore",
    ("sink", "firestore"): "onto-firestore",
    ("source", "firestore_listen"): "onto-firestore",
    ("source", "firestore_tasks"): "onto-firestore",
    ("datastore", "leancloud"): "onto-leancloud",
    ("sink", "leancloud"): "onto-leancloud",
    ("source", "leanengine"): "onto-leancloud",
    ("source", "leanengine_functions"): "onto-leancloud",
    ("source", "cloud_event"): "onto-functions",
    ("source", "http_function"): "onto-functions",
    ("processor", "stateless_view"): "onto-functions",
}


@dataclass(frozen=True)
class ComponentInfo:
    """A registered component: its kind, config name, class and the plugin that registered it."""

    kind: ComponentKind
    name: str
    cls: type[Any]
    plugin: str

    @property
    def config_model(self) -> type[BaseModel]:
        model = getattr(self.cls, "Config", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise PluginError(
                f"{self.kind} {self.name!r} from plugin {self.plugin!r} has no nested "
                "pydantic Config model"
            )
        return model

    @property
    def description(self) -> str:
        """The summary of the class docstring (its first paragraph), as one line.

        reStructuredText literals (````x````) and roles (``:class:`x```) become Markdown
        code (```x```), which reads as well in a terminal.
        """
        doc = inspect.cleandoc(self.cls.__doc__ or "")
        summary = " ".join(doc.split("\n\n", 1)[0].split())
        return _RST_LITERAL.sub(r"`\1`", _RST_ROLE.sub(r"`\1`", summary))

    @property
    def guarantees(self) -> list[str]:
        """Delivery guarantees the component can give, weakest first."""
        offered = {str(g) for g in getattr(self.cls, "guarantees", ())}
        return [g.value for g in Guarantee if g.value in offered]

    def to_dict(self) -> dict[str, Any]:
        """The component as ``onto components --json`` prints it.

        ``config_schema`` is the JSON schema of its settings; a component whose ``Config``
        is missing or cannot be rendered gets ``null`` and an ``error`` saying why, so one
        faulty plugin does not hide the others.
        """
        data: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "description": self.description,
            "guarantees": self.guarantees,
        }
        try:
            data["config_schema"] = self.config_model.model_json_schema()
        except PluginError as exc:
            data.update(config_schema=None, error=exc.message)
        except Exception as exc:  # a plugin's model that pydantic cannot render as a schema
            data.update(config_schema=None, error=f"{type(exc).__name__}: {exc}")
        return data


@dataclass
class PluginInfo:
    """An installed plugin as ``onto plugins`` shows it."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "components": self.components,
        }


class ComponentRegistrar:
    """The ``register`` object handed to ``register_components``."""

    def __init__(self, plugin: str, components: dict[tuple[str, str], ComponentInfo]) -> None:
        self._plugin = plugin
        self._components = components
        self.registered: list[ComponentInfo] = []

    def _add(self, kind: ComponentKind, name: str, cls: type[Any]) -> None:
        existing = self._components.get((kind, name))
        if existing is not None:
            log.warning(
                "plugin %r registers %s %r, already registered by plugin %r; keeping the first",
                self._plugin,
                kind,
                name,
                existing.plugin,
            )
            return
        info = ComponentInfo(kind, name, cls, self._plugin)
        self._components[(kind, name)] = info
        self.registered.append(info)

    def source(self, name: str, cls: type[Any]) -> None:
        """Register a source class under ``name``."""
        self._add("source", name, cls)

    def processor(self, name: str, cls: type[Any]) -> None:
        """Register a processor class under ``name``."""
        self._add("processor", name, cls)

    def sink(self, name: str, cls: type[Any]) -> None:
        """Register a sink class under ``name``."""
        self._add("sink", name, cls)

    def datastore(self, name: str, cls: type[Any]) -> None:
        """Register a datastore class under ``name``."""
        self._add("datastore", name, cls)

    def coordinator(self, name: str, cls: type[Any]) -> None:
        """Register a shard coordinator class (``ShardCoordinator``) under ``name``."""
        self._add("coordinator", name, cls)


class _Hub:
    """Process-wide plugin state, built once on first use."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pm: pluggy.PluginManager | None = None
        self.components: dict[tuple[str, str], ComponentInfo] = {}
        self.plugins: dict[str, PluginInfo] = {}
        self.failed: dict[str, str] = {}
        # Installed plugins left out by ONTO_LOAD_PLUGINS, named in "unknown type" errors.
        self.skipped: list[str] = []
        # Plugins found but not imported yet, by name, in entry-point order.
        self.pending: dict[str, Any] = {}
        # (kind, type) -> names of the plugins that declare it in COMPONENTS_GROUP.
        self.declared: dict[tuple[str, str], list[str]] = {}
        # Listing order: built-ins, then entry-point order, then plugins registered in code.
        self.order: dict[str, int] = {"builtin": 0}

    def load(self) -> pluggy.PluginManager:
        """The plugin manager with the built-ins and every plugin that declares nothing."""
        with self.lock:
            if self.pm is not None:
                return self.pm
            pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
            pm.add_hookspecs(hookspecs)
            from onto_core import builtin

            pm.register(builtin, name="builtin")
            self.plugins["builtin"] = PluginInfo("builtin", "onto-core", _version("onto-core"))
            self._collect(pm, "builtin", builtin)
            self.pm = pm
            on_demand = self._find_entry_points()
            self._import([name for name in self.pending if name not in on_demand])
            return pm

    def _find_entry_points(self) -> set[str]:
        """Index the wanted plugins without importing them; the names that declare components."""
        wanted = _wanted_plugins()
        taken: dict[str, str | None] = {"builtin": "onto-core"}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            if wanted is not None and ep.name not in wanted and dist not in wanted:
                self.skipped.append(ep.name)
                continue
            if ep.name in taken:
                log.warning(
                    "plugin %r (distribution %s) was skipped: the name is already taken by "
                    "distribution %s",
                    ep.name,
                    dist or "unknown",
                    taken[ep.name] or "unknown",
                )
                continue
            taken[ep.name] = dist
            self.pending[ep.name] = ep
            self.order[ep.name] = len(self.order)
        by_value = {(ep.value, _dist_name(ep)): name for name, ep in self.pending.items()}
        on_demand: set[str] = set()
        for entry in importlib.metadata.entry_points(group=COMPONENTS_GROUP):
            name = by_value.get((entry.value, _dist_name(entry)))
            if name is None:
                continue  # a declaration of a plugin left out or of another distribution
            on_demand.add(name)
            kind, _, type_name = entry.name.partition(".")
            if entry.name != NO_COMPONENTS and kind in KINDS and type_name:
                self.declared.setdefault((kind, type_name), []).append(name)
        return on_demand

    def _import(self, names: list[str]) -> None:
        """Import and register the pending plugins ``names``, then those already imported."""
        assert self.pm is not None
        for name in names:
            ep = self.pending.pop(name, None)
            if ep is not None:
                self._load_entry_point(self.pm, ep)
        for name, ep in list(self.pending.items()):
            module = ep.value.partition(":")[0].strip()
            if module in sys.modules:
                del self.pending[name]
                self._load_entry_point(self.pm, ep)

    def load_all(self) -> None:
        """Import every plugin not imported yet."""
        with self.lock:
            self.load()
            self._import(list(self.pending))

    def find(self, kind: str, name: str) -> ComponentInfo | None:
        """The component ``kind`` ``name``, importing the plugins that declare it if needed.

        When no plugin imported so far registers it, every remaining plugin is imported.
        """
        with self.lock:
            self.load()
            info = self.components.get((kind, name))
            if info is None and self.declared.get((kind, name)):
                self._import(self.declared[(kind, name)])
                info = self.components.get((kind, name))
            if info is None and self.pending:
                self.load_all()
                info = self.components.get((kind, name))
            return info

    def _load_entry_point(self, pm: pluggy.PluginManager, ep: Any) -> None:
        dist = ep.dist.name if ep.dist is not None else None
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must never take the host down
            reason = f"{type(exc).__name__}: {exc}"
            self.failed[ep.name] = reason
            log.warning(
                "plugin %r (distribution %s) failed to load and was skipped: %s",
                ep.name,
                dist or "unknown",
                reason,
            )
            return
        version = ep.dist.version if ep.dist is not None else None
        self.plugins[ep.name] = PluginInfo(ep.name, dist, version)
        self._collect(pm, ep.name, module)

    def _collect(self, pm: pluggy.PluginManager, name: str, plugin: object) -> None:
        """Record ``plugin``'s hooks and call its ``register_components``.

        A plugin whose ``register_components`` raises is skipped whole: the components it
        registered before failing are withdrawn and it is unregistered, as if it had failed
        to import.
        """
        info = self.plugins.setdefault(name, PluginInfo(name, None, None))
        info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        impls = [i for i in pm.hook.register_components.get_hookimpls() if i.plugin is plugin]
        if not impls:
            return
        registrar = ComponentRegistrar(name, self.components)
        try:
            for impl in impls:
                impl.function(register=registrar)
        except Exception as exc:  # a broken plugin must never take the host down
            reason = f"register_components raised {type(exc).__name__}: {exc}"
            for component in registrar.registered:
                del self.components[(component.kind, component.name)]
            pm.unregister(plugin)
            del self.plugins[name]
            self.failed[name] = reason
            log.warning(
                "plugin %r failed to register its components and was skipped: %s", name, reason
            )
            return
        info.components = [f"{c.kind}:{c.name}" for c in registrar.registered]


def _dist_name(ep: Any) -> str | None:
    return ep.dist.name if getattr(ep, "dist", None) is not None else None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _wanted_plugins() -> set[str] | None:
    raw = os.environ.get("ONTO_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


_hub = _Hub()


def get_plugin_manager() -> pluggy.PluginManager:
    """The plugin manager with the plugins loaded so far.

    That is the built-ins, every plugin that declares no components, and the plugins whose
    components were asked for (``get_component``) or listed; hooks called through it reach
    those plugins only.
    """
    return _hub.load()


def reset() -> None:
    """Forget every loaded plugin; the next call loads them again (for tests)."""
    global _hub
    _hub = _Hub()


def list_plugins() -> list[PluginInfo]:
    """Every installed plugin (all are imported), built-in first, then entry-point order."""
    _hub.load_all()
    order = _hub.order
    found = sorted(_hub.plugins.values(), key=lambda p: order.get(p.name, len(order)))
    return found


def failed_plugins() -> dict[str, str]:
    """Plugins that failed to load, by name, with the reason (all plugins are imported)."""
    _hub.load_all()
    return dict(_hub.failed)


def list_components(kind: ComponentKind | None = None) -> list[ComponentInfo]:
    """Every registered component (all plugins are imported), optionally of one kind.

    Sorted by kind then name.
    """
    _hub.load_all()
    found = [c for c in _hub.components.values() if kind is None or c.kind == kind]
    return sorted(found, key=lambda c: (KINDS.index(c.kind), c.name))


def closest_name(name: str, known: list[str]) -> str | None:
    """The known name most like ``name``, for "did you mean" hints."""
    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return matches[0] if matches else None


def get_component(kind: ComponentKind, name: str) -> ComponentInfo:
    """The component registered as ``name``; ``PluginError`` lists the known ones if absent.

    Imports only the plugins that declare it, or every plugin when none does.
    """
    info = _hub.find(kind, name)
    if info is not None:
        return info
    known = [c.name for c in list_components(kind)]
    hint = closest_name(name, known)
    message = f"unknown {kind} type {name!r}; known: {', '.join(known) or 'none'}"
    distribution = _PROVIDED_BY.get((kind, name))
    if distribution is not None and _version(distribution) is None:
        message += (
            f"; {kind} {name!r} comes with the {distribution} plugin: `pip install"
            f" {distribution}` (in a checkout of onto: `uv run --all-packages onto ...`)"
        )
    elif hint:
        message += f" (did you mean {hint!r}?)"
    elif _hub.skipped:
        message += (
            f"; installed plugins not loaded because of ONTO_LOAD_PLUGINS: "
            f"{', '.join(sorted(_hub.skipped))}"
        )
    raise PluginError(message)


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object (a module or instance with hook implementations) from code.

    Its components become available at once, as if it had come through an entry point;
    useful when embedding onto in an application, and in tests. Returns the plugin's name.
    ``PluginError`` if the name is taken or its ``register_components`` raises (the plugin
    is then left unregistered).
    """
    pm = _hub.load()
    with _hub.lock:
        if name is not None and name in _hub.pending:
            raise PluginError(f"plugin name {name!r} is taken by an installed plugin")
        registered = pm.register(plugin, name=name)
        if registered is None:
            raise PluginError(f"plugin {name or plugin!r} is already registered or blocked")
        _hub._collect(pm, registered, plugin)
        reason = _hub.failed.pop(registered, None)
        if reason is not None:
            raise PluginError(f"plugin {registered!r} was not registered: {reason}")
        return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with ``register_plugin`` and its components."""
    pm = _hub.load()
    with _hub.lock:
        pm.unregister(name=name)
        _hub.plugins.pop(name, None)
        for key in [k for k, c in _hub.components.items() if c.plugin == name]:
            del _hub.components[key]
