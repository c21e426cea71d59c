"""onto's LeanEngine endpoints with the official SDK (3.0.2, in its own venv) as the peer.

Writes go through the SDK to the LeanCloud double, which calls the LeanEngine app's hooks
the way LeanCloud does; the app is onto, or, to hold the double to what the SDK's own
LeanEngine expects, the SDK's ``leancloud.Engine`` served from the peer venv.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from sdk_peer import PRELUDE, SdkPeer, double_env

from examples.meeting_room.models import Ticket
from examples.meeting_room.seed import seed
from onto_core.builtin.memory import channel, drop_channels
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import use_datastore
from onto_core.testing import running
from onto_leancloud.double import HookCall, LeanCloudDouble
from onto_web import get_server

HOOK_KEY = "sdk-peer-hook-key"
AFTER_HOOKS = ("afterSave", "afterUpdate", "afterDelete")
# The hooks the SDK engine below registers: LeanCloud calls only those an app declares.
ENGINE_HOOKS = ("beforeSave", *AFTER_HOOKS)
CLASSES = {"Ticket": "tickets", "Place": "places", "_User": "users"}


@pytest.fixture
def onto(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], str]]:
    """``onto(pipelines)``: runs the pipelines on a sqlite store; the web server's URL."""
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    store.open()
    seed(store)
    with ExitStack() as stack:
        stack.callback(store.close)
        stack.callback(drop_channels)

        def start(pipelines: dict[str, Any]) -> str:
            config = json.dumps({"pipelines": pipelines})
            stack.enter_context(running(config, datastore=store))
            return get_server("127.0.0.1", 0).url

        start.store = store  # type: ignore[attr-defined]
        yield start


def hook_pipeline(**settings: Any) -> dict[str, Any]:
    source = {"type": "leanengine", "port": 0, "hook_key": HOOK_KEY, "classes": CLASSES}
    source.update(settings)
    return {"source": source, "sinks": [{"type": "memory", "channel": "sdk-changes"}]}


def sdk(peer: SdkPeer, double: LeanCloudDouble, body: str) -> Any:
    return peer.run_json(PRELUDE + body, double_env(double, HOOK_KEY))


SAVE_UPDATE_DELETE = """
user = leancloud.Object.create("_User", username="joshua")
user.save()
place = leancloud.Object.create("Place", name="Hall")
place.set("where", leancloud.GeoPoint(32.88, -117.24))
place.set("opensAt", datetime.datetime(2026, 11, 30, 9, 0, 0, 123000, tzinfo=tz.tzutc()))
place.set("owner", user)
place.save()
place.set("name", "Great Hall")
place.save()
place.destroy()
print(json.dumps({"place": place.id, "user": user.id}))
"""
SDK_IMPORTS = "import datetime\nfrom dateutil import tz\n"


def test_writes_through_the_sdk_reach_onto_as_changes_field_for_field(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble, onto: Callable[..., str]
) -> None:
    url = onto({"changes": hook_pipeline()})
    leancloud_double.hook(url, HOOK_KEY, classes=["Place"], hooks=AFTER_HOOKS)

    ids = sdk(sdk_peer, leancloud_double, SDK_IMPORTS + SAVE_UPDATE_DELETE)
    leancloud_double.wait_for_hooks()

    assert [(c.hook, c.status) for c in leancloud_double.hook_calls] == [
        ("afterSave", 200),
        ("afterUpdate", 200),
        ("afterDelete", 200),
    ]
    changes = channel("sdk-changes").values()
    assert [(c["collection"], c["docId"], c["op"]) for c in changes] == [
        ("places", ids["place"], "create"),
        ("places", ids["place"], "update"),
        ("places", ids["place"], "delete"),
    ]
    created = changes[0]["data"]
    assert created["name"] == "Hall"
    assert created["where"] == {"latitude": 32.88, "longitude": -117.24}
    assert created["opensAt"] == "2026-11-30T09:00:00.123Z"
    assert created["owner"] == f"users/{ids['user']}"
    assert not {"objectId", "createdAt", "updatedAt", "className", "__after"} & set(created)
    assert changes[1]["data"]["name"] == "Great Hall"
    assert changes[2]["data"] is None
    assert changes[0]["seq"] < changes[1]["seq"] < changes[2]["seq"]


