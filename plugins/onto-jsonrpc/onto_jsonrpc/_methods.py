"""The JSON-RPC methods of a view model: their names, typed parameters and API requests.

A view ``meeting_session`` (``MeetingSession``) gets ``meeting_session.get(key)``,
``meeting_session.list(filters, limit)`` and one method per action,
``meeting_session.set_attendance(key, attending)``, whose parameters after ``key`` are
the action's own, with the action's types.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from flask_jsonrpc.types import methods as method_types
from flask_jsonrpc.types import params as param_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from onto_core.builtin.view import load_view
from onto_core.models import ViewModel
from onto_jsonrpc._errors import rpc_error

__all__ = ["ViewMethod", "view_methods"]

Operation = Literal["read", "list", "action"]

# Strict, as JSON: a boolean parameter takes true/false, not "yes"; an enum takes its
# value; a date takes an ISO string. Unknown parameters are errors, not silently dropped.
_STRICT = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class ViewMethod:
    """One JSON-RPC method of a view: ``<view_name>.get``, ``.list`` or ``.<action>``.

    ``params`` is the pydantic model of the method's parameters, in call order (the order
    positional ``params`` follow); ``arguments`` checks a call's ``params`` against it
    and ``request`` is the API request (see ``onto_core.builtin.api``) the call becomes.
    """

    name: str
    view: type[ViewModel]
    view_ref: str
    operation: Operation
    action: str | None
    params: type[BaseModel]
    summary: str
    description: str

    @property
    def param_names(self) -> list[str]:
        return list(self.params.model_fields)

    def arguments(self, params: Any) -> dict[str, Any]:
        """The call's ``params`` by name, as given, once they fit the method's types.

        Raises flask-jsonrpc's ``InvalidParamsError`` (-32602) naming the parameter at
        fault in its message and ``data.field``.
        """
        names = self.param_names
        if isinstance(params, list):
            if len(params) > len(names):
                raise rpc_error(
                    400,
                    f"{self.name} takes at most {len(names)} positional parameter(s) "
                    f"({', '.join(names)}), got {len(params)}",
                )
            by_name = dict(zip(names, params, strict=False))
        elif isinstance(params, dict):
            by_name = dict(params)
        else:
            raise rpc_error(400, f"{self.name}: params must be an array or an object")
        try:
            # As JSON text, so strict mode judges JSON values (an enum's value, an ISO
            # date string) the way a client sends them.
            self.params.model_validate_json(json.dumps(by_name))
        except ValidationError as exc:
            raise self._invalid(exc) from None
        return by_name

    def _invalid(self, exc: ValidationError) -> Exception:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        if field is None:  # the params as a whole, e.g. a NaN, which JSON has no room for
            message = f"{self.name}: {first['msg']}"
        elif first["type"] == "missing":
            message = f"{self.name}: missing required parameter {field!r}"
        elif first["type"] == "extra_forbidden":
            expected = ", ".join(self.param_names) or "none"
            message = f"{self.name}: unknown parameter {field!r}; parameters: {expected}"
        else:
            message = f"{self.name}: parameter {field!r}: {first['msg']}"
        return rpc_error(400, message, field)

    def request(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The API request for a call with checked ``arguments``."""
        if self.operation == "read":
            return {"op": "read", "view": self.view_ref, "key": arguments["key"]}
        if self.operation == "list":
            return {
                "op": "list",
                "view": self.view_ref,
                "filters": arguments.get("filters") or {},
                "limit": arguments.get("limit"),
            }
        rest = {name: value for name, value in arguments.items() if name != "key"}
        return {
            "op": "action",
            "view": self.view_ref,
            "key": arguments["key"],
            "action": self.action,
            "arguments": rest,
        }

    def function(self, invoke: Callable[[Any], Any]) -> Callable[..., Any]:
        """A function flask-jsonrpc can register: its signature is the method's.

        flask-jsonrpc reads the parameters, their types and defaults from the signature
        (for ``rpc.describe`` and the browse page); calling the function with keyword
        arguments calls ``invoke`` with them.
        """

        def method(**params: Any) -> Any:
            return invoke(params)

        parameters: list[inspect.Parameter] = []
        annotations: dict[str, Any] = {}
        for name, field in self.params.model_fields.items():
            annotation = _described(field)
            default = inspect.Parameter.empty if field.is_required() else field.default
            parameters.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=default,
                    annotation=annotation,
                )
            )
            annotations[name] = annotation
        returns = self._returns()
        annotations["return"] = returns
        method.__name__ = self.name
        method.__qualname__ = self.name
        method.__doc__ = self.description
        method.__annotations__ = annotations
        # inspect.signature reads __signature__, which flask-jsonrpc uses for the
        # parameter order and defaults.
        setattr(  # noqa: B010
            method,
            "__signature__",
            inspect.Signature(parameters, return_annotation=returns),
        )
        return method

    def annotation(self) -> Any:
        """flask-jsonrpc's method annotation: summary, description and the view as tag."""
        return method_types.MethodAnnotated[
            method_types.Summary(self.summary),
            method_types.Description(self.description),
            method_types.Tag(self.view.view_name),
            # Parameters are checked, by ViewMethodSite rather than by typeguard.
            method_types.Validate(True),
        ]

    def _returns(self) -> Any:
        shape = _view_properties(self.view)
        if self.operation == "list":
            return Annotated[
                list[dict[str, Any]],
                param_types.Description(
                    f"Every {self.view.view_name} view that matches, as objects with "
                    f"fields {', '.join(shape)}."
                ),
            ]
        return Annotated[dict[str, Any], param_types.Properties(shape)]


