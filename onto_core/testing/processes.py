"""Running ``onto run`` in its own process, reading what its file sinks wrote, and
installing the npm packages a test drives."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

__all__ = ["json_lines", "npm_ci", "onto_run"]


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
