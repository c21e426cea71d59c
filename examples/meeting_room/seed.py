"""Seed data: one meeting in session with three participants, two of whom need hearing aids.

uv run --all-packages python -m examples.meeting_room.seed [--db .onto/meeting_room.db]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from examples.meeting_room.models import Location, Meeting, MeetingStatus, Ticket, User
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.models import Datastore, use_datastore

DEFAULT_DB = Path(".onto/meeting_room.db")


def seed(store: Datastore, meeting_id: str = "meeting-1") -> Meeting:
    """Write the demo meeting and its people into ``store`` (idempotent)."""
    with use_datastore(store):
        users = [
            User(
                id="tijuana",
                first_name="Tijuana",
                last_name="Ramos",
                organization="UCSD",
                hearing_aid_requested=True,
            ),
            User(
                id="joshua",
                first_name="Joshua",
                last_name="Pendergrast",
                organization="SDSU",
                hearing_aid_requested=True,
            ),
            User(
                id="thomasina",
                first_name="Thomasina",
                last_name="Manning",
                organization="UCSD",
                hearing_aid_requested=False,
            ),
        ]
        location = Location(
            id="room-1",
            latitude=32.880361,
            longitude=-117.242929,
            address="9500 Gilman Drive, La Jolla, CA",
        ).save()
        tickets = {}
        for user in users:
            user.save()
            ticket = Ticket(id=f"{meeting_id}-{user.id}", user=user.ref, attendance=True).save()
            tickets[user.id] = ticket.ref
        return Meeting(
            id=meeting_id,
            location=location.ref,
            users=[u.ref for u in users],
            tickets=tickets,
            status=MeetingStatus.IN_SESSION,
        ).save()


def open_store(path: Path) -> SqliteDatastore:
    store = SqliteDatastore(SqliteDatastore.Config(path=path))
    store.open()
    return store


def seed_file(path: Path) -> Meeting:
    """Seed the sqlite file ``path`` (made if missing) and close it again."""
    store = open_store(path)
    try:
        return seed(store)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, default=DEFAULT_DB)
    args = parser.parse_args()
    meeting = seed_file(args.db)
    print(f"seeded {meeting.id} with {len(meeting.users)} participants into {args.db}")


if __name__ == "__main__":
    main()