def test_a_before_save_rejection_reaches_the_sdk_client_as_error_142(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble, onto: Callable[..., str]
) -> None:
    url = onto({"changes": hook_pipeline(validate=["examples.meeting_room.models:Ticket"])})
    leancloud_double.hook(url, HOOK_KEY, classes=["Ticket"])

    seen = sdk(
        sdk_peer,
        leancloud_double,
        """
bad = leancloud.Object.create("Ticket", user="users/joshua", attendance="maybe")
try:
    bad.save()
    refused = None
except leancloud.LeanCloudError as exc:
    refused = {"code": exc.code, "error": exc.error}
good = leancloud.Object.create("Ticket", user="users/joshua", attendance=False)
good.save()
print(json.dumps({"refused": refused, "saved": good.id}))
""",
    )

    assert seen["refused"]["code"] == 142
    assert "attendance" in seen["refused"]["error"]
    assert "Input should be a valid boolean" in seen["refused"]["error"]
    assert [t["objectId"] for t in leancloud_double.objects("Ticket")] == [seen["saved"]]


def test_sdk_cloud_run_calls_onto_and_gets_the_result(
    sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble, onto: Callable[..., str]
) -> None:
    url = onto(
        {
            "functions": {
                "source": {
                    "type": "leanengine_functions",
                    "port": 0,
                    "views": ["examples.meeting_room.views:MeetingSession"],
                    "app_id": leancloud_double.app_id,
                    "app_key": leancloud_double.app_key,
                    "master_key": leancloud_double.master_key,
                },
                "processors": [{"type": "api"}],
                "sinks": [{"type": "reply"}],
            }
        }
    )
    leancloud_double.hook(url, HOOK_KEY)  # LeanCloud forwards cloud functions to the app

    seen = sdk(
        sdk_peer,
        leancloud_double,
        """
result = leancloud.cloud.run("set_attendance", key="meeting-1/joshua", attending=False)
by_fields = leancloud.cloud.rpc(
    "meeting_session.get", meetingId="meeting-1", userId="tijuana"
)
errors = []
for name, params in [
    ("set_attendance", {"key": "meeting-1/joshua", "attending": "yes"}),
    ("no_such_function", {}),
]:
    try:
        leancloud.cloud.run(name, **params)
    except leancloud.LeanCloudError as exc:
        errors.append({"code": exc.code, "error": exc.error})
print(json.dumps({"result": result, "rpc": by_fields, "errors": errors}))
""",
    )

    assert seen["result"]["userId"] == "joshua"
    assert [a["userId"] for a in seen["result"]["attending"]] == ["thomasina", "tijuana"]
    assert [a["userId"] for a in seen["rpc"]["attending"]] == ["thomasina", "tijuana"]
    with use_datastore(onto.store):  # type: ignore[attr-defined]
        assert Ticket.get("meeting-1-joshua").attendance is False
    bad_argument, unknown = seen["errors"]
    assert bad_argument["code"] == 1
    assert "attending" in bad_argument["error"]
    assert unknown["code"] == 404
    assert "no_such_function" in unknown["error"]


SDK_ENGINE = """
import json, os, sys
from wsgiref.simple_server import WSGIRequestHandler, make_server
import leancloud

leancloud.init(os.environ["LEANCLOUD_APP_ID"], os.environ["LEANCLOUD_APP_KEY"],
               master_key=os.environ["LEANCLOUD_APP_MASTER_KEY"],
               hook_key=os.environ["LEANCLOUD_APP_HOOK_KEY"])
engine = leancloud.Engine()

def report(hook, obj):
    user = obj.get("user")
    print(json.dumps({"hook": hook, "id": obj.id, "attendance": obj.get("attendance"),
                      "user": user.id if user is not None else None}), flush=True)

@engine.before_save("Ticket")
def before_save(obj):
    if not isinstance(obj.get("role") or "", str):
        raise leancloud.LeanEngineError(1, "role must be text")
    obj.set("checkedBy", "sdk-engine")

@engine.after_save("Ticket")
def after_save(obj):
    report("afterSave", obj)

@engine.after_update("Ticket")
def after_update(obj):
    report("afterUpdate", obj)

@engine.after_delete("Ticket")
def after_delete(obj):
    report("afterDelete", obj)

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = make_server("127.0.0.1", 0, engine, handler_class=Quiet)
print(json.dumps({"port": server.server_port}), flush=True)
server.serve_forever()
"""

