"""The meeting-room demo on the embedded sqlite store, in one command.

    uv run --all-packages python -m examples.meeting_room

Seeds a meeting with three participants, starts the ``meeting_sessions`` pipeline of
``pipeline.yaml`` (sqlite change feed → ``view`` processor → sinks), then has participants
leave and rejoin. Each change recomputes that meeting's views, and every participant's
``MeetingSession`` is delivered again: printed here, and appended as JSON lines to
``.onto/meeting_sessions.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

from examples.meeting_room.seed import open_store, seed
from examples.meeting_room.views import MeetingSession
from onto_core.config import load_config
from onto_core.models import run_action
from onto_core.runtime import Runtime

HERE = Path(__file__).parent
SCRIPT = [("joshua", False), ("tijuana", False), ("joshua", True)]


def describe(value: dict[str, Any]) -> str:
    data = value["data"]
    if data is None:
        return f"  {value['key']:<22} v{value['version']:<4} removed"
    names = ", ".join(a["name"] for a in data["attending"]) or "nobody"
    return (
        f"  {value['key']:<22} v{value['version']:<4} attending: {names} "
        f"({data['numHearingAidRequested']} hearing aid requested)"
    )


class Delivered:
    """What the pipeline's file sink has written since the demo started."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as lines:
            lines.seek(self.offset)
            return [json.loads(line)["value"] for line in lines]


async def show_until(delivered: Delivered, count: int) -> None:
    """Print the views delivered until ``count`` have arrived (waiting at most 10 s)."""
    async with asyncio.timeout(10):
        while len(values := delivered.read()) < count:  # noqa: ASYNC110 - a file, no event
            await asyncio.sleep(0.05)
    for value in values[count - 3 : count]:
        print(describe(value))


async def main() -> None:
    os.environ.setdefault("ONTO_DB", ".onto/meeting_room.db")
    config = load_config(HERE / "pipeline.yaml")
    store = open_store(Path(os.environ["ONTO_DB"]))
    delivered = Delivered(config.pipelines["meeting_sessions"].sinks[0].config.path)  # type: ignore[attr-defined]
    seed(store)
    # The pipelines share the demo's store, so each write wakes the change feed at once.
    runtime = Runtime(config, datastore=store)
    task = asyncio.create_task(runtime.run())
    print("meeting-1, everyone attending; each participant receives their MeetingSession:")
    await show_until(delivered, 3)
    for step, (user, attending) in enumerate(SCRIPT, start=2):
        await asyncio.sleep(1)  # pace the demo so a person can follow it
        verb = "rejoins" if attending else "leaves"
        print(f"\n{user} {verb}; the meeting's views are recomputed and every participant's sent:")
        await asyncio.to_thread(
            run_action,
            store,
            MeetingSession,
            f"meeting-1/{user}",
            "set_attendance",
            {"attending": attending},
        )
        await show_until(delivered, 3 * step)
    await runtime.stop()
    await task
    print(f"\nEvery delivered view is in {delivered.path}.")


if __name__ == "__main__":
    asyncio.run(main())
