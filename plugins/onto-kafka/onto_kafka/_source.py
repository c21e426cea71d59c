"""The ``kafka`` source: a consumer-group member (or a reader of every partition) whose
offsets follow the acks."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from kafka.consumer.fetcher import ConsumerRecord  # type: ignore[import-untyped]
from kafka.errors import KafkaError  # type: ignore[import-untyped]
from kafka.structs import OffsetAndMetadata  # type: ignore[import-untyped]
from pydantic import Field, model_validator

from onto_core.config import PipelineConfig
from onto_core.errors import SourceError
from onto_core.protocols import Guarantee, Message, Positions, RuntimeContext
from onto_kafka._codecs import KeyFormat, decode_key
from onto_kafka._connection import KafkaConnection
from onto_kafka._offsets import OffsetTracker, Position
from onto_kafka._records import (
    ERROR_HEADER,
    LAST_OFFSET_HEADER,
    UnreadableBatch,
    UnreadableRecords,
    record_headers,
    unreadable_batch,
)

__all__ = ["OFFSET_HEADER", "PARTITION_HEADER", "TOPIC_HEADER", "KafkaSource"]

TOPIC_HEADER = "kafka-topic"
PARTITION_HEADER = "kafka-partition"
OFFSET_HEADER = "kafka-offset"

log = logging.getLogger("onto.kafka")


@dataclass(frozen=True, slots=True)
class KafkaPositions:
    """The ``value`` of a kafka source's ``Positions`` (``system == "kafka"``).

    ``offsets`` are the next offsets to read per partition, as
    ``KafkaProducer.send_offsets_to_transaction`` takes them, and ``group_metadata`` the
    consumer's group membership to send with them (so brokers fence a member that lost
    its partitions). Empty ``offsets``: nothing to commit.
    """

    offsets: dict[TopicPartition, OffsetAndMetadata]
    group_metadata: Any


class KafkaSource:
    """Reads topics in a consumer group, or every partition itself; commits what was processed.

    ``partitions: group`` (default): the members of ``group_id`` split the partitions.
    ``partitions: all``: this process reads every partition of ``topics`` itself, by
    manual assignment (no group membership, no rebalances); ``group_id`` only names where
    its positions are committed. The start position of every partition is fixed before
    ``start`` returns: the committed offset of ``group_id`` (else ``offset_reset``), or the
    beginning / end for ``start_from: earliest`` / ``latest``. Partitions added to a topic
    later are not read until the next start. ``splits_input(config)`` tells which mode a
    config asks for.

    Each record becomes a message whose value is the record's bytes (``None`` for a
    tombstone; decode it with the ``kafka_decode`` processor), whose key is the record
    key as text (``key_format``), whose channel is the topic, and whose headers are the
    record's headers (text; null and non-UTF-8 values as ``record_headers`` says) plus
    ``kafka-topic``, ``kafka-partition`` and ``kafka-offset``. Its id
    ``topic/partition@offset`` is stable across redeliveries.

    A batch kafka-python cannot read (corrupt, or compressed with a codec it does not
    know) never stops the source: it is skipped past, and one message whose value is
    ``UnreadableRecords`` (headers ``kafka-error`` and ``kafka-last-offset`` too) stands
    for its records; ``kafka_decode`` fails on it, so the runtime dead-letters it.

    Offsets: the committed position of a partition is the first delivered offset not yet
    acked (or one past the last one delivered), so acks in any order never commit past an
    unprocessed message. Positions are committed from the polling thread at most every
    ``commit_interval_ms``, when partitions are revoked and on close. A nacked message is
    delivered again by this instance and holds its partition's position back until acked.

    Rebalances: before giving partitions up, the source waits up to ``revoke_timeout_ms``
    for their in-flight messages to be acked and commits what was. Partitions the new
    assignment gives back carry on as they were; the others are forgotten, and acks and
    nacks that arrive later for their messages change nothing (the new owner reads them
    again from the committed offset). A member dropped from the group (no rebalance
    callback in time) forgets its partitions without committing.

    exactly_once: a transactional sink (``write_exactly_once``) asks for the positions of
    the messages it consumed with ``positions`` (``Positions`` of system ``"kafka"``) and
    commits them inside its transaction; from then on this source never commits on its
    own.
    """

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset(Guarantee)

    class Config(KafkaConnection):
        topics: list[str] | None = Field(
            None, description="Topics to read; give this or `pattern`."
        )
        pattern: str | None = Field(
            None, description="Regular expression of topic names to read, instead of `topics`."
        )
        group_id: str = Field(
            description=(
                "Consumer group: members of one group split the partitions; with"
                " `partitions: all`, only where this source commits its positions."
            )
        )
        partitions: Literal["group", "all"] = Field(
            "group",
            description=(
                "group: the members of `group_id` split the partitions (scale-out);"
                " all: this process reads every partition of `topics` itself, without"
                " joining the group (every worker reads every record)."
            ),
        )
        start_from: Literal["committed", "earliest", "latest"] = Field(
            "committed",
            description=(
                "committed: resume at the group's committed offsets (else `offset_reset`);"
                " earliest / latest: ignore them and start at the beginning / end of each"
                " partition the first time this process is assigned it."
            ),
        )
        offset_reset: Literal["earliest", "latest"] = Field(
            "earliest", description="Where a partition with no committed offset starts."
        )
        key_format: KeyFormat = Field(
            KeyFormat.STR,
            description="How record keys become message keys: str (UTF-8), hex or base64.",
        )
        isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
            "read_committed",
            description="read_committed skips records of aborted or open transactions.",
        )
        max_poll_records: int = Field(500, ge=1, description="Most records fetched per poll.")
        poll_timeout_ms: int = Field(
            100, ge=1, description="How long one poll waits for records (bounds commit delay)."
        )
        commit_interval_ms: int = Field(
            200, ge=0, description="Least time between two commits of acked positions."
        )
        revoke_timeout_ms: int = Field(
            5000,
            ge=0,
            description=(
                "How long a rebalance waits for in-flight messages of the partitions"
                " being taken away to be acked, before committing and letting them go."
            ),
        )
        session_timeout_ms: int = Field(
            10000, ge=1, description="A member silent this long is dropped from the group."
        )
        heartbeat_interval_ms: int = Field(
            3000, ge=1, description="Heartbeat period; well under session_timeout_ms."
        )
        max_poll_interval_ms: int = Field(
            300000, ge=1, description="Most time between polls before leaving the group."
        )

        @model_validator(mode="after")
        def _one_subscription(self) -> KafkaSource.Config:
            if (self.topics is None) == (self.pattern is None):
                raise ValueError("give either `topics` (a list) or `pattern`, not both")
            if self.topics is not None and not self.topics:
                raise ValueError("`topics` must name at least one topic")
            if self.partitions == "all" and self.pattern is not None:
                raise ValueError(
                    "`pattern` needs group membership to follow topics as they appear;"
                    " with `partitions: all` name the topics in `topics`"
                )
            if self.heartbeat_interval_ms >= self.session_timeout_ms:
                raise ValueError("heartbeat_interval_ms must be less than session_timeout_ms")
            return self

    @classmethod
    def splits_input(cls, config: KafkaSource.Config) -> bool:
        """Whether several processes running ``config`` split the records between them.

        True for ``partitions: group`` (each record goes to one member of the group),
        False for ``partitions: all`` (every process reads every record).
        """
        return config.partitions == "group"

    @classmethod
    def check_pipeline(cls, pipeline: PipelineConfig) -> None:
        """Refuse a ``kafka`` coordinator in the same pipeline that shares ``group_id``.

        A ``partitions: all`` source commits from outside any group membership, which
        Apache Kafka refuses for a group that has members (the coordinator's workers).
        """
        config = pipeline.source.config
        if not isinstance(config, KafkaSource.Config):
            return
        for spec in pipeline.processors:
            coordinator = getattr(spec.config, "coordinator", None)
            settings = getattr(coordinator, "config", None)
            if getattr(coordinator, "type", None) == "kafka" and (
                getattr(settings, "group_id", None) == config.group_id
            ):
                raise ValueError(
                    f"group_id {config.group_id!r} is also the group of the kafka coordinator"
                    f" of {spec.path}; give the coordinator a group of its own (e.g."
                    f" '{config.group_id}-shards'): the source commits its positions from"
                    " outside the group, which brokers refuse for a group with members"
                )

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tracker = OffsetTracker()
        self._consumer: KafkaConsumer | None = None
        self._ctx: RuntimeContext | None = None
        # Every call into the consumer (poll, commit, close) holds this lock: kafka-python's
        # consumer is not thread-safe. Rebalance callbacks run on the client's own IO
        # thread while a poll holds it, so they never take it.
        self._consumer_lock = threading.Lock()
        self._redeliver: deque[Message] = deque()
        self._last_commit = 0.0
        self._seen: set[TopicPartition] = set()
        self._transaction_owner: object | None = None
        self._closing = False
        self._closed = False
        self._lag_lock = threading.Lock()
        self._lag_reader: KafkaConsumer | None = None  # made by lag(), closed by close()
        self._pipeline = "kafka"

    # --- lifecycle ----------------------------------------------------------------------

    def start(self, ctx: RuntimeContext) -> None:
        """Connect and subscribe (or, with ``partitions: all``, assign every partition and
        fix where each one starts); raises ``SourceError`` naming the brokers if
        unreachable, or the topic if it does not exist with ``partitions: all``."""
        self._ctx = ctx
        self._pipeline = ctx.pipeline
        config = self.config
        problem = config.unknown_options(KafkaConsumer)
        if problem is not None:
            raise SourceError.at(ctx, problem)
        try:
            consumer = KafkaConsumer(
                **config.client_settings(f"onto-{ctx.pipeline}"),
                group_id=config.group_id,
                enable_auto_commit=False,
                auto_offset_reset=config.offset_reset,
                isolation_level=config.isolation_level,
                max_poll_records=config.max_poll_records,
                session_timeout_ms=config.session_timeout_ms,
                heartbeat_interval_ms=config.heartbeat_interval_ms,
                max_poll_interval_ms=config.max_poll_interval_ms,
            )
        except KafkaError as exc:
            raise SourceError.at(
                self._ctx, f"cannot connect to Kafka at {config.describe()}: {config.redact(exc)}"
            ) from exc
        if config.partitions == "all":
            try:
                self._assign_every_partition(consumer)
            except BaseException:
                consumer.close(autocommit=False)
                raise
            self._consumer = consumer
            return
        listener = _Rebalance(self)
        if config.pattern is not None:
            consumer.subscribe(pattern=config.pattern, listener=listener)
        else:
            consumer.subscribe(topics=list(config.topics or ()), listener=listener)
        self._consumer = consumer

    def _assign_every_partition(self, consumer: KafkaConsumer) -> None:
        """Read every partition of ``topics``, each from a position fixed here and now.

        The positions are looked up and set before ``start`` returns, not lazily at the
        first poll: a stateful processor (the sharded ``view``) builds its state from the
        datastore once every component has started, and relies on this source delivering
        every record after a position fixed before that build. Several processes share
        ``group_id`` in this mode, each committing its own positions; a committed offset is
        always one whose records someone already processed, so it is a safe place to start.
        """
        config = self.config
        timeout_ms = config.connect_timeout_ms
        partitions: list[TopicPartition] = []
        for topic in config.topics or ():
            found = consumer.partitions_for_topic(topic)
            if not found:
                raise SourceError.at(
                    self._ctx,
                    f"topic {topic!r} does not exist at {config.describe()}: with"
                    " `partitions: all` every partition is assigned at start, so create"
                    " the topic first",
                )
            partitions += [TopicPartition(topic, p) for p in sorted(found)]
        consumer.assign(partitions)
        self.tracker.assign(partitions)
        try:
            for tp in partitions:
                committed = (
                    consumer.committed(tp, timeout_ms=timeout_ms)
                    if config.start_from == "committed"
                    else None
                )
                if committed is not None:
                    consumer.seek(tp, committed)
                elif (
                    config.offset_reset if config.start_from == "committed" else config.start_from
                ) == "earliest":
                    consumer.seek_to_beginning(tp)
                else:
                    consumer.seek_to_end(tp)
            # position() resolves the beginning / end seeks into offsets now.
            starts = {tp: consumer.position(tp, timeout_ms=timeout_ms) for tp in partitions}
        except KafkaError as exc:
            raise SourceError.at(
                self._ctx,
                f"finding where to start reading at {config.describe()} failed:"
                f" {config.redact(exc)}",
            ) from exc
        unknown = sorted(tp for tp, offset in starts.items() if offset is None)
        if unknown:
            raise SourceError.at(
                self._ctx,
                f"no start position for {_names(set(unknown))} from {config.describe()}"
                f" within connect_timeout_ms ({timeout_ms} ms)",
            )
        log.info(
            "reading every partition from %s",
            ", ".join(f"{tp.topic}/{tp.partition}@{starts[tp]}" for tp in partitions),
        )

    def close(self) -> None:
        """Commit what was acked and leave the group (idempotent)."""
        if self._closed:
            return
        self._closing = True
        # The runtime has stopped acking: a rebalance waiting for acks need not wait.
        self.tracker.stop_waiting()
        with self._lag_lock:
            reader, self._lag_reader = self._lag_reader, None
        if reader is not None:
            reader.close(autocommit=False)
        with self._consumer_lock:
            self._closed = True
            consumer, self._consumer = self._consumer, None
            if consumer is None:
                return
            try:
                self._commit(consumer, force=True)
            finally:
                # Leaving the group runs the revoke callback, which commits nothing new.
                consumer.close(autocommit=False)

    # --- reading ------------------------------------------------------------------------

    async def read_batch(self, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` messages, waiting for one; ``[]`` only once closed."""
        while not self._closed:
            # Nacked messages first (those of partitions moved elsewhere are dropped).
            batch = self._take_redelivered(max_messages) if self._redeliver else []
            if not batch:
                batch = await asyncio.to_thread(self._poll, max_messages)
            if batch:
                return batch
        return []

    async def read(self) -> Message | None:
        batch = await self.read_batch(1)
        return batch[0] if batch else None

    def _take_redelivered(self, max_messages: int) -> list[Message]:
        batch: list[Message] = []
        while self._redeliver and len(batch) < max_messages:
            message = self._redeliver.popleft()
            if self.tracker.is_current(message.offset):
                batch.append(message)
        return batch

    def _poll(self, max_messages: int) -> list[Message]:
        with self._consumer_lock:
            consumer = self._consumer
            if consumer is None:
                return []
            self._commit(consumer)
            try:
                polled = consumer.poll(
                    timeout_ms=self.config.poll_timeout_ms, max_records=max_messages
                )
            except Exception as exc:  # a record's fault can be any exception type
                unreadable = unreadable_batch(exc)
                if unreadable is not None:
                    return self._skip(consumer, unreadable, exc)
                if not isinstance(exc, KafkaError):
                    raise
                raise SourceError.at(
                    self._ctx, f"polling {self.config.describe()} failed: {self.config.redact(exc)}"
                ) from exc
        messages: list[Message] = []
        for tp, records in polled.items():
            epoch = self.tracker.deliver(tp, (r.offset for r in records))
            if epoch is None:
                continue  # revoked while the poll returned: the new owner reads these
            messages += self._messages(tp, epoch, records)
        return messages

    def _skip(
        self, consumer: KafkaConsumer, unreadable: UnreadableBatch, error: BaseException
    ) -> list[Message]:
        """Move ``consumer`` past a batch it cannot read; the message standing for it.

        Called with the consumer lock held. Without the seek, kafka-python would retry
        the same batch in a busy loop that never returns from ``poll``.
        """
        tp, first, resume = unreadable
        try:
            consumer.seek(tp, resume)
        except ValueError:
            return []  # no longer assigned: its new owner meets the batch itself
        value = UnreadableRecords(tp.topic, tp.partition, first, resume - 1, _error_text(error))
        log.warning("%s; skipped, to be dead-lettered", value.describe())
        # Until its message is acked the position stays at ``first``: a restart reads
        # the batch again; once acked, it moves past the whole batch.
        epoch = self.tracker.deliver(tp, [first], through=resume)
        if epoch is None:
            return []
        offset = str(first)
        headers = {
            TOPIC_HEADER: tp.topic,
            PARTITION_HEADER: str(tp.partition),
            OFFSET_HEADER: offset,
            LAST_OFFSET_HEADER: str(resume - 1),
            ERROR_HEADER: value.error,
        }
        return [
            Message(
                value,
                None,
                f"{tp.topic}/{tp.partition}@{offset}",
                headers,
                tp.topic,
                time.time(),
                Position(tp, first, epoch),
            )
        ]

    def _messages(
        self, tp: TopicPartition, epoch: int, records: list[ConsumerRecord]
    ) -> list[Message]:
        # The hot path of the source: names bound once per partition, not per record.
        topic, partition = tp.topic, str(tp.partition)
        prefix = f"{topic}/{partition}@"
        key_format = self.config.key_format
        text_keys = key_format is KeyFormat.STR
        now = time.time()
        messages = []
        for record in records:
            offset = record.offset
            headers = {TOPIC_HEADER: topic, PARTITION_HEADER: partition, OFFSET_HEADER: str(offset)}
            if record.headers:
                # The record's own headers, but never over the position headers above.
                headers = {**record_headers(record.headers), **headers}
            key = record.key
            messages.append(
                Message(
                    record.value,
                    key.decode("utf-8", "replace")
                    if text_keys and key is not None
                    else decode_key(key, key_format),
                    prefix + str(offset),
                    headers,
                    topic,
                    record.timestamp / 1000 if record.timestamp >= 0 else now,
                    Position(tp, offset, epoch),
                )
            )
        return messages

    # --- acks and commits ---------------------------------------------------------------

    async def ack(self, message: Message) -> None:
        """Mark the message processed; its offset is committed once all before it are."""
        self.tracker.ack(message.offset)

    async def ack_batch(self, messages: list[Message]) -> None:
        """``ack`` for each of ``messages``."""
        for message in messages:
            self.tracker.ack(message.offset)

    async def nack(self, message: Message, error: BaseException) -> None:
        """Deliver the message again (unless its partition moved to another consumer)."""
        if self.tracker.is_current(message.offset):
            self._redeliver.append(message)

    def _commit(self, consumer: KafkaConsumer, force: bool = False) -> None:
        """Commit positions that moved; called with the consumer lock held."""
        if self._transaction_owner is not None:
            return  # positions travel inside the sink's transactions
        now = time.monotonic()
        if not force and (now - self._last_commit) * 1000 < self.config.commit_interval_ms:
            return
        positions = self.tracker.to_commit()
        if not positions:
            return
        self._last_commit = now
        try:
            consumer.commit(_offsets(positions))
        except KafkaError as exc:
            # Not fatal: the positions are committed on the next try, or, if the group
            # moved on, the new owner starts from the last commit (at least once).
            log.warning(
                "committing offsets to %s failed: %s",
                self.config.describe(),
                self.config.redact(exc),
            )
            return
        self.tracker.committed(positions)

    def asyncapi_channels(self, incoming: Any) -> list[Any]:
        """The topics this source reads, for the AsyncAPI document (docs/asyncapi.md)."""
        from onto_kafka._asyncapi import source_channels

        return source_channels(self)

    # --- metrics ------------------------------------------------------------------------

    def lag(self) -> dict[str, int]:
        """Records per assigned partition (``"topic/partition"``) past the acked position.

        End offsets (and, for a partition nothing was delivered from yet, the group's
        committed offset) come from a client of their own, made at the first call and
        joining no group: the consumer is busy polling and is not thread-safe. Called
        from the thread serving a metrics scrape; ``{}`` when the brokers cannot tell.
        """
        if self._consumer is None or self._closed:
            return {}
        positions = self.tracker.positions()
        if not positions:
            return {}
        with self._lag_lock:
            if self._closing:
                return {}
            try:
                reader = self._lag_reader
                if reader is None:
                    reader = self._lag_reader = KafkaConsumer(
                        **self.config.client_settings(f"onto-{self._pipeline}-lag"),
                        group_id=self.config.group_id,
                        enable_auto_commit=False,
                    )
                timeout = self.config.connect_timeout_ms
                ends = reader.end_offsets(list(positions), timeout_ms=timeout)
                for tp, position in positions.items():
                    if position is None:
                        committed = reader.committed(tp, timeout_ms=timeout)
                        if committed is None and self.config.offset_reset == "earliest":
                            committed = reader.beginning_offsets([tp], timeout_ms=timeout)[tp]
                        positions[tp] = ends[tp] if committed is None else committed
            except Exception as exc:  # a metric never fails the source
                log.debug("lag of %s: %s", self.config.describe(), self.config.redact(exc))
                return {}
        return {
            f"{tp.topic}/{tp.partition}": max(0, ends[tp] - position)
            for tp, position in positions.items()
            if position is not None and tp in ends
        }

    # --- exactly once -------------------------------------------------------------------

    def group_metadata(self) -> Any:
        """The consumer's group membership, for a producer's ``send_offsets_to_transaction``."""
        consumer = self._consumer
        if consumer is None:
            raise SourceError.at(self._ctx, "the kafka source is not started")
        # A snapshot of coordinator state: safe without the consumer lock, and taking it
        # would hold every transaction up behind a poll.
        return consumer.group_metadata()

    def positions(self, consumed: list[Message], committer: object) -> Positions:
        """The offsets ``consumed`` completes, for ``committer``'s Kafka transaction.

        ``Positions(system="kafka", value=KafkaPositions(...))``; the committer calls
        ``committed()`` once its transaction committed. From the first call on, this
        source commits nothing itself: its offsets move only inside the committer's
        transactions, and a second committer is refused (``SourceError``).
        """
        offsets = self.transaction_offsets(consumed, committer)
        return Positions(
            system="kafka",
            value=KafkaPositions(offsets=offsets, group_metadata=self.group_metadata()),
            committed=lambda: self.transaction_committed(offsets),
        )

    def transaction_offsets(
        self, consumed: list[Message], owner: object
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """Offsets to commit in ``owner``'s transaction, which processed ``consumed``.

        From the first call on, this source commits nothing itself: its positions move
        only inside the owner's transactions. One transactional sink per source.
        ``positions`` wraps this for sinks of other plugins.
        """
        if self._transaction_owner is None:
            self._transaction_owner = owner
        elif self._transaction_owner is not owner:
            raise SourceError.at(
                self._ctx,
                "exactly_once commits offsets inside one sink's transactions, but two"
                " sinks asked; give the pipeline a single transactional kafka sink",
            )
        positions = self.tracker.positions_with(
            m.offset for m in consumed if isinstance(m.offset, Position)
        )
        return _offsets(positions)

    def transaction_committed(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Record that a transaction committed ``offsets``."""
        self.tracker.committed({tp: meta.offset for tp, meta in offsets.items()})

    # --- rebalances (on the client's IO thread) -----------------------------------------

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.tracker.assign(assigned)
        fresh = sorted(assigned - self._seen)
        self._seen |= assigned
        consumer = self._consumer
        if fresh and consumer is not None and self.config.start_from != "committed":
            # Only what the consumer has buffered changes: no network call here.
            if self.config.start_from == "earliest":
                consumer.seek_to_beginning(*fresh)
            else:
                consumer.seek_to_end(*fresh)
        log.info("assigned %s", _names(assigned))

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        if not self._closing and self.config.revoke_timeout_ms:
            # Blocks the client's IO loop, heartbeats included: keep it under the session
            # timeout, or this member is dropped before it can commit.
            timeout = min(self.config.revoke_timeout_ms, self.config.session_timeout_ms / 2)
            if not self.tracker.wait_settled(revoked, timeout / 1000):
                log.warning(
                    "messages of %s still in flight after %d ms; if they move to another"
                    " member, it reads them again",
                    _names(revoked),
                    timeout,
                )
        positions = self.tracker.to_commit(revoked)
        self.tracker.suspend(revoked)
        consumer = self._consumer
        if consumer is not None and positions and self._transaction_owner is None:
            try:
                await consumer.commit_async(_offsets(positions))
                self.tracker.committed(positions)
            except KafkaError as exc:
                log.warning(
                    "committing offsets of revoked %s failed: %s",
                    _names(revoked),
                    self.config.redact(exc),
                )
        log.info("revoked %s", _names(revoked))

    def _on_lost(self, lost: set[TopicPartition]) -> None:
        # Dropped from the group: the partitions may belong to another member already,
        # so nothing of theirs is committed and their in-flight messages are let go.
        self.tracker.forget(lost)
        log.warning("lost %s: dropped from the group", _names(lost))


class _Rebalance(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Hands the consumer group's rebalance callbacks to the source."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.source._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.source._on_assigned(set(assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.source._on_lost(set(lost))


def _offsets(positions: dict[TopicPartition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in positions.items()}


def _error_text(error: BaseException) -> str:
    text, name = str(error), type(error).__name__
    # kafka-python's errors already start with their class name.
    return text if text.startswith(name) else f"{name}: {text}"


def _names(partitions: set[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(partitions)) or "nothing"
