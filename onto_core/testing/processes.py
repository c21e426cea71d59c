"""Running ``onto run`` in its own process, reading what its file sinks wrote, watching a
process's output, and installing the npm packages a test drives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["LoggedProcess", "json_lines", "npm_ci", "onto_run"]


@contextmanager
def onto_run(
    config: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``onto run config`` in a new process, its output in ``log``.

    ``env`` adds to (or overrides) this process's environment, which the new process
    inherits; ``cwd`` is its working directory (relative paths in the config and
    ``module:function`` references are resolved from there). On leaving the block a
    process still running gets SIGTERM (so it drains), and is killed if it has not
    exited within 30 s.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "onto_core", "run", str(config)],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def json_lines(path: Path) -> list[Any]:
    """The complete JSON lines in ``path`` so far (a line still being written is left out)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]


def npm_ci(folder: Path, package: str) -> None:
    """``npm ci`` in ``folder`` (from its lock file) unless ``package`` is installed there.

    Fails the test, naming ``package``, when npm is missing or the install fails.
    """
    if (folder / "node_modules" / package).is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is not installed: the tests need it to install {package}")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"`npm ci` of {package} in {folder} failed: {done.stderr or done.stdout}")


class LoggedProcess:
    """A process whose merged stdout and stderr a thread reads line by line into
    ``output``, so it never blocks writing; ``started`` is ``time.perf_counter()`` at start.
    """

    def __init__(self, command: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        self.output: list[str] = []
        self._lines = threading.Condition()
        self._ended = False  # the output reached its end
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lines:
                self.output.append(line)
                self._lines.notify_all()
        with self._lines:
            self._ended = True
            self._lines.notify_all()

    def first_line(self, seen: Callable[[str], bool], timeout: float) -> str | None:
        """The first output line ``seen`` holds for, waiting up to ``timeout`` seconds;
        ``None`` if none came by then or the output ended without one."""
        with self._lines:
            found: list[str] = []

            def check() -> bool:
                found[:] = [line for line in self.output if seen(line)][:1]
                return bool(found) or self._ended

            self._lines.wait_for(check, timeout)
            return found[0] if found else None

    def stop(self, timeout: float = 10) -> None:
        """Terminate the process, killing it if it outlives ``timeout`` seconds."""
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)
