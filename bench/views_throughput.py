"""Views throughput: the meeting room's views through the ``view`` pipeline vs hand-written code.

The workload of issue 12: ``--meetings`` meetings (10,000) of 3 participants each, so
30,000 ``MeetingSession`` views. Users and locations are shared: there are as many users
as meetings (each sits in about 3 meetings) and a location per 5 meetings, so a rename
or an address edit fans out to several meetings. Then ``--changes`` (5,000) single-document
changes: attendance toggles, user renames and location edits.

onto: the pipeline runs in this process on the sqlite store the changes are written to
(``changes`` source → ``view`` processor → a sink keeping the newest view per key in
memory), with the defaults of a plain config. The baseline: hand-written incremental
code in plain Python dicts (which meetings each user, ticket and location feeds; rebuild
only those), no onto. Both produce the same views; the bench checks it, and checks both
against a fresh build of every view from the store by ``MeetingSession.build``.

Measured on each side:

* time-to-ready: from starting the pipeline until the sink holds every view and a change
  written then reaches the sink (the pipeline follows the feed's end); hand-written: the
  initial build from the documents in memory (median of 3 rounds, as for its burst).
* burst: ``--changes`` changes written while the pipeline cannot run (the event loop is
  held), then the time until the sink holds every final view; hand-written: applying them.
* one at a time: ``--changes`` more, each written and waited for until the views it
  changes arrive at the sink (p50/p99); hand-written: the time to apply each.
* peak RSS of each phase (``VmHWM``, reset between phases where the kernel allows).

    uv run --all-packages python bench/views_throughput.py [--meetings 10000] [--changes 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from examples.meeting_room.models import Location, Meeting, MeetingStatus, Ticket, User  # noqa: E402
from examples.meeting_room.views import MeetingSession  # noqa: E402
from onto_core import plugins  # noqa: E402
from onto_core.builtin.sqlite import SqliteDatastore  # noqa: E402
from onto_core.config import parse_config  # noqa: E402
from onto_core.hookspecs import hookimpl  # noqa: E402
from onto_core.models import Ref, use_datastore  # noqa: E402
from onto_core.models.view import build_views  # noqa: E402
from onto_core.protocols import Guarantee, Message  # noqa: E402
from onto_core.runtime import Runtime  # noqa: E402

COLLECTIONS = ("locations", "users", "tickets", "meetings")
PARTICIPANTS = 3
HAND_ROUNDS = 3
READY_ROUNDS = 3  # onto's time-to-ready: the median of this many first starts
Docs = dict[str, dict[str, dict[str, Any]]]  # collection → doc id → document
Write = tuple[str, str, dict[str, Any]]  # one single-document change


# --- the data and the changes --------------------------------------------------------------


def make_documents(meetings: int, rng: random.Random) -> Docs:
    """Every document of the workload, as the models store them (shared users, locations)."""
    users = meetings  # each user sits in ~3 meetings
    locations = max(1, meetings // 5)
    docs: Docs = {c: {} for c in COLLECTIONS}

    def put(model: Any) -> None:
        docs[model.collection][model.id] = model.to_dict()

    for i in range(locations):
        put(Location(id=f"loc-{i}", latitude=1.0 + i, longitude=2.0, address=f"Room {i}"))
    for i in range(users):
        put(User(id=f"u{i}", first_name=f"F{i}", last_name="L", hearing_aid_requested=i % 7 == 0))
    for m in range(meetings):
        uids = [f"u{i}" for i in rng.sample(range(users), PARTICIPANTS)]
        tickets = [Ticket(id=f"t{m}-{p}", user=Ref(User, uid)) for p, uid in enumerate(uids)]
        for ticket in tickets:
            put(ticket)
        put(
            Meeting(
                id=f"m{m}",
                location=Ref(Location, f"loc-{m % locations}"),
                users=[Ref(User, uid) for uid in uids],
                tickets={uid: t.ref for uid, t in zip(uids, tickets, strict=True)},
                status=MeetingStatus.IN_SESSION,
            )
        )
    return docs


def make_changes(docs: Docs, count: int, rng: random.Random, start: int) -> list[Write]:
    """``count`` changes, each visible in some view; the last one is a location edit.

    ``docs`` is advanced to the state after them (documents replaced, never mutated).
    Half attendance toggles, 35% renames (of a user attending somewhere), 15%
    address edits: each changes the views of every meeting the document feeds.
    """
    tickets_of: dict[str, list[str]] = defaultdict(list)
    for tid, ticket in docs["tickets"].items():
        tickets_of[ref_id(ticket["user"])].append(tid)
    meetings, users = list(docs["meetings"]), list(docs["users"])
    locations = list(docs["locations"])
    writes: list[Write] = []
    for n in range(start, start + count):
        kind = rng.random()
        if n == start + count - 1:
            kind = 1.0  # end on a change that always shows: the burst waits for it
        if kind < 0.5:
            meeting = docs["meetings"][rng.choice(meetings)]
            tid = ref_id(rng.choice(list(meeting["tickets"].values())))
            old = docs["tickets"][tid]
            writes.append(("tickets", tid, {**old, "attendance": not old["attendance"]}))
        elif kind < 0.85:
            while True:
                uid = rng.choice(users)
                if any(docs["tickets"][t]["attendance"] for t in tickets_of[uid]):
                    break
            writes.append(("users", uid, {**docs["users"][uid], "firstName": f"R{n}"}))
        else:
            lid = rng.choice(locations)
            writes.append(("locations", lid, {**docs["locations"][lid], "address": f"{n} Main St"}))
        collection, doc_id, doc = writes[-1]
        docs[collection][doc_id] = doc
    return writes


def ref_id(ref: str) -> str:
    return ref.partition("/")[2]


# --- the hand-written side -------------------------------------------------------------------


def meeting_views(docs: Docs, mid: str) -> list[tuple[str, dict[str, Any]]]:
    """``MeetingSession.build`` by hand, on raw documents: (key, view as delivered)."""
    meeting = docs["meetings"][mid]
    location = docs["locations"][ref_id(meeting["location"])]
    status = meeting["status"]
    attending: list[dict[str, Any]] = []
    if status != MeetingStatus.NOT_STARTED.value:
        present = sorted(
            ref_id(ticket["user"])
            for ref in meeting["tickets"].values()
            if (ticket := docs["tickets"].get(ref_id(ref))) is not None and ticket["attendance"]
        )
        for uid in present:
            user = docs["users"].get(uid)
            if user is not None:
                attending.append(
                    {
                        "userId": uid,
                        "name": user["displayName"] or f"{user['firstName']} {user['lastName']}",
                        "organization": user["organization"],
                        "hearingAidRequested": user["hearingAidRequested"],
                    }
                )
    aids = sum(a["hearingAidRequested"] for a in attending)
    return [
        (
            f"{mid}/{uid}",
            {
                "meetingId": mid,
                "userId": uid,
                "status": status,
                "inSession": status == MeetingStatus.IN_SESSION.value,
                "latitude": location["latitude"],
                "longitude": location["longitude"],
                "address": location["address"],
                "attending": attending,
                "numHearingAidRequested": aids,
            },
        )
        for uid in sorted(ref_id(ref) for ref in meeting["users"])
    ]


def build_all(docs: Docs) -> dict[str, dict[str, Any]]:
    return {key: view for mid in docs["meetings"] for key, view in meeting_views(docs, mid)}


NOT_STARTED = MeetingStatus.NOT_STARTED.value
IN_SESSION = MeetingStatus.IN_SESSION.value


class Hand:
    """Hand-written incremental views, as one would write them for this one view.

    Plain dicts; reverse indexes from each location, ticket and user to the meetings it
    feeds, and per meeting its parsed references (location, ticket ids, the sorted
    participants with their view keys); a changed document rebuilds the meetings it
    feeds, and the views (dicts built directly) of those whose content changed.
    """

    def __init__(self, docs: Docs) -> None:
        self.docs = {c: dict(d) for c, d in docs.items()}
        self.views: dict[str, dict[str, Any]] = {}
        self.shape: dict[str, tuple[str, list[tuple[str, str]], list[str]]] = {}
        self.by_location: dict[str, set[str]] = defaultdict(set)
        self.by_ticket: dict[str, set[str]] = defaultdict(set)
        self.by_user: dict[str, set[str]] = defaultdict(set)
        self.ticket_user: dict[str, str] = {}
        self.content: dict[str, tuple[Any, ...]] = {}  # meeting id → what its views share

    def build(self) -> None:
        for mid in self.docs["meetings"]:
            self._index(mid)
            self._rebuild(mid, None)

    def apply(self, collection: str, doc_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Take one change; the views it changed (key → new view, ``None`` if gone)."""
        self.docs[collection][doc_id] = doc
        changed: dict[str, Any] = {}
        mids: Any
        if collection == "users":
            mids = self.by_user.get(doc_id, ())
        elif collection == "tickets":
            mids = self.by_ticket.get(doc_id, ())
            if self.ticket_user.get(doc_id) != ref_id(doc["user"]):  # now someone else's
                for mid in list(mids):
                    self._unindex(mid)
                    self._index(mid)
        elif collection == "locations":
            mids = self.by_location.get(doc_id, ())
        else:  # a meeting: its references may have changed
            old = self.shape.get(doc_id)
            if old is not None:
                self._unindex(doc_id)
            self._index(doc_id)
            self.content.pop(doc_id, None)  # its participants may differ: build every view
            if old is not None:
                for _, key in set(old[1]) - set(self.shape[doc_id][1]):
                    del self.views[key]
                    changed[key] = None
            mids = (doc_id,)
        for mid in mids:
            self._rebuild(mid, changed)
        return changed

    def _index(self, mid: str) -> None:
        meeting = self.docs["meetings"][mid]
        lid = ref_id(meeting["location"])
        tids = [ref_id(ref) for ref in meeting["tickets"].values()]
        keys = [(uid, f"{mid}/{uid}") for uid in sorted(ref_id(ref) for ref in meeting["users"])]
        self.shape[mid] = (lid, keys, tids)
        self.by_location[lid].add(mid)
        tickets = self.docs["tickets"]
        for tid in tids:
            self.by_ticket[tid].add(mid)
            ticket = tickets.get(tid)
            if ticket is not None:
                uid = self.ticket_user[tid] = ref_id(ticket["user"])
                self.by_user[uid].add(mid)

    def _unindex(self, mid: str) -> None:
        lid, _, tids = self.shape.pop(mid)
        self.by_location[lid].discard(mid)
        for tid in tids:
            self.by_ticket[tid].discard(mid)
            uid = self.ticket_user.get(tid)
            if uid is not None:
                self.by_user[uid].discard(mid)

    def _rebuild(self, mid: str, changed: dict[str, Any] | None) -> None:
        """The views of meeting ``mid``; into ``changed`` too those that differ (if given)."""
        docs = self.docs
        status = docs["meetings"][mid]["status"]
        lid, keys, tids = self.shape[mid]
        location = docs["locations"][lid]
        attending = []
        aids = 0
        if status != NOT_STARTED:
            tickets, users, ticket_user = docs["tickets"], docs["users"], self.ticket_user
            present = [
                ticket_user[tid]
                for tid in tids
                if (ticket := tickets.get(tid)) is not None and ticket["attendance"]
            ]
            present.sort()
            for uid in present:
                user = users.get(uid)
                if user is not None:
                    aid = user["hearingAidRequested"]
                    aids += aid
                    attending.append(
                        {
                            "userId": uid,
                            "name": user["displayName"]
                            or f"{user['firstName']} {user['lastName']}",
                            "organization": user["organization"],
                            "hearingAidRequested": aid,
                        }
                    )
        latitude, longitude, address = (
            location["latitude"],
            location["longitude"],
            location["address"],
        )
        # What its views share (all but userId): unchanged, so are they.
        content = (status, latitude, longitude, address, attending, aids)
        if changed is not None and self.content.get(mid) == content:
            return
        self.content[mid] = content
        in_session = status == IN_SESSION
        views = self.views
        for uid, key in keys:
            view = {
                "meetingId": mid,
                "userId": uid,
                "status": status,
                "inSession": in_session,
                "latitude": latitude,
                "longitude": longitude,
                "address": address,
                "attending": attending,
                "numHearingAidRequested": aids,
            }
            views[key] = view
            if changed is not None:
                changed[key] = view


