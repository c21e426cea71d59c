"""The Firestore emulator (the onto-firestore tests' own fixtures), a function folder
built from a meeting-room config, and the Functions Framework serving it on a real port."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from onto_core.testing.processes import LoggedProcess
from onto_firestore import FirestoreDatastore

sys.path.insert(0, str(Path(__file__).resolve().parent))  # cloud_events, for the tests

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location(
    "onto_firestore_test_emulator", ROOT / "plugins/onto-firestore/tests/conftest.py"
)
assert _spec is not None
assert _spec.loader is not None
firestore_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(firestore_fixtures)

emulator_host = firestore_fixtures.emulator_host
project = firestore_fixtures.project
free_port = firestore_fixtures.free_port


@pytest.fixture
def store(function_env: dict[str, str], project: str) -> Iterator[FirestoreDatastore]:
    """The Firestore datastore on the emulator project the function uses."""
    opened = FirestoreDatastore(FirestoreDatastore.Config(project=project))
    opened.open()
    yield opened
    opened.close()


@pytest.fixture
def client(function_env: dict[str, str], project: str) -> firestore.Client:
    """The official client on that project, to read what the function wrote."""
    return firestore.Client(project=project)


CONFIG = """\
datastore: {{type: firestore, project: "${{ONTO_FIRESTORE_PROJECT}}"}}
pipelines:
  meeting_sessions:
    source: {{type: cloud_event, collections: [meetings, tickets, users, locations]}}
    processors:
      - {{type: stateless_view, view: "examples.meeting_room.views:MeetingSession"}}
    sinks:
      - {{type: firestore, path: "users/{{user_id}}/meetingSessions/{{meeting_id}}"}}
    retry: {{max_attempts: 1}}
    dead_letter: {{type: file, path: "{dead}"}}
"""


class FunctionServer(LoggedProcess):
    """``functions-framework --target NAME`` serving a built folder on 127.0.0.1."""

    def __init__(
        self, folder: Path, target: str, env: dict[str, str], signature_type: str | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        command = [
            sys.executable,
            "-m",
            "functions_framework",
            "--source",
            str(folder / "main.py"),
            "--target",
            target,
            # What a deployment sets for a function no Functions Framework decorator
            # types (a Firebase trigger is a CloudEvent function the SDK wraps).
            *(["--signature-type", signature_type] if signature_type else []),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        super().__init__(command, folder, env)

    def wait_for(self, seen: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        """The first output line for which ``seen`` holds (waiting up to ``timeout``)."""
        found = self.first_line(seen, timeout)
        if found is None:
            pytest.fail(f"the function never logged {what}; output:\n{''.join(self.output)}")
        return found


@pytest.fixture
def function_env(
    emulator_host: str, project: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator_host)
    monkeypatch.setenv("ONTO_FIRESTORE_PROJECT", project)
    env = dict(os.environ)
    env["GUNICORN_LOG_LEVEL"] = "info"  # "Booting worker" says it serves
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def serve(function_env: dict[str, str]) -> Iterator[Callable[..., FunctionServer]]:
    started: list[FunctionServer] = []

    def start(folder: Path, target: str, signature_type: str | None = None) -> FunctionServer:
        server = FunctionServer(folder, target, function_env, signature_type)
        started.append(server)
        server.wait_for(lambda line: "Booting worker" in line, "its worker booting")
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def config_template() -> str:
    """The meeting room as a function; ``{dead}`` is the dead-letter file."""
    return CONFIG
