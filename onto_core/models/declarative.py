"""Declared view models: one definition that the in-process engine and Flink both run.

A declared view says what its fields are made of instead of computing them in Python::

    meeting = root(Meeting)
    location = follow(meeting.location)              # a Ref followed: one document
    participant = fan_out(meeting.users)              # one view per reference listed
    ticket = children(meeting.tickets)                # the documents a list/dict of refs names
    present = ticket.where(ticket.attendance, meeting.status != MeetingStatus.NOT_STARTED)
    user = follow(present.user)                       # a Ref of each child, followed


    class MeetingSession(ViewModel, root=Meeting, key=("meeting_id", "user_id")):
        meeting_id: str
        ...
        build = declared(
            meeting_id=meeting.id,
            user_id=participant.id,
            latitude=location.latitude,
            attending=collect(Attendee, over=user, sort_by=user.id, user_id=user.id, ...),
            num_hearing_aid_requested=count(over=user, where=user.hearing_aid_requested),
        )

``declared(...)`` is the view's ``build``: the first time it is used it is turned into
Python source (the reads a hand-written build would make, in the same order) and
compiled, so the in-process engine runs it at hand-written speed and records the same
read set. The same declaration is what ``onto-flink`` compiles to Flink SQL
(``declaration_of(cls)``); a view whose ``build`` is ordinary Python has none.

Semantics, shared by both engines:

- ``follow(root.ref)``: the referenced document; it must exist (``NotFoundError``
  in-process, like ``Ref.get``).
- ``fan_out(root.refs)``: one view per reference in a ``list[Ref]`` or ``dict[str, Ref]``
  (by id, sorted); without one, a root yields one view.
- ``children(root.refs)``: the referenced documents that exist; ``.where(*conditions)``
  keeps those for which every condition holds (conditions may read the root);
  ``follow(child.ref)`` pairs each child with its referenced document, dropping children
  whose reference is missing.
- Aggregates over children: ``count(over=, where=)``, ``sum_of(value, over=, where=)``
  and ``collect(Embedded, over=, sort_by=, **fields)`` (a list sorted by a ``str``
  value, ``[]`` when empty).
- Expressions: fields (``doc.name``, ``doc.id``), constants, ``==`` ``!=`` ``<`` ``<=``
  ``>`` ``>=``, ``&`` ``|`` ``~``, ``if_(cond, a, b)``, ``concat(*texts)`` and
  ``first_nonempty(*texts)`` (Python's ``a or b`` on text).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from onto_core.models.domain import DomainModel, Embedded, Ref
from onto_core.models.view import ViewModel

__all__ = [
    "Aggregate",
    "Declaration",
    "DeclarationError",
    "Expr",
    "Field",
    "Slot",
    "children",
    "collect",
    "concat",
    "count",
    "declaration_of",
    "declared",
    "fan_out",
    "first_nonempty",
    "follow",
    "if_",
    "root",
    "sum_of",
]


class DeclarationError(TypeError):
    """A declaration that does not fit its models or its view class."""


# --- expressions ---------------------------------------------------------------------------


class Expr:
    """A value computed from documents: both engines evaluate it."""

    def __eq__(self, other: object) -> Expr:  # type: ignore[override]
        return Compare("==", self, lit(other))

    def __ne__(self, other: object) -> Expr:  # type: ignore[override]
        return Compare("!=", self, lit(other))

    def __lt__(self, other: object) -> Expr:
        return Compare("<", self, lit(other))

    def __le__(self, other: object) -> Expr:
        return Compare("<=", self, lit(other))

    def __gt__(self, other: object) -> Expr:
        return Compare(">", self, lit(other))

    def __ge__(self, other: object) -> Expr:
        return Compare(">=", self, lit(other))

    def __and__(self, other: object) -> Expr:
        return Logic("and", (self, lit(other)))

    def __or__(self, other: object) -> Expr:
        return Logic("or", (self, lit(other)))

    def __invert__(self) -> Expr:
        return Not(self)

    def __bool__(self) -> bool:
        raise DeclarationError(
            "a declared expression has no truth value in Python: use & | ~ and if_(), "
            "not `and`, `or`, `not` or `if`"
        )

    __hash__ = object.__hash__

    def children(self) -> tuple[Expr, ...]:
        return ()

    def slots(self) -> set[Slot]:
        """Every document slot the expression reads."""
        found: set[Slot] = set()
        for child in self.children():
            found |= child.slots()
        return found


def lit(value: object) -> Expr:
    return value if isinstance(value, Expr) else Const(value)


class Const(Expr):
    def __init__(self, value: object) -> None:
        if not isinstance(value, str | int | float | bool | enum.Enum) and value is not None:
            raise DeclarationError(
                f"a constant must be text, a number, a bool or an enum: {value!r}"
            )
        self.value = value


class Field(Expr):
    """A field of the document in ``slot`` (``id`` is the document id)."""

    def __init__(self, slot: Slot, name: str) -> None:
        self.slot = slot
        self.name = name

    def slots(self) -> set[Slot]:
        return {self.slot}

    @property
    def annotation(self) -> Any:
        if self.name == "id":
            return str
        return self.slot.fields_of()[self.name].annotation


class Compare(Expr):
    def __init__(self, op: str, left: Expr, right: Expr) -> None:
        self.op, self.left, self.right = op, left, right

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


class Logic(Expr):
    def __init__(self, op: str, terms: tuple[Expr, ...]) -> None:
        self.op, self.terms = op, terms

    def children(self) -> tuple[Expr, ...]:
        return self.terms


class Not(Expr):
    def __init__(self, term: Expr) -> None:
        self.term = term

    def children(self) -> tuple[Expr, ...]:
        return (self.term,)


class If(Expr):
    def __init__(self, cond: Expr, then: Expr, otherwise: Expr) -> None:
        self.cond, self.then, self.otherwise = cond, then, otherwise

    def children(self) -> tuple[Expr, ...]:
        return (self.cond, self.then, self.otherwise)


class Concat(Expr):
    def __init__(self, parts: tuple[Expr, ...]) -> None:
        self.parts = parts

    def children(self) -> tuple[Expr, ...]:
        return self.parts


class FirstNonEmpty(Expr):
    def __init__(self, parts: tuple[Expr, ...]) -> None:
        self.parts = parts

    def children(self) -> tuple[Expr, ...]:
        return self.parts


def if_(cond: object, then: object, otherwise: object) -> Expr:
    """``then`` where ``cond`` holds, else ``otherwise``."""
    return If(lit(cond), lit(then), lit(otherwise))


def concat(*parts: object) -> Expr:
    """The texts joined, e.g. ``concat(user.first_name, " ", user.last_name)``."""
    return Concat(tuple(lit(p) for p in parts))


def first_nonempty(*parts: object) -> Expr:
    """The first text that is not empty (the last one if all are), as ``a or b`` in Python."""
    return FirstNonEmpty(tuple(lit(p) for p in parts))


# --- where documents come from ------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Step:
    """One step of a child row set: start from a root's refs, filter, or follow a ref."""

    kind: str  # "start" | "where" | "follow"
    field: str = ""  # the ref field (start: of the root; follow: of slot ``of``)
    of: int = 0  # follow: the slot whose ref is followed
    conditions: tuple[Expr, ...] = ()
    model: type[DomainModel] | None = None  # start / follow: the model reached


