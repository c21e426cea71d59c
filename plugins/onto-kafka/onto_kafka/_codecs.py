"""Turning Kafka's bytes into message values and keys, and back.

Values: ``json`` (any JSON document), ``str`` (UTF-8 text), ``bytes`` (as they are) and
``model`` (JSON validated into a ``DomainModel`` or pydantic model). The sink adds
``auto``: bytes as they are, text as UTF-8, anything else as JSON, so one dead-letter
topic can hold both undecodable originals and decoded values.

Keys: ``str`` (UTF-8), ``hex`` or ``base64`` (for binary keys, which a message carries
as text). Key decoding never fails: invalid UTF-8 is replaced, so pick ``hex`` or
``base64`` when keys are binary and must survive a round trip.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from onto_core.builtin.transform import import_object
from onto_core.errors import DatastoreError
from onto_core.models import DomainModel

__all__ = [
    "CodecError",
    "KeyFormat",
    "ValueFormat",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
    "load_model",
]


class ValueFormat(enum.StrEnum):
    """How a record's value bytes map to a message value."""

    JSON = "json"
    STR = "str"
    BYTES = "bytes"
    MODEL = "model"
    AUTO = "auto"


class KeyFormat(enum.StrEnum):
    """How a record's key bytes map to a message key (always text)."""

    STR = "str"
    HEX = "hex"
    BASE64 = "base64"


class CodecError(ValueError):
    """A value or key could not be decoded or encoded; the message says why."""


def load_model(ref: str) -> type[BaseModel]:
    """The pydantic model (``DomainModel`` included) named ``"module:Class"``."""
    found = import_object(ref)
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ValueError(f"{ref!r} is not a pydantic model or DomainModel class")
    return found


def decode_value(data: bytes | None, fmt: ValueFormat, model: type[BaseModel] | None = None) -> Any:
    """``data`` as a message value in format ``fmt``; ``CodecError`` saying why not.

    A tombstone (``None``) stays ``None`` in every format. ``auto`` never fails: JSON
    when the bytes parse as JSON, else text when they are UTF-8, else the bytes.
    """
    if data is None:
        return None
    if fmt is ValueFormat.BYTES:
        return data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fmt is ValueFormat.AUTO:
            return data
        raise CodecError(f"value is not UTF-8 text: {exc}") from None
    if fmt is ValueFormat.STR:
        return text
    try:
        document = json.loads(text)
    except ValueError as exc:
        if fmt is ValueFormat.AUTO:
            return text
        raise CodecError(f"value is not JSON: {exc}") from None
    if fmt is not ValueFormat.MODEL:
        return document
    if model is None:  # the configs that use MODEL require a model; this is a guard
        raise CodecError("value_format 'model' needs a model")
    from_dict = getattr(model, "from_dict", None)
    try:
        if callable(from_dict) and isinstance(document, dict):
            return from_dict(document)  # DomainModel: camelCase keys, class in objType
        return model.model_validate(document)
    except (ValidationError, TypeError, ValueError, DatastoreError) as exc:
        raise CodecError(f"value is not a valid {model.__name__}: {_first_line(exc)}") from None


def encode_value(value: Any, fmt: ValueFormat) -> bytes | None:
    """``value`` as record bytes in format ``fmt``; ``CodecError`` saying why not."""
    if value is None:
        return None
    if fmt is ValueFormat.AUTO:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        return _json_bytes(value)
    if fmt is ValueFormat.BYTES:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise CodecError(
            f"value_format 'bytes' needs a bytes value, got {type(value).__name__}"
            " (use value_format json or auto)"
        )
    if fmt is ValueFormat.STR:
        if isinstance(value, str):
            return value.encode("utf-8")
        raise CodecError(
            f"value_format 'str' needs a text value, got {type(value).__name__}"
            " (use value_format json or auto)"
        )
    return _json_bytes(value)


def _json_bytes(value: Any) -> bytes:
    to_dict = getattr(value, "to_dict", None)
    if isinstance(value, DomainModel):
        # The stored form leaves the id out (it is the document's address); a record
        # carries it so a consumer's model codec gets the same document back.
        value = {"id": value.id, **value.to_dict()}
    elif callable(to_dict):
        value = to_dict()
    elif isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    elif isinstance(value, bytes | bytearray | memoryview):
        raise CodecError("a bytes value cannot be written as JSON (use value_format bytes or auto)")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    except (TypeError, ValueError) as exc:
        raise CodecError(f"value cannot be written as JSON: {exc}") from None


def decode_key(data: bytes | None, fmt: KeyFormat) -> str | None:
    """``data`` as a message key; never fails (invalid UTF-8 is replaced in ``str``)."""
    if data is None:
        return None
    if fmt is KeyFormat.HEX:
        return data.hex()
    if fmt is KeyFormat.BASE64:
        return base64.b64encode(data).decode("ascii")
    return data.decode("utf-8", "replace")


def encode_key(key: str | None, fmt: KeyFormat) -> bytes | None:
    """``key`` as record key bytes; ``CodecError`` when it is not valid ``hex``/``base64``."""
    if key is None:
        return None
    try:
        if fmt is KeyFormat.HEX:
            return bytes.fromhex(key)
        if fmt is KeyFormat.BASE64:
            return base64.b64decode(key, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise CodecError(f"key {key!r} is not valid {fmt.value}: {exc}") from None
    return key.encode("utf-8")


def _first_line(error: BaseException) -> str:
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # pydantic: "1 validation error for X" / "field" / "message [type=...]"
    return "; ".join(lines[1:3]) if len(lines) >= 3 else text
