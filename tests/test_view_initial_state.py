"""What the view processor writes of its state when it emits every view at a start."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from meeting_fixtures import MeetingWorkload

from examples.meeting_room.models import Meeting, Ticket
from onto_core.builtin.changes import change_message
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.builtin.view import ViewProcessor
from onto_core.errors import ProcessorError
from onto_core.models.datastore import ViewRecord
from onto_core.protocols import Message, RuntimeContext


class SpiedStore(SqliteDatastore):
    """Keeps every batch of view records saved."""

    saves: list[list[ViewRecord]]

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None:
        self.saves.append(list(records))
        super().save_view_state(name, records)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpiedStore]:
    made = SpiedStore(SpiedStore.Config(path=tmp_path / "onto.db"))
    made.saves = []
    made.open()
    yield made
    made.close()


def processor(store: SqliteDatastore, initial: bool = True) -> ViewProcessor:
    made = ViewProcessor(
        ViewProcessor.Config(view="examples.meeting_room.views:MeetingSession", initial=initial)
    )
    ctx = RuntimeContext(pipeline="p", component="view", log=logging.getLogger("t"))
    ctx.datastore = store
    asyncio.run(made.start(ctx))
    return made


def start(store: SpiedStore, initial: bool = True, deliver: bool = True) -> list[Message]:
    """A (re)start: the views due, delivered and settled unless ``deliver`` is false."""
    made = processor(store, initial)
    due = asyncio.run(made.due_messages())
    if deliver:
        settle(made, due)
    return due


def settle(made: ViewProcessor, delivered: list[Message], failed: Sequence[Message] = ()) -> None:
    """What the runtime does once sinks answered: tell the processor, which saves the
    records in the background (here: until they are saved)."""

    async def settled() -> None:
        await made.settled(delivered, list(failed))
        await made.flush()

    asyncio.run(settled())


def keys(messages: list[Message], removed: bool = False) -> set[str]:
    return {m.value["key"] for m in messages if m.value["removed"] is removed}


def state(store: SqliteDatastore) -> dict[str, str | None]:
    return {r.key: r.digest for r in store.load_view_state("p:meeting_session")}


def test_the_first_start_records_every_view_once_before_it_goes_out(store: SpiedStore) -> None:
    MeetingWorkload(store, seed=21).setup(4)
    made = processor(store)
    due = asyncio.run(made.due_messages())
    assert len(store.saves) == 1  # before any view went out
    assert {r.key for r in store.saves[0]} == keys(due)
    assert len(keys(due)) > 4
    assert set(state(store).values()) == {""}  # maybe delivered

    settle(made, due)
    assert len(store.saves) == 1  # nothing more once delivered


def test_a_restart_records_each_view_once_at_the_version_it_emits(store: SpiedStore) -> None:
    meeting_id = MeetingWorkload(store, seed=22).setup(3)[0]
    start(store)
    # One view changes, is delivered and recorded with its output on the way.
    made = processor(store)
    settle(made, asyncio.run(made.due_messages()))
    seen = store.last_seq()
    ticket_ref = next(iter(Meeting.get(meeting_id, store).tickets.values()))
    ticket = Ticket.get(ticket_ref.doc_id, store)
    ticket.attendance = not ticket.attendance
    ticket.save(store)
    changed = made.process_batch([change_message(c) for c in store.changes(seen, 100)])[0]
    settle(made, changed)
    recorded = state(store)
    assert {k for k, d in recorded.items() if d} == keys(changed)
    store.saves.clear()

    due = start(store)
    assert len(store.saves) == 1  # once, before the views went out
    # Its record still says what the sinks hold; every record is at the version emitted,
    # so a later start goes above it.
    assert state(store) == recorded
    emitted = {m.value["key"]: m.value["version"] for m in due}
    assert {r.key: r.version for r in store.load_view_state("p:meeting_session")} == emitted


def test_views_first_emitted_at_a_start_are_emitted_again_when_later_starts_emit_only_changes(
    store: SpiedStore,
) -> None:
    # Their record says maybe delivered: the sink may lack them, so they go out again,
    # and are recorded as usual from then on.
    MeetingWorkload(store, seed=23).setup(3)
    first = start(store)
    again = start(store, initial=False)
    assert keys(again) == keys(first)
    assert "" not in state(store).values()
    assert start(store, initial=False) == []


def test_a_crash_before_the_first_views_were_delivered_still_removes_them_later(
    store: SpiedStore,
) -> None:
    workload = MeetingWorkload(store, seed=24)
    gone = workload.setup(3)[0]
    first = start(store, deliver=False)  # the sink wrote them; the process died
    store.delete("meetings", gone)
    for initial in (True, False):
        due = start(store, initial=initial, deliver=False)
        assert keys(due, removed=True) == {k for k in keys(first) if k.startswith(gone + "/")}


def test_an_initial_view_that_failed_to_reach_the_sinks_is_emitted_again(
    store: SpiedStore,
) -> None:
    meeting_id = MeetingWorkload(store, seed=25).setup(2)[0]
    made = processor(store)
    due = asyncio.run(made.due_messages())
    lost = [m for m in due if m.value["key"].startswith(meeting_id + "/")]
    settle(made, [m for m in due if m not in lost], lost)
    seen = store.last_seq()
    meeting = Meeting.get(meeting_id, store)
    meeting.save(store)  # any change to the root builds it again
    again = made.process_batch([change_message(c) for c in store.changes(seen, 100)])[0]
    assert keys(again) == keys(lost)
    settle(made, again)
    assert all(state(store)[k] not in ("", None) for k in keys(lost))
    assert not made._unrecorded
    assert not made._pending


def held_versions(messages: list[Message]) -> dict[str, Any]:
    return {m.value["key"]: m.value["version"] for m in messages}


def test_versions_at_a_restart_never_go_below_those_emitted_at_the_start_before(
    store: SpiedStore,
) -> None:
    MeetingWorkload(store, seed=26).setup(3)
    first = held_versions(start(store))
    store.set("audit_log", "entry", {"what": "moves the feed on"})
    second = held_versions(start(store))
    assert second.keys() == first.keys()
    assert all(second[k] >= first[k] for k in first)


class SlowStore(SqliteDatastore):
    """Holds each save of view records until ``go`` is set, counting the saves."""

    def __init__(self, config: SqliteDatastore.Config) -> None:
        super().__init__(config)
        self.go = threading.Event()
        self.saves: list[list[ViewRecord]] = []

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None:
        if records and records[0].digest:  # records of delivered views, not marks
            assert self.go.wait(10), "the test never let the save go"
            self.saves.append(list(records))
        super().save_view_state(name, records)


def test_records_of_delivered_views_are_saved_without_the_pipeline_waiting_for_them(
    tmp_path: Path,
) -> None:
    store = SlowStore(SlowStore.Config(path=tmp_path / "onto.db"))
    store.open()
    try:
        workload = MeetingWorkload(store, seed=27)
        meetings = workload.setup(3)
        made = processor(store, initial=False)

        async def run() -> None:
            settle_first = await asyncio.wait_for(made.due_messages(), 10)
            await asyncio.wait_for(made.settled(settle_first, []), 1)  # the save is held
            batches = []
            for meeting_id in meetings:  # more views delivered while it is held
                seen = store.last_seq()
                meeting = Meeting.get(meeting_id, store)
                ticket = Ticket.get(next(iter(meeting.tickets.values())).doc_id, store)
                ticket.attendance = not ticket.attendance
                ticket.save(store)
                changed = made.process_batch([change_message(c) for c in store.changes(seen, 9)])
                batches.append(changed[0])
                await asyncio.wait_for(made.settled(changed[0], []), 1)
            store.go.set()
            await asyncio.wait_for(made.flush(), 10)
            # The held save, then one save for everything settled meanwhile.
            assert [len(s) for s in store.saves] == [
                len(settle_first),
                len({m.value["key"] for b in batches for m in b}),
            ]

        asyncio.run(run())
        recorded = {r.key: r for r in store.load_view_state("p:meeting_session")}
        digests = {k: r.digest for k, r in recorded.items()}
        assert "" not in digests.values()
    finally:
        store.close()


class FlakyStore(SqliteDatastore):
    """Fails the first ``failures`` saves of delivered views' records (not marks)."""

    failures = 0

    def save_view_state(self, name: str, records: Sequence[ViewRecord]) -> None:
        if records and records[0].digest and self.failures:
            self.failures -= 1
            raise RuntimeError("the disk said no")
        super().save_view_state(name, records)


def test_a_failed_background_save_is_said_and_tried_again_with_the_next_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(FlakyStore.Config(path=tmp_path / "onto.db"))
    store.open()
    try:
        MeetingWorkload(store, seed=28).setup(2)
        made = processor(store, initial=False)
        store.failures = 2
        due = asyncio.run(made.due_messages())
        with caplog.at_level(logging.WARNING):
            settle(made, due)  # its save fails, and so does flush's try: said, records kept
        assert "could not save view state" in caplog.text
        assert "RuntimeError: the disk said no" in caplog.text
        assert set(state(store).values()) == {""}  # still marked maybe delivered
        settle(made, [])  # the next batch tries them again
        assert "" not in state(store).values()
    finally:
        store.close()


@pytest.mark.parametrize("value", ["not a change", 7, ["seq", 1], {"seq": 1}])
def test_a_message_that_is_not_a_change_fails_naming_itself(store: SpiedStore, value: Any) -> None:
    made = processor(store)
    message = Message(value, id="m-42")
    with pytest.raises(ProcessorError, match=r"expected a change .*") as caught:
        made.process(message)
    assert caught.value.message_id == "m-42"