class Slot:
    """Documents an expression can read fields of: attribute access gives a ``Field``."""

    def __init__(
        self,
        kind: str,
        model: type[DomainModel] | None,
        *,
        field: str = "",
        steps: tuple[Step, ...] = (),
        index: int = 0,
        root: Slot | None = None,
    ) -> None:
        self.kind = kind  # "root" | "follow" | "fan_out" | "child"
        self.model = model  # None for a fan-out, which has only ids
        self.field = field
        self.steps = steps  # child slots: the row set they belong to
        self.index = index  # child slots: position in a row
        self.root = root

    def __getattr__(self, name: str) -> Field:
        if name.startswith("_"):
            raise AttributeError(name)
        if name != "id" and (self.model is None or name not in self.model.model_fields):
            owner = "a fan-out (only .id)" if self.model is None else self.model.__name__
            raise DeclarationError(f"{owner} has no field {name!r}")
        return Field(self, name)

    def fields_of(self) -> dict[str, Any]:
        """The pydantic fields of this slot's model."""
        if self.model is None:
            raise DeclarationError("a fan-out has only .id")
        return dict(self.model.model_fields)

    def where(self, *conditions: object) -> Slot:
        """The same children, keeping those for which every condition holds."""
        if self.kind != "child":
            raise DeclarationError("where() filters children: call it on children(...)")
        step = Step("where", conditions=tuple(lit(c) for c in conditions))
        return Slot(
            "child", self.model, steps=(*self.steps, step), index=self.index, root=self.root
        )


