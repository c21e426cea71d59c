"""A JSON-RPC endpoint on a free port over the seeded meeting room, and a client for it."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from examples.meeting_room.seed import seed
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.testing import running

SESSION = "examples.meeting_room.views:MeetingSession"
USER = "examples.meeting_room.views:UserView"
TOKENS = [
    {"token": "t-joshua", "principal": "joshua"},
    {"token": "t-tijuana", "principal": "tijuana"},
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Endpoint:
    """A running JSON-RPC endpoint and a ``requests`` client for it."""

    url: str
    root: str

    def post(self, body: Any, token: str | None = None, **kwargs: Any) -> requests.Response:
        """POST ``body`` as JSON (or raw ``data=`` in kwargs) to the endpoint."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if "data" not in kwargs:
            kwargs["data"] = json.dumps(body)
        return requests.post(self.url, headers=headers, timeout=10, **kwargs)

    def call(
        self, method: str, params: Any = None, *, token: str | None = None, id: int = 1
    ) -> dict[str, Any]:
        """One call; the response object (``result`` or ``error``)."""
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
        if params is not None:
            body["params"] = params
        answer: dict[str, Any] = self.post(body, token).json()
        assert answer["id"] == id
        return answer


@pytest.fixture
def port() -> int:
    """A port free on 127.0.0.1 right now."""
    return free_port()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    """A sqlite datastore holding the meeting room (meeting-1: joshua, thomasina, tijuana)."""
    datastore = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    datastore.open()
    seed(datastore)
    yield datastore
    datastore.close()


@pytest.fixture
def serve(store: SqliteDatastore) -> Iterator[Callable[..., Endpoint]]:
    """``serve(**settings)`` runs an api pipeline whose source is ``jsonrpc`` with these
    settings (views default to MeetingSession and UserView) until the test ends;
    ``processors=`` and ``sinks=`` replace its ``api`` processor and ``reply`` sink."""
    with ExitStack() as stack:

        def start(
            *,
            processors: list[dict[str, Any]] | None = None,
            sinks: list[dict[str, Any]] | None = None,
            **settings: Any,
        ) -> Endpoint:
            source = {"type": "jsonrpc", "port": free_port(), "views": [SESSION, USER]}
            source.update(settings)
            pipeline = {
                "source": source,
                "processors": processors or [{"type": "api"}],
                "sinks": sinks or [{"type": "reply"}],
            }
            config = {"pipelines": {"rpc": pipeline}}
            stack.enter_context(running(json.dumps(config), datastore=store))
            root = f"http://127.0.0.1:{source['port']}"
            return Endpoint(url=root + str(source.get("path", "/api")), root=root)

        yield start


@pytest.fixture
def rpc(serve: Callable[..., Endpoint]) -> Endpoint:
    """An open endpoint at /api serving MeetingSession and UserView."""
    return serve()


@pytest.fixture
def closed(serve: Callable[..., Endpoint]) -> Endpoint:
    """An endpoint needing a bearer token: joshua's or tijuana's, each on their own views."""
    return serve(auth={"tokens": TOKENS, "owner_field": "user_id"})
