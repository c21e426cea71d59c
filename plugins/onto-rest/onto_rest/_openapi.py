"""The OpenAPI document of a server's REST routes, generated from the view models.

The document is OpenAPI 3.0.3 rather than 3.1 because the Swagger UI served at
``/apidocs`` (the one the ``swagger-ui-bundle`` package ships) renders 3.0 only. pydantic
writes JSON Schema 2020-12, so each schema is rewritten into 3.0's dialect: a ``null``
alternative becomes ``nullable``, ``const`` becomes a one-value ``enum``, numeric
``exclusiveMinimum`` becomes ``minimum`` plus ``exclusiveMinimum: true``, and keywords 3.0
lacks are dropped (the API still enforces them; the document is only less precise).
"""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from onto_core.models.view import ViewModel
from onto_rest._endpoint import RestEndpoint, field_alias

__all__ = ["OPENAPI_VERSION", "openapi30", "openapi_document"]

OPENAPI_VERSION = "3.0.3"
REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"

# Keywords of the OpenAPI 3.0 Schema Object; anything else pydantic may write is dropped.
_KEYWORDS_30 = frozenset(
    {
        "$ref",
        "title",
        "description",
        "default",
        "example",
        "deprecated",
        "readOnly",
        "writeOnly",
        "nullable",
        "discriminator",
        "type",
        "format",
        "enum",
        "multipleOf",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "maxProperties",
        "minProperties",
        "required",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "items",
        "properties",
        "additionalProperties",
    }
)
_NULL = {"type": "null"}
_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})


