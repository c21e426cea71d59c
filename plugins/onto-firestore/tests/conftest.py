"""The Firestore emulator the tests talk to.

``FIRESTORE_EMULATOR_HOST`` (host:port) picks a running emulator; otherwise the session
starts ``@firestore-emulator/server`` from ``plugins/onto-firestore/emulator`` bound to
127.0.0.1 on a free port, installing its pinned npm dependencies first (``npm ci``, from
its lock file) when they are missing. Without node and npm the tests fail, loudly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from onto_core.testing import npm_ci

EMULATOR_DIR = Path(__file__).resolve().parent.parent / "emulator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Emulator:
    """One emulator process on 127.0.0.1 that a test may stop and start again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not installed: the Firestore tests need it for the emulator")
        npm_ci(EMULATOR_DIR, "@firestore-emulator/server")
        process = subprocess.Popen(
            [node, str(EMULATOR_DIR / "launch.js"), str(self.port)],
            cwd=EMULATOR_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ready = threading.Event()
        output: list[str] = []

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                if line.startswith("listening "):
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            process.kill()
            pytest.fail(f"Firestore emulator did not start within {timeout}s: {''.join(output)}")
        self.process = process

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdin is not None:
            process.stdin.close()


@pytest.fixture(scope="session")
def emulator_host() -> Iterator[str]:
    """host:port of the Firestore emulator for this session."""
    configured = os.environ.get("FIRESTORE_EMULATOR_HOST")
    if configured:
        yield configured
        return
    emulator = Emulator(free_port())
    emulator.start()
    try:
        yield emulator.host
    finally:
        emulator.stop()


@pytest.fixture
def project() -> str:
    """A project id of its own, so each test starts with an empty database."""
    return f"onto-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def own_emulator() -> Iterator[Emulator]:
    """An emulator of this test's own, which the test may stop and start again."""
    emulator = Emulator(free_port())
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()