def root(model: type[DomainModel]) -> Slot:
    """The root document a view is built from."""
    return Slot("root", model)


def _ref_target(field_expr: Field, shapes: tuple[str, ...]) -> tuple[type[DomainModel], str]:
    annotation = field_expr.annotation
    shape, target = _ref_shape(annotation)
    if shape not in shapes:
        wanted = {"one": "Ref[Model]", "many": "list[Ref[Model]] or dict[str, Ref[Model]]"}
        raise DeclarationError(
            f"{field_expr.slot.model.__name__ if field_expr.slot.model else 'fan-out'}."
            f"{field_expr.name} must be {' or '.join(wanted[s] for s in shapes)}"
        )
    assert target is not None
    return target, shape


def _ref_shape(annotation: Any) -> tuple[str, type[DomainModel] | None]:
    """("one" | "list" | "dict" | "", target model) of a field annotation."""
    origin = get_origin(annotation)
    if origin is Ref:
        return "one", _resolve_model(get_args(annotation)[0])
    if origin is list and get_origin(get_args(annotation)[0]) is Ref:
        return "many", _resolve_model(get_args(get_args(annotation)[0])[0])
    if origin is dict and get_origin(get_args(annotation)[1]) is Ref:
        return "many", _resolve_model(get_args(get_args(annotation)[1])[0])
    return "", None


def ref_container(annotation: Any) -> str:
    """ "list" or "dict": how a many-references field holds its refs."""
    return "dict" if get_origin(annotation) is dict else "list"


def _resolve_model(target: Any) -> type[DomainModel]:
    if isinstance(target, type) and issubclass(target, DomainModel):
        return target
    name = getattr(target, "__forward_arg__", target)
    found = DomainModel._registry.get(str(name))
    if found is None:
        raise DeclarationError(f"Ref[{name}] names no known domain model")
    return found


def follow(ref: Field) -> Slot:
    """The document a ``Ref`` field names: of the root (it must exist) or of each child."""
    if not isinstance(ref, Field):
        raise DeclarationError("follow() takes a Ref field, e.g. follow(meeting.location)")
    model, _ = _ref_target(ref, ("one",))
    slot = ref.slot
    if slot.kind == "root":
        return Slot("follow", model, field=ref.name, root=slot)
    if slot.kind == "child":
        index = len([s for s in slot.steps if s.kind in ("start", "follow")])
        step = Step("follow", field=ref.name, of=slot.index, model=model)
        return Slot("child", model, steps=(*slot.steps, step), index=index, root=slot.root)
    raise DeclarationError("follow() follows a Ref of the root or of children(...)")


def fan_out(refs: Field) -> Slot:
    """One view per reference in the root's ``list[Ref]`` / ``dict[str, Ref]`` field."""
    if not isinstance(refs, Field) or refs.slot.kind != "root":
        raise DeclarationError("fan_out() takes a field of the root, e.g. fan_out(meeting.users)")
    _ref_target(refs, ("many",))
    return Slot("fan_out", None, field=refs.name, root=refs.slot)


