"""A hook LeanCloud sent while the app was down is made good by the next start's build.

LeanCloud never calls an after-hook again, so what the app missed reaches the views only
when the view processor builds them at its next start and compares them with what was
delivered. Hook-driven views carry versions from the hooks' arrival times, so that build
must emit above them, or a sink keeping the newest version would ignore it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from examples.meeting_room.models import Ticket
from examples.meeting_room.seed import seed
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import use_datastore
from onto_core.testing import running
from onto_leancloud.double import LeanCloudDouble
from onto_web import get_server

HOOK_KEY = "restart-hook-key"


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def attending(double: LeanCloudDouble) -> dict[str, list[str]]:
    return {
        s["userId"]: [a["userId"] for a in s["attending"]] for s in double.objects("MeetingSession")
    }


def set_attendance(store: SqliteDatastore, attending: bool) -> dict[str, Any]:
    with use_datastore(store):
        ticket = Ticket.get("meeting-1-joshua")
        ticket.attendance = attending
        ticket.save()
    return {"objectId": "meeting-1-joshua", "attendance": attending}


def test_a_change_missed_while_down_reaches_the_views_at_the_next_start(
    leancloud_double: LeanCloudDouble, tmp_path: Path
) -> None:
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    store.open()
    seed(store)
    pipeline = {
        "source": {
            "type": "leanengine",
            "port": 0,
            "hook_key": HOOK_KEY,
            "collections": ["meetings", "tickets", "users", "locations"],
        },
        "processors": [{"type": "view", "view": "examples.meeting_room.views:MeetingSession"}],
        "sinks": [
            {
                "type": "leancloud",
                "class_name": "MeetingSession",
                "server_url": leancloud_double.url,
                "app_id": leancloud_double.app_id,
                "master_key": leancloud_double.master_key,
            }
        ],
    }
    config = json.dumps({"pipelines": {"sessions": pipeline}})
    everyone = ["joshua", "thomasina", "tijuana"]
    try:
        with running(config, datastore=store):
            wait_until(lambda: len(attending(leancloud_double)) == 3, "the first build")
            url = get_server("127.0.0.1", 0).url
            answer = httpx.post(
                f"{url}/1.1/functions/tickets/afterUpdate",
                json={"object": set_attendance(store, False)},
                headers={"X-LC-Hook-Key": HOOK_KEY},
                timeout=20,
            )
            assert answer.json() == {"result": "ok"}
            assert attending(leancloud_double) == {
                user: ["thomasina", "tijuana"] for user in everyone
            }

        store.open()  # the runtime closed it on stopping
        set_attendance(store, True)  # while the app is down: its hook is lost

        with running(config, datastore=store):
            wait_until(
                lambda: attending(leancloud_double) == {user: everyone for user in everyone},
                "the missed change reaching every MeetingSession",
            )
    finally:
        store.close()
