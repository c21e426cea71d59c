"""Query conditions on JSON documents, evaluated the same way by every in-process store.

A condition is ``(field, op, value)``; ``field`` is a wire name, dotted for nested keys
(``"location.city"``). Operators: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``
(the field's value is one of ``value``), ``array-contains`` (the field is a list holding
``value``). A document lacking the field matches no condition on it. The reactive engine
re-matches changed documents against recorded queries with the same function.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from onto_core.errors import DatastoreError

__all__ = ["OPERATORS", "Condition", "check_conditions", "matches", "sort_rows"]

Condition = tuple[str, str, Any]

_MISSING = object()


def _in(value: Any, options: Any) -> bool:
    return value in options


def _contains(value: Any, item: Any) -> bool:
    return isinstance(value, list) and item in value


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": _in,
    "array-contains": _contains,
}


def check_conditions(conditions: Iterable[Condition]) -> list[Condition]:
    """``conditions`` as a list, or ``DatastoreError`` naming the bad one."""
    checked = []
    for condition in conditions:
        if not (isinstance(condition, tuple | list) and len(condition) == 3):
            raise DatastoreError(f"a condition is (field, op, value), got {condition!r}")
        field, op, value = condition
        if op not in OPERATORS:
            raise DatastoreError(
                f"unknown operator {op!r} in condition on {field!r}; "
                f"expected one of: {', '.join(OPERATORS)}"
            )
        if op == "in" and not isinstance(value, list | tuple | set | frozenset):
            raise DatastoreError(f"'in' on {field!r} needs a list of values, got {value!r}")
        checked.append((str(field), str(op), value))
    return checked


def field_value(data: dict[str, Any], field: str) -> Any:
    """The value at dotted ``field`` in ``data``, or a private marker when absent."""
    value: Any = data
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def matches(data: dict[str, Any] | None, conditions: Sequence[Condition]) -> bool:
    """Whether document ``data`` satisfies every condition (a deleted doc matches none)."""
    if data is None:
        return False
    for field, op, expected in conditions:
        value = field_value(data, field)
        if value is _MISSING:
            return False
        try:
            if not OPERATORS[op](value, expected):
                return False
        except TypeError:  # e.g. comparing a str with an int: not a match, not a crash
            return False
    return True


def sort_rows(
    rows: list[tuple[str, dict[str, Any]]], order_by: str | None, limit: int | None
) -> list[tuple[str, dict[str, Any]]]:
    """Rows ordered by ``order_by`` (``-field`` for descending; ties by id), then limited.

    Documents lacking the field sort first, as Firestore puts them nowhere and SQL puts
    NULL first; documents whose values cannot be compared are ordered by type name.
    """
    if order_by:
        descending = order_by.startswith("-")
        field = order_by.lstrip("-")

        def key(row: tuple[str, dict[str, Any]]) -> tuple[int, str, Any, str]:
            value = field_value(row[1], field)
            if value is _MISSING or value is None:
                return (0, "", 0, row[0])
            return (1, type(value).__name__, value, row[0])

        rows = sorted(rows, key=key, reverse=descending)
    else:
        rows = sorted(rows, key=lambda row: row[0])
    return rows if limit is None else rows[:limit]
