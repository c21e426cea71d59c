"""The sqlite datastore: the shared conformance suite plus what only a file can show."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from onto_core.builtin.memory_datastore import MemoryDatastore
from onto_core.builtin.sqlite import SqliteDatastore
from onto_core.errors import DatastoreError
from onto_core.models.datastore import ChangeOp
from onto_core.testing import DatastoreConformance


def open_store(path: Path) -> SqliteDatastore:
    store = SqliteDatastore(SqliteDatastore.Config(path=path))
    store.open()
    return store


class TestSqliteDatastore(DatastoreConformance):
    @pytest.fixture
    def datastore_factory(self, tmp_path: Path) -> Iterator[SqliteDatastore]:
        store = open_store(tmp_path / "onto.db")
        yield store
        store.close()


def test_second_instance_on_the_same_file_sees_writes_and_cursors(tmp_path: Path) -> None:
    writer = open_store(tmp_path / "onto.db")
    reader = open_store(tmp_path / "onto.db")
    try:
        writer.set("users", "u1", {"name": "Ada"})
        writer.save_cursor("feed", 1)
        assert reader.get("users", "u1") == {"name": "Ada"}
        assert [(c.doc_id, c.op) for c in reader.changes()] == [("u1", ChangeOp.CREATE)]
        assert reader.load_cursor("feed") == 1

        reader.set("users", "u1", {"name": "Ada L."})
        latest = writer.changes(after=1)
        assert [(c.op, c.data) for c in latest] == [(ChangeOp.UPDATE, {"name": "Ada L."})]
        assert latest[0].seq > 1
    finally:
        writer.close()
        reader.close()


def test_file_is_in_wal_journal_mode(tmp_path: Path) -> None:
    path = tmp_path / "onto.db"
    open_store(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_creates_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "data" / "nested" / "onto.db"
    store = open_store(path)
    store.set("users", "u1", {"a": 1})
    store.close()
    assert path.is_file()


def test_using_a_store_before_open_names_the_file(tmp_path: Path) -> None:
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    with pytest.raises(DatastoreError, match=r"onto\.db is not open; call open\(\) first"):
        store.get("users", "u1")


def test_unopenable_path_raises_datastore_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    store = SqliteDatastore(SqliteDatastore.Config(path=folder))
    with pytest.raises(DatastoreError, match=r"cannot open sqlite datastore at .*a-folder"):
        store.open()


def test_document_that_is_not_json_is_refused_and_records_no_change(tmp_path: Path) -> None:
    store = open_store(tmp_path / "onto.db")
    with pytest.raises(DatastoreError, match="users/u1 is not JSON-serializable"):
        store.set("users", "u1", {"when": object()})
    assert store.get("users", "u1") is None
    assert store.changes() == []
    store.close()


def test_watch_reports_each_committed_write_until_stopped(tmp_path: Path) -> None:
    store = open_store(tmp_path / "onto.db")
    seen: list[tuple[int, str, ChangeOp]] = []
    stop = store.watch(lambda change: seen.append((change.seq, change.doc_id, change.op)))
    store.set("users", "u1", {"a": 1})
    store.delete("users", "u1")
    store.delete("users", "missing")
    stop()
    store.set("users", "u2", {"a": 2})
    assert seen == [(1, "u1", ChangeOp.CREATE), (2, "u1", ChangeOp.DELETE)]
    assert store.last_seq() == 3
    store.close()


def test_wait_for_changes_ends_when_this_process_writes(tmp_path: Path) -> None:
    store = open_store(tmp_path / "onto.db")
    store.set("users", "u1", {"a": 1})
    assert store.wait_for_changes(after=0, timeout=5) is True
    assert store.wait_for_changes(after=1, timeout=0.01) is False
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(store.wait_for_changes, 1, 60)  # far longer than the test
        store.set("users", "u2", {"a": 2})
        assert waiting.result(timeout=5) is True
    store.close()


def test_committed_writes_survive_the_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "onto.db"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from onto_core.builtin.sqlite import SqliteDatastore

        store = SqliteDatastore(SqliteDatastore.Config(path=Path({str(path)!r})))
        store.open()
        for n in range(50):
            store.set("items", f"i{{n}}", {{"n": n}})
        print("written", flush=True)
        sys.stdin.read()  # stay alive, connection open, until killed
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "written"
        finally:
            child.kill()  # SIGKILL: no cleanup, no checkpoint
            child.wait(timeout=10)

    store = open_store(path)
    assert len(store.changes(limit=100)) == 50
    assert store.get("items", "i49") == {"n": 49}
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_query_without_conditions_returns_documents_by_id_then_cut(
    tmp_path: Path, kind: str
) -> None:
    # Without conditions or an order the store itself sorts and cuts; the order must be
    # Python's order of the ids, non-ASCII ones included.
    store = open_store(tmp_path / "onto.db") if kind == "sqlite" else MemoryDatastore()
    store.open()
    ids = ["b", "a", "é", "Z", "ß", "😀", "\uff41", "a0", "10", "9"]
    store.commit({}, {("items", i): {"n": n} for n, i in enumerate(ids)})
    store.commit({}, {("others", "0"): {"n": -1}})
    everything = store.query("items")
    assert [i for i, _ in everything] == sorted(ids)
    assert everything[0] == ("10", {"n": ids.index("10")})
    assert [i for i, _ in store.query("items", limit=3)] == sorted(ids)[:3]
    assert store.query("items", limit=0) == []
    assert [i for i, _ in store.query("items", limit=100)] == sorted(ids)
    store.close()


def test_reads_in_a_snapshot_see_one_state_until_it_ends(tmp_path: Path) -> None:
    store = open_store(tmp_path / "onto.db")
    try:
        store.set("users", "u1", {"name": "Ada"})
        with store.snapshot():
            assert store.get("users", "u1") == {"name": "Ada"}
            # Another thread writes meanwhile (the shared connection is not held).
            with ThreadPoolExecutor(1) as pool:
                pool.submit(store.set, "users", "u1", {"name": "Grace"}).result(timeout=10)
                pool.submit(store.set, "users", "u2", {"name": "Alan"}).result(timeout=10)
            assert store.get("users", "u1") == {"name": "Ada"}
            assert store.get_many("users", ["u1", "u2"]) == {"u1": {"name": "Ada"}, "u2": None}
            assert [doc_id for doc_id, _ in store.query("users")] == ["u1"]
        assert store.get("users", "u1") == {"name": "Grace"}
        assert [doc_id for doc_id, _ in store.query("users")] == ["u1", "u2"]
    finally:
        store.close()


def test_a_snapshot_needs_an_open_store_and_closing_ends_its_readers(tmp_path: Path) -> None:
    store = open_store(tmp_path / "onto.db")
    with store.snapshot():
        store.get("users", "u1")
    store.close()
    with pytest.raises(DatastoreError, match="not open"), store.snapshot():
        pass
    store.open()
    try:
        store.set("users", "u1", {"name": "Ada"})
        with store.snapshot():
            assert store.get("users", "u1") == {"name": "Ada"}
    finally:
        store.close()


def test_a_store_opens_for_a_with_block_and_closes_after_it(tmp_path: Path) -> None:
    store = SqliteDatastore(SqliteDatastore.Config(path=tmp_path / "onto.db"))
    with store as opened:
        assert opened is store
        store.set("users", "u1", {"name": "Ada"})
    with pytest.raises(DatastoreError, match="not open"):
        store.get("users", "u1")
    with pytest.raises(RuntimeError, match="boom"), store:
        raise RuntimeError("boom")
    with pytest.raises(DatastoreError, match="not open"):
        store.get("users", "u1")
    with MemoryDatastore() as memory:
        memory.set("users", "u1", {"name": "Ada"})
        assert memory.get("users", "u1") == {"name": "Ada"}
