"""A random meeting-room workload, and the in-process engine's views of it.

``MeetingRoomWorkload(seed).run(store, mutations, after_each)`` seeds users, locations,
meetings and tickets, then makes ``mutations`` random changes: attendance toggled, users
edited, deleted and recreated (shared by many meetings), participants added and removed,
meetings created, moved, opened, closed and deleted, tickets deleted under a meeting, and
locations created, edited and deleted once unreferenced. A location a meeting refers to
always exists.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from examples.meeting_room.models import Location, Meeting, MeetingStatus, Ticket, User
from examples.meeting_room.views import MeetingSession
from onto_core.models import Datastore, use_datastore
from onto_core.reactive.engine import ReactiveEngine

__all__ = ["InProcessViews", "MeetingRoomWorkload", "write_changes"]


class MeetingRoomWorkload:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.meetings = 0
        self.locations = 0

    def run(self, store: Datastore, mutations: int, after_each: Callable[[], None]) -> None:
        rng = self.rng
        with use_datastore(store):
            for i in range(30):
                self._user(f"user-{i}")
                after_each()
            for _ in range(6):
                self._location()
            for _ in range(20):
                self._meeting()
                after_each()
            actions = [
                (self._toggle, 30),
                (self._edit_user, 12),
                (self._delete_user, 3),
                (self._recreate_user, 3),
                (self._add_participant, 10),
                (self._remove_participant, 8),
                (self._status, 8),
                (self._move, 5),
                (self._meeting, 4),
                (self._delete_meeting, 3),
                (self._delete_ticket, 3),
                (self._location, 2),
                (self._edit_location, 3),
                (self._delete_location, 2),
            ]
            done = 0
            while done < mutations:
                action = rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
                if action() is not False:
                    done += 1
                    after_each()

    # --- mutations ---------------------------------------------------------------------

    def _user(self, uid: str) -> None:
        rng = self.rng
        User(
            id=uid,
            first_name=rng.choice(["Joshua", "Thomasina", "Ada", "Émile", "Zoë"]),
            last_name=rng.choice(["Smith", "O'Neil", 'Quote"d', "Lee"]),
            organization=rng.choice(["", "acme", "initech"]),
            hearing_aid_requested=rng.random() < 0.3,
            display_name=rng.choice(["", "", "JJ"]),
        ).save()

    def _location(self) -> None:
        self.locations += 1
        Location(
            id=f"loc-{self.locations}",
            latitude=self.rng.choice([1, 51.5, -33.87]),
            longitude=self.rng.uniform(-180, 180),
            address=f"{self.locations} Main St",
        ).save()

    def _some(self, model: Any) -> Any:
        found = model.where()
        return self.rng.choice(found) if found else None

    def _meeting(self) -> bool:
        rng = self.rng
        location = self._some(Location)
        if location is None:
            return False
        self.meetings += 1
        meeting = Meeting(
            id=f"meeting-{self.meetings}",
            location=location,
            status=rng.choice(list(MeetingStatus)),
        )
        for uid in rng.sample([f"user-{i}" for i in range(30)], rng.randint(1, 5)):
            self._join(meeting, uid)
        meeting.save()
        return True

    def _join(self, meeting: Meeting, uid: str) -> None:
        ticket = Ticket(id=f"{meeting.id}-{uid}", user=f"users/{uid}", attendance=True)
        ticket.attendance = self.rng.random() < 0.7
        ticket.save()
        meeting.users = [*meeting.users, f"users/{uid}"]  # type: ignore[list-item]
        meeting.tickets = {**meeting.tickets, uid: f"tickets/{ticket.id}"}  # type: ignore[dict-item]

    def _toggle(self) -> bool:
        ticket = self._some(Ticket)
        if ticket is None:
            return False
        ticket.attendance = not ticket.attendance
        ticket.save()
        return True

    def _edit_user(self) -> bool:
        user = self._some(User)
        if user is None:
            return False
        setattr(user, *self.rng.choice([
            ("hearing_aid_requested", not user.hearing_aid_requested),
            ("display_name", self.rng.choice(["", "Tom", "JJ"])),
            ("organization", self.rng.choice(["", "acme", "globex"])),
            ("first_name", self.rng.choice(["Ann", "Bob"])),
        ]))  # fmt: skip
        user.save()
        return True

    def _delete_user(self) -> bool:
        user = self._some(User)
        if user is None:
            return False
        user.delete()
        return True

    def _recreate_user(self) -> bool:
        missing = [f"user-{i}" for i in range(30) if User.find(f"user-{i}") is None]
        if not missing:
            return False
        self._user(self.rng.choice(missing))
        return True

    def _add_participant(self) -> bool:
        meeting = self._some(Meeting)
        if meeting is None:
            return False
        present = {r.doc_id for r in meeting.users}
        free = [f"user-{i}" for i in range(30) if f"user-{i}" not in present]
        if not free:
            return False
        self._join(meeting, self.rng.choice(free))
        meeting.save()
        return True

    def _remove_participant(self) -> bool:
        meeting = self._some(Meeting)
        if meeting is None or not meeting.users:
            return False
        uid = self.rng.choice(meeting.users).doc_id
        meeting.users = [r for r in meeting.users if r.doc_id != uid]
        ticket = meeting.tickets.get(uid)
        meeting.tickets = {k: v for k, v in meeting.tickets.items() if k != uid}
        meeting.save()
        if ticket is not None and (found := Ticket.find(ticket.doc_id)) is not None:
            found.delete()
        return True

    def _status(self) -> bool:
        meeting = self._some(Meeting)
        if meeting is None:
            return False
        meeting.status = self.rng.choice(list(MeetingStatus))
        meeting.save()
        return True

    def _move(self) -> bool:
        meeting, location = self._some(Meeting), self._some(Location)
        if meeting is None or location is None:
            return False
        meeting.location = location
        meeting.save()
        return True

    def _delete_meeting(self) -> bool:
        meeting = self._some(Meeting)
        if meeting is None:
            return False
        meeting.delete()
        for ref in meeting.tickets.values():
            if (ticket := Ticket.find(ref.doc_id)) is not None:
                ticket.delete()
        return True

    def _delete_ticket(self) -> bool:
        ticket = self._some(Ticket)
        if ticket is None:
            return False
        ticket.delete()  # its meeting still lists it: a dangling reference
        return True

    def _edit_location(self) -> bool:
        location = self._some(Location)
        if location is None:
            return False
        location.address = f"{self.rng.randint(1, 99)} Side St"
        location.save()
        return True

    def _delete_location(self) -> bool:
        used = {m.location.doc_id for m in Meeting.where()}
        free = [loc for loc in Location.where() if loc.id not in used]
        if not free:
            return False
        self.rng.choice(free).delete()
        return True


class InProcessViews:
    """The in-process engine fed every change as it is made: the newest update per key."""

    def __init__(self, store: Datastore) -> None:
        self.store = store
        self.engine = ReactiveEngine(MeetingSession, store)
        self.engine.bootstrap()
        self.seen = store.last_seq()  # type: ignore[attr-defined]
        self.latest: dict[str, dict[str, Any]] = {}

    def catch_up(self) -> None:
        for change in self.store.changes(self.seen, 10_000):
            self.seen = change.seq
            for update in self.engine.apply(change):
                self.latest[update.key] = update.to_dict()


def write_changes(store: Datastore, path: Path) -> int:
    """The store's whole change feed as JSON lines, as the ``changes`` source writes it."""
    changes = store.changes(0, 10**9)
    with path.open("w", encoding="utf-8") as out:
        for change in changes:
            out.write(json.dumps(change.to_dict()) + "\n")
    return len(changes)
