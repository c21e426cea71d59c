"""``Message``: what a connector sees of it, however lazily its parts are made."""

from __future__ import annotations

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
