"""``onto new``: start a connector (a plugin package) or an application from a template.

The templates are package data under ``onto_core/scaffold/templates/<kind>/``: each file
ends in ``.tmpl`` (so no tool takes them for the project's own code), ``{{ key }}`` in a
file is replaced by a value below, and a path part ``PACKAGE`` by the import package.
"""

from __future__ import annotations

import keyword
import re
import sys
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from onto_core.__about__ import __version__

__all__ = ["ScaffoldError", "new_app", "new_connector", "onto_core_requirement"]

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")
NAME_RULE = "lowercase letters, digits and underscores, starting with a letter"


class ScaffoldError(ValueError):
    """A name that cannot be used, or a folder that is not empty; the message says which."""


@dataclass(frozen=True)
class _Names:
    name: str  # as configs and entry points spell it: redis_streams
    package: str  # the import package: onto_redis_streams (connector), redis_streams (app)
    dist: str  # the distribution: onto-redis-streams, redis-streams

    def values(self) -> dict[str, str]:
        words = self.name.split("_")
        return {
            "name": self.name,
            "package": self.package,
            "dist": self.dist,
            "Class": "".join(w.capitalize() for w in words),
            "Title": " ".join(w.capitalize() for w in words if w),
            "onto_core_requirement": onto_core_requirement(),
        }


def onto_core_requirement() -> str:
    """The onto-core requirement a new project pins: this version up to the next breaking one.

    Before 1.0 a minor release may break, so ``0.1.0`` gives ``onto-core>=0.1.0,<0.2``.
    """
    parts = [int(p) for p in re.findall(r"\d+", __version__)[:2]] + [0, 0]
    major, minor = parts[0], parts[1]
    upper = f"0.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"onto-core>={__version__},<{upper}"


def _check_name(name: str, what: str, example: str) -> None:
    if not _NAME.match(name) or name.endswith("_") or "__" in name:
        suggestion = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        hint = f" (e.g. {suggestion!r})" if _NAME.match(suggestion) else f" (e.g. {example!r})"
        raise ScaffoldError(
            f"{what} name {name!r} is not allowed: use {NAME_RULE}, with single underscores"
            f" between words{hint}"
        )
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{what} name {name!r} is a Python keyword; choose another")


def new_connector(name: str, folder: Path | None = None) -> Path:
    """Write the plugin package ``onto-<name>`` into ``folder`` (default ``./onto-<name>``).

    A source and a sink registered as ``<name>``, their ``Config`` models, conformance
    tests, a README and ``py.typed``; it installs and passes its tests as generated.
    Returns the folder. ``ScaffoldError`` for a bad name or a folder that is not empty.
    """
    _check_name(name, "connector", "redis_streams")
    if name == "core":
        raise ScaffoldError("connector name 'core' is taken by onto-core itself; choose another")
    names = _Names(name, f"onto_{name}", f"onto-{name.replace('_', '-')}")
    return _write("connector", names, folder or Path(f"onto-{name}"))


def new_app(name: str, folder: Path | None = None) -> Path:
    """Write the application ``<name>`` into ``folder`` (default ``./<name>``).

    Domain models, a view with an action, seed data, a pipeline config on the built-in
    sqlite store (and one serving the view over REST), and a test that runs the pipeline.
    Returns the folder. ``ScaffoldError`` for a bad name or a folder that is not empty.
    """
    _check_name(name, "app", "todo_list")
    if name in sys.stdlib_module_names or name.startswith("onto") or name in {"test", "tests"}:
        raise ScaffoldError(
            f"app name {name!r} would shadow the module {name!r} it is imported as; choose another"
        )
    names = _Names(name, name, name.replace("_", "-"))
    return _write("app", names, folder or Path(name))


def _write(kind: str, names: _Names, folder: Path) -> Path:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ScaffoldError(
            f"{folder} already exists and is not empty; choose another folder with --dir"
            " or remove it"
        )
    values = names.values()
    templates = files("onto_core.scaffold") / "templates" / kind
    for relative, template in _walk(templates, ()):
        parts = [part.replace("PACKAGE", names.package) for part in relative]
        target = folder.joinpath(*parts).with_name(parts[-1].removesuffix(".tmpl"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_render(template.read_text(encoding="utf-8"), values), encoding="utf-8")
    return folder


def _walk(node: Traversable, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Traversable]]:
    found: list[tuple[tuple[str, ...], Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            found += _walk(child, (*prefix, child.name))
        elif child.name.endswith(".tmpl"):
            found.append(((*prefix, child.name), child))
    return found


def _render(text: str, values: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        return values[match[1]]  # a KeyError here is a template bug, caught by the tests

    return _PLACEHOLDER.sub(replace, text)