# --- the onto side ---------------------------------------------------------------------------


class Latest:
    """What the sink holds (newest view per key), and waits for it to hold given views."""

    def __init__(self) -> None:
        self.views: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.received = 0
        self.target: dict[str, Any] = {}
        self.contents = True
        self.missing: set[str] = set()
        self.reached = asyncio.Event()
        self.reached_at = 0.0

    def expect(self, target: dict[str, Any], contents: bool = True) -> asyncio.Event:
        """An event set once the sink holds every view of ``target`` (key → view).

        ``contents=False``: once it holds a view for every key of ``target`` (each key
        arrives once, as in a first build), leaving the contents to ``check``, outside
        the timed span: comparing 30,000 views as they come is the bench's work, not onto's.
        """
        self.target = target
        self.contents = contents
        held = self.views
        if contents:
            self.missing = {k for k, v in target.items() if held.get(k) != v}
        else:
            self.missing = {k for k in target if k not in held}
        self.reached = asyncio.Event()
        if not self.missing:
            self.reached_at = time.perf_counter()
            self.reached.set()
        return self.reached

    def take(self, messages: list[Message]) -> None:
        self.received += len(messages)
        for message in messages:
            update = message.value
            key, version = update["key"], update["version"]
            if version < self.versions.get(key, 0):
                continue  # older than what is held
            self.versions[key] = version
            if update["removed"]:
                self.views.pop(key, None)
            else:
                self.views[key] = update["data"]
            if key in self.target:
                if not self.contents or self.views.get(key) == self.target[key]:
                    self.missing.discard(key)
                else:
                    self.missing.add(key)
        if self.target and not self.missing and not self.reached.is_set():
            self.reached_at = time.perf_counter()
            self.reached.set()

    def check(self, target: dict[str, Any], what: str) -> None:
        """Fail unless the sink holds exactly the views of ``target`` for its keys."""
        wrong = [k for k, v in target.items() if self.views.get(k) != v]
        if wrong:
            raise SystemExit(f"{what}: {len(wrong):,} views differ, e.g. {wrong[0]}")


