"""onto-functions: onto pipelines as Google Cloud Functions / Firebase Functions.

A Firestore write triggers the function with a CloudEvent; the ``cloud_event`` source
makes it a change, the ``stateless_view`` processor rebuilds the views it affects (found
through a reverse index kept in the datastore), and the invocation returns once every sink
confirmed. ``onto functions build CONFIG`` writes the folder to serve and deploy. See
docs/functions.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onto_core.hookspecs import hookimpl

if TYPE_CHECKING:
    import click

    from onto_core.plugins import ComponentRegistrar

__all__ = ["FunctionHost", "register_commands", "register_components"]


def __getattr__(name: str) -> object:
    # The host (and the runtime it brings) is imported only by a built function's main.py.
    if name == "FunctionHost":
        from onto_functions._host import FunctionHost

        return FunctionHost
    raise AttributeError(name)


@hookimpl
def register_components(register: ComponentRegistrar) -> None:
    from onto_functions._source import CloudEventSource, HttpFunctionSource
    from onto_functions._view import StatelessViewProcessor

    register.source("cloud_event", CloudEventSource)
    register.source("http_function", HttpFunctionSource)
    register.processor("stateless_view", StatelessViewProcessor)


@hookimpl
def register_commands(cli: click.Group) -> None:
    from onto_functions._cli import functions

    cli.add_command(functions)
