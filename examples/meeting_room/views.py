"""View models of the meeting room, and the actions participants may run."""

from __future__ import annotations

from examples.meeting_room.models import Meeting, MeetingStatus, User
from onto_core.models import Embedded, ViewModel, action
from onto_core.models.declarative import (
    children,
    collect,
    concat,
    count,
    declared,
    fan_out,
    first_nonempty,
    follow,
    root,
)


class Attendee(Embedded):
    user_id: str
    name: str
    organization: str
    hearing_aid_requested: bool


# MeetingSession, declared: the in-process engine and the Flink SQL compiler (onto-flink)
# both run this one definition.
meeting = root(Meeting)
location = follow(meeting.location)
participant = fan_out(meeting.users)
ticket = children(meeting.tickets)
# Who attends is listed once the meeting has started.
present = ticket.where(meeting.status != MeetingStatus.NOT_STARTED, ticket.attendance)
attendee = follow(present.user)


class MeetingSession(ViewModel, root=Meeting, key=("meeting_id", "user_id")):
    """One participant's view of a meeting: where, whether in session, and who attends."""

    meeting_id: str
    user_id: str
    status: MeetingStatus
    in_session: bool
    latitude: float
    longitude: float
    address: str
    attending: list[Attendee]
    num_hearing_aid_requested: int

    build = declared(
        meeting_id=meeting.id,
        user_id=participant.id,
        status=meeting.status,
        in_session=meeting.status == MeetingStatus.IN_SESSION,
        latitude=location.latitude,
        longitude=location.longitude,
        address=location.address,
        attending=collect(
            Attendee,
            over=attendee,
            sort_by=attendee.id,
            user_id=attendee.id,
            # User.name: the display name, or first and last name when none is set.
            name=first_nonempty(
                attendee.display_name, concat(attendee.first_name, " ", attendee.last_name)
            ),
            organization=attendee.organization,
            hearing_aid_requested=attendee.hearing_aid_requested,
        ),
        num_hearing_aid_requested=count(over=attendee, where=attendee.hearing_aid_requested),
    )

    @action
    def set_in_session(self, in_session: bool) -> None:
        """Open (true) or close (false) the meeting: in-session ↔ closed only."""
        meeting = Meeting.get(self.meeting_id)
        wanted = MeetingStatus.IN_SESSION if in_session else MeetingStatus.CLOSED
        allowed = {
            MeetingStatus.IN_SESSION: MeetingStatus.CLOSED,
            MeetingStatus.CLOSED: MeetingStatus.IN_SESSION,
        }
        if allowed.get(meeting.status) is not wanted:
            raise ValueError(
                f"meeting {meeting.id} cannot go from {meeting.status.value} to {wanted.value}"
            )
        meeting.status = wanted
        meeting.save()

    @action
    def set_attendance(self, attending: bool) -> None:
        """This participant's own attendance."""
        meeting = Meeting.get(self.meeting_id)
        ref = meeting.tickets.get(self.user_id)
        if ref is None:
            raise ValueError(f"user {self.user_id} holds no ticket to meeting {meeting.id}")
        ticket = ref.get()
        ticket.attendance = attending
        ticket.save()


class UserView(ViewModel, root=User, key="user_id"):
    """A user's profile as the front end edits it."""

    user_id: str
    first_name: str
    last_name: str
    organization: str
    hearing_aid_requested: bool
    display_name: str

    @classmethod
    def build(cls, user: User) -> UserView:
        return cls(
            user_id=user.id,
            first_name=user.first_name,
            last_name=user.last_name,
            organization=user.organization,
            hearing_aid_requested=user.hearing_aid_requested,
            display_name=user.name,
        )

    @action
    def update(
        self,
        first_name: str | None = None,
        last_name: str | None = None,
        organization: str | None = None,
        hearing_aid_requested: bool | None = None,
    ) -> None:
        """Edit the profile: each field given replaces the user's own."""
        user = User.get(self.user_id)
        changes = {
            "first_name": first_name,
            "last_name": last_name,
            "organization": organization,
            "hearing_aid_requested": hearing_aid_requested,
        }
        for field, value in changes.items():
            if value is not None:
                setattr(user, field, value)
        user.save()
