"""The ``leanengine`` source: LeanEngine hooks over a real socket drive the view pipeline.

The meeting room lives in a sqlite store here, standing for the app's LeanCloud classes:
each test writes the store the way LeanCloud would have saved the object, then sends the
hook LeanCloud sends after such a write (with httpx), and reads what the view pipeline
delivered.
"""

from __future__ import annotations

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
from onto_core.builtin.memory import channel, drop_channels
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import use_datastore
from onto_core.runtime import Runtime
from onto_core.testing import running
from onto_leancloud.engine import ROUTE_PREFIXES
from onto_web import get_server

HOOK_KEY = "hook-key-for-tests"
SESSION = "examples.meeting_room.views:MeetingSession"
CLASSES = {"Meeting": "meetings", "Ticket": "tickets", "_User": "users", "Location": "locations"}


@dataclass
class HookEndpoint:
    """A running meeting-room view pipeline fed by LeanEngine hooks on a real port."""

    url: str
    runtime: Runtime
    dead_letters: Path
    channel_name: str

    def hook(
        self,
        class_name: str,
        hook: str,
        body: Any,
        key: str | None = HOOK_KEY,
        prefix: str = "/1.1",
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json", "X-LC-Id": "app-id"}
        if key is not None:
            headers["X-LC-Hook-Key"] = key
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(
            f"{self.url}{prefix}/functions/{class_name}/{hook}",
            content=content,
            headers=headers,
            timeout=20,
        )

    def sessions(self) -> dict[str, dict[str, Any]]:
        """The newest MeetingSession the pipeline delivered, by view key."""
        latest: dict[str, dict[str, Any]] = {}
        for value in channel(self.channel_name).values():
            latest[value["key"]] = value
        return latest

    def messages_in(self) -> int:
        return int(self.runtime.metrics()["meeting_sessions"]["in"])

    def letters(self) -> list[dict[str, Any]]:
        if not self.dead_letters.exists():
            return []
        return [json.loads(line) for line in self.dead_letters.read_text().splitlines()]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.02)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    datastore = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    datastore.open()
    seed(datastore)
    yield datastore
    datastore.close()


@pytest.fixture
def serve(store: SqliteDatastore, tmp_path: Path) -> Iterator[Callable[..., HookEndpoint]]:
    """``serve(**settings)``: the view pipeline with a ``leanengine`` source on port 0."""
    with ExitStack() as stack:
        stack.callback(drop_channels)

        def start(**settings: Any) -> HookEndpoint:
            source = {
                "type": "leanengine",
                "port": 0,
                "hook_key": HOOK_KEY,
                "classes": CLASSES,
                "timeout": 15,
            }
            source.update(settings)
            dead = tmp_path / "dead.jsonl"
            config = {
                "pipelines": {
                    "meeting_sessions": {
                        "source": source,
                        "processors": [{"type": "view", "view": SESSION}],
                        "sinks": [{"type": "memory", "channel": "hook-sessions"}],
                        "dead_letter": {"type": "file", "path": str(dead)},
                        "retry": {"max_attempts": 2, "initial_backoff": 0.01},
                    }
                }
            }
            runtime = stack.enter_context(running(json.dumps(config), datastore=store))
            url = get_server("127.0.0.1", 0).url
            endpoint = HookEndpoint(url, runtime, dead, "hook-sessions")
            wait_until(lambda: len(endpoint.sessions()) == 3, "the first build of the views")
            return endpoint

        yield start


def _ticket_object(ticket: Ticket) -> dict[str, Any]:
    """The ticket as LeanCloud sends it in a hook body."""
    return {
        "objectId": ticket.id,
        "role": ticket.role,
        "user": {"__type": "Pointer", "className": "_User", "objectId": ticket.user.doc_id},
        "attendance": ticket.attendance,
        "objType": "Ticket",
        "createdAt": "2026-11-29T10:00:00.000Z",
        "updatedAt": "2026-11-29T10:05:00.000Z",
        "__after": "1700000000000,signature",
    }


def _set_attendance(store: SqliteDatastore, ticket_id: str, attending: bool) -> Ticket:
    with use_datastore(store):
        ticket = Ticket.get(ticket_id)
        ticket.attendance = attending
        return ticket.save()


def test_after_update_hook_recomputes_every_participants_session(
    serve: Callable[..., HookEndpoint], store: SqliteDatastore
) -> None:
    endpoint = serve()
    before = endpoint.sessions()
    assert sorted(before) == ["meeting-1/joshua", "meeting-1/thomasina", "meeting-1/tijuana"]
    assert all("joshua" in [a["userId"] for a in v["data"]["attending"]] for v in before.values())

    ticket = _set_attendance(store, "meeting-1-joshua", False)
    answer = endpoint.hook("Ticket", "afterUpdate", {"object": _ticket_object(ticket)})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"result": "ok"}
    # Answered only once the pipeline delivered: the views are there without waiting.
    after = endpoint.sessions()
    for key, view in after.items():
        attending = [a["userId"] for a in view["data"]["attending"]]
        assert attending == ["thomasina", "tijuana"], key
        assert view["data"]["numHearingAidRequested"] == 1
        assert view["version"] > before[key]["version"]


