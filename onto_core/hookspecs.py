"""Hook specifications: the contract between onto and its plugins.

A plugin is a module listed under the ``onto`` entry-point group whose functions are
marked with ``@hookimpl`` and named after a spec below. Each spec's docstring is its
contract; docs/hooks.md documents every one with its exact signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from onto_core.plugins import ComponentRegistrar
    from onto_core.runtime import Runtime

__all__ = [
    "hookimpl",
    "hookspec",
    "register_commands",
    "register_components",
    "runtime_started",
    "runtime_stopped",
]

hookspec = pluggy.HookspecMarker("onto")
hookimpl = pluggy.HookimplMarker("onto")


@hookspec
def register_components(register: ComponentRegistrar) -> None:
    """Register this plugin's components by name.

    Call ``register.source(name, cls)``, ``register.processor(name, cls)``,
    ``register.sink(name, cls)``, ``register.datastore(name, cls)`` and
    ``register.coordinator(name, cls)`` (a ``ShardCoordinator``). ``name`` is what a
    config's ``type:`` refers to; ``cls`` has a nested pydantic ``Config`` model and is
    constructed as ``cls(config)``. A name already taken by another plugin is refused with
    a warning naming both, and the first registration stays.

    Called once per plugin, the first time onto needs a component. If it raises, the plugin
    is skipped whole: what it registered before failing is withdrawn, and the failure is
    logged as a warning and listed by ``onto plugins``.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add this plugin's subcommands to the ``onto`` command: ``cli.add_command(command)``.

    Called when ``onto`` runs a command it does not define itself (or prints its help):
    every installed plugin is imported then, so keep the module's import light and
    import heavy dependencies inside the commands. A name already taken (by onto or an
    earlier plugin) is refused with a warning naming both, and the first stays.
    """


@hookspec
def runtime_started(runtime: Runtime) -> None:
    """Called once every component of every pipeline has started, before any is read.

    The place to start what components share, such as one HTTP server for every web
    transport configured on the same host and port: by now each has registered its
    routes. Runs on the event loop's thread; return quickly (start threads for long work).
    An exception stops the runtime before any message is read.
    """


@hookspec
def runtime_stopped(runtime: Runtime) -> None:
    """Called once every pipeline has stopped and its components are closed.

    Stop what ``runtime_started`` started. Exceptions are logged, never raised.
    """
