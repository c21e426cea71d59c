"""View models keep themselves up to date: exactly the affected views, only when changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from meeting_fixtures import bulk_meetings

from examples.meeting_room.models import Meeting, MeetingStatus, Ticket, User
from examples.meeting_room.seed import seed
from examples.meeting_room.views import MeetingSession, UserView
from onto_core.builtin.memory import channel, drop_channels
from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.config import parse_config
from onto_core.errors import ActionError
from onto_core.models import Datastore, DomainModel, Ref, ViewModel, run_action, use_datastore
from onto_core.reactive import ReactiveEngine, ViewUpdate
from onto_core.runtime import Runtime


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    if request.param == "memory":
        made: Any = MemoryDatastore()
    else:
        made = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    made.open()
    yield made
    made.close()


class Feed:
    """An engine fed every change made since it was created, as the pipeline would."""

    def __init__(self, view: type[ViewModel], store: Datastore) -> None:
        self.store = store
        self.engine = ReactiveEngine(view, store)
        self.initial = self.engine.bootstrap()
        self.seen = self.engine.snapshot_seq

    def pump(self) -> list[ViewUpdate]:
        updates = []
        for change in self.store.changes(self.seen, limit=100_000):
            updates += self.engine.apply(change)
            self.seen = change.seq
        return updates


def attendee_ids(update: ViewUpdate) -> list[str]:
    assert update.data is not None
    return [a["userId"] for a in update.data["attending"]]


def test_attendance_change_reaches_every_participant_and_nothing_else(store: Datastore) -> None:
    seed(store, "meeting-1")
    seed(store, "meeting-2")  # same people, another meeting: must not be emitted
    feed = Feed(MeetingSession, store)
    assert len(feed.initial) == 6
    assert all(u.data and u.data["numHearingAidRequested"] == 2 for u in feed.initial)

    run_action(store, MeetingSession, "meeting-1/joshua", "set_attendance", {"attending": False})
    updates = feed.pump()

    assert [u.key for u in updates] == [
        "meeting-1/joshua",
        "meeting-1/thomasina",
        "meeting-1/tijuana",
    ]
    for update in updates:
        assert attendee_ids(update) == ["thomasina", "tijuana"]
        assert update.data is not None
        assert update.data["numHearingAidRequested"] == 1
        assert update.version == store.changes()[-1].seq
    assert feed.pump() == []  # nothing more, and nothing for meeting-2


def test_not_started_meeting_shows_nobody_attending(store: Datastore) -> None:
    seed(store)
    with use_datastore(store):
        meeting = Meeting.get("meeting-1")
        meeting.status = MeetingStatus.NOT_STARTED
        meeting.save()
    feed = Feed(MeetingSession, store)
    assert {attendee_ids(u) == [] for u in feed.initial} == {True}
    assert {u.data and u.data["numHearingAidRequested"] for u in feed.initial} == {0}


def test_in_session_toggles_and_invalid_transition_changes_nothing(store: Datastore) -> None:
    seed(store)
    feed = Feed(MeetingSession, store)
    key = "meeting-1/tijuana"

    closed = run_action(store, MeetingSession, key, "set_in_session", {"in_session": False})
    assert isinstance(closed, MeetingSession)
    assert not closed.in_session
    assert {u.data and u.data["inSession"] for u in feed.pump()} == {False}
    reopened = run_action(store, MeetingSession, key, "set_in_session", {"in_session": True})
    assert isinstance(reopened, MeetingSession)
    assert reopened.in_session
    assert {u.data and u.data["inSession"] for u in feed.pump()} == {True}

    with pytest.raises(ActionError, match="cannot go from in-session to in-session"):
        run_action(store, MeetingSession, key, "set_in_session", {"in_session": True})
    with use_datastore(store):
        meeting = Meeting.get("meeting-1")
        meeting.status = MeetingStatus.NOT_STARTED
        meeting.save()
    feed.pump()
    before = store.changes(limit=100_000)
    with pytest.raises(ActionError, match="cannot go from not-started to closed"):
        run_action(store, MeetingSession, key, "set_in_session", {"in_session": False})
    assert store.changes(limit=100_000) == before
    assert feed.pump() == []


def test_action_arguments_are_validated_by_name(store: Datastore) -> None:
    seed(store)
    with pytest.raises(ActionError, match="in_session: Input should be a valid boolean") as bad:
        run_action(store, MeetingSession, "meeting-1/joshua", "set_in_session", {"in_session": "x"})
    assert bad.value.field == "in_session"
    with pytest.raises(ActionError, match="no action 'explode'; actions: set_attendance"):
        run_action(store, MeetingSession, "meeting-1/joshua", "explode", {})
    with pytest.raises(ActionError, match="meeting_session 'meeting-9/joshua' does not exist"):
        run_action(store, MeetingSession, "meeting-9/joshua", "set_attendance", {"attending": True})
    with pytest.raises(ActionError, match="unexpected: Extra inputs are not permitted"):
        run_action(store, UserView, "joshua", "update", {"unexpected": 1})


def test_editing_user_last_name_updates_the_user_and_every_view_showing_them(
    store: Datastore,
) -> None:
    seed(store, "meeting-1")
    sessions = Feed(MeetingSession, store)
    profiles = Feed(UserView, store)

    view = run_action(store, UserView, "joshua", "update", {"last_name": "Pender"})

    assert isinstance(view, UserView)
    assert view.last_name == "Pender"
    with use_datastore(store):
        assert User.get("joshua").last_name == "Pender"
    [profile] = profiles.pump()
    assert profile.key == "joshua"
    assert profile.data
    assert profile.data["lastName"] == "Pender"
    session_updates = sessions.pump()
    assert len(session_updates) == 3
    for update in session_updates:
        assert update.data is not None
        names = {a["userId"]: a["name"] for a in update.data["attending"]}
        assert names["joshua"] == "Joshua Pender"


def test_deleting_the_root_removes_its_views_downstream(store: Datastore) -> None:
    seed(store)
    feed = Feed(MeetingSession, store)
    store.delete("meetings", "meeting-1")
    updates = feed.pump()
    assert [(u.key, u.removed) for u in updates] == [
        ("meeting-1/joshua", True),
        ("meeting-1/thomasina", True),
        ("meeting-1/tijuana", True),
    ]
    assert feed.engine.view_count() == 0


def test_removing_a_participant_removes_only_their_view(store: Datastore) -> None:
    seed(store)
    feed = Feed(MeetingSession, store)
    with use_datastore(store):
        meeting = Meeting.get("meeting-1")
        meeting.users = [r for r in meeting.users if r.doc_id != "thomasina"]
        meeting.save()
    updates = feed.pump()
    assert [(u.key, u.removed) for u in updates] == [("meeting-1/thomasina", True)]


def test_one_ticket_change_among_10000_meetings_recomputes_one_view(tmp_path: Path) -> None:
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    store.open()
    try:
        bulk_meetings(store, 10_000)
        feed = Feed(MeetingSession, store)
        assert feed.engine.recomputes == 10_000

        with use_datastore(store):
            ticket = Ticket.get("t4242-1")
            ticket.attendance = False
            ticket.save()
        updates = feed.pump()
        assert feed.engine.recomputes == 10_001
        assert {u.key.split("/")[0] for u in updates} == {"m4242"}

        store.set("audit_log", "entry-1", {"what": "unrelated"})
        assert feed.pump() == []
        assert feed.engine.recomputes == 10_001
    finally:
        store.close()


# --- query reads are re-matched against changed documents ---------------------------------


class Author(DomainModel, collection="authors"):
    name: str


class Post(DomainModel, collection="posts"):
    author: Ref[Author]
    published: bool = False
    title: str = ""


class AuthorPage(ViewModel, root=Author, key="author_id"):
    author_id: str
    titles: list[str]

    @classmethod
    def build(cls, author: Author) -> AuthorPage:
        posts = Post.where(("author", "==", author.ref.path), ("published", "==", True))
        return cls(author_id=author.id, titles=sorted(p.title for p in posts))


def test_a_document_entering_or_leaving_a_query_recomputes_only_its_readers(
    store: Datastore,
) -> None:
    with use_datastore(store):
        ada, bob = Author(id="ada", name="Ada").save(), Author(id="bob", name="Bob").save()
        Post(id="p1", author=ada.ref, published=True, title="Engines").save()
    feed = Feed(AuthorPage, store)
    recomputed = feed.engine.recomputes

    with use_datastore(store):
        Post(id="p2", author=ada.ref, published=True, title="Notes").save()  # enters ada's
        Post(id="p3", author=bob.ref, published=False, title="Draft").save()  # matches none
    updates = feed.pump()
    assert [(u.key, u.data and u.data["titles"]) for u in updates] == [
        ("ada", ["Engines", "Notes"])
    ]
    assert feed.engine.recomputes == recomputed + 1

    with use_datastore(store):
        post = Post.get("p1")
        post.published = False  # leaves ada's results
        post.save()
    assert [(u.key, u.data and u.data["titles"]) for u in feed.pump()] == [("ada", ["Notes"])]


def test_view_processor_runs_from_a_config(tmp_path: Path) -> None:
    db = tmp_path / "onto.db"
    store = SqliteDatastore(SqliteDatastore.Config(path=db))
    store.open()
    seed(store)
    drop_channels()
    config = parse_config(f"""
