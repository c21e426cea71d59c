"""Who may call: bearer tokens, and each participant on their own views only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Endpoint

GET_JOSHUA = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "meeting_session.get",
    "params": {"key": "meeting-1/joshua"},
}


def assert_no_view_data(answer: dict[str, Any]) -> None:
    assert "result" not in answer
    assert answer["error"]["data"] is None
    text = str(answer)
    for leaked in ("Pendergrast", "Gilman", "hearingAid", "SDSU"):
        assert leaked not in text


@pytest.mark.parametrize(
    ("token", "says"),
    [(None, "a bearer token is required"), ("t-someone", "the bearer token is not valid")],
)
def test_a_call_without_a_valid_token_is_refused(
    closed: Endpoint, token: str | None, says: str
) -> None:
    response = closed.post(GET_JOSHUA, token)
    assert response.status_code == 401
    answer = response.json()
    assert answer["error"]["code"] == -32001
    assert answer["error"]["message"] == says
    assert_no_view_data(answer)


def test_a_token_is_refused_before_its_params_are_looked_at(closed: Endpoint) -> None:
    answer = closed.call("meeting_session.set_attendance", {"attending": "maybe"})
    assert answer["error"]["code"] == -32001


def test_a_participant_reads_their_own_view(closed: Endpoint) -> None:
    answer = closed.call("meeting_session.get", {"key": "meeting-1/joshua"}, token="t-joshua")
    assert answer["result"]["userId"] == "joshua"


def test_someone_elses_view_is_forbidden_and_shows_nothing(closed: Endpoint) -> None:
    response = closed.post(GET_JOSHUA, "t-tijuana")
    assert response.status_code == 403
    answer = response.json()
    assert answer["error"]["code"] == -32003
    assert answer["error"]["message"] == "tijuana may not read meeting_session 'meeting-1/joshua'"
    assert_no_view_data(answer)


def test_an_action_on_someone_elses_view_is_forbidden_and_changes_nothing(
    closed: Endpoint,
) -> None:
    refused = closed.call(
        "meeting_session.set_attendance",
        {"key": "meeting-1/joshua", "attending": False},
        token="t-tijuana",
    )
    assert refused["error"]["code"] == -32003
    assert_no_view_data(refused)
    own = closed.call("meeting_session.get", ["meeting-1/joshua"], token="t-joshua")["result"]
    assert [a["userId"] for a in own["attending"]] == ["joshua", "thomasina", "tijuana"]


def test_listing_views_keyed_by_their_owner_is_forbidden(closed: Endpoint) -> None:
    answer = closed.call("meeting_session.list", token="t-joshua")
    assert answer["error"]["code"] == -32003
    assert_no_view_data(answer)


def test_in_a_batch_each_call_is_authorized_on_its_own(closed: Endpoint) -> None:
    batch = [
        {**GET_JOSHUA, "id": 1},
        {**GET_JOSHUA, "id": 2, "params": {"key": "meeting-1/tijuana"}},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "user_view.update",
            "params": {"key": "joshua", "organization": "UCSB"},
        },
    ]
    by_id = {a["id"]: a for a in closed.post(batch, "t-joshua").json()}
    assert by_id[1]["result"]["userId"] == "joshua"
    assert by_id[2]["error"]["code"] == -32003
    assert_no_view_data(by_id[2])
    assert by_id[3]["result"]["organization"] == "UCSB"
