"""Declared view models: the build derived from a declaration equals a hand-written one."""

from __future__ import annotations

import random

import pytest

from examples.meeting_room.models import Location, Meeting, MeetingStatus, Ticket, User
from examples.meeting_room.views import Attendee, MeetingSession, UserView
from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.errors import NotFoundError
from onto_core.models import ViewModel, use_datastore
from onto_core.models.declarative import (
    DeclarationError,
    children,
    collect,
    count,
    declaration_of,
    declared,
    fan_out,
    follow,
    if_,
    root,
    sum_of,
)
from onto_core.models.view import build_views
from onto_core.reactive.tracking import TrackingReader


def hand_written(meeting: Meeting) -> list[dict[str, object]]:
    """MeetingSession as it was written in Python before it was declared."""
    location = Location.get(meeting.location.doc_id)
    participants = sorted(ref.doc_id for ref in meeting.users)
    attending: list[Attendee] = []
    if meeting.status is not MeetingStatus.NOT_STARTED:
        tickets = Ticket.find_many(ref.doc_id for ref in meeting.tickets.values())
        present = sorted(t.user.doc_id for t in tickets.values() if t is not None and t.attendance)
        users = User.find_many(present)
        attending = [
            Attendee(
                user_id=uid,
                name=user.name,
                organization=user.organization,
                hearing_aid_requested=user.hearing_aid_requested,
            )
            for uid in present
            if (user := users[uid]) is not None
        ]
    return [
        MeetingSession(
            meeting_id=meeting.id,
            user_id=uid,
            status=meeting.status,
            in_session=meeting.status is MeetingStatus.IN_SESSION,
            latitude=location.latitude,
            longitude=location.longitude,
            address=location.address,
            attending=attending,
            num_hearing_aid_requested=sum(a.hearing_aid_requested for a in attending),
        ).to_dict()
        for uid in participants
    ]


def random_store(rng: random.Random) -> MemoryDatastore:
    store = MemoryDatastore()
    with use_datastore(store):
        users = [f"u{i}" for i in range(12)]
        for i, uid in enumerate(users):
            if rng.random() < 0.15:
                continue  # some participants' users do not exist
            User(
                id=uid,
                first_name=f"F{i}",
                last_name=f"L{i}",
                organization=rng.choice(["", "acme", "initech"]),
                hearing_aid_requested=rng.random() < 0.4,
                display_name=rng.choice(["", f"D{i}"]),
            ).save()
        for i in range(3):
            Location(id=f"l{i}", latitude=i + 0.5, longitude=-i, address=f"{i} Road").save()
        for m in range(15):
            members = rng.sample(users, rng.randint(0, 6))
            tickets = {}
            for uid in members:
                if rng.random() < 0.85:
                    ticket = Ticket(user=f"users/{uid}", attendance=rng.random() < 0.7)
                    ticket.id = f"t-{m}-{uid}"
                    if rng.random() < 0.9:
                        ticket.save()  # else: a dangling ticket reference
                    tickets[uid] = f"tickets/{ticket.id}"
            Meeting(
                id=f"m{m}",
                location=f"locations/l{rng.randrange(3)}",
                users=[f"users/{u}" for u in members],
                tickets=tickets,
                status=rng.choice(list(MeetingStatus)),
            ).save()
    return store


@pytest.mark.parametrize("seed", range(8))
def test_declared_meeting_session_builds_what_the_hand_written_one_did(seed: int) -> None:
    store = random_store(random.Random(seed))
    with use_datastore(store):
        for meeting in Meeting.where():
            declared_views = [v.to_dict() for v in build_views(MeetingSession, meeting)]
            assert declared_views == hand_written(meeting)


def test_declared_build_reads_what_the_hand_written_one_read() -> None:
    store = random_store(random.Random(3))
    for meeting_id in [m.id for m in Meeting.where(store=store)]:
        reads = []
        for build in (lambda m: build_views(MeetingSession, m), hand_written):
            reader = TrackingReader(store)
            with use_datastore(reader):  # type: ignore[arg-type]
                build(Meeting.get(meeting_id))
            reads.append((reader.read_set.docs, reader.read_set.queries))
        assert reads[0] == reads[1]


def test_a_missing_location_fails_the_build_as_before() -> None:
    store = MemoryDatastore()
    with use_datastore(store):
        meeting = Meeting(id="m", location="locations/nowhere", users=["users/a"])
        meeting.save()
        with pytest.raises(NotFoundError, match="locations/nowhere does not exist"):
            MeetingSession.build(meeting)


def test_declaration_of_tells_declared_views_from_python_ones() -> None:
    declaration = declaration_of(MeetingSession)
    assert declaration is not None
    assert declaration.fan_out is not None
    assert [a.kind for a in declaration.aggregates] == ["collect", "count"]
    assert declaration_of(UserView) is None


def test_a_declaration_must_give_every_field() -> None:
    meeting = root(Meeting)

    class Partial(ViewModel, root=Meeting, key="meeting_id"):
        meeting_id: str
        status: MeetingStatus

        build = declared(meeting_id=meeting.id)

    with pytest.raises(DeclarationError, match=r"missing \['status'\]"):
        Partial.build(Meeting(id="m", location="locations/l"))


def test_declared_expressions_refuse_python_truth_tests() -> None:
    meeting = root(Meeting)
    with pytest.raises(DeclarationError, match="no truth value"):
        bool(meeting.status == MeetingStatus.CLOSED)


def test_unknown_fields_and_non_refs_are_refused_where_declared() -> None:
    meeting = root(Meeting)
    with pytest.raises(DeclarationError, match="Meeting has no field 'room'"):
        _ = meeting.room
    with pytest.raises(DeclarationError, match=r"Meeting.status must be Ref\[Model\]"):
        follow(meeting.status)
    ticket = children(meeting.tickets)
    with pytest.raises(DeclarationError, match="sort_by must be a text"):
        collect(Attendee, over=ticket, sort_by=ticket.attendance, user_id="", name="",
                organization="", hearing_aid_requested=False)  # fmt: skip


def test_one_view_per_root_with_sums_and_conditionals() -> None:
    meeting = root(Meeting)
    ticket = children(meeting.tickets)
    user = follow(ticket.user)

    class Summary(ViewModel, root=Meeting, key="meeting_id"):
        meeting_id: str
        label: str
        present: int
        aids: int

        build = declared(
            meeting_id=meeting.id,
            label=if_(meeting.status == MeetingStatus.CLOSED, "closed", "open"),
            present=count(over=user, where=ticket.attendance),
            aids=sum_of(if_(user.hearing_aid_requested, 1, 0), over=user),
        )

    store = random_store(random.Random(5))
    with use_datastore(store):
        for meeting_doc in Meeting.where():
            view = Summary.build(meeting_doc)
            assert isinstance(view, Summary)
            tickets = [
                t
                for t in Ticket.find_many(r.doc_id for r in meeting_doc.tickets.values()).values()
                if t is not None and User.find(t.user.doc_id) is not None
            ]
            assert view.present == sum(t.attendance for t in tickets)
            assert view.aids == sum(User.get(t.user.doc_id).hearing_aid_requested for t in tickets)
            assert view.label == (
                "closed" if meeting_doc.status is MeetingStatus.CLOSED else "open"
            )
    assert declaration_of(Summary) is not None
    assert fan_out(meeting.users).field == "users"
