"""Group commit in the SQLite catalog: concurrent writers share one transaction (one
COMMIT, hence one set of disk flushes), each in its own savepoint, and each returns only
once its write is committed."""

import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from retentiond.adapters import sqlite_catalog
from retentiond.adapters.sqlite_catalog import SQLiteCatalog, _Group
from retentiond.core.model import Recording, State
from retentiond.errors import StorageError
from retentiond.ports import WrappedKey

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = WrappedKey(kek_id="kek-1", blob=b"wrapped")
BASE = Recording(
    id="x", state=State.INGESTING, purpose="quality", legal_basis="legitimate-interests",
    media="audio", recorded_at=T0, ingested_at=T0, policy_name="p", policy_sha256="0" * 64,
    location="v/x", source="/in/x",
)


@pytest.fixture
def cat(tmp_path):
    c = SQLiteCatalog(tmp_path / "catalog.db")
    commits: list[str] = []
    # the connection's statement trace: counts the COMMITs (each is a set of fsyncs)
    c._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    c.commits = commits  # type: ignore[attr-defined]
    yield c
    c.close()


def _insert(cat: SQLiteCatalog, object_id: str) -> None:
    cat.insert_ingesting(replace(BASE, id=object_id, location=f"v/{object_id}"),
                         wrapped=KEY, notes_sealed=None)


def _held_back(cat: SQLiteCatalog, writers: list[threading.Thread]) -> None:
    """Start ``writers`` while the test holds the connection, release it once all of
    them wait for it: they then form one group, deterministically."""
    with cat._locked():
        for t in writers:
            t.start()
        deadline = time.monotonic() + 10
        while cat._waiters < len(writers):
            assert time.monotonic() < deadline, "writers did not queue"
            time.sleep(0.001)
    for t in writers:
        t.join(10)
        assert not t.is_alive()


def test_waiting_writers_share_one_commit(cat, monkeypatch):
    # a loaded machine must not close the group early for its age: only the count matters
    monkeypatch.setattr(sqlite_catalog, "GROUP_MAX_SECONDS", 60.0)
    ids = [f"r{i:02d}" for i in range(12)]
    _held_back(cat, [threading.Thread(target=_insert, args=(cat, i)) for i in ids])
    assert cat.commits == ["COMMIT"]  # twelve writes, one commit
    assert {r.id for r in cat.query(states=[State.INGESTING])} == set(ids)
    assert cat.key_ids() == set(ids)


def test_a_failing_writer_undoes_only_its_own_write(cat):
    _insert(cat, "dup")
    errors: dict[str, BaseException] = {}

    def write(object_id: str) -> None:
        try:
            _insert(cat, object_id)
        except StorageError as e:
            errors[object_id] = e

    writers = [threading.Thread(target=write, args=(i,)) for i in ("a", "dup", "b", "c")]
    _held_back(cat, writers)
    assert set(errors) == {"dup"}  # the primary key clash
    assert "catalog write failed" in str(errors["dup"])
    assert {r.id for r in cat.query(states=[State.INGESTING])} == {"dup", "a", "b", "c"}
    # the failed write left nothing half done: one key per recording
    assert cat.key_ids() == {"dup", "a", "b", "c"}


def test_an_exception_in_a_writer_is_its_own(cat):
    def bad() -> None:
        with pytest.raises(ZeroDivisionError), cat._tx() as db:
            db.execute("INSERT INTO meta(key, value) VALUES('half', 'done')")
            raise ZeroDivisionError

    writers = [threading.Thread(target=_insert, args=(cat, "a")),
               threading.Thread(target=bad),
               threading.Thread(target=_insert, args=(cat, "b"))]
    _held_back(cat, writers)
    assert cat.meta("half") is None
    assert cat.key_ids() == {"a", "b"}


def test_a_failed_commit_fails_every_writer_of_the_group(cat, tmp_path):
    outcomes: dict[str, str] = {}

    def write(object_id: str) -> None:
        try:
            _insert(cat, object_id)
            outcomes[object_id] = "ok"
        except StorageError as e:
            outcomes[object_id] = str(e)

    # the COMMIT fails (in WAL mode it is where the pages are written: a full disk or an
    # I/O error fails it); SQLite's authorizer refusing it is a failure we can cause
    attempts: list[str] = []

    def no_commit(action: int, arg1: str | None, *_: object) -> int:
        refused = action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT"
        if refused:
            attempts.append("COMMIT")
        return sqlite3.SQLITE_DENY if refused else sqlite3.SQLITE_OK

    cat._db.set_authorizer(no_commit)
    try:
        _held_back(cat, [threading.Thread(target=write, args=(i,)) for i in ("a", "b", "c")])
    finally:
        cat._db.set_authorizer(None)
    assert len(outcomes) == 3
    assert attempts == ["COMMIT"]  # one group: its one COMMIT failed all three writers
    assert all("catalog write failed" in v and "not authorized" in v for v in outcomes.values())
    assert cat.key_ids() == set()  # nobody was told "ok" for a write that is not there
    _insert(cat, "later")  # and the catalog works again
    assert cat.key_ids() == {"later"}


def test_a_reader_commits_the_open_group_first(cat):
    """A read never sees a write that is not committed."""
    with cat._tx():
        pass
    cat._lock.acquire()
    try:  # a group left open by a writer that saw this reader waiting
        cat._db.execute("BEGIN IMMEDIATE")
        cat._group = group = _Group(time.monotonic())
        cat._db.execute("INSERT INTO meta(key, value) VALUES('k', 'v')")
        group.members = 1
    finally:
        cat._lock.release()
    before = len(cat.commits)
    assert cat.meta("k") == "v"
    assert len(cat.commits) == before + 1 and group.done.is_set() and cat._group is None


def test_a_lone_writer_commits_at_once(cat):
    _insert(cat, "a")
    assert cat.commits == ["COMMIT"] and cat._group is None
    # durable for another connection (another process) as soon as the call returns
    other = SQLiteCatalog(cat.path)
    try:
        assert other.key_ids() == {"a"}
    finally:
        other.close()


def test_many_threads_lose_nothing(cat):
    ids = [f"t{t}-{i}" for t in range(6) for i in range(40)]

    def worker(t: int) -> None:
        for i in range(40):
            object_id = f"t{t}-{i}"
            _insert(cat, object_id)
            cat.mark_stored(object_id, state=State.ACTIVE, size=1, ciphertext_size=2,
                            plaintext_sha256="a" * 64, ciphertext_sha256="b" * 64,
                            version_id=None, delete_after=None, sample_score=0.5)
            cat.clear_inbox_pending(object_id)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {r.id for r in cat.query(states=[State.ACTIVE])} == set(ids)
    assert not any(r.inbox_pending for r in cat.query(states=[State.ACTIVE]))


def test_a_group_is_bounded_in_writes(cat, monkeypatch):
    monkeypatch.setattr(sqlite_catalog, "GROUP_MAX_SECONDS", 60.0)
    monkeypatch.setattr(sqlite_catalog, "GROUP_MAX_WRITES", 4)
    _held_back(cat, [threading.Thread(target=_insert, args=(cat, f"r{i}")) for i in range(8)])
    assert len(cat.commits) == 2  # 4 writes each
    assert len(cat.key_ids()) == 8
