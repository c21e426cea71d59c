"""What exactly_once costs a "Query+Task" pipeline: triggers per second through
``firestore_tasks → map → firestore`` with ``guarantee: exactly_once`` (one transaction
per trigger: claim, views, mark) against the same pipeline with ``at_least_once`` (views
in batched commits, then one mark per trigger), measured in the same run.

Starts ``@firestore-emulator/server`` on 127.0.0.1 (``npm ci --prefix
plugins/onto-firestore/emulator`` first) unless ``FIRESTORE_EMULATOR_HOST`` is set.

    uv run --all-packages python bench/firestore_tasks.py --triggers 500 --rounds 3

Each round seeds ``--triggers`` pending invites in a fresh project, starts the pipeline
and times until every invite is marked done. The ratio is exactly_once / at_least_once
throughput; on the emulator every call is a local round trip, so it measures the extra
calls (the transaction's begin, reads and commit per trigger), not network latency.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from firestore_sink import start_emulator
from google.cloud.firestore_v1.base_query import FieldFilter

from onto_core.testing import running
from onto_firestore import make_client


def rate(host: str, triggers: int, guarantee: str) -> float:
    project = f"bench-{uuid.uuid4().hex[:8]}"
    client = make_client(project, emulator_host=host)
    for start in range(0, triggers, 400):
        batch = client.batch()
        for i in range(start, min(triggers, start + 400)):
            batch.set(
                client.document(f"invites/i{i}"),
                {"meetingId": f"m{i % 20}", "userId": f"u{i}", "status": "pending"},
            )
        batch.commit()
    config = f"""
datastore: {{type: firestore, project: {project}, emulator_host: "{host}"}}
pipelines:
  invitations:
    source: {{type: firestore_tasks, collection: invites, poll_interval: 0.01}}
    processors: [{{type: map, function: "examples.meeting_room.invites:invitation"}}]
    sinks: [{{type: firestore, path: "users/{{user_id}}/invitations/{{meeting_id}}"}}]
    guarantee: {guarantee}
"""
    began = time.perf_counter()
    # The runtime's own count: a snapshot listener on the triggers would load the
    # emulator with every mark and slow both sides down.
    with running(config) as runtime:
        deadline = began + 300
        while runtime.metrics()["invitations"]["acked"] < triggers:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{guarantee}: the triggers were not all done within 300s")
            time.sleep(0.005)
        elapsed = time.perf_counter() - began
    still = FieldFilter("status", "==", "pending")
    pending = client.collection("invites").where(filter=still).get()
    if pending:
        raise SystemExit(f"{guarantee}: {len(pending)} triggers still pending")
    client.close()  # type: ignore[no-untyped-call]
    return triggers / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triggers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    host, process = start_emulator()
    try:
        exact, least = [], []
        for _ in range(args.rounds):  # interleaved: both sides see the same machine load
            exact.append(rate(host, args.triggers, "exactly_once"))
            least.append(rate(host, args.triggers, "at_least_once"))
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
    e, a = statistics.median(exact), statistics.median(least)
    print(f"exactly_once: {e:.0f} triggers/s, at_least_once: {a:.0f} triggers/s")
    print(
        f"RESULT firestore_tasks exactly_once={e:.0f}/s at_least_once={a:.0f}/s ratio={e / a:.2f}"
    )


if __name__ == "__main__":
    main()
