"""The ``kafka`` sink: an idempotent (or transactional) producer that confirms every write."""

from __future__ import annotations

import logging
import os
import re
import string
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from kafka import KafkaProducer  # type: ignore[import-untyped]
from kafka.errors import KafkaError  # type: ignore[import-untyped]
from kafka.partitioner.default import murmur2  # type: ignore[import-untyped]
from pydantic import Field, field_validator, model_validator

from onto_core.errors import SinkError
from onto_core.protocols import Guarantee, Message, Positions, RuntimeContext
from onto_kafka._codecs import CodecError, KeyFormat, ValueFormat, encode_key, encode_value
from onto_kafka._connection import KafkaConnection

__all__ = ["KafkaSink", "MessageTemplate"]

log = logging.getLogger("onto.kafka")

_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_PARTITION_CACHE = 100_000  # keys whose partition is remembered (then forgotten at once)


class MessageTemplate:
    """A text with ``{name}`` fields filled from a message.

    A name is looked up in the message value's top-level fields first (a mapping, or a
    model's ``to_dict``/``model_dump``), then among the message's own ``key``,
    ``channel`` and ``id``. Indexing reaches deeper: ``{fields[meeting_id]}``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        self.fixed = not self.names

    def render(self, message: Message) -> str:
        """The text for ``message``; ``KeyError`` naming a field it lacks."""
        if self.fixed:
            return self.text
        return self.text.format_map(_Fields(message))


class _Fields(Mapping[str, Any]):
    def __init__(self, message: Message) -> None:
        self.message = message
        value = message.value
        dump = getattr(value, "to_dict", None) or getattr(value, "model_dump", None)
        self.value = dump() if callable(dump) else value

    def __getitem__(self, name: str) -> Any:
        if isinstance(self.value, Mapping) and name in self.value:
            return self.value[name]
        if name in ("key", "channel", "id"):
            found = getattr(self.message, name)
            if found is not None:
                return found
        raise KeyError(name)

    def __iter__(self) -> Any:
        return iter(self.value) if isinstance(self.value, Mapping) else iter(())

    def __len__(self) -> int:
        return len(self.value) if isinstance(self.value, Mapping) else 0


class KafkaSink:
    """Writes each message as a record; a write returns once the brokers confirmed all.

    The record key is the message key (view updates are keyed by their view key), or
    ``key`` rendered from the message, so one key's records share a partition and stay
    in order. Message headers become record headers (UTF-8). Records are batched per
    partition (``linger_ms``, ``batch_size``); the producer is idempotent with
    ``acks: all`` by default, so its own retries never duplicate. A record the brokers
    refuse fails the write with ``SinkError``: the runtime retries it, then dead-letters
    it. ``close`` flushes.

    exactly_once: ``write_exactly_once`` sends the outputs and the offsets the source
    consumed in one transaction (``transactional_id``), aborted if anything fails.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

    class Config(KafkaConnection):
        topic: str = Field(
            description=(
                "Topic to write to; may name message fields, e.g. '{view}' or"
                " 'orders-{region}' (see MessageTemplate)."
            )
        )
        key: str | None = Field(
            None,
            description=(
                "Record key rendered from the message, e.g. '{collection}/{docId}';"
                " default: the message key."
            ),
        )
        key_format: KeyFormat = Field(
            KeyFormat.STR, description="How the key text becomes bytes: str, hex or base64."
        )
        value_format: ValueFormat = Field(
            ValueFormat.AUTO,
            description=(
                "auto: bytes as they are, text as UTF-8, anything else as JSON;"
                " or json, str, bytes."
            ),
        )
        headers: bool = Field(True, description="Copy message headers into record headers.")
        exclude_headers: list[str] = Field(
            default_factory=list,
            description=(
                "Message headers not copied, e.g. [kafka-topic, kafka-partition, kafka-offset]"
                " to leave out where a consumed record came from."
            ),
        )
        acks: Literal["all", "1", "0"] = Field(
            "all", description="Brokers that must confirm a record: all, the leader (1), none (0)."
        )
        enable_idempotence: bool = Field(
            True, description="Producer retries never duplicate a record (needs acks: all)."
        )
        linger_ms: int = Field(
            5, ge=0, description="How long a partition's batch waits to fill before sending."
        )
        batch_size: int = Field(
            65536, ge=1, description="Bytes per partition batch (Kafka's batch.size)."
        )
        max_batch_size: int = Field(
            5000, ge=1, description="Most messages in one write (one confirmation wait)."
        )
        compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
            "none", description="Compression of record batches: none, gzip, snappy, lz4 or zstd."
        )
        delivery_timeout_ms: int = Field(
            30000, ge=1, description="How long a write waits for the brokers to confirm."
        )
        transactional_id: str | None = Field(
            None,
            description=(
                "Transactional id for exactly_once; default onto-<pipeline>-<random>. A fixed"
                " id per instance fences a stale copy of that instance."
            ),
        )

        @field_validator("value_format")
        @classmethod
        def _writable(cls, fmt: ValueFormat) -> ValueFormat:
            if fmt is ValueFormat.MODEL:
                raise ValueError("models are written as JSON: use value_format json or auto")
            return fmt

        @field_validator("acks", mode="before")
        @classmethod
        def _acks_as_text(cls, acks: Any) -> Any:
            # YAML reads `acks: 1` as a number.
            return str(acks) if isinstance(acks, int) and not isinstance(acks, bool) else acks

        @model_validator(mode="after")
        def _idempotence_needs_all(self) -> KafkaSink.Config:
            if self.enable_idempotence and self.acks != "all":
                raise ValueError(
                    f"enable_idempotence needs acks: all (got acks: {self.acks});"
                    " set enable_idempotence: false to use acks 1 or 0"
                )
            return self

        @field_validator("topic")
        @classmethod
        def _valid_topic(cls, topic: str) -> str:
            if not MessageTemplate(topic).fixed:
                return topic
            if not _TOPIC.fullmatch(topic):
                raise ValueError(
                    f"{topic!r} is not a valid topic name (letters, digits, '.', '_', '-')"
                )
            return topic

    def __init__(self, config: Config) -> None:
        self.config = config
        self.max_batch_size = config.max_batch_size
        self.topic = MessageTemplate(config.topic)
        self.key = MessageTemplate(config.key) if config.key is not None else None
        # Settled once here: _record runs for every message.
        self._topic = self.topic.text if self.topic.fixed else None
        self._text_keys = config.key_format is KeyFormat.STR
        self._raw_bytes = config.value_format in (ValueFormat.AUTO, ValueFormat.BYTES)
        self._excluded = frozenset(config.exclude_headers)
        self._own_partitioner = "partitioner" not in config.options
        self._partitions: dict[tuple[str, int, bytes], int] = {}
        self._ctx: RuntimeContext | None = None
        self._producer: KafkaProducer | None = None
        self._transactional: KafkaProducer | None = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, ctx: RuntimeContext) -> None:
        """Connect; raises ``SinkError`` naming the brokers if unreachable."""
        self._ctx = ctx
        self._producer = self._new_producer()

    def asyncapi_channels(self, incoming: Any) -> list[Any]:
        """The topic this sink writes, for the AsyncAPI document (docs/asyncapi.md)."""
        from onto_kafka._asyncapi import sink_channels

        return sink_channels(self, incoming)

    def close(self) -> None:
        """Send everything buffered and disconnect (idempotent)."""
        if self._closed:
            return
        self._closed = True
        timeout = self.config.delivery_timeout_ms / 1000
        for producer in (self._producer, self._transactional):
            if producer is None:
                continue
            try:
                producer.flush(timeout)
            except KafkaError as exc:
                log.warning(
                    "flushing to %s on close failed: %s",
                    self.config.describe(),
                    self.config.redact(exc),
                )
            finally:
                producer.close(timeout)
        self._producer = self._transactional = None

    def _new_producer(self, transactional_id: str | None = None) -> KafkaProducer:
        config = self.config
        pipeline = self._ctx.pipeline if self._ctx else "onto"
        settings: dict[str, Any] = {
            **config.client_settings(f"onto-{pipeline}"),
            "acks": "all" if config.acks == "all" else int(config.acks),
            "enable_idempotence": config.enable_idempotence,
            "linger_ms": config.linger_ms,
            "batch_size": config.batch_size,
            "compression_type": None
            if config.compression_type == "none"
            else config.compression_type,
        }
        if transactional_id is not None:
            settings["transactional_id"] = transactional_id
            settings["enable_idempotence"] = True
            settings["acks"] = "all"
        problem = config.unknown_options(KafkaProducer)
        if problem is not None:
            raise self._error(problem)
        try:
            producer = KafkaProducer(**settings)
            if transactional_id is not None:
                producer.init_transactions()
        except KafkaError as exc:
            raise self._error(
                f"cannot connect to Kafka at {config.describe()}: {config.redact(exc)}"
            ) from exc
        return producer

    # --- writing ------------------------------------------------------------------------

    def write(self, messages: list[Message]) -> None:
        """Send ``messages`` and wait until the brokers confirmed every one."""
        producer = self._producer
        if producer is None:
            raise self._error("the kafka sink is not started")
        futures = self._send(producer, messages)
        self._confirm(producer, futures)

    def _send(self, producer: KafkaProducer, messages: list[Message]) -> list[tuple[Message, Any]]:
        # Encode the whole batch first: a message that cannot be encoded fails the write
        # before any record of it is sent.
        records = [self._record(message) for message in messages]
        futures = []
        partitions: dict[str, list[int]] = {}  # per topic, looked up once per write
        for message, (topic, key, value, headers) in zip(messages, records, strict=True):
            try:
                partition = None
                if key is not None and self._own_partitioner:
                    known = partitions.get(topic)
                    if known is None:
                        known = partitions[topic] = sorted(producer.partitions_for(topic))
                    partition = self._partition(topic, key, known)
                future = producer.send(
                    topic, value=value, key=key, headers=headers, partition=partition
                )
            except (KafkaError, ValueError, TypeError) as exc:
                said = self.config.redact(exc)
                raise self._error(
                    f"cannot send message {message.id} to topic {topic!r}: {said}"
                ) from exc
            futures.append((message, future))
        return futures

    def _partition(self, topic: str, key: bytes, partitions: list[int]) -> int:
        """The partition Kafka's default partitioner picks for ``key``, remembered.

        The same murmur2 hash as the Java and kafka-python clients, so records land where
        any other producer would put them; hashing in Python costs more than the rest of
        preparing a record, and view and document keys repeat.
        """
        known = self._partitions
        found = known.get((topic, len(partitions), key))
        if found is None:
            if len(known) >= _PARTITION_CACHE:
                known.clear()
            index = (murmur2(key) & 0x7FFFFFFF) % len(partitions)
            found = known[(topic, len(partitions), key)] = partitions[index]
        return found

    def _confirm(self, producer: KafkaProducer, futures: list[tuple[Message, Any]]) -> None:
        timeout = self.config.delivery_timeout_ms / 1000
        try:
            producer.flush(timeout)
        except KafkaError as exc:
            raise self._error(
                f"{self.config.describe()} did not confirm in time: {self.config.redact(exc)}"
            ) from exc
        for message, future in futures:
            try:
                future.get(timeout)
            except KafkaError as exc:
                said = self.config.redact(exc)
                raise self._error(
                    f"{self.config.describe()} refused message {message.id}: {said}"
                ) from exc

    def _record(self, message: Message) -> tuple[str, bytes | None, bytes | None, list[Any]]:
        try:
            topic = self._topic or self.topic.render(message)
            key_text = message.key if self.key is None else self.key.render(message)
            if self._text_keys:
                key = None if key_text is None else key_text.encode("utf-8")
            else:
                key = encode_key(key_text, self.config.key_format)
            value = message.value
            if not (self._raw_bytes and type(value) is bytes):
                value = encode_value(value, self.config.value_format)
        except KeyError as exc:
            raise self._error(
                f"message {message.id} has no field {exc.args[0]!r} named in the topic or key"
            ) from None
        except (CodecError, ValueError, IndexError, AttributeError) as exc:
            raise self._error(f"cannot encode message {message.id}: {exc}") from None
        excluded = self._excluded
        headers = (
            [
                (name, text.encode("utf-8"))
                for name, text in message.headers.items()
                if name not in excluded
            ]
            if self.config.headers and message.headers
            else []
        )
        return topic, key, value, headers

    # --- exactly once -------------------------------------------------------------------

    def write_exactly_once(
        self, outputs: list[Message], consumed: list[Message], source: Any
    ) -> None:
        """Send ``outputs`` and commit ``source``'s offsets for ``consumed`` in one transaction.

        The runtime calls this instead of ``write`` when the pipeline's guarantee is
        exactly_once. Either the records and the offsets commit together or the
        transaction is aborted and ``SinkError`` raised (the messages are then delivered
        again). The offsets come from ``source.positions(consumed, self)``, which must
        be positions of system ``"kafka"`` (a kafka source gives them).
        """
        positions_of = getattr(source, "positions", None)
        if not callable(positions_of):
            raise self._error(
                "exactly_once through the kafka sink needs a source that hands out its"
                " positions (positions(consumed, committer)), such as a kafka source, whose"
                f" offsets commit inside the transaction; got {type(source).__name__}"
            )
        producer = self._transactional_producer()
        try:
            producer.begin_transaction()
            futures = self._send(producer, outputs)
            self._confirm(producer, futures)
            positions: Positions = positions_of(consumed, self)
            if positions.system != "kafka":
                raise self._error(
                    f"exactly_once through the kafka sink commits Kafka offsets; the"
                    f" {type(source).__name__} source gives positions of {positions.system!r}"
                )
            offsets = positions.value.offsets
            if offsets:
                producer.send_offsets_to_transaction(offsets, positions.value.group_metadata)
            producer.commit_transaction()
        except Exception as exc:
            self._abort(producer)
            if isinstance(exc, SinkError):
                raise
            raise self._error(
                f"transaction to {self.config.describe()} failed: {self.config.redact(exc)}"
            ) from exc
        positions.committed()

    def _transactional_producer(self) -> KafkaProducer:
        if self._transactional is None:
            pipeline = self._ctx.pipeline if self._ctx else "onto"
            tid = self.config.transactional_id or f"onto-{pipeline}-{uuid.uuid4().hex[:12]}"
            self._transactional = self._new_producer(tid)
            log.info("transactional producer %s ready (pid %d)", tid, os.getpid())
        return self._transactional

    def _abort(self, producer: KafkaProducer) -> None:
        try:
            producer.abort_transaction()
        except Exception as exc:
            # A fenced or broken producer cannot abort; the next write starts a new one.
            log.warning(
                "aborting the transaction failed, starting a new producer: %s",
                self.config.redact(exc),
            )
            self._transactional = None
            try:
                producer.close(0)
            except Exception:
                log.debug("closing the broken producer failed", exc_info=True)

    def _error(self, message: str) -> SinkError:
        ctx = self._ctx
        return SinkError(
            message,
            component=ctx.component if ctx else None,
            pipeline=ctx.pipeline if ctx else None,
        )
