"""A first build (``acquire``) over many roots: each document read once, nothing missed."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
from pydantic import PrivateAttr

from examples.meeting_room.models import Location, Meeting, MeetingStatus, Ticket, User
from examples.meeting_room.views import MeetingSession
from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.errors import DatastoreError
from onto_core.models import DomainModel, Ref, ViewModel, current_datastore, use_datastore
from onto_core.models.query import Condition
from onto_core.models.view import build_views
from onto_core.reactive import ReactiveEngine, ViewUpdate


class CountingStore(MemoryDatastore):
    """A memory store that counts what is read from it, and may act on a read."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: Counter[tuple[str, str]] = Counter()  # by get / get_many
        self.trips: Counter[str] = Counter()  # get / get_many calls per collection
        self.queried: Counter[str] = Counter()  # rows returned by queries per collection
        self.on_read: Callable[[str], None] | None = None  # after each read

    def counts(self) -> tuple[Counter[tuple[str, str]], Counter[str], Counter[str]]:
        """What was read so far: fetched, trips, queried."""
        return Counter(self.fetched), Counter(self.trips), Counter(self.queried)

    def get(self, collection: str, doc_id: str) -> dict[str, Any] | None:
        self._read(collection, [doc_id])
        return super().get(collection, doc_id)

    def get_many(self, collection: str, doc_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        ids = list(doc_ids)
        self._read(collection, ids)
        return {i: super(CountingStore, self).get(collection, i) for i in ids}

    def query(
        self,
        collection: str,
        where: Sequence[Condition] = (),
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        rows = super().query(collection, where, order_by, limit)
        self.queried[collection] += len(rows)
        if self.on_read is not None:
            self.on_read(collection)
        return rows

    def _read(self, collection: str, ids: list[str]) -> None:
        self.trips[collection] += 1
        self.fetched.update((collection, i) for i in ids)
        if self.on_read is not None:
            self.on_read(collection)


@pytest.fixture
def store() -> Iterator[CountingStore]:
    made = CountingStore()
    made.open()
    yield made
    made.close()


def shared_meetings(store: CountingStore, meetings: int, users: int, locations: int) -> None:
    """Meetings of 3 participants each, sharing ``users`` users and ``locations`` locations."""
    writes: dict[tuple[str, str], dict[str, Any] | None] = {}

    def put(model: DomainModel) -> None:
        writes[model.collection, model.id] = model.to_dict()

    for i in range(locations):
        put(Location(id=f"loc-{i}", latitude=1.0, longitude=2.0, address=f"Room {i}"))
    for i in range(users):
        put(User(id=f"u{i}", first_name=f"F{i}", last_name="L", hearing_aid_requested=i % 3 == 0))
    for m in range(meetings):
        uids = [f"u{(m * 7 + p * 13) % users}" for p in range(3)]
        tickets = {uid: Ref(Ticket, f"t{m}-{p}") for p, uid in enumerate(uids)}
        for uid, ticket in tickets.items():
            put(Ticket(id=ticket.doc_id, user=Ref(User, uid)))
        put(
            Meeting(
                id=f"m{m}",
                location=Ref(Location, f"loc-{m % locations}"),
                users=[Ref(User, uid) for uid in uids],
                tickets=tickets,
                status=MeetingStatus.IN_SESSION,
            )
        )
    store.commit({}, writes)


def fresh_views(view: type[ViewModel], store: Any) -> dict[str, dict[str, Any]]:
    with use_datastore(store):
        return {
            v.key: v.to_dict()
            for root_id, data in store.query(view.root.collection)
            for v in build_views(view, view.root.from_dict(data, root_id))
        }


def held(updates: Iterable[ViewUpdate], into: dict[str, dict[str, Any]] | None = None) -> Any:
    """What a sink holds after ``updates`` (key → data)."""
    views = {} if into is None else into
    for update in updates:
        if update.data is None:
            views.pop(update.key, None)
        else:
            views[update.key] = update.data
    return views


def test_a_first_build_reads_each_document_once(store: CountingStore) -> None:
    shared_meetings(store, meetings=300, users=120, locations=10)
    engine = ReactiveEngine(MeetingSession, store)

    views = held(engine.bootstrap())
    fetched, trips, queried = store.counts()

    assert views == fresh_views(MeetingSession, store)
    assert len(views) == 900
    assert max(fetched.values()) == 1  # no document fetched twice
    # Collections the builds keep going back to are read whole after a few trips.
    assert all(trips[c] <= 16 for c in ("users", "tickets", "locations"))
    assert queried == {"meetings": 300, "users": 120, "tickets": 900}  # 10 locations: read


def test_a_collection_read_sparsely_is_not_read_whole(store: CountingStore) -> None:
    # 200 speakers each read one of 20,000 quotes: reading them all would cost 100 times
    # what the builds read.
    writes: dict[tuple[str, str], dict[str, Any] | None] = {
        ("quotes", f"q{i:05}"): {"text": f"quote {i}"} for i in range(20_000)
    }
    writes.update({("speakers", f"a{i:03}"): {"name": f"S{i}"} for i in range(200)})
    store.commit({}, writes)

    views = held(ReactiveEngine(Quoted, store).bootstrap())
    fetched, _, queried = store.counts()

    assert views == fresh_views(Quoted, store)
    assert views["a007"] == {"speakerId": "a007", "quote": "quote 700"}
    assert sum(n for (collection, _), n in fetched.items() if collection == "quotes") == 200
    assert queried["quotes"] < 1_000


class Speaker(DomainModel, collection="speakers"):
    name: str


class Quoted(ViewModel, root=Speaker, key="speaker_id"):
    speaker_id: str
    quote: str

    @classmethod
    def build(cls, speaker: Speaker) -> Quoted:
        number = int(speaker.id[1:]) * 100
        quote = current_datastore().get("quotes", f"q{number:05}")
        assert quote is not None
        return cls(speaker_id=speaker.id, quote=quote["text"])


def test_changes_written_while_the_views_are_first_built_reach_them(
    store: CountingStore,
) -> None:
    # Writes land in the middle of the first build, right after it read the users whole:
    # on documents some builds already read (and the pass holds), and a new participant
    # whose user document is not among those read. Applying the changes after the
    # build's position must end at the views of the store as it is.
    shared_meetings(store, meetings=300, users=120, locations=10)

    def write_midway(collection: str) -> None:
        if collection != "users" or not store.queried["users"]:
            return
        store.on_read = None
        with use_datastore(store):
            user = User.get("u0")  # read by the first meeting's build
            user.first_name = "Renamed"
            user.save()
            ticket = Ticket.get("t0-1")
            ticket.attendance = False
            ticket.save()
            Location(id="loc-0", latitude=5.0, longitude=6.0, address="Moved").save()
            meeting = Meeting.get("m299")  # built last
            User(id="newcomer", first_name="New", last_name="Comer").save()
            Ticket(id="t-new", user=Ref(User, "newcomer")).save()
            meeting.users = [*meeting.users, Ref(User, "newcomer")]
            meeting.tickets = {**meeting.tickets, "newcomer": Ref(Ticket, "t-new")}
            meeting.save()

    store.on_read = write_midway
    engine = ReactiveEngine(MeetingSession, store)
    views = held(engine.bootstrap())
    assert store.on_read is None  # the writes did land midway
    assert "m299/newcomer" not in views

    for change in store.changes(engine.snapshot_seq, limit=1000):
        held(engine.apply(change), into=views)

    assert views == fresh_views(MeetingSession, store)
    attending = {a["userId"]: a["name"] for a in views["m299/newcomer"]["attending"]}
    assert attending["newcomer"] == "New Comer"
    assert views["m0/" + sorted(f"u{p * 13}" for p in range(3))[0]]["address"] == "Moved"


class Memo(DomainModel, collection="memos"):
    text: str


class Tagged(ViewModel, root=Memo, key="memo_id"):
    memo_id: str
    tags: list[str]

    @classmethod
    def build(cls, memo: Memo) -> Tagged:
        settings = current_datastore().get("settings", "tags")
        assert settings is not None
        settings["tags"].append(memo.id)  # a build changing what it read, raw
        return cls(memo_id=memo.id, tags=settings["tags"])


def test_each_build_gets_its_own_copy_of_what_it_reads(store: CountingStore) -> None:
    store.commit({}, {("settings", "tags"): {"tags": ["base"]}})
    store.commit({}, {("memos", f"n{i:02}"): {"text": "x"} for i in range(40)})

    views = held(ReactiveEngine(Tagged, store).bootstrap())

    assert views["n00"]["tags"] == ["base", "n00"]
    assert views["n39"]["tags"] == ["base", "n39"]
    assert store.get("settings", "tags") == {"tags": ["base"]}


class Node(DomainModel, collection="nodes"):
    notes: Any = None  # kept as read: validation copies nothing of it
    parent: Ref[Node] | None = None


class NodeNotes(ViewModel, root=Node, key="node_id"):
    node_id: str
    notes: list[str]
    parent_notes: list[str]

    @classmethod
    def build(cls, node: Node) -> NodeNotes:
        node.notes.append(f"seen by {node.id}")  # a build changing the model it was given
        parents = Node.find_many([node.parent.doc_id]) if node.parent else {}
        parent = next(iter(parents.values()), None)
        if parent is not None:
            parent.notes.append(f"seen by child {node.id}")
        return cls(
            node_id=node.id,
            notes=node.notes,
            parent_notes=[] if parent is None else parent.notes,
        )


def test_models_that_keep_what_they_read_get_their_own_copy(store: CountingStore) -> None:
    # Roots come from one query and referenced documents from the pass's cache; a model
    # whose fields keep lists as read must not share them with the next build.
    nodes = {f"n{i:02}": Node(id=f"n{i:02}", notes=["base"]) for i in range(40)}
    for i, node in enumerate(nodes.values()):
        node.parent = Ref(Node, f"n{(i + 1) % 40:02}")
    store.commit({}, {("nodes", n.id): n.to_dict() for n in nodes.values()})

    views = held(ReactiveEngine(NodeNotes, store).bootstrap())

    assert views["n00"] == {
        "nodeId": "n00",
        "notes": ["base", "seen by n00"],
        "parentNotes": ["base", "seen by child n00"],
    }
    assert all(v["notes"] == ["base", f"seen by {k}"] for k, v in views.items())


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_as_it_was_after_a_first_build(
    store: CountingStore, enabled: bool
) -> None:
    shared_meetings(store, meetings=50, users=30, locations=5)
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        engine = ReactiveEngine(MeetingSession, store)
        assert len(engine.bootstrap()) == 150
        assert gc.isenabled() is enabled

        def unreachable(collection: str) -> None:
            raise DatastoreError("the store went away")

        store.on_read = unreachable
        with pytest.raises(DatastoreError, match="went away"):
            ReactiveEngine(MeetingSession, store).bootstrap()
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_what_the_engine_keeps_costs_the_collector_little(store: CountingStore) -> None:
    # Read sets and the index of who read what are kept as ids and tuples of them, which
    # the garbage collector stops walking: its pauses do not grow with the views held.
    shared_meetings(store, meetings=300, users=120, locations=10)
    gc.collect()
    before = len(gc.get_objects())
    engine = ReactiveEngine(MeetingSession, store)
    assert len(engine.bootstrap()) == 900
    for _ in range(3):  # a collection stops tracking tuples of ids one nesting at a time
        gc.collect()
    assert len(gc.get_objects()) - before < 300  # fewer than one object per root


def test_a_document_read_by_several_roots_then_by_fewer_recomputes_only_its_readers(
    store: CountingStore,
) -> None:
    shared_meetings(store, meetings=3, users=9, locations=1)  # one location for all three
    engine = ReactiveEngine(MeetingSession, store)
    engine.bootstrap()

    def edit_location(address: str) -> set[str]:
        with use_datastore(store):
            Location(id="loc-0", latitude=1.0, longitude=2.0, address=address).save()
        change = store.changes(store.last_seq() - 1)[0]
        return {u.key.split("/")[0] for u in engine.apply(change)}

    def move(meeting_id: str) -> None:
        with use_datastore(store):
            Location(id=f"elsewhere-{meeting_id}", latitude=0, longitude=0, address="-").save()
            meeting = Meeting.get(meeting_id)
            meeting.location = Ref(Location, f"elsewhere-{meeting_id}")
            meeting.save()
        for change in store.changes(store.last_seq() - 2):
            engine.apply(change)

    assert edit_location("A") == {"m0", "m1", "m2"}
    move("m0")
    assert edit_location("B") == {"m1", "m2"}
    move("m1")
    assert edit_location("C") == {"m2"}
    move("m2")
    recomputes = engine.recomputes
    assert edit_location("D") == set()
    assert engine.recomputes == recomputes


class Shelf(DomainModel, collection="shelves"):
    label: str


class ShelfCard(ViewModel, root=Shelf, key="shelf_id"):
    shelf_id: str
    _motto: str = PrivateAttr("")

    @classmethod
    def build(cls, shelf: Shelf) -> ShelfCard:
        card = cls(shelf_id=shelf.id)
        card._motto = shelf.label
        return card

    def to_dict(self) -> dict[str, Any]:  # delivered with more than its fields
        return {**super().to_dict(), "motto": self._motto}


def test_a_view_that_shapes_its_own_output_is_emitted_when_that_output_changes(
    store: CountingStore,
) -> None:
    store.commit({}, {("shelves", "s1"): Shelf(id="s1", label="Read more").to_dict()})
    engine = ReactiveEngine(ShelfCard, store)
    assert [u.data for u in engine.bootstrap()] == [{"shelfId": "s1", "motto": "Read more"}]

    with use_datastore(store):
        Shelf(id="s1", label="Read less").save()
    updates = engine.apply(store.changes(engine.snapshot_seq)[0])
    assert [u.data for u in updates] == [{"shelfId": "s1", "motto": "Read less"}]
