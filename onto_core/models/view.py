"""View models: documents computed from domain models, and the actions clients may run.

::

    class MeetingSession(ViewModel, root=Meeting, key=("meeting_id", "user_id")):
        meeting_id: str
        user_id: str
        attending: list[Attendee]

        @classmethod
        def build(cls, meeting: Meeting) -> list[MeetingSession]:
            ...                                   # read other models freely

        @action
        def set_in_session(self, in_session: bool) -> None:
            ...                                   # change domain models, then .save()

One ``build`` runs per root document and returns the views it yields: one, several (one
per participant, say), or none. The first key field holds the root document's id. Every
read a build makes is recorded, so the reactive engine knows which roots a change can
affect (see ``onto_core.reactive``).

An action is a method marked ``@action``. ``run_action`` builds the view inside a
datastore transaction, validates the arguments against the method's signature and calls
it; the domain models it saves commit together or not at all, and flow back out through
the change feed.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.alias_generators import to_camel

from onto_core.errors import ActionError, DatastoreError
from onto_core.models.datastore import Datastore
from onto_core.models.domain import DomainModel, use_datastore

__all__ = ["ViewModel", "action", "build_views", "find_view", "run_action"]

F = TypeVar("F", bound=Callable[..., Any])
V = TypeVar("V", bound="ViewModel")


def action(fn: F) -> F:
    """Mark a view-model method as an action clients may run (see ``run_action``)."""
    fn.__onto_action__ = True  # type: ignore[attr-defined]
    return fn


class ViewModel(BaseModel):
    """A document computed from domain models; subclass with ``root=`` and ``key=``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    root: ClassVar[type[DomainModel]]
    key_fields: ClassVar[tuple[str, ...]] = ()
    view_name: ClassVar[str] = ""
    actions: ClassVar[dict[str, Callable[..., Any]]] = {}

    def __init_subclass__(
        cls,
        root: type[DomainModel] | None = None,
        key: tuple[str, ...] | str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if root is not None:
            cls.root = root
        if key is not None:
            cls.key_fields = (key,) if isinstance(key, str) else tuple(key)
        cls.view_name = name or _snake(cls.__name__)
        cls.actions = {
            attr: member
            for klass in reversed(cls.__mro__)
            for attr, member in vars(klass).items()
            if getattr(member, "__onto_action__", False)
        }

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        missing = [f for f in cls.key_fields if f not in cls.model_fields]
        if missing:
            raise TypeError(f"{cls.__name__}: key field(s) {missing} are not declared fields")

    @classmethod
    def build(cls, root: Any) -> Self | list[Self] | None:
        """The view(s) of root document ``root``; override this."""
        raise NotImplementedError(f"{cls.__name__} must define build(cls, root)")

    @property
    def key(self) -> str:
        """The view's key: its key fields' values joined by ``/``."""
        return "/".join(str(getattr(self, f)) for f in self.key_fields)

    def to_dict(self) -> dict[str, Any]:
        """The view as delivered: camelCase keys, JSON-ready values."""
        # The serializer itself: model_dump adds a Python call per view built.
        data: dict[str, Any] = self.__pydantic_serializer__.to_python(
            self, mode="json", by_alias=True
        )
        return data

    @classmethod
    def action_model(cls, name: str) -> type[BaseModel]:
        """A pydantic model of action ``name``'s parameters (for validation and schemas)."""
        fn = cls.actions.get(name)
        if fn is None:
            known = ", ".join(sorted(cls.actions)) or "none"
            raise ActionError(
                f"{cls.view_name} has no action {name!r}; actions: {known}",
                field="action",
                not_found=True,
            )
        fields: dict[str, Any] = {}
        for param in list(inspect.signature(fn, eval_str=True).parameters.values())[1:]:
            default = ... if param.default is inspect.Parameter.empty else param.default
            annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
            fields[param.name] = (annotation, default)
        return create_model(
            f"{cls.__name__}_{name}",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


def build_views(cls: type[V], root: DomainModel) -> list[V]:
    """Every view ``cls.build`` yields for ``root``, as a list."""
    built = cls.build(root)
    if built is None:
        return []
    return list(built) if isinstance(built, list | tuple) else [built]


def _split_key(cls: type[ViewModel], key: str | dict[str, Any]) -> dict[str, str]:
    if isinstance(key, dict):
        parts = {f: str(key[f]) for f in cls.key_fields if f in key}
    else:
        values = key.split("/")
        parts = dict(zip(cls.key_fields, values, strict=False))
        if len(values) != len(cls.key_fields):
            raise ActionError(
                f"{cls.view_name} keys have {len(cls.key_fields)} part(s) "
                f"({'/'.join(cls.key_fields)}), got {key!r}"
            )
    if len(parts) != len(cls.key_fields):
        raise ActionError(f"{cls.view_name} key needs {', '.join(cls.key_fields)}; got {key!r}")
    return parts


def find_view(cls: type[V], key: str | dict[str, Any], store: Any = None) -> V | None:
    """The current view with ``key``, built from the store (``None`` if there is none)."""
    parts = _split_key(cls, key)
    root = cls.root.find(parts[cls.key_fields[0]], store=store)
    if root is None:
        return None
    for view in build_views(cls, root):
        if all(str(getattr(view, f)) == parts[f] for f in cls.key_fields):
            return view
    return None


def run_action(
    store: Datastore,
    cls: type[ViewModel],
    key: str | dict[str, Any],
    name: str,
    arguments: dict[str, Any] | None = None,
    max_attempts: int = 5,
) -> ViewModel | None:
    """Run action ``name`` of the view at ``key`` in a transaction; the view afterwards.

    ``ActionError`` names a missing view, an unknown action or a bad argument (and the
    field); an error raised by the action itself rolls everything back.
    """
    params = cls.action_model(name)
    try:
        # Strict, as JSON: what every transport receives. "yes", 0 or "1" are not
        # booleans, "3" is not a number; ISO dates and enum values stay accepted.
        text = json.dumps(arguments or {}, default=str)
        validated = params.model_validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "arguments"
        raise ActionError(f"{cls.view_name}.{name}: {field}: {first['msg']}", field=field) from None
    fn = cls.actions[name]

    def attempt(tx: Any) -> None:
        with use_datastore(tx):
            view = find_view(cls, key)
            if view is None:
                raise ActionError(f"{cls.view_name} {key!r} does not exist", not_found=True)
            fn(view, **validated.model_dump())

    try:
        store.transaction(attempt, max_attempts=max_attempts)
    except (ActionError, DatastoreError):
        raise
    except ValueError as exc:  # an action refusing its input: a rule of the domain
        raise ActionError(f"{cls.view_name}.{name}: {exc}", refused=True) from exc
    with use_datastore(store):
        return find_view(cls, key)
