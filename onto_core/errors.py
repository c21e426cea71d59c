"""Every error onto raises on purpose.

The tree::

    OntoError
    ├── ConfigError            a pipeline config is malformed (file, line, key path)
    ├── PluginError            a plugin failed to load or registered a clashing name
    ├── ComponentError         a source, processor, sink or datastore failed
    │   ├── SourceError        reading, acking or connecting to a source failed
    │   ├── ProcessorError     a processor raised while transforming a message
    │   └── SinkError          a sink could not confirm a write
    ├── DatastoreError         a datastore operation failed
    │   ├── ConflictError      an optimistic-concurrency check lost the race
    │   └── NotFoundError      a document that must exist does not
    ├── ActionError            a client's action was refused (unknown, bad argument, invalid)
    └── ShutdownTimeout        draining did not finish within the drain timeout

Each carries the context a user needs to act on it: ``component``, ``pipeline`` and
``message_id`` where they are known. ``str(error)`` is one line meant for a terminal.
"""

from __future__ import annotations

from typing import Any, Self

__all__ = [
    "ActionError",
    "ComponentError",
    "ConfigError",
    "ConflictError",
    "DatastoreError",
    "NotFoundError",
    "OntoError",
    "PluginError",
    "ProcessorError",
    "ShutdownTimeout",
    "SinkError",
    "SourceError",
]


class OntoError(Exception):
    """Base of every error onto raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        component: str | None = None,
        pipeline: str | None = None,
        message_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.component = component
        self.pipeline = pipeline
        self.message_id = message_id

    def __str__(self) -> str:
        where = []
        if self.pipeline:
            where.append(f"pipeline {self.pipeline!r}")
        if self.component:
            where.append(f"component {self.component!r}")
        if self.message_id:
            where.append(f"message {self.message_id!r}")
        return f"{self.message} ({', '.join(where)})" if where else self.message


class ConfigError(OntoError):
    """A pipeline config is malformed.

    ``file``, ``line`` and ``path`` (the dotted key path, e.g. ``pipelines.orders.sinks[0].path``)
    say where; the message says what was expected. A file with several problems raises
    one ``ConfigError`` for the most telling, whose message ends in ``(and N more
    problems)``; ``problems`` lists every problem (that one first) as a ``ConfigError``
    of its own, and ``str()`` gives each of the others on a line of its own, indented.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str | None = None,
        problems: list[ConfigError] | None = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.path = path
        self.problems: list[ConfigError] = problems if problems is not None else [self]

    def __str__(self) -> str:
        location = self.file or "<config>"
        if self.line is not None:
            location += f":{self.line}"
        key = f" {self.path}:" if self.path else ""
        others = "".join(f"\n  {problem}" for problem in self.problems[1:])
        return f"{location}:{key} {self.message}{others}"


class PluginError(OntoError):
    """A plugin failed to import, or registered a component name that is already taken."""


class ComponentError(OntoError):
    """A source, processor, sink or datastore failed."""

    @classmethod
    def at(cls, ctx: Any, message: str) -> Self:
        """The error, naming the component and pipeline of runtime context ``ctx`` if any."""
        return cls(
            message,
            component=getattr(ctx, "component", None),
            pipeline=getattr(ctx, "pipeline", None),
        )


class SourceError(ComponentError):
    """Reading from, acking to or connecting to a source failed."""


class ProcessorError(ComponentError):
    """A processor raised while transforming a message."""


class SinkError(ComponentError):
    """A sink could not confirm a write; the runtime retries, then dead-letters."""


class DatastoreError(OntoError):
    """A datastore operation failed."""


class ConflictError(DatastoreError):
    """A transaction's version check failed because another writer got there first."""


class NotFoundError(DatastoreError):
    """A document that must exist does not (``Model.get``, ``Ref.get``)."""


class ActionError(OntoError):
    """A client's action was refused: unknown view or action, a bad argument, or a rule.

    ``field`` names the argument at fault when there is one; ``not_found`` says the view,
    key or action does not exist; ``refused`` says the arguments were valid but the action
    itself refused them, a rule of the domain (``ValueError`` raised by the action).
    Nothing was written.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        not_found: bool = False,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.not_found = not_found
        self.refused = refused


class ShutdownTimeout(OntoError):
    """Draining in-flight messages did not finish within the drain timeout."""
