"""``onto functions``: build a function folder, and backfill a stateless view's index."""

from __future__ import annotations

import click

__all__ = ["functions"]


@click.group()
def functions() -> None:
    """Pipelines as Google Cloud Functions / Firebase Functions (docs/functions.md)."""


@functions.command("build")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--out", default="build/function", show_default=True, help="Folder to write.")
@click.option(
    "--include",
    multiple=True,
    type=click.Path(exists=True),
    help="A package or file of the application to copy in (repeatable).",
)
@click.option("--firebase", is_flag=True, help="Entry points for the firebase-functions SDK.")
def build_command(config: str, out: str, include: tuple[str, ...], firebase: bool) -> None:
    """Write main.py, requirements.txt and deploy.sh for CONFIG's pipelines into --out."""
    from onto_functions._build import build_function

    try:
        targets = build_function(config, out, include, firebase=firebase)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for target in targets:
        click.echo(f"{target.name}: {target.kind} function running pipeline {target.pipeline!r}")
    click.echo(
        f"wrote {out}; serve locally with: functions-framework --source {out}/main.py"
        f" --target {targets[0].name}"
        if targets
        else f"wrote {out}"
    )


@functions.command("backfill")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--pipeline", "only", multiple=True, help="Only this pipeline (repeatable).")
def backfill_command(config: str, only: tuple[str, ...]) -> None:
    """Build every root of CONFIG's stateless views once: index, records and views."""
    from onto_functions._backfill import backfill

    for pipeline, roots in backfill(config, only).items():
        click.echo(f"{pipeline}: {roots} roots built")
