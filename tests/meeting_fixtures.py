"""Building meeting-room data in bulk for tests and benchmarks."""

from __future__ import annotations

from typing import Any

from examples.meeting_room.models import Location, Meeting, MeetingStatus, Ticket, User
from onto_core.models import Ref


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


def give_ticket(meeting: Meeting, uid: str, ticket: Ref[Ticket]) -> None:
    """Make ``uid`` a participant of ``meeting`` holding ``ticket`` (save the meeting after)."""
    meeting.users = [*meeting.users, Ref(User, uid)]
    meeting.tickets = {**meeting.tickets, uid: ticket}


def take_ticket(meeting: Meeting, uid: str) -> Ref[Ticket]:
    """Remove participant ``uid`` from ``meeting``; their ticket (save the meeting after)."""
    ticket = meeting.tickets[uid]
    meeting.tickets = {u: t for u, t in meeting.tickets.items() if u != uid}
    meeting.users = [r for r in meeting.users if r.doc_id != uid]
    return ticket


class MeetingWorkload:
    """Random meeting-room changes of every kind a view must follow, made on ``store``.

    Users and locations are shared by several meetings, so one change can touch views
    of many roots: attendance toggles, renames, hearing-aid requests, participants added
    and removed, tickets moved between meetings, address edits, status changes, meetings
    created and deleted.
    """

    def __init__(self, store: Any, seed: int = 0, users: int = 12, locations: int = 3) -> None:
        import random

        self.store = store
        self.rng = random.Random(seed)
        self.users = [f"user-{i}" for i in range(users)]
        self.locations = [f"place-{i}" for i in range(locations)]
        self.next_id = 0

    def _new_id(self, prefix: str) -> str:
        self.next_id += 1
        return f"{prefix}-{self.next_id}"

    def setup(self, meetings: int) -> list[str]:
        """Users, locations and ``meetings`` meetings of three participants; the meeting ids."""
        for i, uid in enumerate(self.users):
            User(id=uid, first_name=f"F{i}", last_name="L", hearing_aid_requested=i % 4 == 0).save(
                self.store
            )
        for lid in self.locations:
            Location(id=lid, latitude=1.0, longitude=2.0, address=f"{lid} street").save(self.store)
        return [self.create_meeting() for _ in range(meetings)]

    def meetings(self) -> list[Meeting]:
        return [Meeting.from_dict(d, i) for i, d in self.store.query("meetings")]

    def create_meeting(self, participants: int = 3) -> str:
        meeting = Meeting(
            id=self._new_id("meeting"),
            location=Ref(Location, self.rng.choice(self.locations)),
            status=MeetingStatus.IN_SESSION,
        )
        for uid in self.rng.sample(self.users, participants):
            self._add(meeting, uid)
        meeting.save(self.store)
        return meeting.id

    def _add(self, meeting: Meeting, uid: str) -> None:
        ticket = Ticket(id=self._new_id("ticket"), user=Ref(User, uid))
        ticket.save(self.store)
        give_ticket(meeting, uid, ticket.ref)

    def step(self) -> str:
        """Make one random change; what it did, for failure messages."""
        rng = self.rng
        meetings = self.meetings()
        kind = rng.choice(
            ["attend", "attend", "rename", "aid", "add", "remove", "move", "address", "status"]
            + (["delete", "create"] if len(meetings) > 2 else ["create"])
        )
        if kind == "create" or not meetings:
            return f"create {self.create_meeting()}"
        meeting = rng.choice(meetings)
        if kind == "attend" and meeting.tickets:
            ticket = Ticket.get(rng.choice(list(meeting.tickets.values())).doc_id, self.store)
            ticket.attendance = not ticket.attendance
            ticket.save(self.store)
            return f"attendance of {ticket.user.doc_id} in {meeting.id}"
        if kind == "rename":
            user = User.get(rng.choice(self.users), self.store)
            user.first_name = f"N{self.next_id}"
            self.next_id += 1
            user.save(self.store)
            return f"rename {user.id}"
        if kind == "aid":
            user = User.get(rng.choice(self.users), self.store)
            user.hearing_aid_requested = not user.hearing_aid_requested
            user.save(self.store)
            return f"hearing aid of {user.id}"
        if kind == "add":
            free = [u for u in self.users if u not in meeting.tickets]
            if free:
                uid = rng.choice(free)
                self._add(meeting, uid)
                meeting.save(self.store)
                return f"add {uid} to {meeting.id}"
        if kind in ("remove", "move") and meeting.tickets:
            uid = rng.choice(list(meeting.tickets))
            ref = take_ticket(meeting, uid)
            meeting.save(self.store)
            others = [m for m in meetings if m.id != meeting.id and uid not in m.tickets]
            if kind == "move" and others:
                target = rng.choice(others)
                give_ticket(target, uid, ref)
                target.save(self.store)
                return f"move the ticket of {uid} from {meeting.id} to {target.id}"
            self.store.delete("tickets", ref.doc_id)
            return f"remove {uid} from {meeting.id}"
        if kind == "address":
            location = Location.get(rng.choice(self.locations), self.store)
            location.address = f"{self.next_id} avenue"
            self.next_id += 1
            location.save(self.store)
            return f"address of {location.id}"
        if kind == "status":
            meeting.status = (
                MeetingStatus.CLOSED
                if meeting.status is MeetingStatus.IN_SESSION
                else MeetingStatus.IN_SESSION
            )
            meeting.save(self.store)
            return f"status of {meeting.id}"
        if kind == "delete":
            meeting.delete(self.store)
            return f"delete {meeting.id}"
        return "nothing"
