"""Calls a client makes: read a view, run an action, list, several in one batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Endpoint


def attendees(view: dict[str, object]) -> list[object]:
    attending = view["attending"]
    assert isinstance(attending, list)
    return [a["userId"] for a in attending]


def test_get_returns_the_view_with_camel_case_fields(rpc: Endpoint) -> None:
    answer = rpc.call("meeting_session.get", {"key": "meeting-1/joshua"})
    assert "error" not in answer
    view = answer["result"]
    assert view["meetingId"] == "meeting-1"
    assert view["userId"] == "joshua"
    assert view["numHearingAidRequested"] == 2
    assert attendees(view) == ["joshua", "thomasina", "tijuana"]


def test_an_action_returns_the_view_afterwards_and_get_shows_it(rpc: Endpoint) -> None:
    done = rpc.call(
        "meeting_session.set_attendance", {"key": "meeting-1/joshua", "attending": False}
    )
    assert attendees(done["result"]) == ["thomasina", "tijuana"]
    # Every participant's view changed, not only the caller's.
    seen_by_tijuana = rpc.call("meeting_session.get", {"key": "meeting-1/tijuana"})["result"]
    assert attendees(seen_by_tijuana) == ["thomasina", "tijuana"]
    assert seen_by_tijuana["numHearingAidRequested"] == 1


def test_params_may_be_given_by_position(rpc: Endpoint) -> None:
    done = rpc.call("meeting_session.set_attendance", ["meeting-1/thomasina", False])
    assert attendees(done["result"]) == ["joshua", "tijuana"]
    profile = rpc.call("user_view.update", ["joshua", "Josh"])["result"]
    assert profile["firstName"] == "Josh"
    assert profile["lastName"] == "Pendergrast"  # optional parameters left out stay as they were


def test_list_filters_by_view_fields_and_limits(rpc: Endpoint) -> None:
    only_tijuana = rpc.call("meeting_session.list", {"filters": {"userId": "tijuana"}})
    assert [v["userId"] for v in only_tijuana["result"]] == ["tijuana"]
    two = rpc.call("meeting_session.list", {"limit": 2})["result"]
    assert len(two) == 2
    everyone = rpc.call("user_view.list")["result"]
    assert sorted(v["userId"] for v in everyone) == ["joshua", "thomasina", "tijuana"]


def test_a_batch_answers_every_call_by_id_and_one_failure_leaves_the_others(
    rpc: Endpoint,
) -> None:
    response = rpc.post(
        [
            {
                "jsonrpc": "2.0",
                "id": "a",
                "method": "meeting_session.get",
                "params": {"key": "meeting-1/joshua"},
            },
            {
                "jsonrpc": "2.0",
                "id": "b",
                "method": "meeting_session.get",
                "params": {"key": "meeting-9/nobody"},
            },
            {
                "jsonrpc": "2.0",
                "id": "c",
                "method": "user_view.update",
                "params": {"key": "tijuana", "organization": "UCLA"},
            },
            {"jsonrpc": "2.0", "id": "d", "method": "meeting_session.explode"},
            {"jsonrpc": "2.0", "id": "e", "method": "user_view.get", "params": ["tijuana"]},
        ]
    )
    assert response.status_code == 200
    by_id = {answer["id"]: answer for answer in response.json()}
    assert sorted(by_id) == ["a", "b", "c", "d", "e"]
    assert by_id["a"]["result"]["userId"] == "joshua"
    assert by_id["b"]["error"]["code"] == -32004
    assert "result" not in by_id["b"]
    assert by_id["c"]["result"]["organization"] == "UCLA"
    assert by_id["d"]["error"]["code"] == -32601
    # Calls run in order: the update in "c" is visible to "e".
    assert by_id["e"]["result"]["organization"] == "UCLA"


def test_a_notification_runs_the_action_and_gets_no_answer(rpc: Endpoint) -> None:
    response = rpc.post(
        {
            "jsonrpc": "2.0",
            "method": "meeting_session.set_attendance",
            "params": {"key": "meeting-1/tijuana", "attending": False},
        }
    )
    assert response.status_code == 204
    assert response.content == b""
    view = rpc.call("meeting_session.get", {"key": "meeting-1/joshua"})["result"]
    assert attendees(view) == ["joshua", "thomasina"]


def test_a_batch_of_notifications_only_gets_no_answer(rpc: Endpoint) -> None:
    response = rpc.post(
        [
            {
                "jsonrpc": "2.0",
                "method": "user_view.update",
                "params": {"key": "joshua", "organization": "UCSB"},
            },
        ]
    )
    assert response.status_code == 204
    assert rpc.call("user_view.get", ["joshua"])["result"]["organization"] == "UCSB"
