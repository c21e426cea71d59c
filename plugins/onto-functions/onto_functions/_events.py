"""Firestore document events (CloudEvents from Eventarc) as onto changes.

Eventarc delivers a Firestore write as a CloudEvent whose ``type`` is
``google.cloud.firestore.document.v1.created|updated|deleted|written`` and whose data is
the protobuf ``google.events.cloud.firestore.v1.DocumentEventData`` (``value``: the
document after the write, ``old_value``: before it). The payload is decoded with the
``google-events`` types; nothing here parses protobuf by hand.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from onto_core.models.datastore import Change, ChangeOp

__all__ = [
    "FIRESTORE_EVENT_TYPES",
    "DocumentEvent",
    "EventRejected",
    "change_of_event",
    "document_event",
    "micros",
    "split_document_name",
]

_PREFIX = "google.cloud.firestore.document.v1."
FIRESTORE_EVENT_TYPES = frozenset(
    _PREFIX + kind for kind in ("created", "updated", "deleted", "written")
)


class EventRejected(ValueError):
    """An event this function cannot handle, and never will: retrying it cannot help."""


def split_document_name(name: str) -> tuple[str, str]:
    """``projects/p/databases/d/documents/users/u1`` → ``("users", "u1")``.

    A path that is not a document under ``/documents/`` is ``EventRejected``, naming it.
    """
    marker = "/documents/"
    at = name.find(marker)
    path = name[at + len(marker) :] if at >= 0 else name.removeprefix("documents/")
    parts = path.split("/")
    if len(parts) < 2 or len(parts) % 2 or not all(parts):
        raise EventRejected(f"{name!r} does not name a document (collection/id[/...])")
    return "/".join(parts[:-1]), parts[-1]


def micros(stamp: Any) -> int:
    """A protobuf Timestamp (or proto-plus ``DatetimeWithNanoseconds``) in microseconds."""
    if isinstance(stamp, dt.datetime):
        moment: dt.datetime = stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
        return int(moment.timestamp()) * 1_000_000 + moment.microsecond
    seconds, nanos = int(stamp.seconds), int(stamp.nanos)
    return seconds * 1_000_000 + nanos // 1000


def _value(value: Any) -> Any:
    """A Firestore ``Value`` (raw protobuf) as the JSON-like value the datastore reads."""
    kind = value.WhichOneof("value_type")
    if kind is None or kind == "null_value":
        return None
    if kind == "map_value":
        return {k: _value(v) for k, v in value.map_value.fields.items()}
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "timestamp_value":
        stamp = value.timestamp_value
        return dt.datetime.fromtimestamp(stamp.seconds + stamp.nanos / 1e9, tz=dt.UTC)
    if kind == "geo_point_value":
        point = value.geo_point_value
        return {"latitude": point.latitude, "longitude": point.longitude}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)  # boolean, integer, double, string, reference (a path)


def _document(document: Any) -> dict[str, Any]:
    return {name: _value(v) for name, v in document.fields.items()}


def _event_time(event: Any) -> int:
    raw = event.get("time") if hasattr(event, "get") else None
    if raw:
        try:
            return micros(dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00")))
        except ValueError:
            pass
    return micros(dt.datetime.now(dt.UTC))


@dataclass(frozen=True)
class DocumentEvent:
    """A Firestore document event as the task mode reads it: the document after the
    write (``data`` is ``None`` for a delete) and the update time it was written at."""

    kind: str  # the event type's last part: created, updated, deleted or written
    path: str  # the document's path, e.g. "invites/i1"
    data: dict[str, Any] | None
    update_time: dt.datetime | None

    @property
    def collection(self) -> str:
        return self.path.rpartition("/")[0]

    @property
    def doc_id(self) -> str:
        return self.path.rpartition("/")[2]


def _decoded(event: Any) -> tuple[str, Any, Any, str]:
    """The event's type, its ``value`` and ``old_value`` (raw protobuf, ``None`` when
    absent) and the document's resource name; ``EventRejected`` saying what is wrong."""
    from google.events.cloud.firestore_v1.types import (  # type: ignore[import-untyped]
        data as firestore_data,
    )

    kind = str(event["type"])
    if kind not in FIRESTORE_EVENT_TYPES:
        raise EventRejected(
            f"event type {kind!r} is not a Firestore document event"
            f" (expected one of {', '.join(sorted(FIRESTORE_EVENT_TYPES))})"
        )
    payload = event.get_data() if hasattr(event, "get_data") else event.data
    if isinstance(payload, str):
        payload = payload.encode("latin-1")
    if not isinstance(payload, bytes | bytearray):
        raise EventRejected(
            "the payload must be a protobuf DocumentEventData"
            f" (datacontenttype application/protobuf), got {type(payload).__name__}"
        )
    try:
        decoded = firestore_data.DocumentEventData.deserialize(bytes(payload))
    except Exception as exc:  # protobuf says DecodeError, proto-plus may wrap it
        raise EventRejected(f"the payload is not a DocumentEventData: {exc}") from None
    pb = firestore_data.DocumentEventData.pb(decoded)
    after = pb.value if pb.HasField("value") else None
    before = pb.old_value if pb.HasField("old_value") else None
    document = after if after is not None else before
    name = document.name if document is not None and document.name else ""
    if not name:
        subject = str(event.get("subject") or event.get("document") or "")
        if not subject:
            raise EventRejected("the event names no document (no value, old_value or subject)")
        name = subject
    return kind, after, before, name


def change_of_event(event: Any) -> Change:
    """The change a Firestore document CloudEvent describes.

    ``event`` is a ``cloudevents`` ``CloudEvent`` (what the Functions Framework hands a
    ``cloud_event`` function). ``seq`` is the document's update time in microseconds (a
    delete: the event's time), as the ``firestore_listen`` source numbers changes, so a
    platform retry of one event is the same change. ``EventRejected`` names what is wrong
    with an event of another type, a payload that is not ``DocumentEventData`` or a
    document path that is not one.
    """
    _kind, after, before, name = _decoded(event)
    collection, doc_id = split_document_name(name)
    if after is None:
        return Change(_event_time(event), collection, doc_id, ChangeOp.DELETE, None, 0.0)
    seq = micros(after.update_time) if after.HasField("update_time") else _event_time(event)
    op = ChangeOp.CREATE if before is None else ChangeOp.UPDATE
    return Change(seq, collection, doc_id, op, _document(after), seq / 1e6)


def document_event(event: Any) -> DocumentEvent:
    """The document a Firestore document CloudEvent carries, with its update time (to the
    microsecond, Firestore's precision), for the task mode; ``EventRejected`` as
    ``change_of_event``. A ``deleted`` event, or one without ``value``, has no data."""
    kind, after, _before, name = _decoded(event)
    collection, doc_id = split_document_name(name)
    path = f"{collection}/{doc_id}"
    short = kind.removeprefix(_PREFIX)
    if after is None or short == "deleted":
        return DocumentEvent(short, path, None, None)
    update_time = None
    if after.HasField("update_time"):
        stamp = after.update_time
        update_time = dt.datetime.fromtimestamp(stamp.seconds, tz=dt.UTC).replace(
            microsecond=stamp.nanos // 1000
        )
    return DocumentEvent(short, path, _document(after), update_time)
