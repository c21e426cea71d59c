"""The ``onto`` command: run and validate pipeline configs, list plugins and components.

Errors print one line to stderr and exit non-zero (2 for a bad config or usage, 1 for a
failure while running); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic_core import to_jsonable_python

from onto_core.__about__ import __version__
from onto_core.config import OntoConfig, load_config
from onto_core.errors import ConfigError, OntoError, PluginError
from onto_core.plugins import (
    ComponentInfo,
    failed_plugins,
    get_plugin_manager,
    list_components,
    list_plugins,
)

__all__ = ["main"]

# Attributes every LogRecord has; anything else was passed as ``extra`` and is logged as data.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


class _OntoGroup(click.Group):
    """Turns every error into one line on stderr and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            # The reader went away (``onto components | head``): nothing left to say to it.
            _silence_stdout()
            sys.exit(1)
        except Exception as exc:
            if ctx.params.get("debug"):
                traceback.print_exc()
            if isinstance(exc, ConfigError):
                _fail(str(exc), 2)
            if isinstance(exc, OntoError):
                _fail(str(exc), 1)
            hint = "" if ctx.params.get("debug") else " (run with --debug for the traceback)"
            _fail(f"{type(exc).__name__}: {exc}{hint}", 1)


@click.group(cls=_OntoGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="onto", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or as JSON objects.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def cli(debug: bool, log_format: str, log_level: str) -> None:
    """onto: reactive, event-driven pipelines from a YAML config."""
    _setup_logging("debug" if debug else log_level, log_format)


def _describe_pipelines(config: OntoConfig) -> list[str]:
    lines = []
    for name, p in config.pipelines.items():
        chain = [p.source.type, *(s.type for s in p.processors)]
        sinks = ", ".join(s.type for s in p.sinks)
        lines.append(f"{name}: {' → '.join(chain)} → [{sinks}] ({p.guarantee.value})")
    return lines


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--show", is_flag=True, help="Print the resolved config, secrets redacted.")
def validate(file: str, show: bool) -> None:
    """Check FILE without connecting to anything."""
    config = load_config(file)
    if show:
        click.echo(yaml.safe_dump(config.redacted(), sort_keys=False), nl=False)
        return
    count = len(config.pipelines)
    click.echo(f"{file}: ok, {count} pipeline{'s' if count != 1 else ''}")
    for line in _describe_pipelines(config):
        click.echo(f"  {line}")


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
def run(file: str) -> None:
    """Run every pipeline in FILE until the sources end or SIGINT/SIGTERM drains them."""
    from onto_core.runtime import Runtime

    config = load_config(file)
    log = logging.getLogger("onto")
    for line in _describe_pipelines(config):
        log.info("pipeline %s", line)
    runtime = Runtime(config)
    started = time.monotonic()
    asyncio.run(runtime.run(handle_signals=True))
    log.info("stopped after %.1fs", time.monotonic() - started)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the document to this file instead of printing it.",
)
def asyncapi(file: str, out: Path | None) -> None:
    """Print the AsyncAPI 3.0 document of FILE: every channel it exposes or consumes.

    The same document a running config serves at /asyncapi.json. Nothing connects.
    """
    from onto_core.asyncapi import asyncapi_document

    document = asyncapi_document(load_config(file))
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}", 1)
    click.echo(f"wrote the AsyncAPI document of {file} to {out}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins: name, version, hooks and components.

    Every installed plugin is imported to list them (other commands import only the
    plugins a config needs).
    """
    found = list_plugins()
    failed = failed_plugins()
    if as_json:
        data = [p.to_dict() for p in found]
        data += [{"name": n, "error": why} for n, why in failed.items()]
        click.echo(json.dumps(data, indent=2))
        return
    rows = [
        (p.name, p.version or "-", ", ".join(p.hooks) or "-", ", ".join(p.components) or "-")
        for p in found
    ]
    rows += [(n, "-", "-", f"FAILED: {why}") for n, why in failed.items()]
    _table(("name", "version", "hooks", "components"), rows)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with each config schema.")
@click.option("--markdown", is_flag=True, help="Print the reference as Markdown (for docs/).")
@click.option(
    "--kind",
    type=click.Choice(["source", "processor", "sink", "datastore", "coordinator"]),
    default=None,
)
def components(as_json: bool, markdown: bool, kind: Any) -> None:
    """List every component type a config can name, with its settings.

    Each component's description is the summary line of its class docstring; its settings,
    defaults (written as in YAML) and descriptions come from its nested Config model.
    Every installed plugin is imported to list them.
    """
    found = list_components(kind)
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in found], indent=2, default=str))
        return
    if markdown:
        click.echo(components_markdown(found), nl=False)
        return
    for c in found:
        click.echo(f"{c.kind} {c.name}  ({c.plugin})")
        click.echo(f"  {c.description}")
        if c.guarantees:
            click.echo(f"  guarantees: {', '.join(c.guarantees)}")
        for field_name, default, description in _settings(c):
            shown = "required" if default is None else f"default {default}"
            click.echo(f"  - {field_name} ({shown}): {description}")
        click.echo()


@cli.group()
def new() -> None:
    """Start a connector (a plugin package) or an application from a template."""


_DIR_OPTION = click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to create (must be empty or missing).",
)


@new.command("connector")
@click.argument("name")
@_DIR_OPTION
def new_connector(name: str, folder: Path | None) -> None:
    """Write the plugin package onto-NAME (default folder ./onto-NAME).

    A source and a sink registered as NAME, with their Config models, the conformance
    tests of onto_core.testing wired, a README saying what to fill in, and py.typed. It
    installs and passes its tests as generated. NAME: lowercase letters, digits and
    underscores, starting with a letter.
    """
    from onto_core import scaffold

    _scaffold(lambda: scaffold.new_connector(name, folder), "connector")


@new.command("app")
@click.argument("name")
@_DIR_OPTION
def new_app(name: str, folder: Path | None) -> None:
    """Write the application NAME (default folder ./NAME).

    Domain models, a view with an action, seed data, a pipeline config on the built-in
    sqlite store (and one serving the view over REST), and a test that runs the pipeline.
    NAME is the app's Python package: lowercase letters, digits and underscores, starting
    with a letter.
    """
    from onto_core import scaffold

    _scaffold(lambda: scaffold.new_app(name, folder), "app")


def _scaffold(write: Callable[[], Path], kind: str) -> None:
    from onto_core.scaffold import ScaffoldError

    try:
        folder = write()
    except ScaffoldError as exc:
        _fail(str(exc), 2)
        return
    click.echo(f"wrote the {kind} into {folder}; next steps: {folder / 'README.md'}")


def _settings(component: ComponentInfo) -> list[tuple[str, str | None, str]]:
    """(name, default as YAML or None when required, description) per setting."""
    try:
        fields = component.config_model.model_fields
    except PluginError as exc:
        return [("?", "unknown", exc.message)]
    return [
        (
            name,
            None
            if field.is_required()
            else _yaml_value(field.get_default(call_default_factory=True)),
            field.description or "",
        )
        for name, field in fields.items()
    ]


def components_markdown(found: list[ComponentInfo]) -> str:
    """The component reference as Markdown, from the same specs that validate configs."""
    lines = [
        "# Components",
        "",
        "Every component type a config can name, with its settings. Generated by",
        "`onto components --markdown` from each component class: the description is the",
        "summary line of its docstring, the settings come from its `Config` model (defaults",
        "written as in YAML). Do not edit by hand.",
        "",
    ]
    for c in found:
        lines += [f"## {c.kind} `{c.name}`", "", f"{c.description} (plugin: `{c.plugin}`)", ""]
        if c.guarantees:
            lines += [f"Guarantees: {', '.join(f'`{g}`' for g in c.guarantees)}.", ""]
        settings = _settings(c)
        if settings:
            lines += ["| setting | default | meaning |", "|---|---|---|"]
            lines += [
                f"| `{n}` | {'required' if d is None else _md_code(d)} | {_md_cell(m)} |"
                for n, d, m in settings
            ]
            lines.append("")
    return "\n".join(lines)


def _md_code(text: str) -> str:
    """``text`` as inline Markdown code inside a table cell."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text.replace('|', chr(92) + '|')}{fence}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _yaml_value(value: Any) -> str:
    """``value`` the way a config would write it: ``null``, ``true``, ``onto.db``, ``[]``.

    Strings are quoted only where YAML needs it (``''``, ``'123'``, ``'yes'``).
    """
    plain = to_jsonable_python(value, fallback=str)
    text = yaml.safe_dump(
        plain, default_flow_style=True, allow_unicode=True, sort_keys=False, width=10**6
    )
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _command_named(args: Sequence[str]) -> str | None:
    """The subcommand ``args`` name: the first word that is neither an option of ``onto``
    itself nor the value of one (``onto --log-level warning run ...`` names ``run``)."""
    valued = {
        opt
        for param in cli.params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for opt in param.opts
    }
    words = iter(args)
    for word in words:
        if not word.startswith("-"):
            return word
        if word in valued:
            next(words, None)  # its value
    return None


def add_plugin_commands(args: Sequence[str]) -> None:
    """Let plugins add subcommands (``register_commands``) when ``args`` may name one.

    ``onto run`` and the other built-in commands import no plugin for this, so their
    start-up stays as it is; any other command, or the help, imports every plugin.
    """
    if _command_named(args) in cli.commands:
        return
    list_plugins()  # imports every plugin, so each can add its commands
    builtin = set(cli.commands)
    taken: dict[str, str] = {}
    pm = get_plugin_manager()
    for impl in pm.hook.register_commands.get_hookimpls():
        group = click.Group()
        try:
            impl.function(cli=group)
        except Exception as exc:  # a broken plugin must never take the host down
            logging.getLogger("onto.plugins").warning(
                "plugin %r failed to add its commands: %s: %s",
                impl.plugin_name,
                type(exc).__name__,
                exc,
            )
            continue
        for name, command in group.commands.items():
            owner = "onto" if name in builtin else taken.get(name)
            if owner is not None:
                logging.getLogger("onto.plugins").warning(
                    "plugin %r: command %r is already taken by %s; the first stays",
                    impl.plugin_name,
                    name,
                    owner,
                )
                continue
            taken[name] = impl.plugin_name
            cli.add_command(command, name)


def main() -> None:
    """Entry point of the ``onto`` script."""
    # Like ``python -m``: modules named in a config ("pkg.mod:fn") are found from the
    # directory onto runs in.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    add_plugin_commands(sys.argv[1:])
    cli(prog_name="onto")


if __name__ == "__main__":
    main()
