"""The meeting room live in a browser: one page per participant, updated as others act.

    uv run --all-packages python -m examples.meeting_room.serve

Seeds the demo meeting into the sqlite store (``ONTO_DB``, default
``.onto/meeting_room_web.db``), runs ``web.yaml`` (the ``MeetingSession`` views pushed
over Socket.IO, attendance changed through ``action`` events, the page served at ``/``)
and, once it listens, prints one URL per participant. Open two side by side and toggle
one's attendance: the other page updates at once. ``ONTO_HOST`` and ``ONTO_PORT`` say
where it listens (default 127.0.0.1:8000). Run it from the repository root (the page
folder in ``web.yaml`` is relative to it); stop it with Ctrl-C.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from examples.meeting_room.seed import open_store, seed
from onto_core import hookimpl, register_plugin
from onto_core.config import load_config
from onto_core.runtime import Runtime
from onto_web import running_servers

HERE = Path(__file__).parent


class ParticipantLinks:
    """Prints each participant's page once the server listens (so the port is known)."""

    def __init__(self, users: list[str]) -> None:
        self.users = users

    @hookimpl(trylast=True)
    def runtime_started(self, runtime: Runtime) -> None:
        for server in running_servers():
            for user in self.users:
                print(f"{server.url}/?user={user}", flush=True)


def main() -> None:
    os.environ.setdefault("ONTO_DB", ".onto/meeting_room_web.db")
    config = load_config(HERE / "web.yaml")
    store = open_store(Path(os.environ["ONTO_DB"]))
    meeting = seed(store)
    register_plugin(ParticipantLinks(sorted(ref.doc_id for ref in meeting.users)))
    # The runtime reads and writes this same store, so each action from a page wakes the
    # change feed at once; it closes the store when it stops.
    try:
        asyncio.run(Runtime(config, datastore=store).run(handle_signals=True))
    except OSError as exc:  # the port is taken, or the address cannot be used
        print(
            f"error: {exc}\nset ONTO_PORT (and ONTO_HOST) to listen elsewhere, e.g. ONTO_PORT=8001",
            file=sys.stderr,
        )
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