def _described(field: FieldInfo) -> Any:
    annotation = field.annotation if field.annotation is not None else Any
    if field.description:
        return Annotated[annotation, param_types.Description(field.description)]
    return annotation


def _view_properties(view: type[ViewModel]) -> dict[str, Any]:
    """The view's fields as delivered (camelCase), for describing results."""
    properties: dict[str, Any] = {}
    for name, info in view.model_fields.items():
        # flask-jsonrpc describes a property by the origin of an Annotated type only.
        metadata: list[Any] = [param_types.Nullable(_nullable(info.annotation))]
        if info.description:
            metadata.append(param_types.Description(info.description))
        properties[info.alias or name] = Annotated[(info.annotation or Any, *metadata)]
    return properties


def _nullable(annotation: Any) -> bool:
    return annotation in (None, Any, type(None)) or type(None) in get_args(annotation)


def _key_field(view: type[ViewModel]) -> Any:
    fields = view.key_fields
    joined = f"{' and '.join(fields)} joined by '/'" if len(fields) > 1 else fields[0]
    return (
        str,
        Field(..., min_length=1, description=f"The {view.view_name} key: its {joined}."),
    )


def view_methods(view_ref: str) -> list[ViewMethod]:
    """The JSON-RPC methods of the view model ``"module:Class"``.

    Raises ``ValueError`` naming the clash when an action is called ``get`` or ``list``
    or has a parameter called ``key`` (both belong to the methods every view has).
    """
    view = load_view(view_ref)
    name = view.view_name
    methods = [
        ViewMethod(
            name=f"{name}.get",
            view=view,
            view_ref=view_ref,
            operation="read",
            action=None,
            params=create_model(f"{view.__name__}_get", __config__=_STRICT, key=_key_field(view)),
            summary=f"Read one {name} view",
            description=f"The {name} view with this key (not-found error if there is none).",
        ),
        ViewMethod(
            name=f"{name}.list",
            view=view,
            view_ref=view_ref,
            operation="list",
            action=None,
            params=create_model(
                f"{view.__name__}_list",
                __config__=_STRICT,
                filters=(
                    dict[str, Any] | None,
                    Field(
                        None,
                        description=(
                            "Only views whose fields equal these values, by field name "
                            '(camelCase), e.g. {"userId": "joshua"}.'
                        ),
                    ),
                ),
                limit=(
                    int | None,
                    Field(None, ge=1, description="At most this many views."),
                ),
            ),
            summary=f"List {name} views",
            description=f"Every {name} view whose fields match filters, up to limit.",
        ),
    ]
    for action in sorted(view.actions):
        if action in ("get", "list"):
            raise ValueError(
                f"{view_ref}: action {action!r} clashes with the JSON-RPC method "
                f"{name}.{action} every view has; rename the action"
            )
        params = view.action_model(action)
        if "key" in params.model_fields:
            raise ValueError(
                f"{view_ref}: action {action!r} has a parameter named 'key', which "
                f"{name}.{action} uses for the view key; rename the parameter"
            )
        fields: dict[str, Any] = {"key": _key_field(view)}
        fields.update({n: (f.annotation, f) for n, f in params.model_fields.items()})
        doc = inspect.getdoc(view.actions[action]) or ""
        methods.append(
            ViewMethod(
                name=f"{name}.{action}",
                view=view,
                view_ref=view_ref,
                operation="action",
                action=action,
                params=create_model(f"{view.__name__}_{action}", __config__=_STRICT, **fields),
                summary=doc.splitlines()[0] if doc else f"Run {action} on a {name} view",
                description=(
                    (doc + "\n\n" if doc else "")
                    + f"Runs {action} on the {name} view with this key and returns the "
                    "view afterwards."
                ),
            )
        )
    return methods
