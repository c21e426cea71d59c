"""GraphQL types from pydantic annotations: the output types of views, the input types of actions.

Scalars map to ``String``, ``Int``, ``Float`` and ``Boolean``; an ``Enum`` to a GraphQL
enum whose values are the members' names (``IN_SESSION`` for ``"in-session"``); a list,
tuple or set to a list of non-null items; a pydantic model (an ``Embedded`` value) to an
object type named after its class, with its fields under their JSON (camelCase) names;
``X | None`` to a nullable ``X`` (everything else is non-null). Dates, times, UUIDs and
decimals travel as their JSON strings; ``dict`` and ``Any`` as the ``JSON`` scalar.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import types
import typing
import uuid
from typing import Any, Literal, cast

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLString,
)
from pydantic import BaseModel
from pydantic.alias_generators import to_camel

__all__ = ["JSON", "TypeRegistry", "camel", "unwrap_optional"]

JSON = GraphQLScalarType(
    "JSON",
    description="Any JSON value, as it is (an object, array, string, number, boolean or null).",
    serialize=lambda value: value,
    parse_value=lambda value: value,
)

_SCALARS: dict[Any, Any] = {
    bool: GraphQLBoolean,
    int: GraphQLInt,
    float: GraphQLFloat,
    str: GraphQLString,
    datetime.datetime: GraphQLString,
    datetime.date: GraphQLString,
    datetime.time: GraphQLString,
    uuid.UUID: GraphQLString,
    decimal.Decimal: GraphQLString,
}


def camel(name: str) -> str:
    """``meeting_session`` → ``meetingSession``: the GraphQL spelling of a Python name."""
    return to_camel(name)


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None`` / ``Optional[X]``; ``(annotation, False)`` otherwise."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) < len(typing.get_args(annotation)):
            inner = members[0] if len(members) == 1 else typing.Union[tuple(members)]  # noqa: UP007
            return inner, True
    return annotation, False


class TypeRegistry:
    """Makes each named GraphQL type once; two Python classes of one name are an error."""

    def __init__(self) -> None:
        self._named: dict[str, tuple[Any, Any]] = {}  # GraphQL name -> (Python type, type)

    def _remember(self, name: str, python: Any, make: Any) -> Any:
        found = self._named.get(name)
        if found is not None:
            if found[0] is not python:
                raise ValueError(
                    f"two types are named {name!r} ({found[0].__module__} and "
                    f"{python.__module__}); GraphQL type names must be unique"
                )
            return found[1]
        made = make()
        self._named[name] = (python, made)
        return made

    def enum(self, python: type[enum.Enum]) -> GraphQLEnumType:
        def make() -> GraphQLEnumType:
            values = {
                member.name: GraphQLEnumValue(member.value)
                for member in python.__members__.values()
            }
            return GraphQLEnumType(python.__name__, values, description=_doc(python))

        made: GraphQLEnumType = self._remember(python.__name__, python, make)
        return made

    def object(self, python: type[BaseModel]) -> GraphQLObjectType:
        """The object type of a pydantic model: its fields under their JSON names."""

        def make() -> GraphQLObjectType:
            # A thunk, so a model may refer to itself or to one defined later.
            def fields() -> dict[str, GraphQLField]:
                return {
                    info.alias or name: GraphQLField(
                        self.output(info.annotation), description=info.description
                    )
                    for name, info in python.model_fields.items()
                }

            return GraphQLObjectType(python.__name__, fields, description=_doc(python))

        made: GraphQLObjectType = self._remember(python.__name__, python, make)
        return made

    def output(self, annotation: Any) -> GraphQLOutputType:
        """The output type of a field annotated ``annotation`` (non-null unless optional)."""
        inner, optional = unwrap_optional(annotation)
        named: GraphQLOutputType
        origin = typing.get_origin(inner)
        if origin in (list, tuple, set, frozenset):
            items = [a for a in typing.get_args(inner) if a is not Ellipsis]
            item = self.output(items[0]) if len(items) == 1 else JSON
            named = GraphQLList(item)
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            named = self.object(inner)
        else:
            named = self._leaf(inner)
        return named if optional else GraphQLNonNull(cast(Any, named))

    def input(self, annotation: Any) -> tuple[GraphQLInputType, bool]:
        """The input type of an argument annotated ``annotation``, and whether it is optional.

        Objects (pydantic models) are taken as ``JSON``, checked by the action's signature.
        """
        inner, optional = unwrap_optional(annotation)
        named: GraphQLInputType
        origin = typing.get_origin(inner)
        if origin in (list, tuple, set, frozenset):
            items = [a for a in typing.get_args(inner) if a is not Ellipsis]
            item = self.input(items[0])[0] if len(items) == 1 else JSON
            named = GraphQLList(item)
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            named = JSON
        else:
            named = self._leaf(inner)
        return (named if optional else GraphQLNonNull(cast(Any, named))), optional

    def _leaf(self, annotation: Any) -> Any:
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return self.enum(annotation)
        for python, scalar in _SCALARS.items():
            if annotation is python or (
                isinstance(annotation, type)
                and python is not bool
                and issubclass(annotation, python)
            ):
                # bool is an int subclass: only bool itself is Boolean.
                if python is int and annotation is bool:
                    continue
                return scalar
        if typing.get_origin(annotation) is Literal:
            values = typing.get_args(annotation)
            if all(isinstance(v, str) for v in values):
                return GraphQLString
        return JSON


def _doc(python: type) -> str | None:
    doc = python.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip() or doc.startswith("An enumeration"):
        return None
    return " ".join(doc.split())