def children(refs: Field) -> Slot:
    """The existing documents a ``list[Ref]`` / ``dict[str, Ref]`` field of the root names."""
    if not isinstance(refs, Field) or refs.slot.kind != "root":
        raise DeclarationError("children() takes a field of the root, e.g. children(m.tickets)")
    model, _ = _ref_target(refs, ("many",))
    step = Step("start", field=refs.name, model=model)
    return Slot("child", model, steps=(step,), index=0, root=refs.slot)


# --- aggregates ---------------------------------------------------------------------------


class Aggregate(Expr):
    """A value computed over a child row set: ``count``, ``sum_of`` or ``collect``."""

    def __init__(
        self,
        kind: str,
        over: Slot,
        where: Expr | None = None,
        value: Expr | None = None,
        element: type[Embedded] | None = None,
        fields: dict[str, Expr] | None = None,
        sort_by: Expr | None = None,
    ) -> None:
        if not isinstance(over, Slot) or over.kind != "child":
            raise DeclarationError(
                f"{kind}(over=...) takes children(...) or what follows from them"
            )
        self.kind, self.over, self.where, self.value = kind, over, where, value
        self.element, self.fields, self.sort_by = element, fields or {}, sort_by
        for expr in self.inner():
            for slot in expr.slots():
                if slot.kind == "child" and slot.steps != over.steps[: len(slot.steps)]:
                    raise DeclarationError(
                        f"{kind}(): an expression reads children of another row set than over="
                    )
                if slot.kind == "fan_out":
                    raise DeclarationError(f"{kind}(): an aggregate cannot read the fan-out id")

    def inner(self) -> list[Expr]:
        candidates = (self.where, self.value, self.sort_by, *self.fields.values())
        return [e for e in candidates if e is not None]

    def slots(self) -> set[Slot]:
        return {s for e in self.inner() for s in e.slots() if s.kind != "child"}


def count(*, over: Slot, where: object = None) -> Aggregate:
    """How many rows of ``over`` there are (for which ``where`` holds)."""
    return Aggregate("count", over, where=None if where is None else lit(where))


def sum_of(value: object, *, over: Slot, where: object = None) -> Aggregate:
    """The sum of ``value`` over the rows of ``over`` (for which ``where`` holds); 0 if none."""
    return Aggregate("sum", over, where=None if where is None else lit(where), value=lit(value))


def collect(
    element: type[Embedded], *, over: Slot, sort_by: Expr, where: object = None, **fields: object
) -> Aggregate:
    """A list of ``element`` values, one per row of ``over``, sorted by the text ``sort_by``."""
    missing = set(element.model_fields) - set(fields)
    unknown = set(fields) - set(element.model_fields)
    if missing or unknown:
        raise DeclarationError(
            f"collect({element.__name__}): give every field once; "
            f"missing {sorted(missing)}, unknown {sorted(unknown)}"
        )
    if not _is_text(sort_by):
        raise DeclarationError(f"collect({element.__name__}): sort_by must be a text (str) value")
    return Aggregate(
        "collect",
        over,
        where=None if where is None else lit(where),
        element=element,
        fields={k: lit(v) for k, v in fields.items()},
        sort_by=sort_by,
    )


def _is_text(expr: Expr) -> bool:
    if isinstance(expr, Field):
        annotation = expr.annotation
        return annotation is str or (isinstance(annotation, type) and issubclass(annotation, str))
    if isinstance(expr, Const):
        return isinstance(expr.value, str)
    return isinstance(expr, Concat | FirstNonEmpty)


# --- the declaration ----------------------------------------------------------------------


