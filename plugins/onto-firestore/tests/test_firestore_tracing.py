"""The Firestore change log carries the writer's trace: a REST action on the firestore
datastore and the view update its change causes are one trace."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from examples.meeting_room.seed import seed
from onto_core.testing import running
from onto_firestore import FirestoreDatastore
from onto_websocket.testing import free_port

SESSION = "examples.meeting_room.views:MeetingSession"


@pytest.fixture
def store(emulator_host: str, project: str) -> Iterator[FirestoreDatastore]:
    opened = FirestoreDatastore(
        FirestoreDatastore.Config(project=project, emulator_host=emulator_host)
    )
    opened.open()
    seed(opened)
    yield opened
    opened.close()


def test_a_rest_action_on_firestore_and_the_view_it_updates_are_one_trace(
    store: FirestoreDatastore, tmp_path: Path
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    port = free_port()
    config = json.dumps(
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
                    "sinks": [{"type": "file", "path": str(tmp_path / "views.jsonl")}],
                },
            }
        }
    )
    trace_id, caller = secrets.randbits(128), secrets.randbits(64)
    with running(config, datastore=store, tracer_provider=provider):
        answer = httpx.post(
            f"http://127.0.0.1:{port}/meeting_session/meeting-1/joshua/set_attendance",
            json={"attending": False},
            headers={"traceparent": f"00-{trace_id:032x}-{caller:016x}-01"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 15
        traced: list[ReadableSpan] = []
        while not any(s.name == "sessions process view" for s in traced):
            assert time.monotonic() < deadline, [s.name for s in traced]
            time.sleep(0.05)
            traced = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
        (change,) = [c for c in store.changes() if c.doc_id == "meeting-1-joshua"][-1:]

    (action,) = [s for s in traced if s.name == "api process api"]
    # The change log entry holds the action's span, and the feed continues from it.
    assert change.trace == f"00-{trace_id:032x}-{action.context.span_id:016x}-01"
    (read,) = [
        s
        for s in traced
        if s.name == "sessions read"
        and dict(s.attributes or {}).get("onto.message.key") == "tickets/meeting-1-joshua"
    ]
    assert read.parent is not None
    assert read.parent.span_id == action.context.span_id
