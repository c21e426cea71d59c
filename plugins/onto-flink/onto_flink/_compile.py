"""Declared view models compiled to Flink SQL.

The job reads onto's change topic (records as the ``changes`` source writes them:
``seq``, ``collection``, ``docId``, ``op``, ``data``), keeps the latest state of every
document per collection (the newest ``seq`` wins; a delete keeps a tombstone so versions
never go backwards), computes each view with joins and aggregates, and gives one row per view key
(``ROWS``: ``key``, ``version``, and the text of the view update before and after its
version). The job runner makes each key's versions rise (``RISING_VERSIONS``) and writes
the updates, shaped as onto's view updates (``view``, ``key``, ``fields``, ``version``,
``removed``, ``data``), to the upsert table ``SINK``.
"""

from __future__ import annotations

import enum
import json
import types
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from onto_core.errors import OntoError
from onto_core.models import DomainModel, ViewModel
from onto_core.models.declarative import (
    Aggregate,
    Compare,
    Concat,
    Const,
    Declaration,
    Expr,
    Field,
    FirstNonEmpty,
    If,
    Logic,
    Not,
    Slot,
    Step,
    declaration_of,
    ref_container,
)

__all__ = ["CompileError", "FlinkJob", "compile_views"]

CHANGES = "onto_changes"
ROWS = "onto_view_rows"
SINK = "onto_view_updates"
RISING_VERSIONS = """\
-- onto flink run reads {rows} into one more step, keyed by `key`, that makes each key's
-- versions rise: a row whose version is not above the key's previous one gets that one
-- plus 1 (the step's state is checkpointed). Flink joins do not keep their inputs in
-- step, so a row computed from older inputs can follow a newer one; without the step its
-- version would go down and a sink keeping the newest version would drop it. The step
-- writes key and head || version || tail as `value` to {sink}.
"""
_ID = "REGEXP_EXTRACT({}, '([^/]*)$', 1)"  # the doc id of a stored "collection/id" path


class CompileError(OntoError):
    """A view the Flink compiler cannot translate, naming the view and the construct."""


@dataclass
class FlinkJob:
    """The SQL of one Flink job: tables and views, ending in ``rows`` (the temporary view
    of every view model's rows: ``key``, ``version``, ``head``, ``tail``) and ``sink``
    (the upsert table of ``key`` and ``value``)."""

    setup: list[str] = field(default_factory=list)
    rows: str = ROWS
    sink: str = SINK

    def script(self) -> str:
        """The whole job as one SQL script, the last step described in a comment."""
        body = "\n\n".join(s + ";" for s in self.setup)
        step = RISING_VERSIONS.format(rows=quote(self.rows), sink=quote(self.sink))
        return f"{body}\n\n{step}"


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"CAST({value!r} AS DOUBLE)"
    return "'" + str(value).replace("'", "''") + "'"


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``X | None``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _column(view: str, model: type[DomainModel], name: str, info: FieldInfo) -> str:
    """The SQL that reads field ``name`` of ``model`` from a change's ``data`` text."""
    path = "'$." + (info.alias or to_camel(name)) + "'"
    annotation = _unwrap(info.annotation)
    origin = get_origin(annotation)
    if origin is not None and getattr(origin, "__name__", "") == "Ref":
        sql = _ID.format(f"JSON_VALUE(`data`, {path})")
    elif origin in (list, dict):
        if ref_container(annotation) == "dict":  # the values: a wildcard gives them as a list
            return (
                f"JSON_QUERY(`data`, '$.{info.alias or to_camel(name)}.*' RETURNING ARRAY<STRING>)"
            )
        return f"JSON_QUERY(`data`, {path} RETURNING ARRAY<STRING>)"
    elif annotation is bool:
        sql = f"JSON_VALUE(`data`, {path} RETURNING BOOLEAN)"
    elif isinstance(annotation, type) and issubclass(annotation, int) and annotation is not bool:
        sql = f"CAST(JSON_VALUE(`data`, {path}) AS BIGINT)"
    elif annotation is float:
        # Read as text: RETURNING DOUBLE fails on a JSON integer such as 1.
        sql = f"CAST(JSON_VALUE(`data`, {path}) AS DOUBLE)"
    elif isinstance(annotation, type) and issubclass(annotation, str):
        sql = f"JSON_VALUE(`data`, {path})"
    else:
        raise CompileError(
            f"{view}: {model.__name__}.{name} ({annotation!r}) has no Flink SQL column type; "
            "fields read by a compiled view must be str, int, float, bool, a str enum or refs"
        )
    default = info.default
    if isinstance(default, str | int | float | bool | enum.Enum) and default is not None:
        sql = f"COALESCE({sql}, {literal(default)})"
    return sql


