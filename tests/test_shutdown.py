"""``onto run`` drains on SIGTERM/SIGINT: what it confirmed is acked, and it exits cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        if process.poll() is not None:
            raise AssertionError(f"onto run exited early: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} lines within {timeout}s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_and_exits_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    out = tmp_path / "out.jsonl"
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
pipelines:
  ticker:
    source: {{type: generate, count: null, interval: 0.01}}
    sinks: [{{type: file, path: "{out}"}}]
runtime: {{drain_timeout: 5}}
""")
    process = subprocess.Popen(
        [sys.executable, "-m", "onto_core", "--log-format", "json", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_lines(out, 5, process, timeout=20)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=15)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    logs = [json.loads(line) for line in stderr.splitlines()]
    assert any(entry["message"] == f"received {signum.name}, draining" for entry in logs)
    [figures] = [entry["metrics"] for entry in logs if "metrics" in entry]
    written = len(out.read_text().splitlines())
    assert figures["acked"] == figures["in"] == written
