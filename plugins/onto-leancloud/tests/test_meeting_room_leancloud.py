"""The meeting room on LeanCloud, end to end: examples/meeting_room/leancloud.yaml as is.

The app's classes are in the LeanCloud double (a local double of LeanCloud's REST API),
which calls onto's LeanEngine hooks after each write as LeanCloud does. Writes and reads
go through the official SDK (its own venv), as a LeanCloud front end's would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_peer import PRELUDE, SdkPeer, double_env

from examples.meeting_room.seed import seed
from onto_core.testing import running
from onto_leancloud.datastore import LeanCloudDatastore
from onto_leancloud.double import LeanCloudDouble
from onto_web import get_server

EXAMPLE = Path(__file__).parents[3] / "examples" / "meeting_room" / "leancloud.yaml"
HOOK_KEY = "meeting-room-hook-key"
DOMAIN_CLASSES = ["meetings", "tickets", "users", "locations"]
HOOKS = ("beforeSave", "beforeUpdate", "afterSave", "afterUpdate", "afterDelete")

READ_SESSIONS = """
found = leancloud.Query("MeetingSession").equal_to("meetingId", "meeting-1").find()
print(json.dumps({
    s.get("userId"): {
        "attending": [a["userId"] for a in s.get("attending")],
        "hearingAids": s.get("numHearingAidRequested"),
        "version": s.get("viewVersion"),
    }
    for s in found
}))
"""


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


@pytest.fixture
def app(
    leancloud_double: LeanCloudDouble, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """The example config running against the double, seeded; the LeanEngine app's URL."""
    env = {
        **double_env(leancloud_double, HOOK_KEY),
        "LEANCLOUD_APP_PORT": "0",
        "ONTO_DEAD_LETTERS": str(tmp_path / "dead.jsonl"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    store = LeanCloudDatastore()
    store.open()
    try:
        seed(store)
    finally:
        store.close()
    with running(EXAMPLE.read_text()):
        url = get_server("127.0.0.1", 0).url
        wait_until(
            lambda: len(leancloud_double.objects("MeetingSession")) == 3,
            "the first build writing every participant's MeetingSession",
        )
        leancloud_double.hook(url, HOOK_KEY, classes=DOMAIN_CLASSES, hooks=HOOKS)
        yield url


def sdk(peer: SdkPeer, double: LeanCloudDouble, body: str) -> Any:
    return peer.run_json(PRELUDE + body, double_env(double, HOOK_KEY))


def test_attendance_saved_through_the_sdk_updates_every_participants_session(
    app: str, sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    before = sdk(sdk_peer, leancloud_double, READ_SESSIONS)
    assert sorted(before) == ["joshua", "thomasina", "tijuana"]
    assert all("joshua" in s["attending"] for s in before.values())

    sdk(
        sdk_peer,
        leancloud_double,
        """
ticket = leancloud.Query("tickets").equal_to("ontoId", "meeting-1-joshua").first()
ticket.set("attendance", False)
ticket.save()
print(json.dumps(ticket.id))
""",
    )
    leancloud_double.wait_for_hooks()  # each after-hook is answered once onto delivered

    after = sdk(sdk_peer, leancloud_double, READ_SESSIONS)
    assert sorted(after) == ["joshua", "thomasina", "tijuana"]
    for user, session in after.items():
        assert session["attending"] == ["thomasina", "tijuana"], user
        assert session["hearingAids"] == 1, user
        assert session["version"] > before[user]["version"], user
    assert len(leancloud_double.objects("MeetingSession")) == 3  # updated, not added


def test_a_cloud_function_from_the_sdk_changes_attendance_and_every_session_follows(
    app: str, sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    result = sdk(
        sdk_peer,
        leancloud_double,
        """
result = leancloud.cloud.run("set_attendance", key="meeting-1/tijuana", attending=False)
print(json.dumps(result))
""",
    )
    assert [a["userId"] for a in result["attending"]] == ["joshua", "thomasina"]
    # onto's write went to LeanCloud, whose afterUpdate hook recomputed the sessions.
    leancloud_double.wait_for_hooks()
    after = sdk(sdk_peer, leancloud_double, READ_SESSIONS)
    assert {user: s["attending"] for user, s in after.items()} == {
        user: ["joshua", "thomasina"] for user in ("joshua", "thomasina", "tijuana")
    }


def test_a_ticket_the_domain_model_refuses_is_rejected_before_it_is_saved(
    app: str, sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble
) -> None:
    refused = sdk(
        sdk_peer,
        leancloud_double,
        """
ticket = leancloud.Object.create("tickets", attendance=True, role="guest")  # no user
try:
    ticket.save()
    print(json.dumps(None))
except leancloud.LeanCloudError as exc:
    print(json.dumps({"code": exc.code, "error": exc.error}))
""",
    )
    assert refused["code"] == 142
    assert "user: Field required" in refused["error"]
    assert [t for t in leancloud_double.objects("tickets") if t.get("role") == "guest"] == []
