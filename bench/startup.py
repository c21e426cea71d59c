"""Start-up: `onto run` of a built-ins-only config to its first output, every plugin installed.

Times a fresh ``onto run`` process of a one-message ``generate`` → ``stdout`` pipeline
from its start until its first output line, with every installed plugin left to the
command (which imports only the plugins the config's types need), against the same
command with ``ONTO_LOAD_PLUGINS`` set empty (the built-ins only, nothing else even
looked at). Rounds alternate; the medians are compared. Target: at most 1.3 times the
baseline.

    uv run --all-packages python bench/startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
pipelines:
  once:
    source: {type: generate, count: 1}
    sinks: [{type: stdout}]
"""
WAIT = 60.0  # seconds one run may take


def onto_command() -> list[str]:
    """The installed ``onto`` script next to this interpreter, else ``python -m onto_core``."""
    script = Path(sys.executable).with_name("onto")
    return [str(script)] if script.exists() else [sys.executable, "-m", "onto_core"]


def time_to_first_output(config: Path, env: dict[str, str]) -> float:
    """Seconds from starting ``onto run config`` until its first stdout line."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*onto_command(), "--log-level", "warning", "run", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=config.parent,
    )
    assert process.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=WAIT):
                raise TimeoutError(f"no output within {WAIT}s")
            line = process.stdout.readline()
        elapsed = time.perf_counter() - started
        _, stderr = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)
    if process.returncode != 0 or not line.strip():
        raise RuntimeError(f"onto run failed ({process.returncode}): {stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs of each side")
    args = parser.parse_args()

    installed = sorted(ep.name for ep in importlib.metadata.entry_points(group="onto"))
    print(f"installed plugins: {', '.join(installed) or 'none'}")
    if not installed:
        print("warning: no plugin installed; run with `uv run --all-packages`")

    base_env = {k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"}
    builtins_env = {**base_env, "ONTO_LOAD_PLUGINS": ""}
    onto: list[float] = []
    baseline: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "onto.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        time_to_first_output(config, base_env)  # warm the file-system caches
        for _ in range(args.rounds):
            onto.append(time_to_first_output(config, base_env))
            baseline.append(time_to_first_output(config, builtins_env))

    onto_s, baseline_s = statistics.median(onto), statistics.median(baseline)
    print(f"every plugin installed:  median {onto_s:.3f}s  (min {min(onto):.3f}s)")
    print(f"ONTO_LOAD_PLUGINS empty: median {baseline_s:.3f}s  (min {min(baseline):.3f}s)")
    print(
        f"RESULT startup onto={onto_s:.3f}s baseline={baseline_s:.3f}s "
        f"ratio={onto_s / baseline_s:.2f} target=<=1.3"
    )


if __name__ == "__main__":
    main()
