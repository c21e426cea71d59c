"""Domain models of the meeting room: users hold tickets to meetings at a location."""

from __future__ import annotations

import enum

from onto_core.models import DomainModel, Ref


class User(DomainModel, collection="users"):
    first_name: str
    last_name: str
    organization: str = ""
    hearing_aid_requested: bool = False
    display_name: str = ""

    @property
    def name(self) -> str:
        """The display name, or first and last name when none is set."""
        return self.display_name or f"{self.first_name} {self.last_name}"


class Location(DomainModel, collection="locations"):
    latitude: float
    longitude: float
    address: str


class Ticket(DomainModel, collection="tickets"):
    role: str = "participant"
    user: Ref[User]
    attendance: bool = True


class MeetingStatus(enum.StrEnum):
    NOT_STARTED = "not-started"
    IN_SESSION = "in-session"
    CLOSED = "closed"


class Meeting(DomainModel, collection="meetings"):
    location: Ref[Location]
    users: list[Ref[User]] = []
    tickets: dict[str, Ref[Ticket]] = {}  # by user id
    status: MeetingStatus = MeetingStatus.NOT_STARTED