def openapi30(schema: Any) -> Any:
    """``schema`` (JSON Schema 2020-12, as pydantic writes it) as an OpenAPI 3.0 schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    nullable = False
    for keyword, value in schema.items():
        if keyword in ("anyOf", "oneOf") and _NULL in value:
            nullable = True
            rest = [v for v in value if v != _NULL]
            if len(rest) == 1:
                out.update(_without_ref_siblings(openapi30(rest[0]), {}))
            elif rest:
                out[keyword] = [openapi30(v) for v in rest]
        elif keyword in ("allOf", "anyOf", "oneOf"):
            out[keyword] = [openapi30(v) for v in value]
        elif keyword in ("properties",):
            out[keyword] = {name: openapi30(v) for name, v in value.items()}
        elif keyword in ("items", "not") or (
            keyword == "additionalProperties" and isinstance(value, dict)
        ):
            out[keyword] = openapi30(value)
        elif keyword == "prefixItems":  # a tuple: 3.0 can only say "items of these kinds"
            out.setdefault("items", {"anyOf": [openapi30(v) for v in value]})
        elif keyword == "const":
            out["enum"] = [value]
        elif keyword == "examples" and isinstance(value, list) and value:
            out["example"] = value[0]
        elif keyword in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if keyword == "exclusiveMinimum" else "maximum"] = value
            out[keyword] = True
        elif keyword == "type" and isinstance(value, list):
            nullable = nullable or "null" in value
            kinds = [k for k in value if k != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
            elif kinds:
                out["anyOf"] = [{"type": k} for k in kinds]
        elif keyword == "type" and value == "null":
            nullable = True
            out["enum"] = [None]
        elif keyword == "enum" and None in value:
            nullable = True
            out["enum"] = value
        elif keyword == "required" and not value:
            continue  # 3.0 wants a non-empty list here
        elif keyword in _KEYWORDS_30 or keyword.startswith("x-"):
            out[keyword] = value
    if nullable:
        out["nullable"] = True
    # Beside a $ref, 3.0 ignores every other keyword: keep them by wrapping the ref.
    return _without_ref_siblings(out, {})


def _without_ref_siblings(schema: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema and len(schema) > 1:
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return {"allOf": [{"$ref": schema["$ref"]}], **rest, **extra}
    return {**schema, **extra}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=name)}


_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Why a request was refused.",
    "properties": {
        "error": {"type": "string", "description": "What went wrong, for a person to read."},
        "field": {
            "type": "string",
            "nullable": True,
            "description": "The argument, filter or key the error is about, or null.",
        },
    },
    "required": ["error", "field"],
}

# status -> (component name, description)
_ERRORS: dict[str, tuple[str, str]] = {
    "400": (
        "BadRequest",
        "The request was malformed, or an argument or filter was invalid (`field` names it).",
    ),
    "401": ("Unauthorized", "No bearer token, or one the server does not know."),
    "403": ("Forbidden", "The token's principal may not do this to this view."),
    "404": ("NotFound", "No such view, key or action."),
    "409": ("Conflict", "A concurrent change won; retry the request."),
    "413": ("PayloadTooLarge", "The request body is larger than the endpoint accepts."),
    "415": ("UnsupportedMediaType", "The body was not sent as Content-Type: application/json."),
    "422": ("Unprocessable", "The action's rules refused the change (the message says why)."),
    "503": ("Unavailable", "The datastore is unavailable."),
    "504": ("Timeout", "The pipeline did not answer within the endpoint's timeout."),
}


class _Document:
    """One OpenAPI document being assembled."""

    def __init__(self, endpoints: Sequence[RestEndpoint]) -> None:
        self.endpoints = [e for e in endpoints if e.in_openapi]
        self.paths: dict[str, dict[str, Any]] = {}
        self.schemas: dict[str, Any] = {}
        self._view_schemas: dict[type[ViewModel], str] = {}
        self._action_schemas: dict[tuple[type[ViewModel], str], str] = {}
        self.error_schema = "Error"
        self._operation_ids: set[str] = set()
        self._collect_schemas()

    def _collect_schemas(self) -> None:
        views = list(dict.fromkeys(v for e in self.endpoints for v in e.views))
        actions = [(v, name, v.action_model(name)) for v in views for name in sorted(v.actions)]
        wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [
            *((v, "serialization") for v in views),
            *((model, "validation") for _, _, model in actions),
        ]
        refs, definitions = models_json_schema(
            wanted, by_alias=True, ref_template=REF_TEMPLATE, title="onto views"
        )
        self.schemas = {name: openapi30(s) for name, s in definitions.get("$defs", {}).items()}

        def name_of(model: type[BaseModel], mode: JsonSchemaMode) -> str:
            return str(refs[(model, mode)]["$ref"]).rsplit("/", 1)[-1]

        self._view_schemas = {v: name_of(v, "serialization") for v in views}
        self._action_schemas = {(v, n): name_of(m, "validation") for v, n, m in actions}
        while self.error_schema in self.schemas:  # a view of that name keeps its own
            self.error_schema = f"Onto{self.error_schema}"
        self.schemas[self.error_schema] = _ERROR_SCHEMA

    def build(self) -> dict[str, Any]:
        tags: list[dict[str, str]] = []
        for endpoint in self.endpoints:
            for view in endpoint.views:
                if view.view_name not in {t["name"] for t in tags}:
                    tags.append({"name": view.view_name, "description": _summary(view)})
                self._add_view(endpoint, view)
        components: dict[str, Any] = {
            "schemas": self.schemas,
            "responses": {
                name: {
                    "description": description,
                    "content": {"application/json": {"schema": _ref(self.error_schema)}},
                }
                for name, description in _ERRORS.values()
            },
        }
        components["responses"]["Unauthorized"]["headers"] = {
            "WWW-Authenticate": {
                "description": "`Bearer`: send `Authorization: Bearer <token>`.",
                "schema": {"type": "string"},
            }
        }
        if any(e.secured for e in self.endpoints):
            components["securitySchemes"] = {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token listed in the endpoint's `auth.tokens`, or one "
                    "its `auth.verifier` accepts.",
                }
            }
        return {
            "openapi": OPENAPI_VERSION,
            "info": {
                "title": "onto REST API",
                "version": _version(),
                "description": "View models of an onto application: read and list them, "
                "and run their actions. Every error is a JSON object "
                '`{"error": message, "field": name or null}` with the matching status.',
            },
            "tags": tags,
            "paths": self.paths,
            "components": components,
        }

    def _responses(self, endpoint: RestEndpoint, ok: dict[str, Any], *codes: str) -> dict[str, Any]:
        wanted = [*codes, "401", "403"] if endpoint.secured else list(codes)
        responses = {"200": ok}
        for code in sorted({*wanted, "503", "504"}):
            responses[code] = {"$ref": f"#/components/responses/{_ERRORS[code][0]}"}
        return responses

    def _operation_id(self, wanted: str) -> str:
        """``wanted``, or ``wanted_2``, ... when another operation already has it."""
        found, n = wanted, 1
        while found in self._operation_ids:
            n += 1
            found = f"{wanted}_{n}"
        self._operation_ids.add(found)
        return found

    def _operation(
        self, endpoint: RestEndpoint, view: type[ViewModel], name: str, **fields: Any
    ) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "tags": [view.view_name],
            "operationId": self._operation_id(f"{endpoint.operation_prefix}{name}"),
            **fields,
        }
        if endpoint.secured:
            operation["security"] = [{SECURITY_SCHEME: []}]
        return operation

    def _add_view(self, endpoint: RestEndpoint, view: type[ViewModel]) -> None:
        schema = _ref(self._view_schemas[view])
        one = {"description": f"The {view.view_name}.", "content": _json(schema)}
        nullable_one = {
            "description": f"The {view.view_name} after the action (null if it no longer exists).",
            "content": _json({"allOf": [schema], "nullable": True}),
        }
        key_parameters = [self._key_parameter(view, f) for f in view.key_fields]
        self.paths[endpoint.base(view)] = {
            "get": self._operation(
                endpoint,
                view,
                f"list_{view.view_name}",
                summary=f"List {view.view_name} views",
                description="Every view whose fields equal the given filters (all views "
                "without filters), up to `limit`.",
                parameters=[*self._filter_parameters(view), _LIMIT],
                responses=self._responses(
                    endpoint,
                    {
                        "description": f"The matching {view.view_name} views.",
                        "content": _json({"type": "array", "items": schema}),
                    },
                    "400",
                ),
            )
        }
        item: dict[str, Any] = {
            "parameters": key_parameters,
            "get": self._operation(
                endpoint,
                view,
                f"read_{view.view_name}",
                summary=f"Read one {view.view_name}",
                responses=self._responses(endpoint, one, "404"),
            ),
        }
        if "update" in view.actions:
            item["patch"] = self._operation(
                endpoint,
                view,
                f"patch_{view.view_name}",
                summary=f"Update a {view.view_name} (its update action)",
                description=inspect.getdoc(view.actions["update"]) or "",
                requestBody=self._action_body(view, "update"),
                responses=self._responses(
                    endpoint, nullable_one, "400", "404", "409", "413", "415", "422"
                ),
            )
        self.paths[endpoint.item_template(view)] = item
        for name in sorted(view.actions):
            self.paths[f"{endpoint.item_template(view)}/{name}"] = {
                "parameters": key_parameters,
                "post": self._operation(
                    endpoint,
                    view,
                    f"run_{view.view_name}_{name}",
                    summary=f"Run {view.view_name} action {name}",
                    description=inspect.getdoc(view.actions[name]) or "",
                    requestBody=self._action_body(view, name),
                    responses=self._responses(
                        endpoint, nullable_one, "400", "404", "409", "413", "415", "422"
                    ),
                ),
            }

    def _action_body(self, view: type[ViewModel], name: str) -> dict[str, Any]:
        schema_name = self._action_schemas[(view, name)]
        return {
            "description": f"The arguments of {name}, by parameter name "
            "(an empty body when none is required).",
            "required": bool(self.schemas[schema_name].get("required")),
            "content": _json(_ref(schema_name)),
        }

    def _key_parameter(self, view: type[ViewModel], name: str) -> dict[str, Any]:
        properties = self.schemas[self._view_schemas[view]].get("properties", {})
        schema = {k: v for k, v in properties[field_alias(view, name)].items() if k != "title"}
        if schema.get("type") == "string":
            # A key part is one path segment: never empty, never a slash.
            schema.update(minLength=1, pattern="^[^/]+$")
        return {
            "name": field_alias(view, name),
            "in": "path",
            "required": True,
            "description": f"The view's {name} (part of its key).",
            "schema": schema,
        }

    def _filter_parameters(self, view: type[ViewModel]) -> list[dict[str, Any]]:
        properties = self.schemas[self._view_schemas[view]].get("properties", {})
        parameters = []
        for alias, schema in properties.items():
            scalar = self._scalar(schema)
            if scalar is not None and alias != "limit":
                parameters.append(
                    {
                        "name": alias,
                        "in": "query",
                        "required": False,
                        "description": f"Only views whose {alias} equals this.",
                        "schema": scalar,
                    }
                )
        return parameters

    def _scalar(self, schema: dict[str, Any]) -> dict[str, Any] | None:
        """``schema`` as a query parameter's schema, or None if a query string can't carry it."""
        plain = {k: v for k, v in schema.items() if k not in ("nullable", "title", "default")}
        if list(plain) == ["allOf"] and len(plain["allOf"]) == 1:
            plain = plain["allOf"][0]
        target = plain
        if "$ref" in plain:
            target = self.schemas.get(str(plain["$ref"]).rsplit("/", 1)[-1], {})
        if target.get("type") in _SCALAR_TYPES and "nullable" not in target:
            return plain
        return None


_LIMIT = {
    "name": "limit",
    "in": "query",
    "required": False,
    "description": "The most views to return (the api processor's max_list caps it).",
    "schema": {"type": "integer", "minimum": 1},
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _summary(view: type[ViewModel]) -> str:
    doc = inspect.getdoc(view) or ""
    return doc.splitlines()[0] if doc else view.__name__


def _version() -> str:
    try:
        return importlib.metadata.version("onto-rest")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


def openapi_document(endpoints: Sequence[RestEndpoint]) -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of ``endpoints`` (those with ``in_openapi``), as a dict.

    Paths are absolute on the server (prefixes included); schemas live under
    ``components/schemas`` by model name, with an ``Error`` schema for every failure.
    """
    return _Document(endpoints).build()
