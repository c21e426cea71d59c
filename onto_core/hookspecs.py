"""Hook specifications: the contract between onto and its plugins.

A plugin is a module listed under the ``onto`` entry-point group whose functions are
marked with ``@hookimpl`` and named after a spec below. Each spec's docstring is its
contract; docs/hooks.md documents every one with its exact signature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from onto_core.plugins import ComponentRegistrar

__all__ = ["hookimpl", "hookspec", "register_components"]

hookspec = pluggy.HookspecMarker("onto")
hookimpl = pluggy.HookimplMarker("onto")


@hookspec
def register_components(register: ComponentRegistrar) -> None:
    """Register this plugin's components by name.

    Call ``register.source(name, cls)``, ``register.processor(name, cls)``,
    ``register.sink(name, cls)`` and ``register.datastore(name, cls)``. ``name`` is what a
    config's ``type:`` refers to; ``cls`` has a nested pydantic ``Config`` model and is
    constructed as ``cls(config)``. A name already taken by another plugin is refused with
    a warning naming both, and the first registration stays.

    Called once per plugin, the first time onto needs a component. If it raises, the plugin
    is skipped whole: what it registered before failing is withdrawn, and the failure is
    logged as a warning and listed by ``onto plugins``.
    """