def test_every_route_prefix_leancloud_uses_is_served(
    serve: Callable[..., HookEndpoint], store: SqliteDatastore
) -> None:
    endpoint = serve()
    attending = True
    for prefix in ROUTE_PREFIXES:
        attending = not attending
        ticket = _set_attendance(store, "meeting-1-tijuana", attending)
        answer = endpoint.hook(
            "Ticket", "afterSave", {"object": _ticket_object(ticket)}, prefix=prefix
        )
        assert answer.status_code == 200, (prefix, answer.text)
        names = [a["userId"] for a in endpoint.sessions()["meeting-1/joshua"]["data"]["attending"]]
        assert ("tijuana" in names) is attending, prefix


def test_wrong_or_missing_hook_key_is_refused_and_nothing_is_processed(
    serve: Callable[..., HookEndpoint], store: SqliteDatastore
) -> None:
    endpoint = serve()
    read_before = endpoint.messages_in()
    views_before = len(channel("hook-sessions").values())
    ticket = _set_attendance(store, "meeting-1-joshua", False)
    body = {"object": _ticket_object(ticket)}

    for key in (None, "", "wrong-key", HOOK_KEY + "x", HOOK_KEY[:-1]):
        answer = endpoint.hook("Ticket", "afterUpdate", body, key=key)
        assert answer.status_code == 401, key
        assert answer.json() == {"code": 401, "error": "Unauthorized."}
    # Before-hooks and unknown classes too, so a caller without the key learns nothing.
    assert endpoint.hook("Ticket", "beforeSave", body, key="wrong").status_code == 401
    assert endpoint.hook("Nope", "afterSave", body, key="wrong").status_code == 401

    assert endpoint.messages_in() == read_before
    assert len(channel("hook-sessions").values()) == views_before
    assert HOOK_KEY not in answer.text


def test_malformed_hook_body_is_400_and_dead_lettered_with_class_and_object_id(
    serve: Callable[..., HookEndpoint], store: SqliteDatastore
) -> None:
    endpoint = serve()
    no_id = endpoint.hook("Ticket", "afterSave", {"object": {"attendance": False}})
    not_object = endpoint.hook("Ticket", "afterUpdate", {"object": "meeting-1-joshua"})
    bad_id = endpoint.hook("Ticket", "afterSave", {"object": {"objectId": 42}})
    not_json = endpoint.hook("Ticket", "afterDelete", b'{"object": {"objectId": "t-9"')

    for answer in (no_id, not_object, bad_id, not_json):
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == 107
        assert "Ticket" in answer.json()["error"]
    assert "has no objectId" in no_id.json()["error"]
    assert "no 'object'" in not_object.json()["error"]
    assert "not JSON" in not_json.json()["error"]

    # The pipeline handles what was queued before this hook, the dead letters included.
    ticket = _set_attendance(store, "meeting-1-joshua", False)
    assert endpoint.hook("Ticket", "afterUpdate", {"object": _ticket_object(ticket)}).is_success
    letters = endpoint.letters()
    assert len(letters) == 4
    values = [letter["value"] for letter in letters]
    assert {v["className"] for v in values} == {"Ticket"}
    assert [v["malformedHook"] for v in values] == [
        "afterSave",
        "afterUpdate",
        "afterSave",
        "afterDelete",
    ]
    assert values[0]["objectId"] is None
    assert "has no objectId" in values[0]["error"]
    errors = [letter["headers"]["onto-error"] for letter in letters]
    assert all("malformed LeanEngine" in e and "Ticket" in e for e in errors)
    # The pipeline lives on: the valid hook after them was processed.
    attending = endpoint.sessions()["meeting-1/tijuana"]["data"]["attending"]
    assert "joshua" not in [a["userId"] for a in attending]


def test_before_save_rejects_an_object_its_domain_model_refuses_with_code_142(
    serve: Callable[..., HookEndpoint],
) -> None:
    endpoint = serve(validate=["examples.meeting_room.models:Ticket"])
    bad = {"object": {"user": "users/joshua", "attendance": "maybe", "__before": "x,y"}}
    good = {"object": {"user": "users/joshua", "attendance": True, "__before": "x,y"}}

    refused = endpoint.hook("Ticket", "beforeSave", bad)
    accepted = endpoint.hook("Ticket", "beforeSave", good)
    deleting = endpoint.hook("Ticket", "beforeDelete", {"object": {"objectId": "t1"}})

    assert refused.status_code == 400
    assert refused.json()["code"] == 142
    assert "attendance" in refused.json()["error"]
    assert "Ticket" in refused.json()["error"]
    assert accepted.status_code == 200
    assert accepted.json() == good["object"]  # answered back as sent, __before kept
    assert deleting.json() == {}