@dataclass
class _Context:
    view: type[ViewModel]
    declaration: Declaration
    aliases: dict[Slot, str] = field(default_factory=dict)
    used: dict[type[DomainModel], set[str]] = field(default_factory=dict)
    fan: str = ""

    @property
    def name(self) -> str:
        return self.view.__name__

    def use(self, model: type[DomainModel], name: str) -> None:
        if name != "id":
            self.used.setdefault(model, set()).add(name)

    def sql(self, e: Expr, aggregates: dict[int, str] | None = None) -> str:
        if isinstance(e, Const):
            return literal(e.value)
        if isinstance(e, Field):
            if e.slot.kind == "fan_out":
                return self.fan
            assert e.slot.model is not None
            self.use(e.slot.model, e.name)
            return f"{self.aliases[e.slot]}.{quote(e.name)}"
        if isinstance(e, Compare):
            op = {"==": "=", "!=": "<>"}.get(e.op, e.op)
            return f"({self.sql(e.left, aggregates)} {op} {self.sql(e.right, aggregates)})"
        if isinstance(e, Logic):
            return "(" + f" {e.op.upper()} ".join(self.sql(t, aggregates) for t in e.terms) + ")"
        if isinstance(e, Not):
            return f"(NOT {self.sql(e.term, aggregates)})"
        if isinstance(e, If):
            cond = self.sql(e.cond, aggregates)
            then, otherwise = self.sql(e.then, aggregates), self.sql(e.otherwise, aggregates)
            return f"(CASE WHEN {cond} THEN {then} ELSE {otherwise} END)"
        if isinstance(e, Concat):
            return "CONCAT(" + ", ".join(self.sql(p, aggregates) for p in e.parts) + ")"
        if isinstance(e, FirstNonEmpty):
            parts = [self.sql(p, aggregates) for p in e.parts]
            whens = " ".join(f"WHEN COALESCE({p}, '') <> '' THEN {p}" for p in parts[:-1])
            return f"(CASE {whens} ELSE {parts[-1]} END)"
        if isinstance(e, Aggregate):
            if aggregates is None:
                raise CompileError(f"{self.name}: an aggregate inside an aggregate")
            return aggregates[id(e)]
        raise CompileError(f"{self.name}: {type(e).__name__} does not compile")


def _present(alias: str) -> str:
    return f"({alias}.`id` IS NOT NULL AND NOT {alias}.`deleted`)"


def _json_value(sql: str) -> str:
    return f"COALESCE(JSON_STRING({sql}), 'null')"


def _json_object(pairs: list[tuple[str, str]]) -> str:
    """SQL building a JSON object from (key, JSON text SQL) pairs, in order."""
    parts: list[str] = []
    for index, (key, value) in enumerate(pairs):
        parts.append(literal(("{" if index == 0 else ",") + json.dumps(key) + ":"))
        parts.append(value)
    parts.append("'}'" if pairs else "'{}'")
    return "CONCAT(" + ", ".join(parts) + ")"


def _refuse_python_build(view: type[ViewModel]) -> CompileError:
    return CompileError(
        f"{view.__module__}:{view.__qualname__} cannot run on Flink: its build() is Python "
        "code (a hand-written build); only a build declared with "
        "onto_core.models.declarative (build = declared(...)) compiles to Flink SQL"
    )


def compile_views(
    views: list[type[ViewModel]], source: dict[str, str], sink: dict[str, str]
) -> FlinkJob:
    """The Flink SQL job for ``views``, reading the change table ``source`` (connector
    options) and writing upserts to ``sink`` (connector options); ``CompileError`` names
    a view that cannot compile and why."""
    job = FlinkJob()
    contexts: list[_Context] = []
    for view in views:
        declaration = declaration_of(view)
        if declaration is None:
            # Touch the build first: a declared build is settled on first use.
            _ = view.build
            declaration = declaration_of(view)
        if declaration is None:
            raise _refuse_python_build(view)
        contexts.append(_Context(view, declaration))
    bodies = [_view_sql(ctx) for ctx in contexts]
    used: dict[type[DomainModel], set[str]] = {}
    for ctx in contexts:
        for model, names in ctx.used.items():
            used.setdefault(model, set()).update(names)
        used.setdefault(ctx.declaration.root.model, set())  # type: ignore[arg-type]
    job.setup.append(_table(CHANGES, _CHANGE_COLUMNS, source))
    for model in sorted(used, key=lambda m: m.collection):
        job.setup.append(_state_view(contexts[0].name, model, sorted(used[model])))
    job.setup.append(_table(SINK, _SINK_COLUMNS, sink))
    finals: list[str] = []
    for statements, final in bodies:
        job.setup += statements
        finals.append(final)
    union = "\nUNION ALL\n".join(f"({q})" for q in finals) if len(finals) > 1 else finals[0]
    job.setup.append(f"CREATE TEMPORARY VIEW {quote(ROWS)} AS\n{union}")
    return job