datastore: {{type: sqlite, path: "{db}"}}
pipelines:
  sessions:
    source: {{type: changes, collections: [meetings, tickets, users, locations]}}
    processors:
      - {{type: view, view: "examples.meeting_room.views:MeetingSession"}}
    sinks: [{{type: memory, channel: sessions}}]
""")

    async def scenario() -> None:
        runtime = Runtime(config)
        task = asyncio.create_task(runtime.run())
        out = channel("sessions")
        async with asyncio.timeout(20):
            while len(out.messages) < 3:  # noqa: ASYNC110 - the initial views
                await asyncio.sleep(0.01)
            await asyncio.to_thread(
                run_action,
                store,
                MeetingSession,
                "meeting-1/tijuana",
                "set_attendance",
                {"attending": False},
            )
            while len(out.messages) < 6:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await runtime.stop()
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(scenario())
    finally:
        store.close()
    messages = channel("sessions").messages
    assert [m.key for m in messages[3:]] == [
        "meeting-1/joshua",
        "meeting-1/thomasina",
        "meeting-1/tijuana",
    ]
    last = messages[-1]
    assert last.headers["onto-view"] == "meeting_session"
    assert int(last.headers["onto-version"]) == last.value["version"] > messages[0].value["version"]
    assert [a["userId"] for a in last.value["data"]["attending"]] == ["joshua", "thomasina"]


def test_a_root_that_reads_other_documents_follows_the_new_ones_only(store: Datastore) -> None:
    seed(store, "meeting-1")
    sessions = Feed(MeetingSession, store)
    with use_datastore(store):
        meeting = Meeting.get("meeting-1")
        old_location = meeting.location.get()
        new_location = old_location.model_copy(update={"address": "Hall B"})
        new_location.id = "hall-b"
        new_location.save()
        meeting.location = new_location.ref
        meeting.save()
    moved = sessions.pump()
    assert {u.data["address"] for u in moved if u.data} == {"Hall B"}

    with use_datastore(store):
        old_location.address = "Somewhere else"
        old_location.save()
    assert sessions.pump() == [], "the old location is not read any more"

    with use_datastore(store):
        new_location.address = "Hall C"
        new_location.save()
    renamed = sessions.pump()
    assert len(renamed) == 3
    assert {u.data["address"] for u in renamed if u.data} == {"Hall C"}

    with use_datastore(store):
        new_location.address = "Hall D"  # same reads as the last build: still followed
        new_location.save()
    assert {u.data["address"] for u in sessions.pump() if u.data} == {"Hall D"}
