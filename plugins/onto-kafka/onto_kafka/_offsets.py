"""Which offsets of each partition are safe to commit.

Per assigned partition the tracker keeps the offsets delivered and not yet covered by the
commit position, oldest first, and which of them are acked. The commit position is the
first delivered offset that is not acked, or one past the last delivered offset when all
are. Acks may come in any order; a nacked (or never acked) offset holds the position
back, so nothing past an unprocessed message is ever committed. Offsets are compared by
delivery order, never by arithmetic: transaction markers and compaction leave gaps.

Each assignment of a partition gets a new epoch; an ack or nack that names an old epoch is
ignored, so in-flight messages of a partition that moved to another consumer never move
anyone's commit position. A rebalance first suspends the partitions it revokes (nothing
of theirs is committed meanwhile); those the new assignment gives back keep their state
and epoch, the client keeps their fetch position too, and the others are forgotten. A
partition lost without a rebalance (the member was dropped) is forgotten at once.

Thread-safe: acks arrive from the runtime's event loop, deliveries from the polling
thread and revocations from the Kafka client's IO thread.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from kafka import TopicPartition  # type: ignore[import-untyped]

__all__ = ["OffsetTracker", "Position"]


class Position(NamedTuple):
    """Where a delivered message sits: partition, offset and the assignment it came from."""

    partition: TopicPartition
    offset: int
    epoch: int


@dataclass(slots=True)
class _Partition:
    epoch: int
    pending: deque[int] = field(default_factory=deque)  # delivered, not covered by position
    acked: set[int] = field(default_factory=set)  # acked members of pending
    next_offset: int | None = None  # one past the last delivered offset
    committed: int | None = None  # the last position committed
    suspended: bool = False  # revoked by a rebalance that has not assigned anew yet

    def position(self, also_done: Iterable[int] = ()) -> int | None:
        done = self.acked.union(also_done) if also_done else self.acked
        for offset in self.pending:
            if offset not in done:
                return offset
        return self.next_offset


class OffsetTracker:
    """Delivered and acked offsets per partition, and the positions safe to commit."""

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._epochs = itertools.count(1)
        self._stopped = False

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """The rebalance assigned ``partitions`` (the whole assignment).

        Suspended partitions among them resume as they were; the other suspended ones are
        forgotten; new ones start afresh with a new epoch.
        """
        wanted = set(partitions)
        with self._lock:
            for tp, held in list(self._partitions.items()):
                if held.suspended and tp not in wanted:
                    del self._partitions[tp]
            for tp in wanted:
                state = self._partitions.get(tp)
                if state is None:
                    self._partitions[tp] = _Partition(next(self._epochs))
                else:
                    state.suspended = False
            self._lock.notify_all()

    def suspend(self, partitions: Iterable[TopicPartition]) -> None:
        """A rebalance revoked ``partitions``: commit none of them until assigned again."""
        with self._lock:
            for tp in partitions:
                state = self._partitions.get(tp)
                if state is not None:
                    state.suspended = True

    def assigned(self) -> set[TopicPartition]:
        """The partitions tracked now."""
        with self._lock:
            return set(self._partitions)

    def deliver(
        self, partition: TopicPartition, offsets: Iterable[int], through: int | None = None
    ) -> int | None:
        """Record ``offsets`` (ascending) as delivered; their epoch, or None if unassigned.

        ``through``: one past the last offset the delivery covers, when that is beyond the
        last of ``offsets`` (a skipped batch is one message for all its offsets).
        """
        with self._lock:
            state = self._partitions.get(partition)
            if state is None:
                return None
            for offset in offsets:
                if state.next_offset is not None and offset < state.next_offset:
                    continue  # delivered before in this epoch: already tracked
                state.pending.append(offset)
                state.next_offset = offset + 1
            if through is not None and (state.next_offset is None or through > state.next_offset):
                state.next_offset = through
            return state.epoch

    def is_current(self, position: Position) -> bool:
        """Whether ``position`` belongs to the partition's current assignment."""
        with self._lock:
            state = self._partitions.get(position.partition)
            return state is not None and state.epoch == position.epoch

    def ack(self, position: Position) -> bool:
        """Mark ``position`` processed; False (and nothing changes) if its epoch is over."""
        with self._lock:
            state = self._partitions.get(position.partition)
            if state is None or state.epoch != position.epoch:
                return False
            pending, offset = state.pending, position.offset
            if pending and pending[0] == offset:
                pending.popleft()  # the usual case: acks in delivery order
                acked = state.acked
                while pending and pending[0] in acked:
                    acked.discard(pending.popleft())
            elif pending and offset > pending[0]:
                state.acked.add(offset)
            if not pending:
                self._lock.notify_all()
            return True

    def to_commit(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        """Positions that moved past the last commit (of ``partitions``, default all)."""
        with self._lock:
            wanted = self._partitions if partitions is None else partitions
            moved: dict[TopicPartition, int] = {}
            for tp in wanted:
                state = self._partitions.get(tp)
                if state is None or state.suspended:
                    continue
                position = state.position()
                if position is not None and position != state.committed:
                    moved[tp] = position
            return moved

    def positions(self) -> dict[TopicPartition, int | None]:
        """Each tracked partition's position now (``None``: nothing delivered yet)."""
        with self._lock:
            return {tp: state.position() for tp, state in self._partitions.items()}

    def positions_with(self, consumed: Iterable[Position]) -> dict[TopicPartition, int]:
        """Positions of the partitions in ``consumed`` were those messages acked too.

        For a transaction that commits offsets together with the outputs of ``consumed``:
        positions of old epochs are left out, and nothing is marked.
        """
        by_partition: dict[TopicPartition, list[int]] = {}
        with self._lock:
            for pos in consumed:
                state = self._partitions.get(pos.partition)
                if state is not None and state.epoch == pos.epoch:
                    by_partition.setdefault(pos.partition, []).append(pos.offset)
            positions: dict[TopicPartition, int] = {}
            for tp, offsets in by_partition.items():
                position = self._partitions[tp].position(offsets)
                if position is not None:
                    positions[tp] = position
            return positions

    def committed(self, positions: Mapping[TopicPartition, int]) -> None:
        """Record ``positions`` as committed (only ever forward)."""
        with self._lock:
            for tp, position in positions.items():
                state = self._partitions.get(tp)
                if state is not None and (state.committed is None or position > state.committed):
                    state.committed = position

    def wait_settled(self, partitions: Iterable[TopicPartition], timeout: float) -> bool:
        """Wait until every delivered message of ``partitions`` is acked.

        False on timeout, or at once after ``stop_waiting``.
        """
        wanted = list(partitions)
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._stopped:
                busy = [
                    tp
                    for tp in wanted
                    if (state := self._partitions.get(tp)) is not None and state.pending
                ]
                remaining = deadline - time.monotonic()
                if not busy:
                    return True
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return False

    def stop_waiting(self) -> None:
        """End every ``wait_settled`` now and from now on (nothing more will be acked)."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Forget ``partitions`` now: later acks and nacks of their messages are ignored."""
        with self._lock:
            for tp in partitions:
                self._partitions.pop(tp, None)
            self._lock.notify_all()
