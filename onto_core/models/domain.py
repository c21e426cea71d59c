"""Domain models: typed documents in a collection, with references to each other.

::

    class User(DomainModel, collection="users"):
        first_name: str
        last_name: str

    class Ticket(DomainModel, collection="tickets"):
        user: Ref[User]
        attendance: bool = True

    ticket = Ticket.get("t1")          # from the datastore in use
    ticket.user.get().first_name       # follow a reference

Keys are camelCase on the wire (``first_name`` ↔ ``firstName``). Subclasses of a model
that declares a collection share it, and ``from_dict``/``get`` on any of them return the
stored document as its own class: a ``City`` collection may hold ``Municipality`` and
``StandardCity`` documents. The class name travels in the ``objType`` key.

Reads and writes go through the datastore in use: the one passed explicitly, or the one
set by ``use_datastore`` (the view processor and action runner set it, and record every
read for reactivity).
"""

from __future__ import annotations

import contextvars
import enum
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar, Generic, Self, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic_core import core_schema

from onto_core.errors import DatastoreError, NotFoundError
from onto_core.models.datastore import Datastore, copy_json

__all__ = [
    "TYPE_KEY",
    "DomainModel",
    "Embedded",
    "Ref",
    "current_datastore",
    "use_datastore",
]

TYPE_KEY = "objType"
T = TypeVar("T", bound="DomainModel")

_datastore: contextvars.ContextVar[Datastore | None] = contextvars.ContextVar(
    "onto_datastore", default=None
)


def current_datastore() -> Datastore:
    """The datastore set by ``use_datastore``; ``DatastoreError`` when there is none."""
    store = _datastore.get()
    if store is None:
        raise DatastoreError(
            "no datastore in use: pass store=..., or wrap the call in use_datastore(store)"
        )
    return store


class use_datastore:
    """Make ``store`` the datastore model reads and writes use within the block.

    A class rather than a generator: the reactive engine enters one per build.
    """

    __slots__ = ("_store", "_token")

    def __init__(self, store: Datastore) -> None:
        self._store = store

    def __enter__(self) -> Datastore:
        self._token = _datastore.set(self._store)
        return self._store

    def __exit__(self, *exc: object) -> None:
        _datastore.reset(self._token)


def _new_id() -> str:
    return uuid.uuid4().hex[:20]


class Ref(Generic[T]):
    """A reference to one document of model ``T``, stored as ``"collection/doc_id"``.

    Accepts a model instance, a ``Ref`` or a ``"collection/id"`` string when validated.
    ``get()`` reads the document it points to.
    """

    __slots__ = ("doc_id", "model")

    def __init__(self, model: type[T], doc_id: str) -> None:
        self.model = model
        self.doc_id = doc_id

    @property
    def path(self) -> str:
        return f"{self.model.collection}/{self.doc_id}"

    def get(self, store: Datastore | None = None) -> T:
        """The referenced document; ``NotFoundError`` if it does not exist."""
        return self.model.get(self.doc_id, store=store)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Ref({self.path!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        args = get_args(source)
        if not args:
            raise TypeError("write Ref[Model], naming the referenced model")
        target = args[0]
        resolved: list[type[DomainModel]] = []  # the target, once it is known

        def validate(value: Any) -> Ref[Any]:
            if resolved:
                model = resolved[0]
            else:
                model = _resolve(target)
                resolved.append(model)
            if type(value) is str:  # as stored: "collection/id"
                collection, sep, doc_id = value.rpartition("/")
                if sep and collection != model.collection:
                    raise ValueError(
                        f"expected a reference into {model.collection!r}, got {value!r}"
                    )
                ref = _new_ref(Ref)  # without an __init__ call: one per reference read
                ref.model = model
                ref.doc_id = doc_id if sep else value
                return ref
            if isinstance(value, Ref):
                return value
            if isinstance(value, DomainModel):
                return Ref(type(value), value.id)
            if isinstance(value, str):
                return validate(str(value))
            raise ValueError(f"expected a {model.__name__} reference, got {value!r}")

        validate._builds_ref = True  # type: ignore[attr-defined]  # see _builds_anew
        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda ref: ref.path, when_used="always"
            ),
            json_schema_input_schema=core_schema.str_schema(),
        )


