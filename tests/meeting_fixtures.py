"""Building meeting-room data in bulk for tests and benchmarks."""

from __future__ import annotations

from typing import Any

from examples.meeting_room.models import Location, Meeting, MeetingStatus, Ticket, User


def bulk_meetings(store: Any, count: int, participants: int = 3) -> None:
    """``count`` meetings in session, each with its own location, users and tickets."""
    writes: dict[tuple[str, str], dict[str, Any] | None] = {}
    for m in range(count):
        location = Location(id=f"loc-{m}", latitude=1.0, longitude=2.0, address=f"Room {m}")
        users = [
            User(
                id=f"u{m}-{p}", first_name=f"F{p}", last_name=f"L{m}", hearing_aid_requested=p == 0
            )
            for p in range(participants)
        ]
        tickets = [Ticket(id=f"t{m}-{p}", user=u.ref) for p, u in enumerate(users)]
        meeting = Meeting(
            id=f"m{m}",
            location=location.ref,
            users=[u.ref for u in users],
            tickets={u.id: t.ref for u, t in zip(users, tickets, strict=True)},
            status=MeetingStatus.IN_SESSION,
        )
        for model in (location, *users, *tickets, meeting):
            writes[(model.collection, model.id)] = model.to_dict()
    store.commit({}, writes)
