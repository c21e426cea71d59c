"""A trace crosses processes in Kafka record headers: a REST action in one ``onto run``,
its change published to Kafka, and the view update it causes in another ``onto run``."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.meeting_room.seed import seed_file
from onto_core.testing import json_lines, onto_run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[3]
SESSION = "examples.meeting_room.views:MeetingSession"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


def spans_of(path: Path, trace_id: int) -> list[dict[str, Any]]:
    """The finished spans of trace ``trace_id`` in a file exporter's JSON lines."""
    return [s for s in json_lines(path) if int(s["context"]["trace_id"], 16) == trace_id]


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, (name, [s["name"] for s in spans])
    return found[0]


def span_id(span: dict[str, Any]) -> int:
    return int(span["context"]["span_id"], 16)


def parent_of(span: dict[str, Any]) -> int | None:
    return int(span["parent_id"], 16) if span["parent_id"] else None


def test_a_rest_action_and_the_view_update_it_causes_elsewhere_are_one_trace(
    kafka: Any, wait_until: Callable[..., Any], tmp_path: Path
) -> None:
    db = tmp_path / "meeting_room.db"
    seed_file(db)
    topic = kafka.topic(partitions=1, prefix="traced-changes")
    port = free_port()
    publisher_spans, worker_spans = tmp_path / "publisher.spans", tmp_path / "worker.spans"
    views = tmp_path / "views.jsonl"
    publisher = write_config(
        tmp_path / "publisher.yaml",
        {
            "datastore": {"type": "sqlite", "path": str(db)},
            "runtime": {"tracing": {"exporter": "file", "path": str(publisher_spans)}},
            "pipelines": {
                "api": {
                    "source": {"type": "rest", "port": port, "views": [SESSION]},
                    "processors": [{"type": "api"}],
                    "sinks": [{"type": "reply"}],
                },
                "publish": {
                    "source": {"type": "changes", "collections": ["tickets"]},
                    "sinks": [
                        {
                            "type": "kafka",
                            "bootstrap_servers": kafka.bootstrap,
                            "topic": topic,
                            "key": "{collection}/{docId}",
                            "value_format": "json",
                        }
                    ],
                },
            },
        },
    )
    worker = write_config(
        tmp_path / "worker.yaml",
        {
            "datastore": {"type": "sqlite", "path": str(db)},
            "runtime": {"tracing": {"exporter": "file", "path": str(worker_spans)}},
            "pipelines": {
                "views": {
                    "source": {
                        "type": "kafka",
                        "bootstrap_servers": kafka.bootstrap,
                        "topics": [topic],
                        "group_id": f"{topic}-views",
                        "partitions": "all",
                    },
                    "processors": [
                        {"type": "kafka_decode", "value_format": "json"},
                        {"type": "view", "view": SESSION},
                    ],
                    "sinks": [{"type": "file", "path": str(views)}],
                }
            },
        },
    )
    trace_id, caller = secrets.randbits(128), secrets.randbits(64)
    url = f"http://127.0.0.1:{port}"
    with (
        onto_run(publisher, tmp_path / "publisher.log", cwd=ROOT),
        onto_run(worker, tmp_path / "worker.log", cwd=ROOT),
    ):

        def serving() -> bool:
            try:
                return httpx.get(f"{url}/meeting_session/meeting-1/joshua", timeout=2).is_success
            except httpx.TransportError:
                return False

        wait_until(serving, 60, "the publisher's REST endpoint")
        wait_until(lambda: len(json_lines(views)) >= 3, 60, "the worker's initial views")
        answer = httpx.post(
            f"{url}/meeting_session/meeting-1/joshua/set_attendance",
            json={"attending": False},
            headers={"traceparent": f"00-{trace_id:032x}-{caller:016x}-01"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text

        def updated() -> list[dict[str, Any]]:
            return [
                line
                for line in json_lines(views)
                if "joshua" not in str(line["value"]["data"]["attending"])
            ]

        wait_until(lambda: len(updated()) == 3, 60, "every participant's updated view")
        # The change's record on the topic carries the trace in its headers.
        records = [r for r in kafka.read(topic, 4) if r.key == b"tickets/meeting-1-joshua"]
        carried = [dict(r.headers).get("traceparent") for r in records]
        assert any(p is not None and f"-{trace_id:032x}-" in p.decode() for p in carried)
    # The processes have stopped (SIGTERM): each flushed its spans on the way out.
    published = spans_of(publisher_spans, trace_id)
    action = one(published, "api process api")
    assert parent_of(one(published, "api read")) == caller
    change_read = one(published, "publish read")
    assert parent_of(change_read) == span_id(action)
    assert parent_of(one(published, "publish write kafka")) == span_id(change_read)
    consumed = spans_of(worker_spans, trace_id)
    record_read = one(consumed, "views read")
    assert parent_of(record_read) == span_id(change_read)  # through the record's headers
    decode = one(consumed, "views process kafka_decode")
    recompute = one(consumed, "views process view")
    assert parent_of(recompute) == span_id(decode)
    writes = [s for s in consumed if s["name"] == "views write file"]
    assert len(writes) == 3
    assert all(parent_of(s) == span_id(recompute) for s in writes)
    # Every update the worker wrote says which trace it belongs to.
    assert all(f"-{trace_id:032x}-" in line["headers"]["traceparent"] for line in updated())