_CHANGE_COLUMNS = (
    "`seq` BIGINT,\n  `collection` STRING,\n  `docId` STRING,\n  `op` STRING,\n  `data` STRING"
)
_SINK_COLUMNS = "`key` STRING,\n  `value` STRING,\n  PRIMARY KEY (`key`) NOT ENFORCED"


def _table(name: str, columns: str, options: dict[str, str]) -> str:
    settings = ",\n  ".join(f"{literal(k)} = {literal(v)}" for k, v in options.items())
    return f"CREATE TEMPORARY TABLE {quote(name)} (\n  {columns}\n) WITH (\n  {settings}\n)"


def state_name(model: type[DomainModel]) -> str:
    return f"state_{model.collection}"


def _state_view(view: str, model: type[DomainModel], names: list[str]) -> str:
    """Latest state of every document of ``model``: its newest change wins; a delete
    leaves a tombstone (``deleted``) that joins see and skip."""
    columns = [
        "`docId` AS `id`",
        "`seq`",
        "`op` = 'delete' AS `deleted`",
        *(f"{_column(view, model, n, model.model_fields[n])} AS {quote(n)}" for n in names),
    ]
    select = ",\n  ".join(columns)
    return (
        f"CREATE TEMPORARY VIEW {quote(state_name(model))} AS\nSELECT\n  {select}\n"
        "FROM (\n  SELECT *,\n"
        "    ROW_NUMBER() OVER (PARTITION BY `docId` ORDER BY `seq` DESC) AS `rn`\n"
        f"  FROM {quote(CHANGES)} WHERE `collection` = {literal(model.collection)}\n"
        f") WHERE `rn` = 1"
    )


def _root_follows(ctx: _Context) -> list[str]:
    joins = []
    for index, slot in enumerate(ctx.declaration.follows):
        alias = f"f{index}"
        ctx.aliases[slot] = alias
        assert slot.model is not None
        ctx.use(ctx.declaration.root.model, slot.field)  # type: ignore[arg-type]
        joins.append(
            f"JOIN {quote(state_name(slot.model))} AS {alias}"
            f" ON {alias}.`id` = r.{quote(slot.field)} AND NOT {alias}.`deleted`"
        )
    return joins


def _row_set_sql(ctx: _Context, index: int, steps: tuple[Step, ...]) -> str:
    """Per root: the aggregates over one child row set, and the newest seq it read."""
    d = ctx.declaration
    root_model = d.root.model
    assert root_model is not None
    joins = _root_follows(ctx)
    slots: dict[int, str] = {}
    ok: list[str] = []
    for step in steps:
        if step.kind == "start":
            assert step.model is not None
            ctx.use(root_model, step.field)
            joins.append(f"CROSS JOIN UNNEST(r.{quote(step.field)}) AS x{index}(`ref`)")
            joins.append(
                f"LEFT JOIN {quote(state_name(step.model))} AS s0 ON s0.`id` = "
                + _ID.format(f"x{index}.`ref`")
            )
            slots[0] = "s0"
            ok.append(_present("s0"))
        elif step.kind == "follow":
            assert step.model is not None
            n = len(slots)
            of_model = _slot_model(steps, step.of)
            ctx.use(of_model, step.field)
            joins.append(
                f"LEFT JOIN {quote(state_name(step.model))} AS s{n} ON s{n}.`id` = "
                f"s{step.of}.{quote(step.field)}"
            )
            slots[n] = f"s{n}"
            ok.append(_present(f"s{n}"))
        else:
            for cond in step.conditions:
                ok.append(f"COALESCE({_child_sql(ctx, cond, steps)}, FALSE)")
    aggs = [a for a in d.aggregates if a.over.steps == steps]
    seqs = ", ".join(f"COALESCE({s}.`seq`, 0)" for s in slots.values())
    columns = ["r.`id` AS `root_id`", f"MAX(GREATEST({seqs}, 0)) AS `seq`"]
    passed = " AND ".join(ok)
    for number, agg in enumerate(aggs):
        where = passed
        if agg.where is not None:
            where += f" AND COALESCE({_child_sql(ctx, agg.where, steps)}, FALSE)"
        name = quote(f"a{number}")
        if agg.kind == "count":
            columns.append(f"COUNT(*) FILTER (WHERE {where}) AS {name}")
        elif agg.kind == "sum":
            value = _child_sql(ctx, agg.value, steps)  # type: ignore[arg-type]
            columns.append(f"SUM({value}) FILTER (WHERE {where}) AS {name}")
        else:
            assert agg.element is not None
            assert agg.sort_by is not None
            pairs = [
                (
                    agg.element.model_fields[k].alias or to_camel(k),
                    _json_value(_child_sql(ctx, v, steps)),
                )
                for k, v in agg.fields.items()
            ]
            # Sorted by the key's UTF-8 bytes in hex (the order of code points), then a
            # \x01 that JSON text never holds raw, which the final text drops again.
            key = f"HEX({_child_sql(ctx, agg.sort_by, steps)})"
            element = f"CONCAT({key}, CHR(1), {_json_object(pairs)})"
            columns.append(f"ARRAY_AGG({element}) FILTER (WHERE {where}) AS {name}")
    body = ",\n  ".join(columns)
    return (
        f"SELECT\n  {body}\nFROM {quote(state_name(root_model))} AS r\n  "
        + "\n  ".join(joins)
        + "\nWHERE NOT r.`deleted`\nGROUP BY r.`id`"
    )


