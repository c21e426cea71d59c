"""The AsyncAPI document of a config: printed by ``onto asyncapi``, served at
``/asyncapi.json``, validated by the official ``@asyncapi/parser`` (run by node), and
built from the same models that validate the messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from examples.meeting_room.seed import seed
from examples.meeting_room.views import MeetingSession
from onto_core.asyncapi import REF_TEMPLATE, draft07, model_schemas
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models.datastore import Change, ChangeOp
from onto_core.testing import npm_ci, onto_run
from onto_core.testing.views import built_views
from onto_websocket.testing import free_port

ROOT = Path(__file__).parents[1]
WEB = ROOT / "examples" / "meeting_room" / "web.yaml"
KAFKA_PUBLISH = ROOT / "examples" / "meeting_room" / "kafka_publish.yaml"
PARSER_DIR = Path(__file__).parent / "asyncapi"
ERROR = 0  # the parser's DiagnosticSeverity.Error


def onto_asyncapi(
    config: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``onto asyncapi config`` run from the repository root with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "onto_core", "asyncapi", str(config), *args],
        cwd=ROOT,  # web.yaml's page_dir is relative to the repository root
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def document_of(config: Path, **env: str) -> dict[str, Any]:
    done = onto_asyncapi(config, env)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


@pytest.fixture(scope="module")
def parse() -> Any:
    """A function running the official AsyncAPI parser on a document: its diagnostics."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node must be installed: these tests run the official @asyncapi/parser")
    npm_ci(PARSER_DIR, "@asyncapi/parser")

    def run(document: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
        file = tmp_path / "asyncapi.json"
        file.write_text(json.dumps(document), encoding="utf-8")
        done = subprocess.run(
            [node, str(PARSER_DIR / "validate.js"), str(file)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    return run


def addresses(document: dict[str, Any]) -> dict[str, str]:
    """Each operation's ``action`` by the address of its channel."""
    found = {}
    for operation in document["operations"].values():
        channel_id = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        found[document["channels"][channel_id]["address"]] = operation["action"]
    return found


def channel_messages(document: dict[str, Any], address: str) -> list[str]:
    """The names of the messages the channel at ``address`` carries."""
    for channel in document["channels"].values():
        if channel["address"] == address:
            refs = [m["$ref"].rsplit("/", 1)[-1] for m in channel["messages"].values()]
            return [document["components"]["messages"][ref]["name"] for ref in refs]
    raise AssertionError(f"no channel at {address!r}")


@pytest.mark.parametrize("config", [WEB, KAFKA_PUBLISH], ids=lambda p: p.name)
def test_meeting_room_documents_pass_the_official_parser(
    config: Path, parse: Any, tmp_path: Path
) -> None:
    result = parse(document_of(config), tmp_path)
    errors = [d for d in result["diagnostics"] if d["severity"] == ERROR]
    assert errors == []
    assert result["valid"]


def test_the_parser_reports_a_broken_document(parse: Any, tmp_path: Path) -> None:
    document = document_of(KAFKA_PUBLISH)
    channel = document["channels"]["meeting-room-changes"]
    channel["messages"]["Change"]["$ref"] = "#/components/messages/Missing"
    result = parse(document, tmp_path)
    errors = [d for d in result["diagnostics"] if d["severity"] == ERROR]
    assert [e["code"] for e in errors] == ["invalid-ref"]
    assert "Missing" in errors[0]["message"]


def test_web_document_names_every_websocket_event(tmp_path: Path) -> None:
    document = document_of(WEB, ONTO_PORT="8123", ONTO_DB=str(tmp_path / "onto.db"))
    assert addresses(document) == {
        "subscribe": "receive",
        "unsubscribe": "receive",
        "action": "receive",
        "view": "send",
        "error": "send",
    }
    assert document["servers"] == {
        "ws": {
            "host": "127.0.0.1:8123",
            "protocol": "ws",
            "pathname": "/socket.io/",
            "description": document["servers"]["ws"]["description"],
        }
    }
    assert channel_messages(document, "view") == ["MeetingSessionUpdate"]
    assert channel_messages(document, "subscribe") == ["SubscribeMeetingSession"]
    assert channel_messages(document, "action") == [
        "ActionMeetingSession_set_attendance",
        "ActionMeetingSession_set_in_session",
    ]
    subscribe = document["operations"]["receive_subscribe"]
    replies = [m["$ref"].rsplit("/", 1)[-1] for m in subscribe["reply"]["messages"]]
    assert replies == ["SocketAck", "SocketRefusal"]
    update = document["components"]["messages"]["MeetingSessionUpdate"]["payload"]
    assert update["required"] == ["view", "key", "fields", "version", "removed", "data"]


def test_kafka_document_names_the_topic_with_its_key_and_payload() -> None:
    document = document_of(KAFKA_PUBLISH, KAFKA_BOOTSTRAP_SERVERS="broker-1:9092,broker-2:9092")
    assert addresses(document) == {"meeting-room-changes": "send"}
    assert document["servers"]["kafka"]["host"] == "broker-1:9092"
    assert document["servers"]["kafka"]["protocol"] == "kafka"
    assert "broker-2:9092" in document["servers"]["kafka"]["description"]
    assert channel_messages(document, "meeting-room-changes") == ["Change"]
    change = document["components"]["messages"]["Change"]
    key = change["bindings"]["kafka"]["key"]
    assert key["type"] == "string"
    assert "{collection}/{docId}" in key["description"]
    # Exactly the fields of a change as the changes source emits it.
    emitted = Change(7, "tickets", "ticket-1", ChangeOp.UPDATE, {"attendance": False}, 1.5)
    assert set(change["payload"]["properties"]) == set(emitted.to_dict())
    assert change["payload"]["required"] == list(emitted.to_dict())


def test_view_payload_schema_is_the_view_models_json_schema(tmp_path: Path) -> None:
    document = document_of(WEB, ONTO_DB=str(tmp_path / "onto.db"))
    schemas = document["components"]["schemas"]
    update = document["components"]["messages"]["MeetingSessionUpdate"]["payload"]
    data_ref = update["properties"]["data"]["oneOf"][0]["$ref"]
    own = MeetingSession.model_json_schema(
        by_alias=True, mode="serialization", ref_template=REF_TEMPLATE
    )
    nested = own.pop("$defs", {})
    assert schemas[data_ref.rsplit("/", 1)[-1]] == draft07(own)
    for name, schema in nested.items():
        assert schemas[name] == draft07(schema)
    # And what a view delivers has exactly those fields.
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "views.db"))
    with store:
        seed(store)
        delivered = built_views(MeetingSession, store)
    assert delivered
    properties = schemas[data_ref.rsplit("/", 1)[-1]]["properties"]
    for data in delivered.values():
        assert set(data) == set(properties)


def test_action_arguments_schema_is_the_actions_parameters(tmp_path: Path) -> None:
    document = document_of(WEB, ONTO_DB=str(tmp_path / "onto.db"))
    message = document["components"]["messages"]["ActionMeetingSession_set_attendance"]
    arguments_ref = message["payload"]["properties"]["arguments"]["oneOf"][0]["$ref"]
    own = MeetingSession.action_model("set_attendance").model_json_schema(
        by_alias=True, ref_template=REF_TEMPLATE
    )
    assert document["components"]["schemas"][arguments_ref.rsplit("/", 1)[-1]] == draft07(own)


def fetch(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        return json.loads(response.read())


def wait_for_document(url: str, process: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + 60
    while True:
        try:
            return fetch(url)
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None:
                pytest.fail(f"onto run exited: {log.read_text(encoding='utf-8')}")
            if time.monotonic() > deadline:
                pytest.fail(f"no answer at {url} within 60s: {log.read_text(encoding='utf-8')}")
            time.sleep(0.05)


def test_served_document_equals_the_cli_output(tmp_path: Path) -> None:
    env = {"ONTO_PORT": str(free_port()), "ONTO_DB": str(tmp_path / "onto.db")}
    printed = document_of(WEB, **env)
    url = f"http://127.0.0.1:{env['ONTO_PORT']}/asyncapi.json"
    log = tmp_path / "onto.log"
    with onto_run(WEB, log, env=env, cwd=ROOT) as process:
        served = wait_for_document(url, process, log)
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(url, headers={"Host": "attacker.example"})
        assert refused.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as foreign:
            fetch(url, headers={"Origin": "http://attacker.example"})
        assert foreign.value.code == 403
    assert served == printed


def test_out_writes_the_document_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    done = onto_asyncapi(KAFKA_PUBLISH, {}, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert json.loads(out.read_text(encoding="utf-8")) == document_of(KAFKA_PUBLISH)


def test_a_bad_config_is_the_error_onto_run_gives(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "pipelines:\n  a:\n    source: {type: changes}\n    sinks: [{type: kafka, topik: x}]\n",
        encoding="utf-8",
    )
    printed = onto_asyncapi(config, {})
    assert printed.returncode == 2
    assert printed.stdout == ""
    assert printed.stderr.startswith(f"error: {config}:4: pipelines.a.sinks[0].topik: unknown key")
    run = subprocess.run(
        [sys.executable, "-m", "onto_core", "run", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (run.returncode, run.stderr) == (printed.returncode, printed.stderr)


def test_views_to_a_kafka_topic_template_pass_the_parser(parse: Any, tmp_path: Path) -> None:
    config = tmp_path / "views.yaml"
    config.write_text(
        f"""
datastore: {{type: sqlite, path: "{tmp_path / "onto.db"}"}}
pipelines:
  views:
    source: {{type: kafka, topics: [changes], group_id: viewers, partitions: all}}
    processors:
      - {{type: kafka_decode, value_format: json}}
      - {{type: view, view: "examples.meeting_room.views:MeetingSession"}}
    sinks:
      - {{type: kafka, topic: "views-{{view}}", value_format: json}}
""",
        encoding="utf-8",
    )
    document = document_of(config, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092")
    result = parse(document, tmp_path)
    assert [d for d in result["diagnostics"] if d["severity"] == ERROR] == []
    assert addresses(document) == {"changes": "receive", "views-{view}": "send"}
    published = next(c for c in document["channels"].values() if c["address"] == "views-{view}")
    assert list(published["parameters"]) == ["view"]
    assert channel_messages(document, "views-{view}") == ["MeetingSessionUpdate"]
    update = document["components"]["messages"]["MeetingSessionUpdate"]
    assert update["headers"]["required"] == ["onto-view", "onto-version"]
    assert update["bindings"]["kafka"]["key"]["type"] == "string"
    group = document["operations"]["receive_changes"]["bindings"]["kafka"]["groupId"]
    assert group["enum"] == ["viewers"]


class Cat(BaseModel):
    kind: Literal["cat"] = "cat"


class Dog(BaseModel):
    kind: Literal["dog"] = "dog"


class Household(BaseModel):
    size: tuple[int, str]
    pet: Annotated[Cat | Dog, Field(discriminator="kind")]
    first: Cat = Field(default_factory=Cat, description="The first pet.")


def test_draft07_rewrites_what_draft_07_lacks_and_the_parser_accepts_it(
    parse: Any, tmp_path: Path
) -> None:
    refs, schemas = model_schemas([(Household, "validation")])
    properties = schemas["Household"]["properties"]
    assert properties["size"]["items"] == [{"type": "integer"}, {"type": "string"}]
    assert properties["size"]["additionalItems"] is False
    assert "prefixItems" not in properties["size"]
    assert properties["pet"]["discriminator"] == "kind"
    assert properties["first"] == {
        "allOf": [{"$ref": "#/components/schemas/Cat"}],
        "description": "The first pet.",
    }
    document = {
        "asyncapi": "3.0.0",
        "info": {"title": "households", "version": "1"},
        "channels": {
            "households": {
                "address": "households",
                "messages": {"Household": {"$ref": "#/components/messages/Household"}},
            }
        },
        "components": {
            "schemas": schemas,
            "messages": {"Household": {"payload": refs[(Household, "validation")]}},
        },
    }
    result = parse(document, tmp_path)
    assert [d for d in result["diagnostics"] if d["severity"] == ERROR] == []