@dataclass
class Declaration:
    """What a declared view is made of: its root slot, fan-out and one expression per field."""

    view: type[ViewModel]
    root: Slot
    fields: dict[str, Expr]
    fan_out: Slot | None = None
    follows: list[Slot] = field(default_factory=list)
    row_sets: list[tuple[Step, ...]] = field(default_factory=list)
    aggregates: list[Aggregate] = field(default_factory=list)


def declaration_of(view: type[ViewModel]) -> Declaration | None:
    """The declaration of ``view``'s build, or ``None`` when its build is Python code."""
    marker = view.__dict__.get("build")
    if isinstance(marker, declared):
        return marker.declaration(view)
    found: Declaration | None = getattr(view, "__onto_declaration__", None)
    return found if found is not None and found.view is view else None


class declared(classmethod):  # type: ignore[type-arg]
    """A view's ``build``, declared field by field (see the module docstring)."""

    def __init__(self, **fields: object) -> None:
        super().__init__(_unbuilt)
        self._fields = {name: lit(value) for name, value in fields.items()}
        self._owner: type[ViewModel] | None = None
        self._declaration: Declaration | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        if name != "build":
            raise DeclarationError(f"{owner.__name__}.{name}: declared(...) is the view's build")
        self._owner = owner if issubclass(owner, ViewModel) else None

    def declaration(self, view: type[ViewModel]) -> Declaration:
        if self._declaration is None:
            self._declaration = _declare(view, self._fields)
        return self._declaration

    def __get__(self, instance: object, owner: type | None = None) -> Callable[..., Any]:
        view: type[ViewModel] = owner if owner is not None else type(instance)
        declaration = self.declaration(view)
        build = _python_build(declaration)
        # From now on ``build`` is a plain classmethod: no lookup cost per call.
        view.__onto_declaration__ = declaration  # type: ignore[attr-defined]
        type.__setattr__(view, "build", classmethod(build))
        bound: Callable[..., Any] = build.__get__(view, type(view))
        return bound


def _unbuilt(cls: type, root_doc: object) -> object:  # pragma: no cover - replaced on access
    raise AssertionError("declared build used before its class was complete")


def _declare(view: type[ViewModel], fields: dict[str, Expr]) -> Declaration:
    name = view.__name__
    wanted = set(view.model_fields)
    if set(fields) != wanted:
        raise DeclarationError(
            f"{name}: declared(...) must give every field once; missing "
            f"{sorted(wanted - set(fields))}, unknown {sorted(set(fields) - wanted)}"
        )
    roots: set[Slot] = set()
    for expr in fields.values():
        for slot in _all_slots(expr):
            top = slot if slot.kind == "root" else slot.root
            if top is not None:
                roots.add(top)
    if len(roots) != 1:
        raise DeclarationError(f"{name}: every field must come from one root(...)")
    root_slot = next(iter(roots))
    if root_slot.model is not view.root:
        raise DeclarationError(
            f"{name}: declared from root({root_slot.model.__name__ if root_slot.model else '?'}), "
            f"but the view's root is {view.root.__name__}"
        )
    declaration = Declaration(view=view, root=root_slot, fields=fields)
    for expr in fields.values():
        for slot in _all_slots(expr):
            if slot.kind == "fan_out":
                if declaration.fan_out not in (None, slot):
                    raise DeclarationError(f"{name}: one fan_out(...) per view")
                declaration.fan_out = slot
            elif slot.kind == "follow" and slot not in declaration.follows:
                declaration.follows.append(slot)
        for agg in _aggregates(expr):
            if not any(agg is a for a in declaration.aggregates):
                declaration.aggregates.append(agg)
                if agg.over.steps not in declaration.row_sets:
                    declaration.row_sets.append(agg.over.steps)
            for slot in {s for e in agg.inner() for s in e.slots()}:
                if slot.kind == "follow" and slot not in declaration.follows:
                    declaration.follows.append(slot)
        if any(s.kind == "child" for s in expr.slots()):
            raise DeclarationError(f"{name}: a field reads children outside count/sum_of/collect")
    for step in (s for steps in declaration.row_sets for s in steps):
        for cond in step.conditions:
            for slot in cond.slots():
                if slot.kind == "follow" and slot not in declaration.follows:
                    declaration.follows.append(slot)
    first = view.key_fields[0]
    key_expr = fields[first]
    if not (isinstance(key_expr, Field) and key_expr.slot is root_slot and key_expr.name == "id"):
        raise DeclarationError(f"{name}: key field {first!r} must be the root's id")
    return declaration


