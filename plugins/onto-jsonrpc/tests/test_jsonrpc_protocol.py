"""JSON-RPC 2.0 as the specification says: notifications, batches, request objects, ids.

Driven by ``jsonrpcclient`` (a client this project did not write) where it can build
the request, and by raw ``requests`` for what no client would send.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import requests
from jsonrpcclient import Error, Ok, notification, parse, request

if TYPE_CHECKING:
    from conftest import Endpoint

ATTEND = "meeting_session.set_attendance"


def attendees(rpc: Endpoint) -> list[str]:
    view = rpc.call("meeting_session.get", {"key": "meeting-1/joshua"})["result"]
    return [a["userId"] for a in view["attending"]]


def test_a_client_call_and_notification_round_trip(rpc: Endpoint) -> None:
    answer = parse(
        rpc.post(request("meeting_session.get", params={"key": "meeting-1/joshua"})).json()
    )
    assert isinstance(answer, Ok)
    assert answer.result["userId"] == "joshua"
    refused = parse(rpc.post(request(ATTEND, params=["meeting-1/joshua", "yes"])).json())
    assert isinstance(refused, Error)
    assert refused.code == -32602
    sent = rpc.post(notification(ATTEND, params={"key": "meeting-1/tijuana", "attending": False}))
    assert (sent.status_code, sent.content) == (204, b"")
    assert attendees(rpc) == ["joshua", "thomasina"]


FAILING_NOTIFICATIONS = [
    notification("meeting_session.teleport", params={"key": "meeting-1/joshua"}),
    notification(ATTEND, params={"key": "meeting-1/joshua", "attending": "yes"}),
    notification(ATTEND, params={"key": "meeting-9/nobody", "attending": True}),
    notification("meeting_session.set_in_session", params=["meeting-1/joshua", True]),
    notification("user_view.get", params=["joshua", "extra"]),
]


@pytest.mark.parametrize("body", FAILING_NOTIFICATIONS, ids=lambda b: str(b["method"]))
def test_a_failing_notification_gets_no_answer(rpc: Endpoint, body: dict[str, Any]) -> None:
    response = rpc.post(body)
    assert (response.status_code, response.content) == (204, b"")


def test_a_notification_refused_for_its_token_gets_no_answer_and_changes_nothing(
    closed: Endpoint,
) -> None:
    response = closed.post(notification(ATTEND, params=["meeting-1/joshua", False]))
    assert (response.status_code, response.content) == (204, b"")
    view = closed.call("meeting_session.get", ["meeting-1/joshua"], token="t-joshua")
    assert [a["userId"] for a in view["result"]["attending"]] == [
        "joshua",
        "thomasina",
        "tijuana",
    ]


def test_in_a_batch_only_calls_with_an_id_are_answered(rpc: Endpoint) -> None:
    batch = [
        *FAILING_NOTIFICATIONS,
        request("user_view.get", params=["joshua"], id=1),
        notification(ATTEND, params={"key": "meeting-1/tijuana", "attending": False}),
        request("meeting_session.teleport", id=2),
    ]
    response = rpc.post(batch)
    assert response.status_code == 200
    answers = response.json()
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[0]["result"]["userId"] == "joshua"
    assert answers[1]["error"]["code"] == -32601
    assert attendees(rpc) == ["joshua", "thomasina"]


def test_a_batch_of_failing_notifications_only_gets_no_body(rpc: Endpoint) -> None:
    response = rpc.post(FAILING_NOTIFICATIONS)
    assert (response.status_code, response.content) == (204, b"")


def invalid(rpc: Endpoint, body: Any) -> dict[str, Any]:
    response = rpc.post(body)
    assert response.status_code == 400
    answer: dict[str, Any] = response.json()
    assert answer["jsonrpc"] == "2.0"
    assert answer["error"]["code"] == -32600
    return answer


@pytest.mark.parametrize("version", ["1.0", 2.0, None, "2"])
def test_a_request_of_another_version_is_invalid_and_answered_as_2_0(
    rpc: Endpoint, version: Any
) -> None:
    body = {"jsonrpc": version, "id": 5, "method": "user_view.get", "params": ["joshua"]}
    answer = invalid(rpc, body)
    assert "result" not in answer
    # Without "jsonrpc" it is no 2.0 notification either: still answered.
    del body["jsonrpc"], body["id"]
    assert invalid(rpc, body)["id"] is None


@pytest.mark.parametrize("bad_id", [{"evil": "x" * 100}, ["x" * 100], True, False, 1.5], ids=repr)
def test_an_id_that_is_not_a_string_or_integer_is_invalid_and_never_echoed(
    rpc: Endpoint, bad_id: Any
) -> None:
    answer = invalid(rpc, {"jsonrpc": "2.0", "id": bad_id, "method": "user_view.get"})
    assert answer["id"] is None
    assert "x" * 100 not in json.dumps(answer)
    in_batch = rpc.post([{"jsonrpc": "2.0", "id": bad_id, "method": "user_view.get"}]).json()
    assert [(a["id"], a["error"]["code"]) for a in in_batch] == [(None, -32600)]


def test_an_empty_batch_is_one_invalid_request(rpc: Endpoint) -> None:
    assert invalid(rpc, [])["id"] is None


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 100_000 + "1" + "}" * 100_000,
        '{"jsonrpc": "2.0", "id": 1, "method": "meeting_session.list", "params": {"filters": '
        + '{"a": ' * 500
        + "1"
        + "}" * 502,
        '{"jsonrpc": "2.0", "id": NaN, "method": "user_view.get"}',
    ],
    ids=["arrays", "objects", "deep-params", "nan"],
)
def test_a_body_nested_too_deeply_or_not_json_is_a_parse_error(rpc: Endpoint, body: str) -> None:
    response = rpc.post(None, data=body)
    assert response.status_code == 400
    answer = response.json()
    assert answer == {"jsonrpc": "2.0", "id": None, "error": answer["error"]}
    assert answer["error"]["code"] == -32700
    assert len(response.content) < 500
    # The server keeps serving.
    assert rpc.call("user_view.get", ["joshua"])["result"]["userId"] == "joshua"


def test_a_parse_error_does_not_echo_the_body(rpc: Endpoint) -> None:
    response = requests.post(
        rpc.url,
        data='{"secret": "' + "s" * 10_000,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.json()["error"]["code"] == -32700
    assert "sss" not in response.text


def test_a_batch_larger_than_max_batch_is_one_invalid_request(serve: Any) -> None:
    rpc = serve(max_batch=3)
    ok = rpc.post([request("user_view.get", params=["joshua"], id=i) for i in range(3)])
    assert [a["id"] for a in ok.json()] == [0, 1, 2]
    answer = invalid(rpc, [request("user_view.get", params=["joshua"], id=i) for i in range(4)])
    assert answer["id"] is None
    assert "at most 3" in answer["error"]["data"]["message"]


@pytest.mark.parametrize("attending", ["yes", "true", 0, 1, "1", None, "on"], ids=repr)
def test_a_boolean_parameter_takes_only_true_or_false(rpc: Endpoint, attending: Any) -> None:
    response = rpc.post(request(ATTEND, params={"key": "meeting-1/joshua", "attending": attending}))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32602
    assert error["data"] == {"field": "attending"}
    assert "'attending'" in error["message"]
    by_position = rpc.post(request(ATTEND, params=["meeting-1/joshua", attending])).json()
    assert by_position["error"]["code"] == -32602
    assert attendees(rpc) == ["joshua", "thomasina", "tijuana"]


def test_an_integer_parameter_takes_no_boolean_float_or_string(rpc: Endpoint) -> None:
    for limit in (True, 1.0, "1"):
        error = rpc.call("meeting_session.list", {"limit": limit})["error"]
        assert (error["code"], error["data"]) == (-32602, {"field": "limit"})
