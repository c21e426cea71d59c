"""What a client sees when a call goes wrong: JSON-RPC error codes naming the problem."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from conftest import Endpoint


def test_malformed_json_is_a_parse_error(rpc: Endpoint) -> None:
    response = rpc.post(None, data='{"jsonrpc": "2.0", "method": ')
    assert response.status_code == 400
    answer = response.json()
    assert answer["id"] is None
    assert answer["error"]["code"] == -32700


def test_a_body_not_sent_as_json_is_a_parse_error(rpc: Endpoint) -> None:
    response = requests.post(rpc.url, data="{}", headers={"Content-Type": "text/plain"}, timeout=10)
    error = response.json()["error"]
    assert error["code"] == -32700
    assert "application/json" in error["data"]["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"jsonrpc": "2.0", "id": 1}, "'method' must be a string"),
        ({"jsonrpc": "2.0", "id": 1, "method": 7}, "'method' must be a string"),
        ({"id": 1, "method": "meeting_session.get"}, "'jsonrpc' must be exactly \"2.0\""),
        ({"jsonrpc": "1.0", "id": 1, "method": "meeting_session.get"}, "'jsonrpc'"),
        (
            {"jsonrpc": "2.0", "id": 1, "method": "meeting_session.get", "params": "meeting-1"},
            "'params' must be an array or an object",
        ),
        ({"jsonrpc": "2.0", "id": [1], "method": "user_view.list"}, "'id' must be"),
        ("meeting_session.get", "a request must be a JSON object"),
    ],
)
def test_an_invalid_request_object_is_refused_saying_what_is_wrong(
    rpc: Endpoint, body: Any, says: str
) -> None:
    response = rpc.post(body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32600
    assert says in error["data"]["message"]


def test_an_empty_batch_and_a_batch_of_non_requests_are_invalid(rpc: Endpoint) -> None:
    empty = rpc.post([]).json()
    assert empty["error"]["code"] == -32600
    answers = rpc.post([1, 2]).json()
    assert [a["error"]["code"] for a in answers] == [-32600, -32600]


def test_an_unknown_method_is_not_found(rpc: Endpoint) -> None:
    answer = rpc.call("meeting_session.teleport", {"key": "meeting-1/joshua"})
    assert answer["error"]["code"] == -32601
    assert "meeting_session.teleport" in answer["error"]["data"]["message"]


def test_a_wrong_type_is_invalid_params_naming_the_parameter(rpc: Endpoint) -> None:
    response = rpc.post(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "meeting_session.set_attendance",
            "params": {"key": "meeting-1/joshua", "attending": "maybe"},
        }
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602
    assert error["data"] == {"field": "attending"}
    assert "'attending'" in error["message"]
    assert "boolean" in error["message"]
    # Nothing changed.
    view = rpc.call("meeting_session.get", {"key": "meeting-1/joshua"})["result"]
    assert view["numHearingAidRequested"] == 2


@pytest.mark.parametrize(
    ("method", "params", "field", "says"),
    [
        (
            "meeting_session.set_attendance",
            {"key": "meeting-1/joshua"},
            "attending",
            "missing required parameter 'attending'",
        ),
        (
            "meeting_session.set_attendance",
            {"key": "meeting-1/joshua", "attending": True, "loudly": True},
            "loudly",
            "unknown parameter 'loudly'",
        ),
        ("meeting_session.get", {"key": 12}, "key", "parameter 'key'"),
        ("meeting_session.get", {"key": ""}, "key", "parameter 'key'"),
        (
            "meeting_session.get",
            ["meeting-1/joshua", "extra"],
            None,
            "takes at most 1 positional parameter(s) (key), got 2",
        ),
        ("meeting_session.list", {"limit": 0}, "limit", "parameter 'limit'"),
        ("meeting_session.list", {"filters": ["userId"]}, "filters", "parameter 'filters'"),
        (
            "meeting_session.list",
            {"filters": {"colour": "red"}},
            "colour",
            "meeting_session has no field 'colour' to filter on",
        ),
        (
            "user_view.update",
            {"key": "joshua", "hearing_aid_requested": "yes"},
            "hearing_aid_requested",
            "parameter 'hearing_aid_requested'",
        ),
    ],
)
def test_bad_params_are_invalid_params_naming_the_field(
    rpc: Endpoint, method: str, params: Any, field: str | None, says: str
) -> None:
    error = rpc.call(method, params)["error"]
    assert error["code"] == -32602
    assert says in error["message"]
    assert error["data"] == ({"field": field} if field else None)


def test_an_unknown_key_is_not_found_naming_it(rpc: Endpoint) -> None:
    response = rpc.post(
        {
            "jsonrpc": "2.0",
            "id": 9,
            "method": "meeting_session.set_attendance",
            "params": {"key": "meeting-9/joshua", "attending": True},
        }
    )
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == -32004
    assert error["message"] == "meeting_session 'meeting-9/joshua' does not exist"
    assert rpc.call("user_view.get", ["nobody"])["error"]["code"] == -32004


def test_an_action_refusing_its_input_is_invalid_params_saying_why(rpc: Endpoint) -> None:
    error = rpc.call("meeting_session.set_in_session", ["meeting-1/joshua", True])["error"]
    assert error["code"] == -32602
    assert "cannot go from in-session to in-session" in error["message"]


def test_an_oversized_body_is_refused_and_the_server_keeps_serving(
    serve: Callable[..., Endpoint],
) -> None:
    rpc = serve(max_body_bytes=2_000)
    big = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "user_view.update",
        "params": {"key": "joshua", "organization": "x" * 5_000},
    }
    response = rpc.post(big)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == -32600
    assert error["data"]["message"] == "the request body is too large (limit: 2000 bytes)"
    # Sent chunked, without a Content-Length: refused the same way.
    chunked = rpc.post(None, data=iter([b'{"jsonrpc": "2.0", "id": 1, "params": "', b"x" * 5_000]))
    assert chunked.status_code == 413
    assert chunked.json()["error"]["code"] == -32600
    small_chunked = rpc.post(
        None,
        data=iter(
            [b'{"jsonrpc": "2.0", "id": 2, "method": "user_view.get", ', b'"params": ["joshua"]}']
        ),
    )
    assert small_chunked.json()["result"]["userId"] == "joshua"
    after = rpc.call("user_view.get", ["joshua"])
    assert after["result"]["organization"] == "SDSU"


def test_no_answer_within_the_timeout_is_a_timeout_error(serve: Callable[..., Endpoint]) -> None:
    # A pipeline without the reply sink never answers.
    rpc = serve(timeout=0.3, sinks=[{"type": "memory", "channel": "jsonrpc-unanswered"}])
    response = rpc.post(
        {"jsonrpc": "2.0", "id": 1, "method": "user_view.get", "params": ["joshua"]}
    )
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == -32054
    assert "within 0.3s" in error["message"]


def test_a_pipeline_that_fails_is_a_server_error_without_its_details(
    serve: Callable[..., Endpoint], caplog: pytest.LogCaptureFixture
) -> None:
    # int() of the request dict raises inside the pipeline, before the api processor.
    rpc = serve(processors=[{"type": "map", "function": "builtins:int"}, {"type": "api"}])
    response = rpc.post({"jsonrpc": "2.0", "id": 1, "method": "user_view.get", "params": ["x"]})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == -32000
    assert (
        error["message"] == "user_view.get: the pipeline could not answer; the server log says why"
    )
    assert error["data"] is None
    assert "int() argument must be" in caplog.text