def _all_slots(expr: Expr) -> set[Slot]:
    found = set(expr.slots())
    for agg in _aggregates(expr):
        found |= {s for e in agg.inner() for s in e.slots()}
    return found


def _aggregates(expr: Expr) -> list[Aggregate]:
    if isinstance(expr, Aggregate):
        return [expr]
    return [a for child in expr.children() for a in _aggregates(child)]


# --- the in-process build: Python source from the declaration -----------------------------


class _PythonSource:
    """Turns a declaration into the source of a ``build(cls, root)`` function."""

    def __init__(self, declaration: Declaration) -> None:
        self.d = declaration
        self.names: dict[str, Any] = {}
        self.counter = itertools.count()
        self.follow_vars = {slot: f"_f{i}" for i, slot in enumerate(declaration.follows)}
        self.lines: list[str] = []

    def bind(self, value: Any, hint: str) -> str:
        for name, held in self.names.items():
            if held is value:
                return name
        name = f"_{hint}{next(self.counter)}"
        self.names[name] = value
        return name

    def expr(self, e: Expr, row: dict[int, str] | None = None, fan: str = "") -> str:
        if isinstance(e, Const):
            return self.bind(e.value, "c") if isinstance(e.value, enum.Enum) else repr(e.value)
        if isinstance(e, Field):
            slot = e.slot
            if slot.kind == "root":
                base = "root"
            elif slot.kind == "follow":
                base = self.follow_vars[slot]
            elif slot.kind == "fan_out":
                return fan
            else:
                assert row is not None
                base = row[slot.index]
            return f"{base}.{e.name}"
        if isinstance(e, Compare):
            left, right = self.expr(e.left, row, fan), self.expr(e.right, row, fan)
            return f"({left} {e.op} {right})"
        if isinstance(e, Logic):
            return "(" + f" {e.op} ".join(self.expr(t, row, fan) for t in e.terms) + ")"
        if isinstance(e, Not):
            return f"(not {self.expr(e.term, row, fan)})"
        if isinstance(e, If):
            cond, then = self.expr(e.cond, row, fan), self.expr(e.then, row, fan)
            return f"({then} if {cond} else {self.expr(e.otherwise, row, fan)})"
        if isinstance(e, Concat):
            return "(" + " + ".join(self.expr(p, row, fan) for p in e.parts) + ")"
        if isinstance(e, FirstNonEmpty):
            return "(" + " or ".join(self.expr(p, row, fan) for p in e.parts) + ")"
        if isinstance(e, Aggregate):
            return self.aggregate_vars[e]
        raise DeclarationError(f"cannot evaluate {e!r}")  # pragma: no cover

    def values_of(self, refs: str) -> str:
        """How the refs of root field ``refs`` are iterated: a dict's values, or the list."""
        annotation = self.d.root.fields_of()[refs].annotation
        return ".values()" if ref_container(annotation) == "dict" else ""

    def source(self) -> str:
        d = self.d
        out = ["def build(cls, root):"]
        for slot, var in self.follow_vars.items():
            model = self.bind(slot.model, "M")
            out.append(f"    {var} = {model}.get(root.{slot.field}.doc_id)")
        self.aggregate_vars = {agg: f"_a{i}" for i, agg in enumerate(d.aggregates)}
        for index, steps in enumerate(d.row_sets):
            out += self.row_set(index, steps)
        if d.fan_out is None:
            out.append("    return cls(")
            out += [f"        {name}={self.expr(e)}," for name, e in d.fields.items()]
            out.append("    )")
        else:
            refs = d.fan_out.field
            values = self.values_of(refs)
            out.append("    return [")
            out.append("        cls(")
            out += [
                f"            {name}={self.expr(e, fan='_id')}," for name, e in d.fields.items()
            ]
            out.append("        )")
            out.append(f"        for _id in sorted(ref.doc_id for ref in root.{refs}{values})")
            out.append("    ]")
        return "\n".join(out) + "\n"

    def row_set(self, index: int, steps: tuple[Step, ...]) -> list[str]:
        aggs = [a for a in self.d.aggregates if a.over.steps == steps]
        rows = f"_r{index}"
        out: list[str] = []
        empties = {
            "count": "0",
            "sum": "0",
            "collect": "[]",
        }
        for agg in aggs:
            out.append(f"    {self.aggregate_vars[agg]} = {empties[agg.kind]}")
        # Conditions on the root alone guard the whole row set: no child is read unless
        # they hold, as a hand-written build would skip the reads.
        guards = [
            c
            for s in steps
            for c in s.conditions
            if all(slot.kind in ("root", "follow") for slot in c.slots())
        ]
        indent = "    "
        if guards:
            out.append(f"    if {' and '.join(self.expr(g) for g in guards)}:")
            indent = "        "
        width = 0  # documents per row so far
        names: dict[int, str] = {}
        for step in steps:
            if step.kind == "start":
                model = self.bind(step.model, "M")
                values = self.values_of(step.field)
                out.append(
                    f"{indent}_docs = {model}.find_many("
                    f"ref.doc_id for ref in root.{step.field}{values})"
                )
                out.append(f"{indent}{rows} = [(_d,) for _d in _docs.values() if _d is not None]")
                width = 1
            elif step.kind == "where":
                conds = [c for c in step.conditions if not any(c is g for g in guards)]
                if not conds:
                    continue
                names = {i: f"_x[{i}]" for i in range(width)}
                test = " and ".join(self.expr(c, names) for c in conds)
                out.append(f"{indent}{rows} = [_x for _x in {rows} if {test}]")
            else:
                model = self.bind(step.model, "M")
                ref = f"_x[{step.of}].{step.field}.doc_id"
                out.append(f"{indent}_docs = {model}.find_many({ref} for _x in {rows})")
                out.append(
                    f"{indent}{rows} = [(*_x, _d) for _x in {rows}"
                    f" if (_d := _docs[{ref}]) is not None]"
                )
                width += 1
        names = {i: f"_x[{i}]" for i in range(width)}
        for agg in aggs:
            var = self.aggregate_vars[agg]
            where = f" if {self.expr(agg.where, names)}" if agg.where is not None else ""
            if agg.kind == "count":
                out.append(f"{indent}{var} = sum(1 for _x in {rows}{where})")
            elif agg.kind == "sum":
                value = self.expr(agg.value, names)  # type: ignore[arg-type]
                out.append(f"{indent}{var} = sum({value} for _x in {rows}{where})")
            else:
                element = self.bind(agg.element, "E")
                key = self.bind(
                    eval(f"lambda _x: {self.expr(agg.sort_by, names)}", dict(self.names)),  # type: ignore[arg-type]
                    "k",
                )
                args = ", ".join(f"{k}={self.expr(v, names)}" for k, v in agg.fields.items())
                out.append(
                    f"{indent}{var} = [{element}({args})"
                    f" for _x in sorted({rows}, key={key}){where}]"
                )
        return out


def _python_build(declaration: Declaration) -> Callable[..., Any]:
    writer = _PythonSource(declaration)
    text = writer.source()
    namespace: dict[str, Any] = dict(writer.names)
    code = compile(text, f"<declared build of {declaration.view.__qualname__}>", "exec")
    exec(code, namespace)
    build: Callable[..., Any] = namespace["build"]
    build.__onto_source__ = text  # type: ignore[attr-defined]
    return build
