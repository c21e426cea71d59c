"""The topics of the kafka source and sink, as AsyncAPI channels.

A channel's address is the topic (a topic template's ``{name}`` fields become channel
parameters); its server is the component's brokers, protocol ``kafka``. A sink's
messages are what its pipeline hands it, as the source and processors describe it
(``asyncapi_payload``), with the record key and headers the sink writes; a source's are
the records it reads (bytes, decoded downstream by ``kafka_decode``).
"""

from __future__ import annotations

import re
import string
from typing import TYPE_CHECKING, Any

from onto_core.asyncapi import AsyncChannel, AsyncMessage, AsyncServer
from onto_kafka._connection import KafkaConnection

if TYPE_CHECKING:
    from onto_kafka._sink import KafkaSink
    from onto_kafka._source import KafkaSource

__all__ = ["sink_channels", "source_channels"]

BINDING_VERSION = "0.5.0"
_PARAMETER = re.compile(r"[A-Za-z0-9_.\-]+")


def _server(config: KafkaConnection) -> AsyncServer:
    first, *others = config.bootstrap_servers
    also = f"; also {', '.join(others)}" if others else ""
    return AsyncServer(
        host=first,
        protocol="kafka",
        description=f"Kafka brokers ({config.security_protocol}){also}.",
    )


def _address(template: str) -> tuple[str, dict[str, str]]:
    """``template`` as a channel address, and its parameters by name."""
    address: list[str] = []
    parameters: dict[str, str] = {}
    for text, name, _, _ in string.Formatter().parse(template):
        address.append(text)
        if name is None:
            continue
        shown = name if _PARAMETER.fullmatch(name) else re.sub(r"[^A-Za-z0-9_.\-]+", "_", name)
        address.append(f"{{{shown}}}")
        parameters[shown] = f"The message's {name!r} field (topic template {template!r})."
    return "".join(address), parameters


def _any_record(summary: str) -> AsyncMessage:
    return AsyncMessage(
        name="KafkaRecord",
        title="Kafka record",
        summary=summary,
        payload={"description": "The record value, as the pipeline hands it."},
        content_type="application/octet-stream",
    )


def sink_channels(sink: KafkaSink, incoming: AsyncMessage | None) -> list[AsyncChannel]:
    """The topic ``sink`` writes, carrying ``incoming`` (a generic record when unknown)."""
    config = sink.config
    message = incoming or _any_record("Whatever the pipeline hands the sink.")
    if config.key is not None:
        key: dict[str, Any] = {
            "type": "string",
            "description": f"Rendered from the message: {config.key!r}.",
        }
    else:
        key = dict(message.key or {"type": "string", "description": "The message key."})
    if config.key_format.value != "str":
        key["description"] = f"{key.get('description', '')} Written as {config.key_format.value}."
    headers = None
    if config.headers and message.headers is not None:
        excluded = set(config.exclude_headers)
        properties = {
            k: v for k, v in message.headers.get("properties", {}).items() if k not in excluded
        }
        headers = {
            **message.headers,
            "properties": properties,
            "required": [h for h in message.headers.get("required", []) if h in properties],
        }
        if not headers["required"]:
            del headers["required"]
    elif config.headers:
        headers = {
            "type": "object",
            "description": "The message's headers, as UTF-8 text.",
            "additionalProperties": {"type": "string"},
        }
    content_type = "application/json" if config.value_format.value == "json" else None
    message = message.but(
        headers=headers,
        content_type=content_type or message.content_type,
        bindings={"kafka": {"key": key, "bindingVersion": BINDING_VERSION}},
    )
    address, parameters = _address(config.topic)
    return [
        AsyncChannel(
            address=address,
            action="send",
            server=_server(config),
            messages=[message],
            title=address,
            description=f"Records the kafka sink writes (value format {config.value_format.value},"
            " keyed so one key's records share a partition and stay in order).",
            summary=f"Publish to {address}.",
            parameters=parameters,
            bindings=None
            if parameters
            else {"kafka": {"topic": address, "bindingVersion": BINDING_VERSION}},
        )
    ]


def source_channels(source: KafkaSource) -> list[AsyncChannel]:
    """The topics ``source`` reads (or its topic pattern), consumed in its group."""
    config = source.config
    addresses = list(config.topics or [])
    record = _any_record("A record; its value is bytes until kafka_decode decodes it.").but(
        headers={
            "type": "object",
            "description": "Record headers (text).",
            "additionalProperties": {"type": "string"},
        },
        bindings={
            "kafka": {
                "key": {"type": "string", "description": f"As {config.key_format.value}."},
                "bindingVersion": BINDING_VERSION,
            }
        },
    )
    operation = {
        "kafka": {
            "groupId": {"type": "string", "enum": [config.group_id]},
            "bindingVersion": BINDING_VERSION,
        }
    }
    if not addresses and config.pattern is not None:
        return [
            AsyncChannel(
                address=None,
                action="receive",
                server=_server(config),
                messages=[record],
                title=f"topics matching {config.pattern}",
                description=f"Every topic whose name matches {config.pattern!r}.",
                summary=f"Consume topics matching {config.pattern}.",
                operation_bindings=operation,
            )
        ]
    return [
        AsyncChannel(
            address=topic,
            action="receive",
            server=_server(config),
            messages=[record],
            title=topic,
            description=f"Records the kafka source reads in group {config.group_id!r}.",
            summary=f"Consume {topic}.",
            bindings={"kafka": {"topic": topic, "bindingVersion": BINDING_VERSION}},
            operation_bindings=operation,
        )
        for topic in addresses
    ]
