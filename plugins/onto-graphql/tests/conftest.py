"""A seeded meeting-room store, the meeting room over GraphQL on a free port, and gql clients.

``graphql_config`` is the demo's shape: pipeline ``sessions`` (changes → ``view`` →
``graphql`` sink, the subscriptions) and ``api`` (``graphql`` source → ``api`` →
``reply``, the queries and mutations), both on one port.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.models import User
from examples.meeting_room.seed import seed
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import use_datastore
from onto_core.testing import running
from onto_websocket.testing import free_port

SESSION = "examples.meeting_room.views:MeetingSession"
USER_VIEW = "examples.meeting_room.views:UserView"
TOKENS = {"joshua-token": "joshua", "thomasina-token": "thomasina", "tijuana-token": "tijuana"}


def graphql_config(port: int, sink: dict[str, Any] | None = None, **settings: Any) -> str:
    """The meeting room over GraphQL on ``port``; ``settings`` go to both components."""
    endpoint = {"port": port, **settings}
    config = {
        "pipelines": {
            "sessions": {
                "source": {"type": "changes", "models": ["meetings", "tickets", "users"]},
                "processors": [{"type": "view", "view": SESSION}],
                "sinks": [sink or {"type": "graphql", "views": [SESSION], **endpoint}],
            },
            "api": {
                "source": {"type": "graphql", "views": [SESSION, USER_VIEW], **endpoint},
                "processors": [{"type": "api"}],
                "sinks": [{"type": "reply"}],
            },
        }
    }
    return json.dumps(config)  # JSON is YAML


@pytest.fixture
def auth() -> dict[str, Any]:
    """Bearer tokens of the three participants; each may only touch their own views."""
    return {
        "tokens": [{"token": t, "principal": p} for t, p in TOKENS.items()],
        "owner_field": "user_id",
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    """meeting-1 with joshua, thomasina and tijuana attending; thomasina, like the other
    two, asked for a hearing aid (so her leaving changes the count)."""
    datastore = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    datastore.open()
    try:
        seed(datastore)
        with use_datastore(datastore):
            thomasina = User.get("thomasina")
            thomasina.hearing_aid_requested = True
            thomasina.save()
        yield datastore
    finally:
        datastore.close()


@pytest.fixture
def serve(store: SqliteDatastore) -> Any:
    """``with serve(**settings) as url``: ``graphql_config`` running on ``store``; ``url``
    is the endpoint (``http://127.0.0.1:PORT/graphql``)."""

    @contextlib.contextmanager
    def serving(**settings: Any) -> Iterator[str]:
        port = free_port()
        with running(graphql_config(port, **settings), datastore=store):
            yield f"http://127.0.0.1:{port}/graphql"

    return serving