def _slot_model(steps: tuple[Step, ...], index: int) -> type[DomainModel]:
    models = [s.model for s in steps if s.kind in ("start", "follow")]
    model = models[index]
    assert model is not None
    return model


def _child_sql(ctx: _Context, e: Expr, steps: tuple[Step, ...]) -> str:
    """``e`` inside a row set query: child slots read their join aliases."""
    for slot in e.slots():
        if slot.kind == "child":
            ctx.aliases[slot] = f"s{slot.index}"
    return ctx.sql(e)


def _view_sql(ctx: _Context) -> tuple[list[str], str]:
    """The statements that compute one view model, and its final query."""
    d, view = ctx.declaration, ctx.view
    name = view.view_name
    root_model = d.root.model
    assert root_model is not None
    ctx.aliases[d.root] = "r"
    statements: list[str] = []
    aggregate_sql: dict[int, str] = {}
    agg_joins: list[str] = []
    seqs = ["r.`seq`"]
    for index, steps in enumerate(d.row_sets):
        alias = f"c{index}"
        rows = f"{name}__children{index}"
        statements.append(
            f"CREATE TEMPORARY VIEW {quote(rows)} AS\n{_row_set_sql(ctx, index, steps)}"
        )
        agg_joins.append(f"LEFT JOIN {quote(rows)} AS {alias} ON {alias}.`root_id` = r.`id`")
        seqs.append(f"COALESCE({alias}.`seq`, 0)")
        aggs = [a for a in d.aggregates if a.over.steps == steps]
        for number, agg in enumerate(aggs):
            column = f"{alias}.{quote(f'a{number}')}"
            if agg.kind == "collect":
                joined = f"ARRAY_JOIN(ARRAY_SORT({column}), ',')"
                stripped = f"REGEXP_REPLACE({joined}, CONCAT('[0-9A-F]*', CHR(1)), '')"
                aggregate_sql[id(agg)] = f"COALESCE(CONCAT('[', {stripped}, ']'), '[]')"
            else:
                aggregate_sql[id(agg)] = f"COALESCE({column}, 0)"
    joins = _root_follows(ctx)
    seqs += [f"{ctx.aliases[s]}.`seq`" for s in d.follows]
    if d.fan_out is not None:
        ctx.use(root_model, d.fan_out.field)
        joins.insert(0, f"CROSS JOIN UNNEST(r.{quote(d.fan_out.field)}) AS fo(`ref`)")
        ctx.fan = _ID.format("fo.`ref`")
    key_fields = view.key_fields
    _check_keys(ctx)
    pairs: list[tuple[str, str]] = []
    for field_name, expr in d.fields.items():
        alias = view.model_fields[field_name].alias or to_camel(field_name)
        if isinstance(expr, Aggregate):
            value = aggregate_sql[id(expr)]
            if expr.kind != "collect":
                value = f"CAST({value} AS STRING)"
        else:
            value = _json_value(ctx.sql(expr, aggregate_sql))
        pairs.append((alias, value))
    keys = [f"CAST({ctx.sql(d.fields[k])} AS STRING)" for k in key_fields]
    key_columns = ",\n  ".join(
        f"{k} AS {quote('k_' + f)}" for k, f in zip(keys, key_fields, strict=True)
    )
    views = f"{name}__views"
    statements.append(
        f"CREATE TEMPORARY VIEW {quote(views)} AS\nSELECT\n  "
        f"CONCAT_WS('/', {', '.join(keys)}) AS `key`,\n  r.`id` AS `root_id`,\n  {key_columns},\n  "
        f"GREATEST({', '.join(seqs)}) AS `version`,\n  {_json_object(pairs)} AS `data`\n"
        f"FROM {quote(state_name(root_model))} AS r\n  "
        + "\n  ".join(joins + agg_joins)
        + "\nWHERE NOT r.`deleted`"
    )
    statements.append(_keys_sql(ctx))
    k_cols = [quote("k_" + f) for f in key_fields]
    fields_json = _json_object([(f, f"JSON_STRING(MAX({quote('k_' + f)}))") for f in key_fields])
    keys_view = quote(f"{name}__keys")
    union = (
        f"  SELECT `key`, `root_id`, {', '.join(k_cols)}, `seq` AS `version`,"
        f" CAST(NULL AS STRING) AS `data` FROM {keys_view}\n"
        f"  UNION ALL\n"
        f"  SELECT k.`key`, k.`root_id`, {', '.join('k.' + c for c in k_cols)}, r.`seq`,"
        f" CAST(NULL AS STRING) FROM {keys_view} AS k"
        f" JOIN {quote(state_name(root_model))} AS r ON r.`id` = k.`root_id`\n"
        f"  UNION ALL\n"
        f"  SELECT `key`, `root_id`, {', '.join(k_cols)}, `version`, `data` FROM {quote(views)}"
    )
    head = (
        f"CONCAT('{{\"view\":', JSON_STRING({literal(name)}), ',\"key\":', JSON_STRING(`key`),"
        f" ',\"fields\":', {fields_json}, ',\"version\":')"
    )
    tail = (
        "CONCAT(',\"removed\":', IF(MAX(`data`) IS NULL, 'true', 'false'),"
        " ',\"data\":', COALESCE(MAX(`data`), 'null'), '}')"
    )
    final = (
        f"SELECT `key`, MAX(`version`) AS `version`, {head} AS `head`, {tail} AS `tail`\n"
        f"FROM (\n{union}\n)\nGROUP BY `key`"
    )
    return statements, final


