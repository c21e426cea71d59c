"""AsyncAPI 3.0 documents of the channels a config exposes or consumes.

``asyncapi_document(config)`` builds the document of a loaded config (``onto asyncapi
CONFIG`` prints it; the shared web server serves it at ``/asyncapi.json``). It builds each
pipeline's components, which connects nothing, and asks them what they expose:

- a component with ``asyncapi_channels(incoming)`` returns the channels it sends on or
  receives from (``AsyncChannel``), ``incoming`` being what reaches it (``None`` for a
  source, and wherever nothing said what flows);
- a source or processor with ``asyncapi_payload(incoming)`` returns what it hands on
  (``AsyncMessage``), so a sink downstream can say what its channel carries.

Payload schemas come from the pydantic models that validate the messages
(``model_schemas``): pydantic writes JSON Schema 2020-12, which ``draft07`` rewrites into
the AsyncAPI Schema Object's dialect (a superset of JSON Schema draft-07, AsyncAPI's
default payload format). Named schemas live under ``components/schemas``, messages under
``components/messages``; operations are named from the application's side: ``send``
for what it emits, ``receive`` for what it consumes.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from onto_core.__about__ import __version__

if TYPE_CHECKING:
    from onto_core.config import OntoConfig
    from onto_core.models.view import ViewModel

__all__ = [
    "ASYNCAPI_VERSION",
    "REF_TEMPLATE",
    "AsyncChannel",
    "AsyncMessage",
    "AsyncServer",
    "asyncapi_document",
    "change_message",
    "draft07",
    "model_schemas",
    "view_update_message",
]

ASYNCAPI_VERSION = "3.0.0"
REF_TEMPLATE = "#/components/schemas/{model}"

Action = Literal["send", "receive"]


@dataclass(frozen=True)
class AsyncMessage:
    """One kind of message on a channel.

    ``name`` is its key under ``components/messages``; ``payload`` a JSON Schema (draft-07
    dialect) whose ``$ref``s point at ``#/components/schemas/<name>``, each of them in
    ``schemas``. ``headers`` is the schema of its headers (an object), ``key`` the schema
    of its key where the transport has one (a Kafka record key), ``bindings`` its
    AsyncAPI message bindings.
    """

    name: str
    payload: Mapping[str, Any]
    schemas: Mapping[str, Any] = field(default_factory=dict)
    title: str = ""
    summary: str = ""
    headers: Mapping[str, Any] | None = None
    key: Mapping[str, Any] | None = None
    bindings: Mapping[str, Any] | None = None
    content_type: str = "application/json"

    def but(self, **changes: Any) -> AsyncMessage:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class AsyncServer:
    """Where channels are reached: ``host`` (``host:port``), ``protocol`` (``ws``,
    ``kafka``, ...), and an optional ``pathname``."""

    host: str
    protocol: str
    pathname: str | None = None
    description: str = ""


@dataclass(frozen=True)
class AsyncChannel:
    """One channel a component sends on (``action="send"``) or receives from.

    ``address`` is the topic or event name, ``None`` when it is not known before run time;
    ``{name}`` in it is a parameter, described in ``parameters``. ``reply`` lists what
    the application answers a received message with (a Socket.IO ack); those answers go
    to the channel ``reply_address`` names (``None``: back to the sender, no address).
    Channels of one server with the same address and action are merged into one.
    """

    address: str | None
    action: Action
    messages: Sequence[AsyncMessage]
    server: AsyncServer | None = None
    title: str = ""
    description: str = ""
    summary: str = ""
    reply: Sequence[AsyncMessage] = ()
    reply_address: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)
    bindings: Mapping[str, Any] | None = None
    operation_bindings: Mapping[str, Any] | None = None


# --- schemas ---------------------------------------------------------------------------

_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SUBSCHEMAS = frozenset(
    {"items", "not", "additionalProperties", "additionalItems", "contains"}
    | {"propertyNames", "if", "then", "else"}
)
# 2019-09 / 2020-12 keywords draft-07 lacks that carry no constraint a reader needs.
_DROPPED = frozenset({"unevaluatedProperties", "unevaluatedItems", "$defs", "$schema", "$id"})


def draft07(schema: Any) -> Any:
    """``schema`` (JSON Schema 2020-12, as pydantic writes it) in draft-07's dialect.

    ``prefixItems`` becomes the array form of ``items`` (with ``additionalItems``);
    ``dependentRequired`` / ``dependentSchemas`` become ``dependencies``; a ``$ref`` with
    sibling keywords (which draft-07 ignores) is wrapped in ``allOf``; an OpenAPI-style
    ``discriminator`` object becomes its property name (the AsyncAPI Schema Object's
    form); keywords draft-07 has no equivalent for are dropped.
    """
    if isinstance(schema, list):
        return [draft07(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in _DROPPED:
            continue
        if keyword in _SUBSCHEMA_LISTS:
            out[keyword] = [draft07(s) for s in value]
        elif keyword in _SUBSCHEMA_MAPS:
            out[keyword] = {name: draft07(s) for name, s in value.items()}
        elif keyword in _SUBSCHEMAS:
            out[keyword] = draft07(value)
        elif keyword == "prefixItems":
            out["items"] = [draft07(s) for s in value]
        elif keyword in ("dependentRequired", "dependentSchemas"):
            converted = value if keyword == "dependentRequired" else draft07(value)
            out.setdefault("dependencies", {}).update(converted)
        elif keyword == "discriminator" and isinstance(value, dict):
            if "propertyName" in value:
                out[keyword] = value["propertyName"]
        else:
            out[keyword] = value
    if "prefixItems" in schema:
        rest = schema.get("items")
        out["additionalItems"] = draft07(rest) if rest is not None else False
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def model_schemas(
    models: Sequence[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[dict[tuple[type[BaseModel], JsonSchemaMode], dict[str, Any]], dict[str, Any]]:
    """The schemas of ``models`` as AsyncAPI components: ``(refs, schemas)``.

    ``refs[(model, mode)]`` is the ``{"$ref": "#/components/schemas/<name>"}`` of each;
    ``schemas`` maps every name to its schema (draft-07 dialect), nested models included.
    Field names are their aliases (camelCase where the model says so), as on the wire.
    """
    if not models:
        return {}, {}
    refs, definitions = models_json_schema(models, by_alias=True, ref_template=REF_TEMPLATE)
    schemas = {name: draft07(s) for name, s in definitions.get("$defs", {}).items()}
    found = {(model, mode): dict(ref) for (model, mode), ref in refs.items()}
    return found, schemas  # type: ignore[return-value]  # the keys are the models given


def _ref_name(ref: Mapping[str, Any]) -> str:
    return str(ref["$ref"]).rsplit("/", 1)[-1]


def view_update_message(view: type[ViewModel], headers: bool = False) -> AsyncMessage:
    """The update of ``view`` as the ``view`` processor emits it and view sinks deliver it.

    ``{view, key, fields, version, removed, data}`` (``ViewUpdate.to_dict``), ``data``
    being the view's JSON (its model's serialization schema) or ``null`` when removed.
    ``headers``: with the message headers the processor sets (``onto-view``,
    ``onto-version``), for transports that carry them.
    """
    from onto_core.builtin.view import VERSION_HEADER, VIEW_HEADER

    refs, schemas = model_schemas([(view, "serialization")])
    data_ref = refs[(view, "serialization")]
    key_parts = "/".join(view.key_fields)
    payload = {
        "type": "object",
        "description": f"An update of the {view.view_name} view at one key, or its removal.",
        "properties": {
            "view": {"const": view.view_name, "description": "The view's name."},
            "key": {
                "type": "string",
                "description": f"The view key: its key fields joined by '/' ({key_parts}).",
            },
            "fields": {
                "type": "object",
                "description": "The key fields by name, as text.",
                "properties": {f: {"type": "string"} for f in view.key_fields},
                "required": list(view.key_fields),
                "additionalProperties": False,
            },
            "version": {
                "type": "integer",
                "description": "Grows with every change of the view (the change feed's"
                " sequence number): a reader drops anything older than what it has.",
            },
            "removed": {"type": "boolean", "description": "True when the view no longer exists."},
            "data": {
                "description": "The view as delivered (camelCase keys); null when removed.",
                "oneOf": [data_ref, {"type": "null"}],
            },
        },
        "required": ["view", "key", "fields", "version", "removed", "data"],
        "additionalProperties": False,
    }
    header_schema = None
    if headers:
        header_schema = {
            "type": "object",
            "properties": {
                VIEW_HEADER: {"const": view.view_name, "description": "The view's name."},
                VERSION_HEADER: {
                    "type": "string",
                    "pattern": "^[0-9]+$",
                    "description": "The update's version, as text.",
                },
            },
            "required": [VIEW_HEADER, VERSION_HEADER],
        }
    return AsyncMessage(
        name=f"{view.__name__}Update",
        title=f"{view.__name__} update",
        summary=_summary(view),
        payload=payload,
        schemas=schemas,
        headers=header_schema,
        key={"type": "string", "description": f"The view key ({key_parts})."},
    )


def change_message(collections: Sequence[str] | None = None) -> AsyncMessage:
    """A change of the datastore's feed, as the ``changes`` source emits it
    (``Change.to_dict``): keyed ``collection/docId``."""
    collection: dict[str, Any] = {"type": "string", "description": "The document's collection."}
    if collections:
        collection["enum"] = list(collections)
    from onto_core.models.datastore import ChangeOp

    payload = {
        "type": "object",
        "description": "One create, update or delete of a document in the datastore.",
        "properties": {
            "seq": {
                "type": "integer",
                "description": "Position in the change feed; grows with every write.",
            },
            "collection": collection,
            "docId": {"type": "string", "description": "The document's id."},
            "op": {"type": "string", "enum": [op.value for op in ChangeOp]},
            "data": {
                "description": "The document after the change (camelCase keys); null for a delete.",
                "oneOf": [{"type": "object"}, {"type": "null"}],
            },
            "timestamp": {"type": "number", "description": "Seconds since the epoch."},
        },
        "required": ["seq", "collection", "docId", "op", "data", "timestamp"],
        "additionalProperties": False,
    }
    return AsyncMessage(
        name="Change",
        title="Datastore change",
        summary="A document was created, updated or deleted.",
        payload=payload,
        key={"type": "string", "description": "The document: collection/docId."},
    )


def _summary(model: type) -> str:
    doc = inspect.getdoc(model) or ""
    return doc.splitlines()[0] if doc else model.__name__


# --- the document ----------------------------------------------------------------------

_ID = re.compile(r"[^A-Za-z0-9_.\-]+")


def _id(text: str) -> str:
    return _ID.sub("-", text).strip("-") or "channel"


def _unique(wanted: str, taken: Mapping[str, Any] | set[str]) -> str:
    found, n = wanted, 1
    while found in taken:
        n += 1
        found = f"{wanted}_{n}"
    return found


class _Document:
    """One AsyncAPI document being assembled from components' channels."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.schemas: dict[str, Any] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        # (server id, address, "" or the reply's operation) → channel id
        self._channel_ids: dict[tuple[str | None, str | None, str], str] = {}

    def server(self, server: AsyncServer | None) -> str | None:
        if server is None:
            return None
        entry: dict[str, Any] = {"host": server.host, "protocol": server.protocol}
        if server.pathname:
            entry["pathname"] = server.pathname
        if server.description:
            entry["description"] = server.description
        for name, known in self.servers.items():
            if known == entry:
                return name
        name = _unique(_id(server.protocol), self.servers)
        self.servers[name] = entry
        return name

    def message(self, message: AsyncMessage) -> str:
        """The ``components/messages`` name of ``message`` (added when new)."""
        for name, schema in message.schemas.items():
            if self.schemas.setdefault(name, schema) != schema:
                raise ValueError(
                    f"two different models are both named {name!r}: the AsyncAPI document"
                    " names schemas by model name, so give one of them another name"
                )
        entry: dict[str, Any] = {
            "name": message.name,
            "contentType": message.content_type,
            "payload": dict(message.payload),
        }
        if message.title:
            entry["title"] = message.title
        if message.summary:
            entry["summary"] = message.summary
        if message.headers is not None:
            entry["headers"] = dict(message.headers)
        if message.bindings:
            entry["bindings"] = dict(message.bindings)
        # The same message from two components is listed once; another of the same
        # name gets the first free "<name>_<n>".
        base = name = _id(message.name)
        n = 1
        while name in self.messages and self.messages[name] != entry:
            n += 1
            name = f"{base}_{n}"
        self.messages[name] = entry
        return name

    def _channel(
        self,
        address: str | None,
        action: str,
        server: str | None,
        describe: AsyncChannel | None,
        wanted: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        slot = (server, address, action)
        found = self._channel_ids.get(slot)
        if found is not None:
            return found, self.channels[found]
        channel_id = _unique(wanted or _id(address or "channel"), self.channels)
        entry: dict[str, Any] = {"address": address, "messages": {}}
        if server is not None:
            entry["servers"] = [{"$ref": f"#/servers/{server}"}]
        if describe is not None:
            if describe.title:
                entry["title"] = describe.title
            if describe.description:
                entry["description"] = describe.description
            if describe.parameters:
                entry["parameters"] = {
                    name: {"description": text} for name, text in describe.parameters.items()
                }
            if describe.bindings:
                entry["bindings"] = dict(describe.bindings)
        self._channel_ids[slot] = channel_id
        self.channels[channel_id] = entry
        return channel_id, entry

    def add(self, channel: AsyncChannel) -> None:
        server = self.server(channel.server)
        # A topic one pipeline writes and another reads is one channel, two operations.
        channel_id, entry = self._channel(channel.address, "", server, channel)
        names = [self.message(m) for m in channel.messages]
        for name in names:
            entry["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        operation_id = f"{channel.action}_{channel_id}"
        operation = self.operations.setdefault(
            operation_id,
            {"action": channel.action, "channel": {"$ref": f"#/channels/{channel_id}"}},
        )
        if channel.summary:
            operation.setdefault("summary", channel.summary)
        if channel.operation_bindings:
            operation["bindings"] = dict(channel.operation_bindings)
        refs = operation.setdefault("messages", [])
        for name in names:
            ref = {"$ref": f"#/channels/{channel_id}/messages/{name}"}
            if ref not in refs:
                refs.append(ref)
        if channel.reply:
            reply_id, reply_entry = self._channel(
                channel.reply_address,
                f"reply to {channel_id}",
                server,
                AsyncChannel(
                    channel.reply_address,
                    "send",
                    (),
                    description=f"What the application answers to {channel.address}.",
                ),
                wanted=f"{channel_id}_reply",
            )
            reply = operation.setdefault(
                "reply", {"channel": {"$ref": f"#/channels/{reply_id}"}, "messages": []}
            )
            for message in channel.reply:
                name = self.message(message)
                reply_entry["messages"][name] = {"$ref": f"#/components/messages/{name}"}
                ref = {"$ref": f"#/channels/{reply_id}/messages/{name}"}
                if ref not in reply["messages"]:
                    reply["messages"].append(ref)

    def build(self, info: dict[str, Any]) -> dict[str, Any]:
        document: dict[str, Any] = {"asyncapi": ASYNCAPI_VERSION, "info": info}
        if self.servers:
            document["servers"] = self.servers
        document["channels"] = self.channels
        document["operations"] = self.operations
        document["components"] = {"schemas": self.schemas, "messages": self.messages}
        return document


def _channels_of(component: Any, incoming: AsyncMessage | None) -> list[AsyncChannel]:
    describe = getattr(component, "asyncapi_channels", None)
    return list(describe(incoming)) if callable(describe) else []


def _payload_of(component: Any, incoming: AsyncMessage | None) -> AsyncMessage | None:
    describe = getattr(component, "asyncapi_payload", None)
    return describe(incoming) if callable(describe) else None


def asyncapi_document(config: OntoConfig) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every channel ``config``'s components expose or consume.

    Builds each component (``ComponentSpec.build``, which connects nothing) and asks it
    (``asyncapi_channels``, ``asyncapi_payload``); components that say nothing add
    nothing. The same config gives the same document.
    """
    document = _Document()
    for pipeline in config.pipelines.values():
        source = pipeline.source.build()
        channels = _channels_of(source, None)
        flowing = _payload_of(source, None)
        for spec in pipeline.processors:
            processor = spec.build()
            channels += _channels_of(processor, flowing)
            flowing = _payload_of(processor, flowing)
        for spec in pipeline.sinks:
            channels += _channels_of(spec.build(), flowing)
        if pipeline.dead_letter is not None:
            channels += _channels_of(pipeline.dead_letter.build(), None)
        for channel in channels:
            document.add(channel)
    name = Path(config.file).stem if config.file else "onto"
    pipelines = ", ".join(config.pipelines)
    info = {
        "title": f"onto {name}",
        "version": __version__,
        "description": f"The channels the onto config {Path(config.file).name} exposes or"
        f" consumes (pipelines: {pipelines}). Operations are named from the application's"
        " side: send for what it emits, receive for what it consumes.",
    }
    return document.build(info)
