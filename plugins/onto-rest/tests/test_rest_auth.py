"""Bearer tokens on the REST routes: who may read and act on which view."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest
import requests

ServeRest = Callable[..., contextlib.AbstractContextManager[str]]
JOSHUA = {"Authorization": "Bearer t-joshua"}
THOMASINA = {"Authorization": "Bearer t-thomasina"}
TOKENS = {
    "tokens": [
        {"token": "t-joshua", "principal": "joshua"},
        {"token": "t-thomasina", "principal": "thomasina"},
    ]
}


@pytest.fixture
def secured(serve_rest: ServeRest) -> Iterator[str]:
    with serve_rest(auth=TOKENS) as url:
        yield url


def assert_refused(answer: requests.Response, status: int) -> None:
    """A refusal carries the error and no view data."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"error", "field"}
    assert "Pendergrast" not in answer.text  # nothing of the view leaks into the error
    assert "Manning" not in answer.text


def test_without_a_token_every_route_is_401_with_a_bearer_challenge(secured: str) -> None:
    for method, path in [
        ("GET", "/meeting_session/meeting-1/joshua"),
        ("GET", "/meeting_session"),
        ("PATCH", "/user_view/joshua"),
        ("POST", "/meeting_session/meeting-1/joshua/set_attendance"),
    ]:
        answer = requests.request(method, f"{secured}{path}", json={}, timeout=10)
        assert_refused(answer, 401)
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert answer.json()["error"] == "a bearer token is required"


def test_an_unknown_token_is_401_invalid_token(secured: str) -> None:
    answer = requests.get(
        f"{secured}/user_view/joshua", headers={"Authorization": "Bearer guess"}, timeout=10
    )
    assert_refused(answer, 401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_a_participant_reads_their_own_session_but_not_anothers(secured: str) -> None:
    own = requests.get(f"{secured}/meeting_session/meeting-1/joshua", headers=JOSHUA, timeout=10)
    assert own.status_code == 200
    assert own.json()["userId"] == "joshua"
    other = requests.get(
        f"{secured}/meeting_session/meeting-1/thomasina", headers=JOSHUA, timeout=10
    )
    assert_refused(other, 403)
    assert other.json()["error"] == "joshua may not read meeting_session 'meeting-1/thomasina'"


def test_a_participant_cannot_change_someone_elses_attendance_or_profile(secured: str) -> None:
    action = requests.post(
        f"{secured}/meeting_session/meeting-1/thomasina/set_attendance",
        json={"attending": False},
        headers=JOSHUA,
        timeout=10,
    )
    assert_refused(action, 403)
    patch = requests.patch(
        f"{secured}/user_view/thomasina", json={"first_name": "Tom"}, headers=JOSHUA, timeout=10
    )
    assert_refused(patch, 403)
    theirs = requests.get(
        f"{secured}/meeting_session/meeting-1/thomasina", headers=THOMASINA, timeout=10
    ).json()
    assert "thomasina" in [a["userId"] for a in theirs["attending"]]
    profile = requests.get(f"{secured}/user_view/thomasina", headers=THOMASINA, timeout=10)
    assert profile.json()["firstName"] == "Thomasina"


def test_a_participant_changes_their_own_attendance(secured: str) -> None:
    done = requests.post(
        f"{secured}/meeting_session/meeting-1/joshua/set_attendance",
        json={"attending": False},
        headers=JOSHUA,
        timeout=10,
    )
    assert done.status_code == 200
    assert "joshua" not in [a["userId"] for a in done.json()["attending"]]


def test_listing_views_owned_per_user_is_refused(secured: str) -> None:
    answer = requests.get(f"{secured}/user_view", headers=JOSHUA, timeout=10)
    assert_refused(answer, 403)
    assert answer.json()["error"] == "joshua may only list their own user_view"


def test_auth_is_checked_before_the_body_is_read(secured: str) -> None:
    answer = requests.patch(
        f"{secured}/user_view/joshua",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert_refused(answer, 401)


def test_the_document_and_docs_stay_public_and_declare_bearer_auth(secured: str) -> None:
    document = requests.get(f"{secured}/openapi.json", timeout=10).json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    read = document["paths"]["/user_view/{userId}"]["get"]
    assert read["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(read["responses"])
    assert requests.get(f"{secured}/apidocs", timeout=10).status_code == 200