def test_before_update_checks_only_the_updated_fields(serve: Callable[..., HookEndpoint]) -> None:
    endpoint = serve(validate=["examples.meeting_room.models:Ticket"])
    partial = {"objectId": "meeting-1-joshua", "attendance": False, "_updatedKeys": ["attendance"]}
    wrong_type = {**partial, "attendance": "no"}
    unknown = {"objectId": "meeting-1-joshua", "seat": 4, "_updatedKeys": ["seat"]}

    assert endpoint.hook("Ticket", "beforeUpdate", {"object": partial}).status_code == 200
    refused = endpoint.hook("Ticket", "beforeUpdate", {"object": wrong_type})
    assert (refused.status_code, refused.json()["code"]) == (400, 142)
    assert "attendance" in refused.json()["error"]
    no_field = endpoint.hook("Ticket", "beforeUpdate", {"object": unknown})
    assert "seat" in no_field.json()["error"]


def test_hooks_of_classes_not_followed_and_unknown_hooks_are_404(
    serve: Callable[..., HookEndpoint],
) -> None:
    endpoint = serve(classes={"Ticket": "tickets"})
    other = endpoint.hook("Invoice", "afterSave", {"object": {"objectId": "i1"}})
    odd = endpoint.hook("Ticket", "afterFind", {"object": {"objectId": "t1"}})
    assert (other.status_code, odd.status_code) == (404, 404)
    assert "Invoice" in other.json()["error"]
    assert "afterFind" in odd.json()["error"]
    long_name = "X" * 5000
    echoed = endpoint.hook(long_name, "afterSave", {"object": {"objectId": "i1"}})
    assert echoed.status_code == 404
    assert len(echoed.text) < 500  # what a caller sent is clipped, never echoed whole


def test_after_delete_of_a_participant_ticket_removes_them(
    serve: Callable[..., HookEndpoint], store: SqliteDatastore
) -> None:
    endpoint = serve()
    store.delete("tickets", "meeting-1-thomasina")
    gone = {"objectId": "meeting-1-thomasina", "__after": "x"}
    answer = endpoint.hook("Ticket", "afterDelete", {"object": gone})
    assert answer.json() == {"result": "ok"}
    attending = endpoint.sessions()["meeting-1/joshua"]["data"]["attending"]
    assert [a["userId"] for a in attending] == ["joshua", "tijuana"]


def test_a_body_over_the_limit_is_413(serve: Callable[..., HookEndpoint]) -> None:
    endpoint = serve(max_body_bytes=1000)
    answer = endpoint.hook("Ticket", "afterSave", {"object": {"objectId": "t", "x": "y" * 2000}})
    assert answer.status_code == 413
    assert "1000 bytes" in answer.json()["error"]


def test_the_hook_key_is_never_shown(serve: Callable[..., HookEndpoint]) -> None:
    endpoint = serve()
    from onto_core.config import parse_config

    text = json.dumps(
        {
            "pipelines": {
                "p": {
                    "source": {"type": "leanengine", "hook_key": HOOK_KEY, "classes": CLASSES},
                    "sinks": [{"type": "stdout"}],
                }
            }
        }
    )
    parsed = parse_config(text, "config")
    assert HOOK_KEY not in repr(parsed.pipelines["p"].source)
    assert endpoint.hook("Ticket", "afterSave", {}).status_code == 400


def test_classes_and_ids_map_as_the_leancloud_datastore_keeps_them(
    store: SqliteDatastore,
) -> None:
    """Class = class_prefix + collection; the id in ontoId (else objectId); ontoVersion is
    the datastore's bookkeeping, not data."""
    source = {
        "type": "leanengine",
        "port": 0,
        "hook_key": HOOK_KEY,
        "collections": ["tickets"],
        "classes": {"_User": "users"},
        "class_prefix": "Room_",
    }
    config = {"pipelines": {"p": {"source": source, "sinks": [{"type": "memory", "channel": "m"}]}}}
    try:
        with running(json.dumps(config), datastore=store):
            endpoint = HookEndpoint(get_server("127.0.0.1", 0).url, None, Path(), "m")  # type: ignore[arg-type]
            by_onto = {"objectId": "65f0c1", "ontoId": "meeting-1-joshua", "ontoVersion": 3}
            by_sdk = {"objectId": "65f0c2", "attendance": True}
            user = {"objectId": "65f0c3", "name": "Joshua"}
            for class_name, obj in [("Room_tickets", by_onto), ("Room_tickets", by_sdk)]:
                assert endpoint.hook(class_name, "afterSave", {"object": obj}).is_success
            assert endpoint.hook("_User", "afterUpdate", {"object": user}).is_success
            assert endpoint.hook("tickets", "afterSave", {"object": by_sdk}).status_code == 404
            changes = channel("m").values()
    finally:
        drop_channels()
    assert [(c["collection"], c["docId"], c["data"]) for c in changes] == [
        ("tickets", "meeting-1-joshua", {}),
        ("tickets", "65f0c2", {"attendance": True}),
        ("users", "65f0c3", {"name": "Joshua"}),
    ]


