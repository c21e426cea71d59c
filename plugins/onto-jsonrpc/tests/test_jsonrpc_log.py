"""What a client can make the server write to its log: a bounded summary, never its body."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Endpoint

BIG = 900_000  # under max_body_bytes (1 MB)


def big_bodies() -> list[str]:
    """Large requests an unauthenticated client might send, each of about BIG bytes."""
    junk = "x" * BIG
    return [
        # Not JSON.
        '{"jsonrpc": "2.0", "id": 1, "method": "' + junk,
        # A call without a token, with large parameters.
        json.dumps(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "user_view.update",
                "params": {"key": "joshua", "organization": junk},
            }
        ),
        # A method name that is not served.
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": junk}),
        # An invalid request object.
        json.dumps({"jsonrpc": "1.0", "id": 1, "method": "user_view.get", "params": [junk]}),
        # A batch of many calls, each invalid.
        json.dumps([1] * (BIG // 3)),
        # Unknown parameters whose names are large.
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rpc.describe", "params": {junk: 1}}),
    ]


def test_large_invalid_requests_grow_the_log_by_a_bounded_amount_each(
    closed: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = len(caplog.text)
    sent = 0
    for body in big_bodies() * 2:
        response = closed.post(None, data=body)
        assert response.status_code < 500
        assert len(response.content) < 10_000, "the answer echoes the request"
        sent += 1
    grown = len(caplog.text) - before
    # A line or two per request (the access log, a summary), never the body or a traceback.
    assert grown <= sent * 1_000, caplog.text[-3_000:]
    assert "xxxxxxxxxx" not in caplog.text
    assert "Traceback" not in caplog.text


def test_a_failed_call_is_logged_as_a_summary_without_a_traceback(
    rpc: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "meeting_session.set_attendance",
        "params": {"key": "meeting-1/joshua", "attending": "secret-value"},
    }
    assert rpc.post(body).json()["error"]["code"] == -32602
    assert "secret-value" not in caplog.text
    assert "Traceback" not in caplog.text
