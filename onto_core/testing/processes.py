"""Running ``onto run`` in its own process, and reading what its file sinks wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["json_lines", "onto_run"]


@contextmanager
def onto_run(
    config: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """``onto run config`` in a new process, its output in ``log``.

    On leaving the block a process still running gets SIGTERM (so it drains), and is
    killed if it has not exited within 30 s.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "onto_core", "run", str(config)],
            cwd=cwd,
            env=dict(env) if env is not None else dict(os.environ),
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
