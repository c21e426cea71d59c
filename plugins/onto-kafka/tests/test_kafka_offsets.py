"""The commit position never passes an unprocessed message, whatever the ack order."""

from __future__ import annotations

import threading

from kafka import TopicPartition

from onto_kafka import OffsetTracker, Position

TP = TopicPartition("orders", 0)
OTHER = TopicPartition("orders", 1)


def delivered(
    tracker: OffsetTracker, offsets: list[int], tp: TopicPartition = TP
) -> list[Position]:
    epoch = tracker.deliver(tp, offsets)
    assert epoch is not None
    return [Position(tp, offset, epoch) for offset in offsets]


def test_the_position_stops_at_the_first_unacked_offset_with_acks_out_of_order() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    first, second, third = delivered(tracker, [0, 1, 2])
    tracker.ack(third)
    tracker.ack(second)
    assert tracker.to_commit() == {TP: 0}  # 0 is still in flight
    tracker.ack(first)
    assert tracker.to_commit() == {TP: 3}
    tracker.committed({TP: 3})
    assert tracker.to_commit() == {}  # nothing new since


def test_a_nacked_message_holds_the_position_until_it_is_acked() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    messages = delivered(tracker, [10, 11, 12])
    tracker.ack(messages[0])
    tracker.ack(messages[2])  # 11 failed and waits to be delivered again
    assert tracker.to_commit() == {TP: 11}
    tracker.ack(messages[1])
    assert tracker.to_commit() == {TP: 13}


def test_gaps_left_by_transaction_markers_do_not_hold_the_position() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    for position in delivered(tracker, [0, 1, 3, 5]):  # 2 and 4 are commit markers
        tracker.ack(position)
    assert tracker.to_commit() == {TP: 6}


def test_acks_of_a_forgotten_partition_change_nothing() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP, OTHER])
    (stale,) = delivered(tracker, [4])
    (kept,) = delivered(tracker, [7], OTHER)
    tracker.forget([TP])
    assert tracker.ack(stale) is False
    assert tracker.is_current(stale) is False
    tracker.assign([TP, OTHER])  # assigned again later: a new epoch, nothing carried over
    assert tracker.ack(stale) is False
    assert tracker.ack(kept) is True
    assert tracker.to_commit() == {OTHER: 8}


def test_a_rebalance_keeps_partitions_given_back_and_drops_the_others() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP, OTHER])
    (mine,) = delivered(tracker, [3])
    (theirs,) = delivered(tracker, [9], OTHER)
    tracker.suspend([TP, OTHER])
    assert tracker.to_commit() == {}  # nothing is committed while the group rebalances
    tracker.assign([TP])  # OTHER went to another member
    assert tracker.ack(mine) is True
    assert tracker.ack(theirs) is False
    assert tracker.to_commit() == {TP: 4}
    assert tracker.assigned() == {TP}


def test_positions_for_a_transaction_count_its_messages_without_acking_them() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP, OTHER])
    a0, a1, a2 = delivered(tracker, [0, 1, 2])
    (b0,) = delivered(tracker, [5], OTHER)
    tracker.ack(a0)
    assert tracker.positions_with([a2, b0]) == {TP: 1, OTHER: 6}  # 1 is not done yet
    assert tracker.positions_with([a1, a2]) == {TP: 3}
    assert tracker.to_commit() == {TP: 1, OTHER: 5}  # nothing was marked


def test_waiting_for_in_flight_messages_ends_when_they_are_acked_or_on_timeout() -> None:
    tracker = OffsetTracker()
    tracker.assign([TP])
    (only,) = delivered(tracker, [0])
    assert tracker.wait_settled([TP], 0.05) is False
    acker = threading.Timer(0.05, tracker.ack, args=(only,))
    acker.start()
    assert tracker.wait_settled([TP], 10) is True
    acker.join()