@pytest.mark.parametrize("dead_letter", [True, False])
def test_a_change_the_pipeline_cannot_process_is_dead_lettered_or_the_hook_fails(
    store: SqliteDatastore, tmp_path: Path, dead_letter: bool
) -> None:
    source = {"type": "leanengine", "port": 0, "hook_key": HOOK_KEY, "collections": ["tickets"]}
    pipeline: dict[str, Any] = {
        "source": source,
        # json.loads refuses a dict: every change fails here.
        "processors": [{"type": "map", "function": "json:loads"}],
        "sinks": [{"type": "memory", "channel": "never"}],
        "retry": {"max_attempts": 2, "initial_backoff": 0.01},
    }
    dead = tmp_path / "dead.jsonl"
    if dead_letter:
        pipeline["dead_letter"] = {"type": "file", "path": str(dead)}
    config = {"pipelines": {"p": pipeline}}
    ticket = {"objectId": "x1", "ontoId": "meeting-1-joshua", "attendance": False}
    with running(json.dumps(config), datastore=store) as runtime:
        endpoint = HookEndpoint(get_server("127.0.0.1", 0).url, runtime, dead, "never")
        answer = endpoint.hook("tickets", "afterUpdate", {"object": ticket})
        again = endpoint.hook("tickets", "afterUpdate", {"object": ticket})
    if dead_letter:
        assert answer.json() == {"result": "ok"}  # the pipeline is done with it
        letters = endpoint.letters()
        assert [letter["value"]["docId"] for letter in letters] == ["meeting-1-joshua"] * 2
        assert "json" in letters[0]["headers"]["onto-error"].lower()
    else:
        assert answer.status_code == 500
        assert answer.json()["code"] == 141
        assert "afterUpdate of tickets x1" in answer.json()["error"]
    assert again.status_code == answer.status_code  # the pipeline lives on


def test_hooks_beyond_max_pending_are_refused_and_a_slow_pipeline_answers_504(
    store: SqliteDatastore,
) -> None:
    import engine_gate

    source = {
        "type": "leanengine",
        "port": 0,
        "hook_key": HOOK_KEY,
        "collections": ["tickets"],
        "max_pending": 1,
        "timeout": 0.5,
    }
    pipeline = {
        "source": source,
        "processors": [{"type": "map", "function": "engine_gate:hold", "thread": True}],
        "sinks": [{"type": "memory", "channel": "gated"}],
    }
    engine_gate.GATE.clear()
    try:
        with running(json.dumps({"pipelines": {"p": pipeline}}), datastore=store) as runtime:
            endpoint = HookEndpoint(get_server("127.0.0.1", 0).url, runtime, Path(), "gated")
            body = {"object": {"objectId": "t1", "attendance": False}}
            slow = endpoint.hook("tickets", "afterUpdate", body)
            busy = endpoint.hook("tickets", "afterUpdate", body)
            engine_gate.GATE.set()
            wait_until(lambda: len(channel("gated").values()) == 1, "the held change")
            after = endpoint.hook("tickets", "afterUpdate", body)
    finally:
        engine_gate.GATE.set()
        drop_channels()
    assert (slow.status_code, slow.json()["code"]) == (504, 124)
    assert "will still be processed" in slow.json()["error"]
    assert busy.status_code == 503
    assert "too many hooks" in busy.json()["error"]
    assert after.json() == {"result": "ok"}


def test_the_app_lists_its_hooks_and_answers_leanengines_ping(
    serve: Callable[..., HookEndpoint],
) -> None:
    endpoint = serve(validate=["examples.meeting_room.models:Ticket"])
    listed = endpoint.hook("_ops", "metadatas", {})
    refused = endpoint.hook("_ops", "metadatas", {}, key="wrong")
    ping = httpx.get(f"{endpoint.url}/__engine/1/ping", timeout=10)

    assert refused.status_code == 401
    names = listed.json()["result"]
    assert "__after_save_for_Ticket" in names
    assert "__after_delete_for_Meeting" in names
    assert "__before_save_for_Ticket" in names
    assert "__before_save_for_Meeting" not in names
    assert ping.status_code == 200
