"""The ``action`` event: answered through its ack, errors naming what to fix."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from onto_websocket.testing import ViewClient

Serve = Callable[..., contextlib.AbstractContextManager[str]]
Client = Callable[[], ViewClient]
VIEW = "meeting_session"


def test_an_action_answers_with_the_view_after_it(serve: Serve, client: Client) -> None:
    with serve() as url:
        answer = (
            client()
            .connect(url)
            .action(VIEW, "meeting-1/tijuana", "set_attendance", {"attending": False})
        )
    assert answer["status"] == 200
    assert answer["body"]["userId"] == "tijuana"
    assert [a["userId"] for a in answer["body"]["attending"]] == ["joshua", "thomasina"]


def test_a_bad_argument_is_400_naming_the_field(serve: Serve, client: Client) -> None:
    with serve() as url:
        answer = (
            client()
            .connect(url)
            .action(VIEW, "meeting-1/joshua", "set_attendance", {"attending": "maybe"})
        )
    assert answer["status"] == 400
    assert answer["body"]["field"] == "attending"
    assert "attending" in answer["body"]["error"]


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"view": VIEW, "key": "meeting-1/joshua", "action": "explode"}, 404, "action"),
        ({"view": "user_view", "key": "joshua", "action": "update"}, 404, "view"),
        (
            {
                "view": VIEW,
                "key": "meeting-9/joshua",
                "action": "set_attendance",
                "arguments": {"attending": True},
            },
            404,
            None,
        ),
        ({"view": VIEW, "action": "set_attendance"}, 400, "key"),
        ({"view": VIEW, "key": "meeting-1/joshua"}, 400, "action"),
        (
            {"view": VIEW, "key": "meeting-1/joshua", "action": "set_attendance", "arguments": 1},
            400,
            "arguments",
        ),
        (
            {"view": VIEW, "key": "meeting-1/joshua", "action": "set_attendance"},
            400,
            "attending",
        ),
    ],
    ids=[
        "unknown action",
        "view not accepted",
        "unknown key",
        "no key",
        "no action",
        "arguments not an object",
        "missing argument",
    ],
)
def test_a_refused_action_says_why(
    serve: Serve, client: Client, payload: dict[str, Any], status: int, field: str | None
) -> None:
    with serve() as url:
        answer = client().connect(url).call("action", payload)
    assert answer["status"] == status
    assert answer["body"]["field"] == field
    assert answer["body"]["error"]