TICKET_WRITES = """
user = leancloud.Object.create("_User", username="joshua")
user.save()
ticket = leancloud.Object.create("Ticket", user=user, attendance=True)
ticket.save()
ticket.set("attendance", False)
ticket.save()
bad = leancloud.Object.create("Ticket", user=user, attendance=True, role=5)
try:
    bad.save()
    refused = None
except leancloud.LeanCloudError as exc:
    refused = exc.code
ticket.destroy()
print(json.dumps({"ticket": ticket.id, "user": user.id, "refused": refused}))
"""


def by_kind(calls: list[HookCall]) -> list[HookCall]:
    """The before-hook calls, then the after-hook calls, each in the order made."""
    return [c for c in calls if c.hook.startswith("before")] + [
        c for c in calls if c.hook.startswith("after")
    ]


class _Lines:
    """The stdout lines of a process, read in a thread; ``next`` waits with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_json(self, timeout: float = 30.0) -> Any:
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"the SDK engine exited ({self.process.poll()})")
            if line.startswith("{"):
                return json.loads(line)


@pytest.fixture
def sdk_engine(sdk_peer: SdkPeer, leancloud_double: LeanCloudDouble) -> Iterator[_Lines]:
    """The SDK's own ``leancloud.Engine`` served (wsgiref) from the peer venv."""
    process = sdk_peer.popen(SDK_ENGINE, double_env(leancloud_double, HOOK_KEY))
    try:
        yield _Lines(process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_sdk_engine_accepts_the_hook_requests_the_double_sends_to_onto(
    sdk_peer: SdkPeer,
    leancloud_double: LeanCloudDouble,
    sdk_engine: _Lines,
    onto: Callable[..., str],
) -> None:
    port = sdk_engine.next_json()["port"]
    leancloud_double.hook(
        f"http://127.0.0.1:{port}", HOOK_KEY, classes=["Ticket"], hooks=ENGINE_HOOKS
    )

    ids = sdk(sdk_peer, leancloud_double, TICKET_WRITES)
    leancloud_double.wait_for_hooks()

    seen = [sdk_engine.next_json() for _ in range(3)]
    assert seen == [
        {"hook": "afterSave", "id": ids["ticket"], "attendance": True, "user": ids["user"]},
        {"hook": "afterUpdate", "id": ids["ticket"], "attendance": False, "user": ids["user"]},
        {"hook": "afterDelete", "id": ids["ticket"], "attendance": False, "user": ids["user"]},
    ]
    assert ids["refused"] == 142
    # Before-hooks run in the writer's turn, after-hooks on the double's own thread: each
    # kind is in write order, the two interleave as they happen to.
    to_sdk = by_kind(leancloud_double.hook_calls)
    assert [(c.hook, c.status) for c in to_sdk] == [
        ("beforeSave", 200),
        ("beforeSave", 400),
        ("afterSave", 200),
        ("afterUpdate", 200),
        ("afterDelete", 200),
    ]
    # The SDK engine's beforeSave answer is what the double saved.
    assert to_sdk[0].answer["checkedBy"] == "sdk-engine"

    # The same writes with onto as the app: every hook accepted, bodies of the same shape.
    url = onto({"changes": hook_pipeline(validate=["examples.meeting_room.models:Ticket"])})
    leancloud_double.hook_calls.clear()
    leancloud_double.hook(url, HOOK_KEY, classes=["Ticket"], hooks=ENGINE_HOOKS)
    onto_ids = sdk(sdk_peer, leancloud_double, TICKET_WRITES.replace('"joshua"', '"tijuana"'))
    leancloud_double.wait_for_hooks()

    to_onto = by_kind(leancloud_double.hook_calls)
    assert [(c.hook, c.status) for c in to_onto] == [(c.hook, c.status) for c in to_sdk]
    # (checkedBy is what the SDK engine's beforeSave added to the saved object.)
    assert [sorted(c.body["object"]) for c in to_onto] == [
        sorted(set(c.body["object"]) - {"checkedBy"}) for c in to_sdk
    ]
    assert onto_ids["refused"] == 142
    changes = channel("sdk-changes").values()
    assert [(c["docId"], c["op"]) for c in changes] == [
        (onto_ids["ticket"], "create"),
        (onto_ids["ticket"], "update"),
        (onto_ids["ticket"], "delete"),
    ]
    assert changes[0]["data"]["user"] == f"users/{onto_ids['user']}"