def _check_keys(ctx: _Context) -> None:
    d, view = ctx.declaration, ctx.view
    allowed = [d.root]
    if d.fan_out is not None:
        allowed.append(d.fan_out)
    for key in view.key_fields:
        expr = d.fields[key]
        if not (isinstance(expr, Field) and expr.name == "id" and expr.slot in allowed):
            raise CompileError(
                f"{view.__module__}:{view.__qualname__} cannot run on Flink: key field "
                f"{key!r} must be the root's id or the fan-out's id"
            )


def _keys_sql(ctx: _Context) -> str:
    """Every view key a root ever had: what a removal is written for."""
    d, view = ctx.declaration, ctx.view
    root_model = d.root.model
    assert root_model is not None
    values: dict[str, str] = {}
    source = f"FROM {quote(CHANGES)}"
    if d.fan_out is not None:
        column = _column(
            view.__name__, root_model, d.fan_out.field, root_model.model_fields[d.fan_out.field]
        )
        source += f" CROSS JOIN UNNEST({column}) AS fo(`ref`)"
    for key in view.key_fields:
        expr = d.fields[key]
        assert isinstance(expr, Field)
        values[key] = "`docId`" if expr.slot is d.root else _ID.format("fo.`ref`")
    columns = ", ".join(f"{v} AS {quote('k_' + k)}" for k, v in values.items())
    key = f"CONCAT_WS('/', {', '.join(values.values())})"
    inner = (
        f"SELECT {key} AS `key`, `docId` AS `root_id`, `seq`, {columns}\n  {source}\n"
        f"  WHERE `collection` = {literal(root_model.collection)} AND `op` <> 'delete'"
    )
    k_cols = ", ".join(quote("k_" + k) for k in values)
    return (
        f"CREATE TEMPORARY VIEW {quote(view.view_name + '__keys')} AS\n"
        # The first seq that listed a key: fixed once seen, so this row never retracts.
        f"SELECT `key`, `root_id`, {k_cols}, MIN(`seq`) AS `seq` FROM (\n  {inner}\n)\n"
        f"GROUP BY `key`, `root_id`, {k_cols}"
    )
