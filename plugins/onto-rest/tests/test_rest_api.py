"""The REST routes over a real server: reads, lists, PATCH, actions, and every bad request."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests

from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.testing import running

ServeRest = Callable[..., contextlib.AbstractContextManager[str]]
JOSHUA = "/meeting_session/meeting-1/joshua"
JSON = {"Content-Type": "application/json"}
SESSION = "examples.meeting_room.views:MeetingSession"
USER = "examples.meeting_room.views:UserView"


def attendees(view: dict[str, Any]) -> list[str]:
    return [a["userId"] for a in view["attending"]]


def assert_still_serving(url: str) -> None:
    answer = requests.get(f"{url}{JOSHUA}", timeout=10)
    assert answer.status_code == 200
    assert answer.json()["userId"] == "joshua"


def test_read_returns_the_view_as_json(rest: str) -> None:
    answer = requests.get(f"{rest}{JOSHUA}", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    view = answer.json()
    assert view["meetingId"] == "meeting-1"
    assert view["userId"] == "joshua"
    assert view["status"] == "in-session"
    assert attendees(view) == ["joshua", "thomasina", "tijuana"]
    assert view["numHearingAidRequested"] == 2


def test_patch_updates_the_user_and_a_later_read_shows_it(rest: str) -> None:
    patched = requests.patch(
        f"{rest}/user_view/joshua",
        json={"first_name": "Josh", "organization": "UCLA"},
        timeout=10,
    )
    assert patched.status_code == 200
    assert patched.json()["displayName"] == "Josh Pendergrast"
    again = requests.get(f"{rest}/user_view/joshua", timeout=10).json()
    assert again["firstName"] == "Josh"
    assert again["organization"] == "UCLA"
    assert again["lastName"] == "Pendergrast"  # not given, so unchanged


def test_set_attendance_action_changes_every_participants_session(rest: str) -> None:
    done = requests.post(f"{rest}{JOSHUA}/set_attendance", json={"attending": False}, timeout=10)
    assert done.status_code == 200
    assert attendees(done.json()) == ["thomasina", "tijuana"]
    tijuana = requests.get(f"{rest}/meeting_session/meeting-1/tijuana", timeout=10).json()
    assert attendees(tijuana) == ["thomasina", "tijuana"]
    assert tijuana["numHearingAidRequested"] == 1


def test_list_filters_by_camel_case_fields_and_limits(rest: str) -> None:
    only = requests.get(f"{rest}/meeting_session", params={"userId": "tijuana"}, timeout=10)
    assert only.status_code == 200
    assert [v["userId"] for v in only.json()] == ["tijuana"]
    ucsd = requests.get(f"{rest}/user_view", params={"organization": "UCSD"}, timeout=10).json()
    assert sorted(v["userId"] for v in ucsd) == ["thomasina", "tijuana"]
    in_session = requests.get(
        f"{rest}/meeting_session", params={"inSession": "true", "limit": "2"}, timeout=10
    )
    assert len(in_session.json()) == 2
    assert requests.get(f"{rest}/user_view", params={"userId": "nobody"}, timeout=10).json() == []


def test_an_action_without_arguments_may_have_an_empty_body(rest: str) -> None:
    done = requests.post(f"{rest}/user_view/joshua/update", timeout=10)
    assert done.status_code == 200
    assert done.json()["firstName"] == "Joshua"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"]
)
def test_a_body_that_is_not_sent_as_json_is_415_and_runs_nothing(
    rest: str, content_type: str
) -> None:
    # What a cross-site form or a no-cors fetch can send without a CORS preflight.
    refused = requests.patch(
        f"{rest}/user_view/joshua",
        data=b'{"last_name": "Pender"}',
        headers={"Content-Type": content_type},
        timeout=10,
    )
    assert refused.status_code == 415
    assert "Content-Type: application/json" in refused.json()["error"]
    assert requests.get(f"{rest}/user_view/joshua", timeout=10).json()["lastName"] != "Pender"


def test_json_media_types_are_read(rest: str) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        done = requests.patch(
            f"{rest}/user_view/joshua",
            data=b'{"last_name": "Pender"}',
            headers={"Content-Type": content_type},
            timeout=10,
        )
        assert done.status_code == 200, done.text


BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int, str | None, str]] = [
    # (case, method, path, requests kwargs, status, field, words in the error)
    (
        "malformed JSON",
        "POST",
        f"{JOSHUA}/set_attendance",
        {"data": b'{"attending": tru', "headers": {"Content-Type": "application/json"}},
        400,
        None,
        "not valid JSON",
    ),
    (
        "NaN is not JSON",
        "PATCH",
        "/user_view/joshua",
        {"data": b'{"first_name": NaN}', "headers": JSON},
        400,
        None,
        "NaN",
    ),
    (
        "body not an object",
        "POST",
        f"{JOSHUA}/set_attendance",
        {"json": [True]},
        400,
        None,
        "JSON object",
    ),
    ("body a string", "PATCH", "/user_view/joshua", {"json": "Josh"}, 400, None, "not a string"),
    (
        "not UTF-8",
        "PATCH",
        "/user_view/joshua",
        {"data": b'{"first_name": "\xff"}', "headers": JSON},
        400,
        None,
        "JSON",
    ),
    (
        "wrong type",
        "POST",
        f"{JOSHUA}/set_attendance",
        {"json": {"attending": "maybe"}},
        400,
        "attending",
        "boolean",
    ),
    (
        "missing argument",
        "POST",
        f"{JOSHUA}/set_attendance",
        {"json": {}},
        400,
        "attending",
        "required",
    ),
    (
        "unknown argument",
        "PATCH",
        "/user_view/joshua",
        {"json": {"first_name": "Josh", "colour": "red"}},
        400,
        "colour",
        "not permitted",
    ),
    ("unknown filter", "GET", "/user_view?colour=red", {}, 400, "colour", "no field 'colour'"),
    (
        "bad filter value",
        "GET",
        "/meeting_session?inSession=perhaps",
        {},
        400,
        "inSession",
        "boolean",
    ),
    ("bad limit", "GET", "/user_view?limit=none", {}, 400, "limit", "positive integer"),
    ("zero limit", "GET", "/user_view?limit=0", {}, 400, "limit", "positive integer"),
    ("repeated filter", "GET", "/user_view?userId=a&userId=b", {}, 400, "userId", "2 times"),
    ("unknown view", "GET", "/meeting_room/meeting-1", {}, 404, None, "nothing is served"),
    ("unknown key", "GET", "/meeting_session/meeting-9/joshua", {}, 404, None, "does not exist"),
    ("unknown user", "PATCH", "/user_view/nobody", {"json": {}}, 404, None, "does not exist"),
    ("short key", "GET", "/meeting_session/meeting-1", {}, 404, None, "2 part(s)"),
    ("empty key part", "GET", "/meeting_session/meeting-1/", {}, 404, None, "not a key"),
    ("unknown action", "POST", f"{JOSHUA}/dance", {"json": {}}, 404, "action", "no action 'dance'"),
    ("DELETE", "DELETE", "/user_view/joshua", {}, 405, None, "not allowed"),
    ("PUT on a list", "PUT", "/user_view", {}, 405, None, "not allowed"),
    ("GET on an action", "GET", f"{JOSHUA}/set_attendance", {}, 405, None, "POST"),
    ("POST without action", "POST", JOSHUA, {"json": {}}, 405, None, "needs an action"),
    (
        "PATCH without an update action",
        "PATCH",
        JOSHUA,
        {"json": {"attending": False}},
        405,
        None,
        "no update action",
    ),
    (
        "refused by the action",
        "POST",
        f"{JOSHUA}/set_in_session",
        {"json": {"in_session": True}},
        422,  # a rule of the action (onto_core's api processor decides the status)
        None,
        "cannot go from in-session to in-session",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field", "words"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_a_json_error_naming_the_problem_and_the_server_keeps_serving(
    shared_rest: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    field: str | None,
    words: str,
) -> None:
    answer = requests.request(method, f"{shared_rest}{path}", timeout=10, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.json()
    assert set(error) == {"error", "field"}
    assert error["field"] == field
    assert words in error["error"]
    assert_still_serving(shared_rest)


def test_method_errors_say_which_methods_are_allowed(shared_rest: str) -> None:
    rest = shared_rest
    on_action = requests.get(f"{rest}{JOSHUA}/set_attendance", timeout=10)
    assert on_action.headers["Allow"] == "OPTIONS, POST"
    on_session = requests.patch(f"{rest}{JOSHUA}", json={}, timeout=10)
    assert on_session.headers["Allow"] == "GET, HEAD, OPTIONS"
    on_user = requests.post(f"{rest}/user_view/joshua", json={}, timeout=10)
    assert on_user.headers["Allow"] == "GET, HEAD, OPTIONS, PATCH"
    on_list = requests.delete(f"{rest}/user_view", timeout=10)
    assert set(on_list.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    put_on_user = requests.put(f"{rest}/user_view/joshua", json={}, timeout=10)
    assert put_on_user.status_code == 405
    assert put_on_user.headers["Allow"] == "GET, HEAD, OPTIONS, PATCH"


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/user_view", "GET, HEAD, OPTIONS"),
        ("/user_view/joshua", "GET, HEAD, OPTIONS, PATCH"),
        ("/user_view/joshua/update", "OPTIONS, POST"),
        (JOSHUA, "GET, HEAD, OPTIONS"),
        (f"{JOSHUA}/set_attendance", "OPTIONS, POST"),
    ],
)
def test_options_lists_exactly_the_methods_the_path_accepts(
    shared_rest: str, path: str, allowed: str
) -> None:
    answer = requests.options(f"{shared_rest}{path}", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Allow"] == allowed
    for method in {"GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "DELETE"} - set(
        allowed.split(", ")
    ):
        refused = requests.request(method, f"{shared_rest}{path}", json={}, timeout=10)
        assert refused.status_code == 405, method
        assert refused.headers["Allow"] == allowed


def test_a_rebound_or_cross_site_request_gets_no_data_and_runs_nothing(rest: str) -> None:
    port = rest.rsplit(":", 1)[1]
    rebound = requests.get(
        f"{rest}/user_view/joshua",
        headers={"Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}"},
        timeout=10,
    )
    assert rebound.status_code == 403
    assert "Joshua" not in rebound.text
    assert "Access-Control-Allow-Origin" not in rebound.headers
    csrf = requests.post(
        f"{rest}{JOSHUA}/set_attendance",
        data=b'{"attending": false}',
        headers={"Origin": "https://evil.example", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert csrf.status_code == 403
    assert "joshua" in attendees(requests.get(f"{rest}{JOSHUA}", timeout=10).json())


def test_a_body_over_max_body_bytes_is_413(serve_rest: ServeRest) -> None:
    with serve_rest(max_body_bytes=200) as url:
        big = {"first_name": "J" * 500}
        answer = requests.patch(f"{url}/user_view/joshua", json=big, timeout=10)
        assert answer.status_code == 413
        assert answer.json() == {
            "error": "the request body is larger than the 200 bytes this endpoint accepts",
            "field": None,
        }
        chunked = requests.patch(
            f"{url}/user_view/joshua",
            data=iter([b'{"first_name": "', b"J" * 500, b'"}']),  # no Content-Length
            headers=JSON,
            timeout=10,
        )
        assert chunked.status_code == 413, chunked.text
        exactly = b'{"first_name": "' + b"J" * 182 + b'"}'
        assert len(exactly) == 200
        at_limit = requests.patch(f"{url}/user_view/joshua", data=exactly, headers=JSON, timeout=10)
        assert at_limit.json()["firstName"] == "J" * 182


def test_a_pipeline_that_never_answers_gives_504_within_the_timeout(serve_rest: ServeRest) -> None:
    # A memory sink instead of the reply sink: the request is processed but never answered.
    with serve_rest(sinks=[{"type": "memory", "channel": "rest-unanswered"}], timeout=0.3) as url:
        answer = requests.get(f"{url}{JOSHUA}", timeout=10)
        assert answer.status_code == 504
        assert answer.json() == {
            "error": "no answer within 0.3s (the 'timeout' setting); is the pipeline overloaded, "
            "or does it not end with the api processor and reply sink?",
            "field": None,
        }
        assert answer.elapsed.total_seconds() < 5


def test_a_prefix_moves_every_route(serve_rest: ServeRest) -> None:
    with serve_rest(prefix="api/v1/") as url:
        assert requests.get(f"{url}/api/v1{JOSHUA}", timeout=10).status_code == 200
        assert requests.get(f"{url}{JOSHUA}", timeout=10).status_code == 404
        paths = requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]
        assert "/api/v1/meeting_session/{meetingId}/{userId}" in paths


def test_views_of_two_rest_components_share_one_server_and_one_document(
    store: SqliteDatastore, port: int
) -> None:
    pipeline = {"processors": [{"type": "api"}], "sinks": [{"type": "reply"}]}
    config = {
        "pipelines": {
            "sessions": {"source": {"type": "rest", "port": port, "views": [SESSION]}, **pipeline},
            "users": {
                "source": {"type": "rest", "port": port, "views": [USER], "prefix": "/people"},
                **pipeline,
            },
        }
    }
    with running(json.dumps(config), datastore=store):
        url = f"http://127.0.0.1:{port}"
        assert requests.get(f"{url}{JOSHUA}", timeout=10).status_code == 200
        assert requests.get(f"{url}/people/user_view/joshua", timeout=10).status_code == 200
        paths = requests.get(f"{url}/openapi.json", timeout=10).json()["paths"]
        assert "/meeting_session/{meetingId}/{userId}" in paths
        assert "/people/user_view/{userId}" in paths
