"""OpenTelemetry traces: a span per message per stage, one trace from a request to a push."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from waiting import wait_for

from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.errors import ConfigError
from onto_core.protocols import Message
from onto_core.testing import running
from onto_websocket.testing import ViewClient, free_port

SESSION = "examples.meeting_room.views:MeetingSession"


def meeting_room(port: int) -> str:
    """REST actions and websocket views of the meeting room, on one server."""
    return json.dumps(
        {
            "pipelines": {
                "api": {
                    "source": {"type": "rest", "port": port, "views": [SESSION]},
                    "processors": [{"type": "api"}],
                    "sinks": [{"type": "reply"}],
                },
                "sessions": {
                    "source": {"type": "changes", "models": ["meetings", "tickets", "users"]},
                    "processors": [{"type": "view", "view": SESSION}],
                    "sinks": [{"type": "websocket", "port": port, "views": [SESSION]}],
                },
            }
        }
    )


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(spans: InMemorySpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    return tracer_provider


def one(found: list[ReadableSpan], name: str, **attributes: Any) -> ReadableSpan:
    """The one span named ``name`` whose attributes include ``attributes``."""
    matching = [
        s
        for s in found
        if s.name == name and attributes.items() <= dict(s.attributes or {}).items()
    ]
    assert len(matching) == 1, (name, attributes, [(s.name, s.attributes) for s in found])
    return matching[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_rest_action_and_the_view_push_it_causes_are_one_trace(
    seeded_store: SqliteDatastore, provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    trace_id, caller = secrets.randbits(128), secrets.randbits(64)
    traceparent = f"00-{trace_id:032x}-{caller:016x}-01"
    with running(meeting_room(port), datastore=seeded_store, tracer_provider=provider):
        tijuana = ViewClient().connect(url)
        try:
            tijuana.subscribe("meeting_session", "meeting-1/tijuana")
            tijuana.next_view()
            answer = httpx.post(
                f"{url}/meeting_session/meeting-1/joshua/set_attendance",
                json={"attending": False},
                headers={"traceparent": traceparent},
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            tijuana.view_where(lambda v: "joshua" not in str(v["data"]["attending"]))

            def pushed() -> list[ReadableSpan] | None:
                mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
                names = {s.name for s in mine}
                return mine if {"sessions write websocket", "sessions ack"} <= names else None

            traced = wait_for(pushed, "the websocket write's span of the action's trace")
        finally:
            tijuana.close()

    action_read = one(traced, "api read")
    assert parent_of(action_read) == caller  # the caller's span, from its traceparent
    action = one(traced, "api process api")
    assert parent_of(action) == action_read.context.span_id
    assert parent_of(one(traced, "api write reply")) == action.context.span_id
    # The change the action wrote carries the action's span through the change feed.
    change_read = one(traced, "sessions read", **{"onto.message.key": "tickets/meeting-1-joshua"})
    assert parent_of(change_read) == action.context.span_id
    recompute = one(traced, "sessions process view")
    assert parent_of(recompute) == change_read.context.span_id
    pushes = [s for s in traced if s.name == "sessions write websocket"]
    assert {dict(s.attributes or {})["onto.message.key"] for s in pushes} >= {
        "meeting-1/tijuana",
        "meeting-1/thomasina",
    }
    assert all(parent_of(s) == recompute.context.span_id for s in pushes)
    assert parent_of(one(traced, "sessions ack")) == change_read.context.span_id


def test_a_request_without_traceparent_starts_its_own_trace(
    seeded_store: SqliteDatastore, provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    port = free_port()
    with running(meeting_room(port), datastore=seeded_store, tracer_provider=provider):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/meeting_session/meeting-1/joshua/set_attendance",
            json={"attending": False},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

        def recomputed() -> ReadableSpan | None:
            found = [s for s in spans.get_finished_spans() if s.name == "sessions process view"]
            return found[-1] if found else None

        recompute = wait_for(recomputed, "the view recompute's span")
    action_read = one(list(spans.get_finished_spans()), "api read")
    assert action_read.parent is None
    assert recompute.context.trace_id == action_read.context.trace_id


def test_untraced_pipelines_leave_messages_as_they_were(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    config = json.dumps(
        {
            "pipelines": {
                "numbers": {
                    "source": {"type": "generate", "count": 3},
                    "processors": [{"type": "map", "function": "json:dumps"}],
                    "sinks": [{"type": "file", "path": str(out)}],
                }
            }
        }
    )
    with running(config) as runtime:
        wait_for(lambda: runtime.metrics()["numbers"]["acked"] == 3, "three messages done")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("headers", {}) for line in lines] == [{}, {}, {}]


def test_the_file_exporter_writes_a_span_per_message_per_stage(tmp_path: Path) -> None:
    traces = tmp_path / "spans.jsonl"
    config = json.dumps(
        {
            "runtime": {"tracing": {"exporter": "file", "path": str(traces)}},
            "pipelines": {
                "numbers": {
                    "source": {"type": "generate", "count": 2},
                    "processors": [{"type": "map", "function": "json:dumps"}],
                    "sinks": [{"type": "file", "path": str(tmp_path / "out.jsonl")}],
                }
            },
        }
    )
    with running(config) as runtime:
        wait_for(lambda: runtime.metrics()["numbers"]["acked"] == 2, "two messages done")
    written = [json.loads(line) for line in traces.read_text().splitlines()]
    names = sorted(span["name"] for span in written)
    assert names == sorted(
        [
            *["numbers read"] * 2,
            *["numbers process map"] * 2,
            *["numbers write file"] * 2,
            *["numbers ack"] * 2,
        ]
    )
    assert len({span["context"]["trace_id"] for span in written}) == 2  # one per message
    assert {span["resource"]["attributes"]["service.name"] for span in written} == {"onto"}


def test_the_otlp_exporter_names_the_extra_to_install_when_missing(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    try:
        import opentelemetry.exporter.otlp.proto.http  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the OTLP exporter is installed here")
    config = json.dumps(
        {
            "runtime": {"tracing": {"exporter": "otlp"}},
            "pipelines": {
                "numbers": {
                    "source": {"type": "generate", "count": 1},
                    "sinks": [{"type": "stdout"}],
                }
            },
        }
    )
    with pytest.raises(ConfigError, match=r"onto-core\[tracing-otlp\]"), running(config):
        pass


def test_a_file_exporter_without_a_path_is_a_config_error() -> None:
    config = json.dumps(
        {
            "runtime": {"tracing": {"exporter": "file"}},
            "pipelines": {"p": {"source": {"type": "generate"}, "sinks": [{"type": "stdout"}]}},
        }
    )
    with pytest.raises(ConfigError, match="path"), running(config):
        pass


def test_messages_keep_a_traceparent_they_arrived_with_when_untraced() -> None:
    message = Message({"n": 1}, headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    assert message.derive({"n": 2}).headers["traceparent"] == message.headers["traceparent"]


def set_attendance_over(transport: str, url: str, traceparent: str) -> Any:
    """Joshua leaves meeting-1 through ``transport``, the caller's ``traceparent`` sent
    the way that transport carries it; the answer."""
    if transport == "websocket":
        client = ViewClient().connect(url)
        try:
            return client.call(
                "action",
                {
                    "view": "meeting_session",
                    "key": "meeting-1/joshua",
                    "action": "set_attendance",
                    "arguments": {"attending": False},
                    "traceparent": traceparent,
                },
            )
        finally:
            client.close()
    headers = {"traceparent": traceparent}
    if transport == "jsonrpc":
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "meeting_session.set_attendance",
            "params": {"key": "meeting-1/joshua", "attending": False},
        }
        return httpx.post(f"{url}/api", json=call, headers=headers, timeout=10).json()
    mutation = (
        'mutation { setAttendance(meetingId: "meeting-1", userId: "joshua", attending: false)'
        " { meetingId } }"
    )
    return httpx.post(
        f"{url}/graphql", json={"query": mutation}, headers=headers, timeout=10
    ).json()


@pytest.mark.parametrize("transport", ["websocket", "jsonrpc", "graphql"])
def test_an_action_over_any_transport_continues_the_callers_trace(
    transport: str,
    seeded_store: SqliteDatastore,
    provider: TracerProvider,
    spans: InMemorySpanExporter,
) -> None:
    port = free_port()
    config = json.dumps(
        {
            "pipelines": {
                "api": {
                    "source": {"type": transport, "port": port, "views": [SESSION]},
                    "processors": [{"type": "api"}],
                    "sinks": [{"type": "reply"}],
                }
            }
        }
    )
    trace_id, caller = secrets.randbits(128), secrets.randbits(64)
    with running(config, datastore=seeded_store, tracer_provider=provider):
        answer = set_attendance_over(
            transport, f"http://127.0.0.1:{port}", f"00-{trace_id:032x}-{caller:016x}-01"
        )
        succeeded = {
            "websocket": lambda: answer["status"] == 200,
            "jsonrpc": lambda: "result" in answer,
            "graphql": lambda: answer.get("data", {}).get("setAttendance") is not None,
        }
        assert succeeded[transport](), answer

        def acked() -> list[ReadableSpan] | None:
            mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
            return mine if any(s.name == "api ack" for s in mine) else None

        traced = wait_for(acked, f"the {transport} action's spans")
        # The change the action wrote carries the action's trace in the change feed.
        (change,) = [c for c in seeded_store.changes() if c.doc_id == "meeting-1-joshua"][-1:]
    action_read = one(traced, "api read")
    assert parent_of(action_read) == caller
    action = one(traced, "api process api")
    assert parent_of(action) == action_read.context.span_id
    assert change.trace == f"00-{trace_id:032x}-{action.context.span_id:016x}-01"
