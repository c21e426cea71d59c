"""The meeting room's MeetingSession on the in-process engine and on Flink (PyFlink 2.3
mini-cluster, parallelism 1 and 2), over the same random change stream.

In-process: each change is applied by the ``ReactiveEngine`` as it is made (changes/s of
apply, and its per-change latency). Flink: the compiled job reads the same changes from
a JSON-lines file (bounded) and its rows are collected; job start-up is the time until
the job is submitted, throughput is changes over the time from submission to the end.
Needs the job environment: ONTO_FLINK_PYTHON (see docs/flink.md).

    ONTO_FLINK_PYTHON=.flink-env/bin/python \\
      uv run --all-packages python bench/flink_views.py --mutations 5000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "onto-flink" / "tests"))

from flink_workload import InProcessViews, MeetingRoomWorkload, write_changes

from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_flink._job import FlinkConfig, job_python, start_job


def flink_run(changes: Path, folder: Path, parallelism: int) -> tuple[float, float]:
    """(start-up seconds, processing seconds) of one bounded run."""
    config = FlinkConfig.model_validate(
        {
            "views": ["examples.meeting_room.views:MeetingSession"],
            "changes": {"path": str(changes)},
            "sink": {"path": str(folder / f"views-p{parallelism}.jsonl")},
            "parallelism": parallelism,
            "checkpoint_dir": str(folder / "checkpoints"),
        }
    )
    started = time.perf_counter()
    run = start_job(config, python=job_python(), log=folder / "runner.log")
    run.wait_submitted()
    submitted = time.perf_counter()
    if run.process.wait() != 0:
        raise SystemExit("the Flink job failed:\n" + (folder / "runner.log").read_text()[-2000:])
    return submitted - started, time.perf_counter() - submitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutations", type=int, default=5000)
    args = parser.parse_args()
    store = MemoryDatastore()
    views = InProcessViews(store)
    latencies: list[float] = []

    def timed() -> None:
        began = time.perf_counter()
        views.catch_up()
        latencies.append(time.perf_counter() - began)

    MeetingRoomWorkload(seed=1).run(store, args.mutations, after_each=timed)
    with tempfile.TemporaryDirectory(prefix="onto-flink-bench-") as tmp:
        folder = Path(tmp)
        changes = folder / "changes.jsonl"
        count = write_changes(store, changes)
        in_rate = count / sum(latencies)
        p50 = statistics.median(latencies) * 1000
        p99 = sorted(latencies)[int(len(latencies) * 0.99)] * 1000
        print(f"changes: {count:,}; views: {len(views.latest):,}")
        print(f"in-process: {in_rate:,.0f} changes/s, per change p50 {p50:.2f} ms p99 {p99:.2f} ms")
        rates = {}
        for parallelism in (1, 2):
            startup, busy = flink_run(changes, folder, parallelism)
            rates[parallelism] = count / busy
            print(
                f"flink p{parallelism}: start-up {startup:.1f} s, {rates[parallelism]:,.0f}"
                f" changes/s ({busy:.1f} s from submission to the last view, end to end)"
            )
        print(
            f"RESULT flink_views in_process={in_rate:.0f}/s flink_p1={rates[1]:.0f}/s"
            f" flink_p2={rates[2]:.0f}/s ratio={rates[1] / in_rate:.3f}"
            f" p2_over_p1={rates[2] / rates[1]:.2f} target=none"
        )


if __name__ == "__main__":
    main()
