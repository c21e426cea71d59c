"""onto-flink: declared view models compiled to Flink SQL and run on Apache Flink.

``onto flink compile CONFIG`` prints the job's SQL; ``onto flink run CONFIG`` runs it on a
local mini-cluster or submits it to a cluster; ``onto flink`` lists what was submitted.
See docs/flink.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from onto_core.hookspecs import hookimpl
from onto_flink._compile import CompileError, FlinkJob, compile_views

if TYPE_CHECKING:
    import click

__all__ = ["CompileError", "FlinkJob", "compile_views", "register_commands"]


@hookimpl
def register_commands(cli: click.Group) -> None:
    from onto_flink._cli import flink

    cli.add_command(flink)