latest: Latest | None = None


class LatestSink:
    """Keeps the newest view per key in memory (the process-wide ``latest``)."""

    guarantees: ClassVar[frozenset[Guarantee]] = frozenset({Guarantee.AT_LEAST_ONCE})

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, config: Config) -> None:
        pass

    async def write(self, messages: list[Message]) -> None:
        assert latest is not None
        latest.take(messages)


class BenchComponents:
    @hookimpl
    def register_components(self, register: Any) -> None:
        register.sink("bench_latest", LatestSink)


async def wait(event: asyncio.Event, timeout: float, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        assert latest is not None
        raise SystemExit(
            f"timed out after {timeout} s waiting for {what}: {len(latest.missing)} views"
            f" still missing, e.g. {sorted(latest.missing)[:3]}"
        ) from None


def commit(store: SqliteDatastore, write: Write) -> None:
    collection, doc_id, doc = write
    store.commit({}, {(collection, doc_id): doc})


def onto_runtime(store: SqliteDatastore, batch: int | None, state: str) -> Runtime:
    """The view pipeline on ``store``; ``state`` names its view state (new: a first start)."""
    batch_line = f"\n    batch: {{size: {batch}}}" if batch else ""
    config = parse_config(f"""
datastore: {{type: sqlite, path: "{store.path}"}}
pipelines:
  sessions:
    source: {{type: changes, collections: [meetings, tickets, users, locations]}}
    processors:
      - {{type: view, view: "examples.meeting_room.views:MeetingSession", state: {state}}}
    sinks: [{{type: bench_latest}}]{batch_line}
""")
    return Runtime(config, datastore=store)  # same store: writes wake the feed at once


async def ready_round(
    store: SqliteDatastore, plan: dict[str, Any], batch: int | None, state: str
) -> float:
    """One more time-to-ready, from a first start; the store is left as it was found."""
    global latest
    latest = Latest()
    runtime = onto_runtime(store, batch, state)
    out: dict[str, Any] = {}
    task = asyncio.create_task(runtime.run())
    await time_to_ready(runtime, plan, out)
    await runtime.stop()
    await asyncio.wait_for(task, 60)
    store.open()  # the runtime closed it
    collection, doc_id, _ = plan["probe"]
    commit(store, (collection, doc_id, plan["probe_before"]))  # the probe, undone
    return float(out["ready"])


async def time_to_ready(runtime: Runtime, plan: dict[str, Any], out: dict[str, Any]) -> None:
    """Wait for every view at the sink, then for a change written then: into ``out``."""
    started = out["started"] = time.perf_counter()
    assert latest is not None
    views_at_sink = latest.expect(plan["initial"], contents=False)
    await wait(views_at_sink, 1200, "the initial views")
    out["views_at_sink"] = latest.reached_at - started
    # The bench's own check holds the loop (the pipeline waits meanwhile): not counted.
    latest.check(plan["initial"], "the initial views")
    probe_seen = latest.expect(plan["probe_changed"])
    probe_written = time.perf_counter()
    commit(store_of(runtime), plan["probe"])
    await wait(probe_seen, 1200, "the probe change")
    out["ready"] = out["views_at_sink"] + latest.reached_at - probe_written
    out["ready_received"] = latest.received


def store_of(runtime: Runtime) -> SqliteDatastore:
    store = runtime.datastore
    assert isinstance(store, SqliteDatastore)
    return store


async def run_onto(
    store: SqliteDatastore,
    plan: dict[str, Any],
    batch: int | None,
) -> dict[str, Any]:
    global latest
    latest = Latest()
    runtime = onto_runtime(store, batch, "bench")
    out: dict[str, Any] = {}

    # Time-to-ready: every view at the sink, then a change written now reaches it.
    task = asyncio.create_task(runtime.run())
    await time_to_ready(runtime, plan, out)

    # Burst: every change is in the feed before the pipeline can take the first.
    done = latest.expect(plan["after_burst"])
    latest.received = 0
    written = time.perf_counter()
    for write in plan["burst"]:
        commit(store, write)  # the loop is held: nothing is processed meanwhile
    out["burst_write"] = time.perf_counter() - written
    released = time.perf_counter()
    await wait(done, 600, "the burst's final views")
    out["burst"] = latest.reached_at - released
    out["burst_received"] = latest.received

    # One at a time: write a change, wait for the views it changes.
    latencies = []
    for write, changed in zip(plan["single"], plan["single_changed"], strict=True):
        arrived = latest.expect(changed)
        began = time.perf_counter()
        commit(store, write)
        await wait(arrived, 30, f"the views of change {write[:2]}")
        latencies.append(latest.reached_at - began)
    out["latencies"] = latencies
    runner = runtime.runners["sessions"]
    engine = runner.processors[0].instance.engine
    out["recomputes"] = engine.recomputes
    await runtime.stop()
    await asyncio.wait_for(task, 60)
    out["final"] = dict(latest.views)
    return out


# --- measuring -------------------------------------------------------------------------------


def settle() -> None:
    """Collect garbage, then exempt everything alive from the collector (``gc.freeze``).

    Then the collections during a timed phase walk what that side allocates, not the
    workload, the plans and the other side's views, which only the bench holds.
    """
    gc.collect()
    gc.freeze()


def reset_peak() -> bool:
    """Reset the process's peak RSS (``VmHWM``); whether the kernel allowed it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mb(field: str = "VmHWM") -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) in MB; ``ru_maxrss`` where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meetings", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=5_000)
    parser.add_argument(
        "--batch", type=int, default=None, help="Pipeline batch.size (default: the default)."
    )
    args = parser.parse_args(argv)
    plugins.register_plugin(BenchComponents(), name="bench")
    rng = random.Random(12)

    # The workload, and what every phase ends with (from the hand-written side).
    t = time.perf_counter()
    docs = make_documents(args.meetings, rng)
    initial_docs = {c: dict(d) for c, d in docs.items()}
    probe = make_changes(docs, 1, rng, 0)[0]
    burst = make_changes(docs, args.changes, rng, 1)
    single = make_changes(docs, args.changes, rng, 1 + args.changes)
    count = sum(len(d) for d in initial_docs.values())
    print(
        f"workload: {args.meetings:,} meetings, {len(initial_docs['users']):,} users, "
        f"{len(initial_docs['locations']):,} locations, {count:,} documents; "
        f"{args.changes:,} changes burst + {args.changes:,} one at a time "
        f"(made in {time.perf_counter() - t:.1f} s)"
    )

    gc.collect()
    base_hand = rss_mb("VmRSS")
    resettable = reset_peak()
    readies, bursts = [], []
    hand: Hand | None = None
    for _ in range(HAND_ROUNDS):  # cheap: the medians of a few rounds, steadier on a busy machine
        hand = None
        settle()
        hand = Hand(initial_docs)
        t = time.perf_counter()
        hand.build()
        initial = dict(hand.views)
        probe_changed = hand.apply(*probe)
        readies.append(time.perf_counter() - t)
        t = time.perf_counter()
        for write in burst:
            hand.apply(*write)
        bursts.append(time.perf_counter() - t)
    assert hand is not None
    hand_ready, hand_burst = statistics.median(readies), statistics.median(bursts)
    after_burst = dict(hand.views)
    hand_latencies, single_changed = [], []
    for write in single:
        t = time.perf_counter()
        single_changed.append(hand.apply(*write))
        hand_latencies.append(time.perf_counter() - t)
    peak_hand = rss_mb()
    assert hand.docs == docs, "the hand-written side did not end where the changes lead"
    assert hand.views == build_all(docs), "hand-written views differ from a fresh build"
    views = len(hand.views)

    with tempfile.TemporaryDirectory() as folder:
        store = SqliteDatastore(SqliteDatastore.Config(path=Path(folder) / "views.db"))
        store.open()
        store.commit({}, {(c, i): d for c in COLLECTIONS for i, d in initial_docs[c].items()})
        plan = {
            "initial": initial,
            "probe": probe,
            "probe_before": initial_docs[probe[0]][probe[1]],
            "probe_changed": probe_changed,
            "burst": burst,
            "after_burst": after_burst,
            "single": single,
            "single_changed": single_changed,
        }
        del initial_docs
        settle()
        base_onto = rss_mb("VmRSS")
        reset_peak()
        # Time-to-ready varies from run to run as the hand-written build does: first
        # starts of their own (each a new view state) before the full run; the median.
        onto_readies = []
        for n in range(READY_ROUNDS - 1):
            settle()
            onto_readies.append(asyncio.run(ready_round(store, plan, args.batch, f"ready-{n}")))
        settle()
        onto = asyncio.run(run_onto(store, plan, args.batch))
        peak_onto = rss_mb()
        store.open()  # the runtime closed it
        onto_readies.append(onto["ready"])
        onto["ready"] = statistics.median(onto_readies)

        # Check: onto's views = hand-written = a fresh build from the store, both by hand
        # and by MeetingSession.build.
        stored: Docs = {c: dict(store.query(c)) for c in COLLECTIONS}
        t = time.perf_counter()
        with use_datastore(store):
            fresh = {
                v.key: v.to_dict()
                for meeting in Meeting.find_many(stored["meetings"]).values()
                if meeting is not None
                for v in build_views(MeetingSession, meeting)
            }
        fresh_s = time.perf_counter() - t
        store.close()
    checks = {
        "onto = hand-written": onto["final"] == hand.views,
        "hand-written = fresh build (by hand, from the store)": hand.views == build_all(stored),
        "hand-written = fresh build (MeetingSession.build)": hand.views == fresh,
    }
    for what, ok in checks.items():
        print(f"check {what}: {'ok' if ok else 'FAILED'}")
    if not all(checks.values()):
        differ = sorted(k for k in hand.views if onto["final"].get(k) != hand.views[k])
        print(f"  {len(differ)} views differ, e.g. {differ[:3]}")

    n = args.changes
    onto_rate, hand_rate = n / onto["burst"], n / hand_burst
    lat, hlat = onto["latencies"], hand_latencies
    peak_note = "" if resettable else " (peak not resettable here: the process's so far)"
    print(f"views: {views:,}; fresh build by MeetingSession.build took {fresh_s:.1f} s")
    print(
        f"time-to-ready: onto {onto['ready']:.2f} s (median of "
        f"{', '.join(f'{r:.2f}' for r in onto_readies)}; in the last, every view at the "
        f"sink after {onto['views_at_sink']:.2f} s, {onto['ready_received']:,} updates), "
        f"hand-written build {hand_ready:.3f} s, ratio {onto['ready'] / hand_ready:.1f}"
    )
    print(
        f"burst of {n:,}: onto {onto_rate:,.0f} changes/s ({onto['burst']:.2f} s, "
        f"{onto['burst_received']:,} updates; writing them took {onto['burst_write']:.2f} s), "
        f"hand-written {hand_rate:,.0f} changes/s ({hand_burst:.3f} s)"
    )
    print(
        f"one at a time ({n:,}): onto p50 {statistics.median(lat) * 1e3:.2f} ms "
        f"p99 {pct(lat, 99) * 1e3:.2f} ms ({n / sum(lat):,.0f} changes/s); hand-written "
        f"p50 {statistics.median(hlat) * 1e3:.3f} ms p99 {pct(hlat, 99) * 1e3:.3f} ms"
    )
    burst_changed = sum(1 for k, v in after_burst.items() if initial.get(k) != v)
    print(
        f"recomputes (onto, whole run incl. initial build): {onto['recomputes']:,}; "
        f"views the burst changed: {burst_changed:,}"
    )
    print(
        f"peak RSS{peak_note}: hand-written phase {peak_hand:.0f} MB (from {base_hand:.0f} MB "
        f"with the workload built), onto phase {peak_onto:.0f} MB (from {base_onto:.0f} MB, "
        "which holds the hand-written side's views too)"
    )
    ratio = onto_rate / hand_rate
    ready_ratio = onto["ready"] / hand_ready
    print(
        f"RESULT views_throughput burst_onto={onto_rate:.0f}/s burst_hand={hand_rate:.0f}/s "
        f"ratio={ratio:.3f} ready_onto={onto['ready']:.2f} ready_hand={hand_ready:.3f} "
        f"ready_ratio={ready_ratio:.1f} target=>=0.08"
    )
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