_new_ref = object.__new__


def _resolve(target: Any) -> type[DomainModel]:
    if isinstance(target, type) and issubclass(target, DomainModel):
        return target
    name = getattr(target, "__forward_arg__", target)
    found = DomainModel._registry.get(str(name))
    if found is None:
        raise TypeError(f"Ref[{name}] names no known domain model")
    return found


class Embedded(BaseModel):
    """A value nested inside a model (an address, an attendee): camelCase keys on the wire."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class DomainModel(BaseModel):
    """A typed document stored in ``collection`` under ``id``."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    collection: ClassVar[str] = ""
    _registry: ClassVar[dict[str, type[DomainModel]]] = {}

    id: str = Field(default_factory=_new_id, description="Document id within the collection.")

    def __init_subclass__(cls, collection: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if collection is not None:
            cls.collection = collection
        DomainModel._registry[cls.__name__] = cls

    @classmethod
    def _subclass_named(cls, name: str) -> type[Self]:
        found = DomainModel._registry.get(name)
        if found is None or not issubclass(found, cls):
            raise DatastoreError(
                f"document type {name!r} is not {cls.__name__} or one of its subclasses"
            )
        return found

    # --- wire format --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The document as stored: camelCase keys, references as paths, ``objType``."""
        data = self.model_dump(mode="json", by_alias=True, exclude={"id"})
        data[TYPE_KEY] = type(self).__name__
        return data

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], doc_id: str | None = None, *, shared: bool = False
    ) -> Self:
        """The model stored as ``data``, as the subclass named by its ``objType``.

        ``shared``: ``data`` is also held elsewhere (a read cache) and must stay as it is;
        it is copied first unless validating the class builds every list and dict anew.
        """
        fields = dict(data)
        kind = fields.pop(TYPE_KEY, None)
        model = cls if not kind or kind == cls.__name__ else cls._subclass_named(kind)
        if shared and not (_anew.get(model) or _builds_anew(model)):
            fields = copy_json(fields)
        if doc_id is not None:
            fields["id"] = doc_id
        # The validator itself: model_validate adds a Python call per document read.
        validated: Self = model.__pydantic_validator__.validate_python(fields)
        return validated

    # --- storage ------------------------------------------------------------------------

    @classmethod
    def _store(cls, store: Datastore | None) -> Datastore:
        if not cls.collection:
            raise DatastoreError(f"{cls.__name__} declares no collection")
        return store if store is not None else current_datastore()

    @classmethod
    def find(cls, doc_id: str, store: Datastore | None = None) -> Self | None:
        """The document ``doc_id``, or ``None`` if there is none."""
        target = cls._store(store)
        shared = getattr(target, "get_shared", None)  # a read cache: documents as held
        if shared is not None:
            data = shared(cls.collection, doc_id)
            return None if data is None else cls.from_dict(data, doc_id, shared=True)
        data = target.get(cls.collection, doc_id)
        return None if data is None else cls.from_dict(data, doc_id)

    @classmethod
    def find_many(cls, doc_ids: Iterable[str], store: Any = None) -> dict[str, Self | None]:
        """The documents ``doc_ids`` in one read, by id (``None`` for each missing one)."""
        target = cls._store(store)
        ids = list(doc_ids)
        from_dict = cls.from_dict
        shared = getattr(target, "get_many_shared", None)  # a read cache: documents as held
        if shared is not None:
            held = shared(cls.collection, ids)
            return {
                i: None if (d := held[i]) is None else from_dict(d, i, shared=True) for i in ids
            }
        get_many = getattr(target, "get_many", None)
        found: dict[str, Any] = (
            get_many(cls.collection, ids)
            if get_many is not None
            else {i: target.get(cls.collection, i) for i in ids}
        )
        return {i: None if (d := found[i]) is None else from_dict(d, i) for i in ids}

    @classmethod
    def get(cls, doc_id: str, store: Datastore | None = None) -> Self:
        """The document ``doc_id``; ``NotFoundError`` naming it if there is none."""
        found = cls.find(doc_id, store)
        if found is None:
            raise NotFoundError(f"{cls.collection}/{doc_id} does not exist")
        return found

    @classmethod
    def where(
        cls,
        *conditions: tuple[str, str, Any],
        order_by: str | None = None,
        limit: int | None = None,
        store: Datastore | None = None,
    ) -> list[Self]:
        """Documents matching every ``(field, op, value)``; field names as in Python.

        A value may be what the field holds in Python: a ``Ref`` or a document matches
        the reference stored for it (``("owner", "==", user.ref)``), an enum its value.
        """
        wire = [(_wire_name(cls, f), op, _stored_value(v)) for f, op, v in conditions]
        order = _wire_name(cls, order_by.lstrip("-")) if order_by else None
        if order and order_by and order_by.startswith("-"):
            order = "-" + order
        rows = cls._store(store).query(cls.collection, wire, order_by=order, limit=limit)
        return [cls.from_dict(data, doc_id) for doc_id, data in rows]

    def save(self, store: Datastore | None = None) -> Self:
        """Create or replace this document."""
        self._store(store).set(self.collection, self.id, self.to_dict())
        return self

    def delete(self, store: Datastore | None = None) -> None:
        """Delete this document (a no-op if it is already gone)."""
        self._store(store).delete(self.collection, self.id)

    @property
    def ref(self) -> Ref[Self]:
        """A reference to this document."""
        return Ref(type(self), self.id)


