"""The ``view`` processor: changes in, view-model updates out."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from onto_core.builtin.transform import import_object
from onto_core.errors import ProcessorError
from onto_core.models.datastore import Change
from onto_core.models.view import ViewModel
from onto_core.protocols import Message, RuntimeContext
from onto_core.reactive.engine import ReactiveEngine, ViewUpdate

__all__ = ["VERSION_HEADER", "VIEW_HEADER", "ViewProcessor", "load_view", "view_message"]

VIEW_HEADER = "onto-view"
VERSION_HEADER = "onto-version"


def load_view(ref: str) -> type[ViewModel]:
    """The ViewModel class named ``"package.module:Class"``; ``ValueError`` saying why not."""
    found = import_object(ref)
    if not (isinstance(found, type) and issubclass(found, ViewModel)):
        raise ValueError(f"{ref!r} is not a ViewModel subclass")
    if not hasattr(found, "root"):
        raise ValueError(f"{ref!r} declares no root model (class X(ViewModel, root=...))")
    return found


def view_message(update: ViewUpdate) -> Message:
    """A view update as a message: keyed by view key, version and view name in headers."""
    return Message(
        update.to_dict(),
        key=update.key,
        channel=update.view,
        headers={VIEW_HEADER: update.view, VERSION_HEADER: str(update.version)},
    )


class ViewProcessor:
    """Keeps a view model up to date from the datastore's change feed.

    Each input is a change (as the ``changes`` source emits it); the outputs are the view
    updates it causes: ``{view, key, fields, version, removed, data}``, emitted only when
    a view's output changed, keyed by the view key, with the change's sequence number as
    the version so sinks can write idempotently and in order. On start every view is
    built from the datastore and, with ``initial: true``, emitted once.
    """

    needs_datastore: ClassVar[bool] = True

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        view: str = Field(description="The ViewModel class, as 'package.module:Class'.")
        initial: bool = Field(True, description="Emit every view once at start-up.")

        @field_validator("view")
        @classmethod
        def _loadable(cls, ref: str) -> str:
            load_view(ref)
            return ref

    def __init__(self, config: Config) -> None:
        self.config = config
        self.view = load_view(config.view)
        self.engine: ReactiveEngine | None = None
        self._initial: list[ViewUpdate] = []

    async def start(self, ctx: RuntimeContext) -> None:
        if ctx.datastore is None:
            raise ProcessorError("the view processor needs a datastore", component=ctx.component)
        self.engine = ReactiveEngine(self.view, ctx.datastore)
        initial = await asyncio.to_thread(self.engine.bootstrap)
        if self.config.initial:
            self._initial = initial

    def initial_messages(self) -> list[Message]:
        """The views built at start-up, to be delivered before any change."""
        messages = [view_message(u) for u in self._initial]
        self._initial = []
        return messages

    def process(self, message: Message) -> list[Message]:
        if self.engine is None:
            raise ProcessorError("the view processor was not started")
        value: Any = message.value
        try:
            change = Change.from_dict(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise ProcessorError(
                f"expected a change (seq, collection, docId, op, data), got {value!r}: {exc}",
                message_id=message.id,
            ) from None
        return [view_message(u) for u in self.engine.apply(change)]
