"""Toggle a participant's attendance, as a front end would, to watch the views update.

uv run --all-packages python -m examples.meeting_room.change_attendance joshua --absent
"""

from __future__ import annotations

import argparse
from pathlib import Path

from examples.meeting_room.seed import DEFAULT_DB, open_store
from examples.meeting_room.views import MeetingSession
from onto_core.models import run_action


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("user_id")
    parser.add_argument("--meeting", default="meeting-1")
    parser.add_argument("--absent", action="store_true", help="Mark as not attending.")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    args = parser.parse_args()
    store = open_store(args.db)
    try:
        view = run_action(
            store,
            MeetingSession,
            f"{args.meeting}/{args.user_id}",
            "set_attendance",
            {"attending": not args.absent},
        )
    finally:
        store.close()
    assert isinstance(view, MeetingSession)
    names = ", ".join(a.name for a in view.attending) or "nobody"
    print(f"{args.user_id} is now {'absent' if args.absent else 'attending'}; attending: {names}")


if __name__ == "__main__":
    main()
