"""A seeded meeting-room store and REST servers on free ports, for the onto-rest tests."""

from __future__ import annotations

import contextlib
import functools
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.meeting_room.seed import seed
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.testing import running

SESSION = "examples.meeting_room.views:MeetingSession"
USER = "examples.meeting_room.views:UserView"

ServeRest = Callable[..., contextlib.AbstractContextManager[str]]


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def api_config(source: dict[str, Any], sinks: list[dict[str, Any]] | None = None) -> str:
    """A config with one API pipeline: ``source`` → api processor → ``sinks`` (reply)."""
    pipeline = {
        "source": {"type": "rest", **source},
        "processors": [{"type": "api"}],
        "sinks": sinks or [{"type": "reply"}],
    }
    return json.dumps({"pipelines": {"api": pipeline}})  # JSON is YAML


@pytest.fixture
def port() -> int:
    """A free port on 127.0.0.1."""
    return free_port()


@contextlib.contextmanager
def seeded_store(path: Path) -> Iterator[SqliteDatastore]:
    """A sqlite store holding the meeting room: meeting-1 with joshua, thomasina, tijuana."""
    datastore = SqliteDatastore(SqliteDatastore.Config(path=path))
    datastore.open()
    try:
        seed(datastore)
        yield datastore
    finally:
        datastore.close()


@contextlib.contextmanager
def serving(
    store: SqliteDatastore, sinks: list[dict[str, Any]] | None = None, **settings: Any
) -> Iterator[str]:
    """Run a REST pipeline on ``store``; yields the server's base URL.

    Settings are the ``rest`` source's; ``views`` defaults to MeetingSession and UserView,
    ``port`` to a free one. ``sinks`` replaces the reply sink.
    """
    settings.setdefault("views", [SESSION, USER])
    settings.setdefault("port", free_port())
    with running(api_config(settings, sinks), datastore=store):
        yield f"http://127.0.0.1:{settings['port']}"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteDatastore]:
    """A freshly seeded meeting-room store for one test."""
    with seeded_store(tmp_path / "onto.db") as datastore:
        yield datastore


@pytest.fixture
def serve_rest(store: SqliteDatastore) -> ServeRest:
    """``with serve_rest(**settings) as url:`` runs a REST pipeline on this test's store."""
    return functools.partial(serving, store)


@pytest.fixture
def rest(store: SqliteDatastore) -> Iterator[str]:
    """The base URL of an open REST server for MeetingSession and UserView, for one test."""
    with serving(store) as url:
        yield url


@pytest.fixture(scope="module")
def shared_rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Like ``rest``, but one server for a whole module: for tests that change nothing."""
    path = tmp_path_factory.mktemp("rest") / "onto.db"
    with seeded_store(path) as datastore, serving(datastore) as url:
        yield url
