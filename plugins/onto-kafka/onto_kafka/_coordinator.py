"""The ``kafka`` shard coordinator: shard ownership is a consumer group's assignment."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kafka import (  # type: ignore[import-untyped]
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    TopicPartition,
)
from kafka.admin import NewTopic  # type: ignore[import-untyped]
from kafka.coordinator.assignors.sticky.sticky_assignor import (  # type: ignore[import-untyped]
    StickyPartitionAssignor,
)
from kafka.errors import KafkaError, TopicAlreadyExistsError  # type: ignore[import-untyped]
from pydantic import Field, field_validator, model_validator

from onto_core.errors import ComponentError
from onto_core.protocols import RuntimeContext
from onto_kafka._connection import KafkaConnection
from onto_kafka._sink import _TOPIC

__all__ = ["KafkaShardCoordinator"]

log = logging.getLogger("onto.kafka")

# How long one poll of the membership thread waits; bounds how fast close() stops it.
_POLL_MS = 200


def _nothing() -> None:
    return None


class KafkaShardCoordinator:
    """Gives each shard to one live worker, through a Kafka consumer group.

    The workers join ``group_id`` as consumers of ``topic``, a topic with exactly one
    partition per shard, and the group's partition assignment is the ownership:
    partition i is shard i. Nothing is ever written to or read from the topic. Kafka's
    group protocol then does the coordinating: a worker that joins takes a share, one
    that closes hands its shards over at once, one that dies (no heartbeat for
    ``session_timeout_ms``) loses them to the others. The sticky assignor keeps shards
    where they are when the group changes.

    ``start`` connects, checks the topic (creating it with ``create_topic``) and joins;
    it returns before the first assignment, while ``owned()`` is still ``None``. A
    thread of its own keeps polling, which heartbeats and runs the rebalance callbacks,
    and calls ``on_change`` from there whenever ``owned()`` changed.

    Rebalances are eager: when the group changes, every member gives its shards up and
    receives a new set. ``owned()`` keeps the old set until the new one arrives, then
    becomes exactly the new one, so a shard moving away may briefly be owned here and by
    its new owner (a few seconds at most, until this member receives its assignment).
    A member dropped from the group (it missed ``session_timeout_ms``) owns nothing from
    that moment until it is assigned anew. After ``close`` the set is no longer updated.
    """

    class Config(KafkaConnection):
        topic: str = Field(
            description=(
                "Shard topic: one partition per shard, never written to; every worker of"
                " one deployment names the same topic."
            )
        )
        group_id: str = Field(description="Consumer group of the workers that share the shards.")
        create_topic: bool = Field(
            True,
            description=(
                "Create the shard topic with one partition per shard if it is missing"
                " (an existing one must have exactly that many)."
            ),
        )
        replication_factor: int | None = Field(
            None,
            ge=1,
            description="Replicas of a shard topic this creates; default: the brokers' default.",
        )
        session_timeout_ms: int = Field(
            10000,
            ge=1,
            description="A worker silent this long loses its shards to the others.",
        )
        heartbeat_interval_ms: int = Field(
            3000, ge=1, description="Heartbeat period; well under session_timeout_ms."
        )

        @field_validator("topic")
        @classmethod
        def _valid_topic(cls, topic: str) -> str:
            if not _TOPIC.fullmatch(topic):
                raise ValueError(
                    f"{topic!r} is not a valid topic name (letters, digits, '.', '_', '-')"
                )
            return topic

        @model_validator(mode="after")
        def _timings(self) -> KafkaShardCoordinator.Config:
            if self.heartbeat_interval_ms >= self.session_timeout_ms:
                raise ValueError("heartbeat_interval_ms must be less than session_timeout_ms")
            return self

    def __init__(self, config: Config) -> None:
        self.config = config
        self._ctx: RuntimeContext | None = None
        self._on_change: Callable[[], None] = _nothing
        self._owned: frozenset[int] | None = None
        # Updates of the owned set and the on_change calls they make, one at a time.
        self._owned_lock = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, ctx: RuntimeContext, shards: int, on_change: Callable[[], None]) -> None:
        """Connect, check (or create) the shard topic and join the group.

        Raises ``ComponentError`` naming the brokers when they cannot be reached, and the
        topic when it is missing (without ``create_topic``) or has a partition count other
        than ``shards``. Returns without waiting for the first assignment.
        """
        if shards < 1:
            raise ComponentError.at(
                ctx, f"a shard coordinator needs 1 or more shards, got {shards}"
            )
        self._ctx = ctx
        self._on_change = on_change
        consumer = await asyncio.to_thread(self._join, ctx, shards)
        if self._closed:  # closed while joining
            await asyncio.to_thread(consumer.close, autocommit=False)
            return
        self._consumer = consumer
        self._thread = threading.Thread(
            target=self._keep_polling,
            args=(consumer,),
            name=f"onto-kafka-shards-{self.config.topic}",
            daemon=True,
        )
        self._thread.start()

    def owned(self) -> frozenset[int] | None:
        """The shards this worker owns now; ``None`` while joining or rebalancing."""
        return self._owned

    async def close(self) -> None:
        """Leave the group so the others take the shards over at once (idempotent).

        Waits at most about ``connect_timeout_ms`` for the leave to be sent.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, self.config.connect_timeout_ms / 1000 + 1)
            if thread.is_alive():
                log.warning(
                    "leaving shard group %r at %s did not finish in time",
                    self.config.group_id,
                    self.config.describe(),
                )

    # --- joining ------------------------------------------------------------------------

    def _join(self, ctx: RuntimeContext, shards: int) -> KafkaConsumer:
        config = self.config
        problem = config.unknown_options(KafkaConsumer)
        if problem is not None:
            raise ComponentError.at(ctx, problem)
        settings = config.client_settings(f"onto-{ctx.pipeline}-shards")
        try:
            consumer = KafkaConsumer(
                **settings,
                group_id=config.group_id,
                enable_auto_commit=False,
                session_timeout_ms=config.session_timeout_ms,
                heartbeat_interval_ms=config.heartbeat_interval_ms,
                partition_assignment_strategy=[StickyPartitionAssignor],
            )
        except KafkaError as exc:
            raise ComponentError.at(
                ctx, f"cannot connect to Kafka at {config.describe()}: {config.redact(exc)}"
            ) from exc
        try:
            self._check_topic(ctx, consumer, settings, shards)
            consumer.subscribe(topics=[config.topic], listener=_Ownership(self))
        except BaseException:
            consumer.close(autocommit=False)
            raise
        return consumer

    def _check_topic(
        self, ctx: RuntimeContext, consumer: KafkaConsumer, settings: dict[str, Any], shards: int
    ) -> None:
        """The shard topic exists (created here if allowed) with ``shards`` partitions."""
        config = self.config
        where = f"shard topic {config.topic!r} at {config.describe()}"
        try:
            found = consumer.partitions_for_topic(config.topic)
            if not found:
                if not config.create_topic:
                    raise ComponentError.at(
                        ctx,
                        f"the {where} does not exist: create it with {shards} partitions"
                        " (one per shard), or set create_topic: true",
                    )
                self._create_topic(settings, shards)
                found = consumer.partitions_for_topic(config.topic)
        except KafkaError as exc:
            raise ComponentError.at(
                ctx, f"checking the {where} failed: {config.redact(exc)}"
            ) from exc
        if len(found) != shards:
            raise ComponentError.at(
                ctx,
                f"the {where} has {len(found)} partitions but the workers run {shards} shards"
                " (one partition per shard): name a new topic in `topic` for this shard"
                " count, or delete this one (it holds no data) to have it created anew",
            )

    def _create_topic(self, settings: dict[str, Any], shards: int) -> None:
        config = self.config
        # The admin client refuses settings meant for consumers only.
        admin_settings = {k: v for k, v in settings.items() if k in KafkaAdminClient.DEFAULT_CONFIG}
        admin = KafkaAdminClient(**admin_settings)
        try:
            admin.create_topics([NewTopic(config.topic, shards, config.replication_factor or -1)])
            log.info("created shard topic %s with %d partitions", config.topic, shards)
        except TopicAlreadyExistsError:
            pass  # another worker created it first
        finally:
            admin.close()

    # --- membership (on the coordinator's thread and the client's IO thread) ------------

    def _keep_polling(self, consumer: KafkaConsumer) -> None:
        """Poll until closed: heartbeats and rebalance callbacks run inside poll."""
        try:
            while not self._stop.is_set():
                try:
                    consumer.poll(timeout_ms=_POLL_MS)
                except KafkaError as exc:
                    # The client reconnects and rejoins on its own; the group has moved the
                    # shards if this lasts longer than the session timeout.
                    log.warning(
                        "shard group %r at %s: %s",
                        self.config.group_id,
                        self.config.describe(),
                        exc,
                    )
                    self._stop.wait(_POLL_MS / 1000)
        finally:
            try:
                # Leaving the group lets the others take the shards over without waiting
                # for the session timeout.
                consumer.close(autocommit=False, timeout_ms=self.config.connect_timeout_ms)
            except Exception as exc:
                log.warning(
                    "leaving shard group %r: %s", self.config.group_id, self.config.redact(exc)
                )

    def _assigned(self, partitions: Iterable[TopicPartition]) -> None:
        shards = frozenset(tp.partition for tp in partitions if tp.topic == self.config.topic)
        self._set_owned(shards)
        log.info(
            "owns shards %s of %s",
            ",".join(map(str, sorted(shards))) or "none",
            self.config.topic,
        )

    def _rebalancing(self) -> None:
        # Eager rebalance: every member gives everything up before anyone is assigned
        # anew. Not knowing what it owns, this worker stops emitting (keeping its views)
        # until its assignment arrives, so a shard moving elsewhere never has two owners.
        self._set_owned(None)

    def _lost(self) -> None:
        # Dropped from the group: another member may own these shards already.
        self._set_owned(frozenset())
        log.warning("dropped from shard group %r: owns no shards", self.config.group_id)

    def _set_owned(self, shards: frozenset[int] | None) -> None:
        with self._owned_lock:
            if self._closed or shards == self._owned:
                return
            self._owned = shards
            try:
                self._on_change()
            except Exception:
                log.exception("on_change of the shard coordinator failed")


class _Ownership(ConsumerRebalanceListener):  # type: ignore[misc]
    """Turns the group's rebalance callbacks into ownership changes."""

    def __init__(self, coordinator: KafkaShardCoordinator) -> None:
        self.coordinator = coordinator

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.coordinator._rebalancing()

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.coordinator._assigned(assigned)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.coordinator._lost()
