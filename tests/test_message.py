"""``Message``: what a connector sees of it, however lazily its parts are made."""

from __future__ import annotations

import time

from onto_core.protocols import Message


def test_an_id_is_drawn_once_and_differs_between_messages() -> None:
    first, second = Message({"n": 1}), Message({"n": 1})
    assert first.id == first.id
    assert first.id != second.id
    assert Message(1, id="order-7").id == "order-7"


def test_headers_start_empty_and_belong_to_their_message() -> None:
    message = Message(1, key="k", channel="orders", offset=3)
    assert message.headers == {}
    message.headers["trace"] = "abc"
    derived = message.derive(2)
    derived.headers["trace"] = "changed"
    assert message.headers == {"trace": "abc"}
    assert Message(1).derive(2).headers == {}


def test_derive_keeps_key_channel_and_time_with_a_new_id_and_no_offset() -> None:
    message = Message(1, key="k", channel="orders", timestamp=12.5, offset=3)
    derived = message.derive(2)
    assert (derived.value, derived.key, derived.channel, derived.timestamp) == (
        2,
        "k",
        "orders",
        12.5,
    )
    assert derived.offset is None
    assert derived.id != message.id
    assert message.derive(3, key="other", id="x").key == "other"
    assert message.derive(3, id="x").id == "x"


def test_messages_compare_by_every_field_and_show_them() -> None:
    one = Message({"n": 1}, key="k", id="a", timestamp=1.0)
    assert one == Message({"n": 1}, key="k", id="a", headers={}, timestamp=1.0)
    assert one != Message({"n": 2}, key="k", id="a", timestamp=1.0)
    assert one != Message({"n": 1}, key="k", id="b", timestamp=1.0)
    assert repr(one) == (
        "Message(value={'n': 1}, key='k', id='a', headers={}, channel=None, "
        "timestamp=1.0, offset=None)"
    )


def test_wrap_all_makes_what_message_makes_and_keeps_messages_as_they_are() -> None:
    ready = Message("ready", key="k", id="r")
    before = time.time()
    wrapped = Message.wrap_all([{"n": 1}, ready, None])
    assert wrapped[1] is ready
    for message, value in ((wrapped[0], {"n": 1}), (wrapped[2], None)):
        assert type(message) is Message
        assert message.value == value
        assert before <= message.timestamp <= time.time()
        made = Message(value, id=message.id, timestamp=message.timestamp)
        assert message == made
    assert wrapped[0].id != wrapped[2].id
    wrapped[0].headers["a"] = "1"
    assert wrapped[2].headers == {}


def test_derive_each_is_derive_for_each_pair_and_none_for_none() -> None:
    first = Message(1, key="a", channel="c", timestamp=2.0, offset=5)
    first.headers["h"] = "1"
    second = Message(2, key="b")
    one, none = Message.derive_each([first, second], [10, None])
    assert none is None
    assert one is not None
    alone = first.derive(10)
    assert (one.value, one.key, one.channel, one.timestamp, one.offset, one.headers) == (
        alone.value,
        alone.key,
        alone.channel,
        alone.timestamp,
        alone.offset,
        alone.headers,
    )
    assert one.id not in (first.id, alone.id)
    one.headers["h"] = "changed"
    assert first.headers == {"h": "1"}
