"""The meeting room over GraphQL: graphql.yaml is web.yaml with the transport swapped, it
serves the schema docs/graphql.md prints, and a newcomer's first query answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from doc_blocks import code_blocks
from graphql import build_client_schema, get_introspection_query, print_schema

from onto_core.config import load_config
from onto_core.testing import running
from onto_websocket.testing import free_port

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "meeting_room"
DOC = ROOT / "docs" / "graphql.md"


def test_switching_the_demo_to_graphql_is_a_change_of_transport_type() -> None:
    web = yaml.safe_load((EXAMPLE / "web.yaml").read_text())
    graphql = yaml.safe_load((EXAMPLE / "graphql.yaml").read_text())
    assert graphql["pipelines"].keys() == web["pipelines"].keys()

    def shape(config: dict[str, Any], transport: str) -> Any:
        sessions, actions = config["pipelines"]["sessions"], config["pipelines"]["actions"]
        (sink,) = sessions["sinks"]
        return (
            sessions["source"],
            sessions["processors"],
            sink["type"] == transport,
            sink["views"],
            actions["source"]["type"] == transport,
            actions["processors"],
            actions["sinks"],
        )

    assert shape(graphql, "graphql") == shape(web, "websocket")


@pytest.fixture
def example(store: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    port = free_port()
    monkeypatch.setenv("ONTO_PORT", str(port))
    monkeypatch.setenv("ONTO_DB", str(tmp_path / "unused.db"))
    with running(load_config(EXAMPLE / "graphql.yaml"), datastore=store):
        yield f"http://127.0.0.1:{port}/graphql"


def test_the_schema_in_the_docs_is_the_one_served(example: str) -> None:
    answer = httpx.post(example, json={"query": get_introspection_query(descriptions=True)})
    served = print_schema(build_client_schema(answer.json()["data"]))
    (written,) = [
        block.text for block in code_blocks(DOC.read_text()) if "type Query" in block.text
    ]
    assert written.strip() == served.strip()


def test_the_first_query_of_the_docs_answers(example: str) -> None:
    query = (
        '{ meetingSession(meetingId: "meeting-1", userId: "joshua") { numHearingAidRequested } }'
    )
    answer = httpx.post(example, json={"query": query})
    assert answer.json() == {"data": {"meetingSession": {"numHearingAidRequested": 3}}}
