"""What the source makes of records as other producers write them: headers with null or
binary values, and batches kafka-python cannot read (corrupt, or an unknown codec)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from kafka import TopicPartition  # type: ignore[import-untyped]

__all__ = [
    "BASE64_HEADERS",
    "ERROR_HEADER",
    "LAST_OFFSET_HEADER",
    "NULL_HEADERS",
    "UnreadableBatch",
    "UnreadableRecords",
    "record_headers",
    "unreadable_batch",
]

NULL_HEADERS = "kafka-null-headers"
BASE64_HEADERS = "kafka-base64-headers"
ERROR_HEADER = "kafka-error"
LAST_OFFSET_HEADER = "kafka-last-offset"


def record_headers(pairs: Iterable[tuple[str, bytes | None]]) -> dict[str, str]:
    """A record's headers as message headers (text), never failing.

    UTF-8 values become their text. A null value (Kafka allows it) becomes ``""`` and its
    name is listed in ``kafka-null-headers``; a value that is not UTF-8 becomes its base64
    text and its name is listed in ``kafka-base64-headers`` (names comma-separated, in
    order). A name given twice keeps its last value, as a dict must.
    """
    headers: dict[str, str] = {}
    kinds: dict[str, str] = {}
    for name, value in pairs:
        kinds.pop(name, None)
        if value is None:
            headers[name] = ""
            kinds[name] = NULL_HEADERS
            continue
        try:
            headers[name] = value.decode("utf-8")
        except UnicodeDecodeError:
            headers[name] = base64.b64encode(value).decode("ascii")
            kinds[name] = BASE64_HEADERS
    for listing in (NULL_HEADERS, BASE64_HEADERS):
        names = [name for name, kind in kinds.items() if kind == listing]
        if names:
            headers[listing] = ",".join(names)
    return headers


@dataclass(frozen=True, slots=True)
class UnreadableRecords:
    """The value of a message that stands for records the consumer could not read.

    ``offset`` to ``last_offset`` are the records of one batch that were skipped;
    ``error`` says why (e.g. ``UnsupportedCodecError: ...``). ``kafka_decode`` refuses
    such a message, so the runtime dead-letters it; ``to_dict`` is what a sink writes.
    """

    topic: str
    partition: int
    offset: int
    last_offset: int
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "last_offset": self.last_offset,
            "error": self.error,
        }

    def describe(self) -> str:
        span = (
            f"{self.offset}"
            if self.last_offset == self.offset
            else (f"{self.offset}..{self.last_offset}")
        )
        return f"records {self.topic}/{self.partition}@{span} cannot be read: {self.error}"


class UnreadableBatch(NamedTuple):
    """Where kafka-python failed to read: the partition, the first offset not read and
    one past the last offset of the failing batch (where reading resumes)."""

    partition: TopicPartition
    first: int
    resume: int


def unreadable_batch(error: BaseException) -> UnreadableBatch | None:
    """Which batch ``error`` (raised by ``KafkaConsumer.poll``) failed to read, if any.

    kafka-python has no API for this: its fetcher unpacks records in a generator
    (``Fetcher.PartitionRecords._unpack_records``), and an exception there (an unknown
    codec, a failed CRC, a decompressor's error, a header name that is not UTF-8) leaves
    that partition stuck at the same position. The generator's frame, still on the
    traceback, names the partition, the first offset not yet returned and the batch.
    None when the error came from elsewhere (the network, the group): not a record's fault.
    """
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_unpack_records":
            names = frame.f_locals
            records = names.get("self")
            tp = getattr(records, "topic_partition", None)
            first = getattr(records, "next_fetch_offset", None)
            if not isinstance(tp, TopicPartition) or not isinstance(first, int):
                return None
            batch = names.get("batch")
            base = getattr(batch, "base_offset", None)
            end = getattr(batch, "next_offset", None)
            if isinstance(base, int) and isinstance(end, int) and base <= first < end:
                return UnreadableBatch(tp, first, end)
            # The batch itself could not be framed (its header is corrupt): step past
            # one offset at a time, each a dead letter of its own.
            return UnreadableBatch(tp, first, first + 1)
        tb = tb.tb_next
    return None