# Core-schema nodes whose validation returns new objects built from the input's values,
# never a list or dict of the input itself (``any`` would, as would validators of one's own).
_ANEW_NODES = frozenset(
    {
        "model", "model-fields", "model-field", "default", "nullable", "union",
        "tagged-union", "definitions", "definition-ref", "json-or-python", "lax-or-strict",
        "function-after", "none", "str", "int", "float", "bool", "bytes", "decimal",
        "enum", "literal", "date", "time", "datetime", "timedelta", "uuid", "url",
        "multi-host-url", "list", "dict", "tuple", "set", "frozenset",
    }
)  # fmt: skip
_anew: dict[type[BaseModel], bool] = {}


def _builds_anew(model: type[BaseModel]) -> bool:
    """Whether validating ``model`` from a dict keeps no list or dict of that input: every
    node of its schema is a plain type, a container built anew, a nested model of the
    same kind, or a ``Ref`` (no ``Any``, no before/wrap/plain validators, no extra fields
    kept). Then a read cache may hand it the dicts it holds without copying them."""
    found = _anew.get(model)
    if found is None:
        found = _anew[model] = _anew_node(model.__pydantic_core_schema__)
    return found


def _anew_node(node: Any) -> bool:
    if isinstance(node, list):
        return all(_anew_node(n) for n in node)
    if not isinstance(node, dict):
        return True
    kind = node.get("type")
    if isinstance(kind, str):
        if kind == "function-plain":
            function = node.get("function", {}).get("function")
            if not getattr(function, "_builds_ref", False):
                return False
        elif kind not in _ANEW_NODES:
            return False
        if kind == "model" and node.get("custom_init"):
            return False
        config = node.get("config")
        if isinstance(config, dict) and config.get("extra_fields_behavior") == "allow":
            return False
    skip = ("function", "serialization", "metadata", "config", "cls", "default")
    return all(_anew_node(v) for k, v in node.items() if k not in skip)


def _stored_value(value: Any) -> Any:
    """A condition's value as the store holds it (references as paths, enums as values)."""
    if isinstance(value, Ref):
        return value.path
    if isinstance(value, DomainModel):
        return value.ref.path
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple | set | frozenset):
        return [_stored_value(v) for v in value]
    return value


def _wire_name(model: type[DomainModel], name: str) -> str:
    field = model.model_fields.get(name)
    if field is None:
        return name  # already a wire name, or a nested path the store understands
    return field.alias or name
