"""A seeded meeting-room store, websocket pipelines on free ports, and real Socket.IO clients.

``node_client`` runs the official ``socket.io-client`` (pinned in ``tests/node``) under
node; its npm dependencies are installed from the lock file (``npm ci``) when missing,
so the tests need no separate set-up step. Without node and npm those tests fail, loudly.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.seed import seed
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.testing import npm_ci, running
from onto_websocket.testing import ViewClient, free_port

SESSION = "examples.meeting_room.views:MeetingSession"
NODE_DIR = Path(__file__).resolve().parent / "node"

Serve = Callable[..., contextlib.AbstractContextManager[str]]


def websocket_config(port: int, sink: dict[str, Any] | None = None, **settings: Any) -> str:
    """The meeting room over websockets on ``port``: pipeline ``sessions`` (changes → view →
    ``sink``, the websocket sink unless given) and ``actions`` (websocket source → api →
    reply). ``settings`` (``auth``, ...) go to both websocket components; ``page_dir`` to
    the sink only.
    """
    endpoint = {"port": port, "views": [SESSION], **settings}
    source = {k: v for k, v in endpoint.items() if k != "page_dir"}
    config = {
        "pipelines": {
            "sessions": {
                "source": {"type": "changes", "models": ["meetings", "tickets", "users"]},
                "processors": [{"type": "view", "view": SESSION}],
                "sinks": [sink or {"type": "websocket", **endpoint}],
            },
            "actions": {
                "source": {"type": "websocket", **source},
                "processors": [{"type": "api"}],
                "sinks": [{"type": "reply"}],
            },
        }
    }
    return json.dumps(config)  # JSON is YAML


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    """A sqlite store holding meeting-1 with joshua, thomasina and tijuana, all attending."""
    datastore = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    datastore.open()
    try:
        seed(datastore)
        yield datastore
    finally:
        datastore.close()


@pytest.fixture
def clients() -> Iterator[list[ViewClient]]:
    """Every ``ViewClient`` a test made; each is disconnected when the test ends."""
    made: list[ViewClient] = []
    yield made
    for one in made:
        one.close()


@pytest.fixture
def client(clients: list[ViewClient]) -> Callable[[], ViewClient]:
    """Makes a ``ViewClient`` (not yet connected)."""

    def make() -> ViewClient:
        clients.append(ViewClient())
        return clients[-1]

    return make


@pytest.fixture
def serve(store: SqliteDatastore, clients: list[ViewClient]) -> Serve:
    """``with serve(**settings) as url``: ``websocket_config`` running on ``store``.

    The test's clients disconnect before the server stops, as users leave a page before
    a deploy, rather than racing the server's own goodbye.
    """

    @contextlib.contextmanager
    def serving(**settings: Any) -> Iterator[str]:
        port = free_port()
        with running(websocket_config(port, **settings), datastore=store):
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                for one in clients:
                    one.close()

    return serving


@pytest.fixture(scope="session")
def node_client() -> Callable[[str], list[str]]:
    """The command running ``tests/node/<script>`` with socket.io-client installed."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node must be installed: these tests run the official socket.io-client")
    npm_ci(NODE_DIR, "socket.io-client")

    def command(script: str) -> list[str]:
        return [node, str(NODE_DIR / script)]

    return command
