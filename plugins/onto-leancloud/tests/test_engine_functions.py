"""The ``leanengine_functions`` source: view actions as LeanEngine cloud functions.

Calls go over a real socket with httpx, carrying LeanCloud's app headers the way the SDKs
send them; the meeting room is in a sqlite store.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.meeting_room.models import Ticket
from examples.meeting_room.seed import seed
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import use_datastore
from onto_core.testing import running
from onto_web import get_server

APP_ID = "meeting-app"
APP_KEY = "app-key-for-tests"
MASTER_KEY = "master-key-for-tests"
SESSION = "examples.meeting_room.views:MeetingSession"
USER = "examples.meeting_room.views:UserView"


def signed(key: str, master: bool = False, now_ms: int | None = None) -> str:
    stamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    digest = hashlib.md5((stamp + key).encode()).hexdigest()
    return f"{digest},{stamp}" + (",master" if master else "")


@dataclass
class Functions:
    url: str

    def run(
        self,
        name: str,
        params: Any,
        headers: dict[str, str] | None = None,
        path: str = "/1.1/functions",
    ) -> httpx.Response:
        sent = {"Content-Type": "application/json", "X-LC-Id": APP_ID, "X-LC-Key": APP_KEY}
        if headers is not None:
            sent = {"Content-Type": "application/json", **headers}
        return httpx.post(
            f"{self.url}{path}/{name}", content=json.dumps(params), headers=sent, timeout=20
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    datastore = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    datastore.open()
    seed(datastore)
    yield datastore
    datastore.close()


@pytest.fixture
def serve(store: SqliteDatastore) -> Iterator[Callable[..., Functions]]:
    with ExitStack() as stack:

        def start(**settings: Any) -> Functions:
            source: dict[str, Any] = {
                "type": "leanengine_functions",
                "port": 0,
                "views": [SESSION, USER],
                "app_id": APP_ID,
                "app_key": APP_KEY,
                "master_key": MASTER_KEY,
            }
            source.update(settings)
            config = {
                "pipelines": {
                    "functions": {
                        "source": source,
                        "processors": [{"type": "api"}],
                        "sinks": [{"type": "reply"}],
                    }
                }
            }
            stack.enter_context(running(json.dumps(config), datastore=store))
            return Functions(get_server("127.0.0.1", 0).url)

        yield start


def _attendance(store: SqliteDatastore, ticket_id: str) -> bool:
    with use_datastore(store):
        return Ticket.get(ticket_id).attendance


def test_set_attendance_runs_as_a_cloud_function_and_answers_the_view(
    serve: Callable[..., Functions], store: SqliteDatastore
) -> None:
    functions = serve()
    answer = functions.run("set_attendance", {"key": "meeting-1/joshua", "attending": False})

    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["userId"] == "joshua"
    assert [a["userId"] for a in result["attending"]] == ["thomasina", "tijuana"]
    assert _attendance(store, "meeting-1-joshua") is False


def test_the_key_may_be_sent_as_its_fields_and_every_route_answers(
    serve: Callable[..., Functions], store: SqliteDatastore
) -> None:
    functions = serve()
    params = {"meetingId": "meeting-1", "userId": "tijuana", "attending": False}
    for path in ("/1.1/functions", "/1/functions", "/__engine/1.1/functions", "/1.1/call"):
        params["attending"] = not params["attending"]
        answer = functions.run("meeting_session.set_attendance", params, path=path)
        assert answer.status_code == 200, (path, answer.text)
        assert _attendance(store, "meeting-1-tijuana") is params["attending"], path
    got = functions.run("meeting_session.get", {"meeting_id": "meeting-1", "user_id": "joshua"})
    assert got.json()["result"]["address"] == "9500 Gilman Drive, La Jolla, CA"
    listed = functions.run("meeting_session.list", {"filters": {"userId": "joshua"}})
    assert [v["userId"] for v in listed.json()["result"]] == ["joshua"]


def test_callers_authenticate_with_the_app_key_master_key_or_a_signature(
    serve: Callable[..., Functions],
) -> None:
    functions = serve()
    params = {"key": "meeting-1/joshua"}
    good = [
        {"X-LC-Id": APP_ID, "X-LC-Key": APP_KEY},
        {"X-LC-Id": APP_ID, "X-LC-Key": f"{MASTER_KEY},master"},
        {"X-LC-Id": APP_ID, "X-LC-Sign": signed(APP_KEY)},
        {"X-LC-Id": APP_ID, "X-LC-Sign": signed(MASTER_KEY, master=True)},
    ]
    an_hour_ago = int(time.time() * 1000) - 3_600_000
    bad = [
        {},
        {"X-LC-Id": APP_ID},
        {"X-LC-Id": "other-app", "X-LC-Key": APP_KEY},
        {"X-LC-Id": APP_ID, "X-LC-Key": "wrong"},
        {"X-LC-Id": APP_ID, "X-LC-Key": f"{APP_KEY},master"},  # the app key is no master key
        {"X-LC-Id": APP_ID, "X-LC-Sign": signed("wrong")},
        {"X-LC-Id": APP_ID, "X-LC-Sign": signed(APP_KEY, now_ms=an_hour_ago)},
        {"X-LC-Id": APP_ID, "X-LC-Sign": "garbage"},
    ]
    for headers in good:
        answer = functions.run("meeting_session.get", params, headers=headers)
        assert answer.status_code == 200, (headers, answer.text)
    for headers in bad:
        answer = functions.run("meeting_session.get", params, headers=headers)
        assert answer.status_code == 401, headers
        assert answer.json() == {"code": 401, "error": "Unauthorized."}
        assert APP_KEY not in answer.text
        assert MASTER_KEY not in answer.text


def test_errors_are_leancloud_errors_naming_what_was_wrong(
    serve: Callable[..., Functions], store: SqliteDatastore
) -> None:
    functions = serve()
    unknown = functions.run("fly_away", {})
    bad_type = functions.run("set_attendance", {"key": "meeting-1/joshua", "attending": "yes"})
    missing = functions.run("set_attendance", {"key": "meeting-1/joshua"})
    extra = functions.run("set_attendance", {"key": "meeting-1/joshua", "attending": True, "x": 1})
    no_key = functions.run("set_attendance", {"attending": True})
    no_view = functions.run("set_attendance", {"key": "meeting-9/joshua", "attending": True})
    refused = functions.run("set_in_session", {"key": "meeting-1/joshua", "in_session": True})
    not_json = httpx.post(
        f"{functions.url}/1.1/functions/set_attendance",
        content=b"{nope",
        headers={"X-LC-Id": APP_ID, "X-LC-Key": APP_KEY},
    )

    assert (unknown.status_code, unknown.json()["code"]) == (404, 404)
    assert "fly_away" in unknown.json()["error"]
    assert "set_attendance" in unknown.json()["error"]
    assert (bad_type.status_code, bad_type.json()["code"]) == (400, 1)
    assert bad_type.json()["field"] == "attending"
    assert "attending" in missing.json()["error"]
    assert missing.status_code == 400
    assert extra.json()["field"] == "x"
    assert no_key.status_code == 400
    assert "meetingId and userId" in no_key.json()["error"]
    assert (no_view.status_code, no_view.json()["code"]) == (404, 101)
    assert "meeting-9/joshua" in no_view.json()["error"]
    assert (refused.status_code, refused.json()["code"]) == (400, 142)
    assert "cannot go from in-session to in-session" in refused.json()["error"]
    assert (not_json.status_code, not_json.json()["code"]) == (400, 107)
    assert _attendance(store, "meeting-1-joshua") is True  # nothing ran


def test_bearer_auth_limits_a_caller_to_their_own_views(serve: Callable[..., Functions]) -> None:
    functions = serve(
        auth={"tokens": [{"token": "t-joshua", "principal": "joshua"}], "owner_field": "user_id"}
    )
    keys = {"X-LC-Id": APP_ID, "X-LC-Key": APP_KEY}
    own = functions.run(
        "meeting_session.get",
        {"key": "meeting-1/joshua"},
        headers={**keys, "Authorization": "Bearer t-joshua"},
    )
    other = functions.run(
        "meeting_session.get",
        {"key": "meeting-1/tijuana"},
        headers={**keys, "Authorization": "Bearer t-joshua"},
    )
    none = functions.run("meeting_session.get", {"key": "meeting-1/joshua"}, headers=keys)
    assert own.status_code == 200
    assert (other.status_code, other.json()["code"]) == (403, 119)
    assert (none.status_code, none.json()["code"]) == (401, 401)


def test_without_app_keys_the_functions_stay_on_loopback() -> None:
    from onto_leancloud.engine import LeanEngineFunctionsSource

    with pytest.raises(ValueError, match="not a loopback interface"):
        LeanEngineFunctionsSource.Config(host="0.0.0.0", views=[SESSION])
    keyed = LeanEngineFunctionsSource.Config(
        host="0.0.0.0", views=[SESSION], app_id=APP_ID, app_key=APP_KEY
    )
    assert APP_KEY not in repr(keyed)
