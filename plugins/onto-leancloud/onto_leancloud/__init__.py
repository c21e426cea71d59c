"""LeanCloud for onto: storage over the v1.1 REST API and LeanEngine's hooks and cloud
functions, spoken directly (the official SDK's pins cannot share an environment with
Flask 3; see the README)."""

from __future__ import annotations

from onto_core import ComponentRegistrar, hookimpl

__all__ = ["register_components"]


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    """Registers this plugin's components (each module adds its own line here)."""
