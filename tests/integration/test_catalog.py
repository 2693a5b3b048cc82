"""The SQLite catalog's compliance tables: schema migration, holds by recording, subject
or case, the sampling tally, notes findings, erasure requests and deletions by day."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retentiond.adapters.sqlite_catalog import SCHEMA_VERSION, SQLiteCatalog
from retentiond.core.model import Recording, State
from retentiond.errors import ConfigError, StorageError
from retentiond.ports import WrappedKey

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = WrappedKey(kek_id="kek-1", blob=b"wrapped")


def rec(object_id: str, **kw: object) -> Recording:
    base = Recording(
        id=object_id, state=State.INGESTING, purpose="quality",
        legal_basis="legitimate-interests", media="audio", recorded_at=T0, ingested_at=T0,
        policy_name="p", policy_sha256="0" * 64, location=f"v/{object_id}", source="/in/x",
        subject_ref="subj-A", agent="agent-7",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def store(cat: SQLiteCatalog, r: Recording, *, tally: bool = True,
          findings: tuple[tuple[str, str], ...] = ()) -> None:
    cat.insert_ingesting(r, wrapped=KEY, notes_sealed=None, notes_findings=findings)
    cat.mark_stored(r.id, state=State.ACTIVE, size=10, ciphertext_size=50,
                    plaintext_sha256="a" * 64, ciphertext_sha256="b" * 64, version_id=None,
                    delete_after=None, sample_score=0.5, tally=tally)


def delete(cat: SQLiteCatalog, object_id: str, *, at: datetime, index: int,
           reason: str = "retention-expired") -> None:
    assert cat.start_deletions([(object_id, reason, at)]) == {object_id}
    cat.destroy_keys([(object_id, b"{}", at)])
    cat.finish_deletions({object_id: index})


@pytest.fixture
def cat(tmp_path):
    c = SQLiteCatalog(tmp_path / "catalog.db")
    yield c
    c.close()


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE recordings (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, purpose TEXT NOT NULL, legal_basis TEXT,
    media TEXT NOT NULL, recorded_at TEXT NOT NULL, ingested_at TEXT NOT NULL,
    policy_name TEXT NOT NULL, policy_sha256 TEXT NOT NULL, location TEXT NOT NULL,
    source TEXT, call_id TEXT, subject_ref TEXT, agent TEXT,
    objection INTEGER NOT NULL DEFAULT 0, sample_score REAL, quarantine_reason TEXT,
    declared_purpose TEXT, size INTEGER NOT NULL DEFAULT 0,
    ciphertext_size INTEGER NOT NULL DEFAULT 0, plaintext_sha256 TEXT NOT NULL DEFAULT '',
    ciphertext_sha256 TEXT NOT NULL DEFAULT '', version_id TEXT,
    kek_id TEXT NOT NULL DEFAULT '', inbox_pending INTEGER NOT NULL DEFAULT 0,
    delete_after TEXT, delete_reason TEXT, due_at TEXT, deleted_at TEXT, proof_index INTEGER,
    retain_until TEXT, proof_record BLOB, notes_sealed BLOB
);
CREATE TABLE data_keys (object_id TEXT PRIMARY KEY, kek_id TEXT NOT NULL, wrapped BLOB NOT NULL);
CREATE TABLE holds (
    id INTEGER PRIMARY KEY, object_id TEXT NOT NULL, reason TEXT NOT NULL,
    actor TEXT NOT NULL, created_at TEXT NOT NULL, released_at TEXT, released_by TEXT,
    release_reason TEXT
);
INSERT INTO recordings(id, state, purpose, media, recorded_at, ingested_at, policy_name,
    policy_sha256, location) VALUES ('old1', 'active', 'quality', 'audio',
    '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00', 'p', 'x', 'v/old1');
INSERT INTO holds(object_id, reason, actor, created_at)
    VALUES ('old1', 'dispute 12', 'alice', '2026-01-02T00:00:00+00:00');
"""


def test_a_version_1_catalog_is_migrated_with_its_holds(tmp_path):
    path = tmp_path / "catalog.db"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.close()
    cat = SQLiteCatalog(path)
    try:
        assert cat.held_ids() == {"old1"}
        ((_, scope, target, reason, actor, _),) = cat.active_holds()
        assert (scope, target, reason, actor) == ("object", "old1", "dispute 12", "alice")
        old = cat.get("old1")
        assert old.case_ref is None and old.erasure_at is None
        # the migrated catalog takes new rows with the new columns
        store(cat, rec("new1", case_ref="case-9"))
        assert cat.get("new1").case_ref == "case-9"
    finally:
        cat.close()
    version = sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION
    SQLiteCatalog(path).close()  # opening again is a no-op


@pytest.mark.parametrize(("version", "message"), [
    pytest.param("99", "schema version 99", id="from-a-newer-retentiond"),
    pytest.param("two", "not a number", id="not-a-number"),
])
def test_a_catalog_with_a_schema_version_it_cannot_read_is_refused(tmp_path, version,
                                                                    message):
    path = tmp_path / "catalog.db"
    SQLiteCatalog(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match=message):
        SQLiteCatalog(path)


def test_a_subject_hold_keeps_present_and_future_recordings(cat):
    store(cat, rec("r1"))
    store(cat, rec("r2", subject_ref="subj-B"))
    cat.add_hold("subj-A", reason="litigation", actor="dpo", now=T0, scope="subject")
    store(cat, rec("r3"))  # arrives after the hold
    assert cat.held_ids() == {"r1", "r3"}
    started = cat.start_deletions([(i, "retention-expired", T0) for i in ("r1", "r2", "r3")])
    assert started == {"r2"}
    assert cat.remove_holds("subj-A", reason="settled", actor="dpo", now=T0,
                            scope="subject") == 1
    assert cat.held_ids() == set()
    assert cat.start_deletions([("r1", "retention-expired", T0)]) == {"r1"}


def test_a_case_hold_keeps_the_case_only(cat):
    store(cat, rec("r1", case_ref="case-1"))
    store(cat, rec("r2", case_ref="case-2"))
    cat.add_hold("case-1", reason="complaint", actor="dpo", now=T0, scope="case")
    assert cat.held_ids() == {"r1"}
    # releasing by another scope with the same text releases nothing
    assert cat.remove_holds("case-1", reason="x", actor="dpo", now=T0, scope="subject") == 0
    assert cat.held_ids() == {"r1"}


def test_an_unknown_hold_scope_is_refused(cat):
    with pytest.raises(StorageError, match="catalog write failed"):
        cat.add_hold("x", reason="r", actor="a", now=T0, scope="everything")


def test_the_sampling_tally_counts_ingests_and_cap_deletions_and_survives_them(cat):
    store(cat, rec("r1"))
    store(cat, rec("r2"))
    store(cat, rec("r3", agent=None))
    store(cat, rec("r4"), tally=False)  # not counted (quarantined)
    store(cat, rec("r5"))
    delete(cat, "r2", at=T0, index=0, reason="sampling-cap")
    delete(cat, "r5", at=T0, index=1)  # another reason: still kept as far as sampling goes
    assert cat.sampling_tally() == [("quality", None, 1, 0), ("quality", "agent-7", 3, 1)]
    assert cat.sampling_tally_since() == "2026-03"


def test_the_sampling_tally_forgets_agents_after_twelve_months(cat):
    store(cat, rec("old", ingested_at=T0 - timedelta(days=400)))
    store(cat, rec("mid", ingested_at=T0 - timedelta(days=200), agent="agent-8"))
    assert {a for _, a, _, _ in cat.sampling_tally()} == {"agent-7", "agent-8"}
    store(cat, rec("new", agent="agent-9"))
    assert {a for _, a, _, _ in cat.sampling_tally()} == {"agent-8", "agent-9"}
    assert cat.sampling_tally_since() == "2025-08"


def test_notes_findings_hold_categories_and_go_with_the_recording(cat):
    store(cat, rec("r1"), findings=(("health", "health.fr.condition"),
                                    ("insulting", "insulting.fr.word")))
    store(cat, rec("r2"))
    assert cat.notes_findings() == [
        ("r1", "quality", "health", "health.fr.condition"),
        ("r1", "quality", "insulting", "insulting.fr.word"),
    ]
    delete(cat, "r1", at=T0, index=0)
    assert cat.notes_findings() == []
    raw = sqlite3.connect(cat.path).execute("SELECT COUNT(*) FROM notes_findings").fetchone()
    assert raw[0] == 0


def test_an_abandoned_ingest_leaves_no_notes_findings(cat):
    cat.insert_ingesting(rec("r1"), wrapped=KEY, notes_sealed=None,
                         notes_findings=[("health", "health.en.condition")])
    cat.rollback_ingest("r1")
    raw = sqlite3.connect(cat.path).execute("SELECT COUNT(*) FROM notes_findings").fetchone()
    assert raw[0] == 0


def test_an_erasure_request_salt_goes_with_the_last_recording(cat):
    store(cat, rec("r1"))
    store(cat, rec("r2"))
    applied = cat.request_erasure(["r1", "r2", "missing"], request_id="req-1",
                                  salt=b"s" * 32, commitment="c" * 64, now=T0)
    assert applied == {"r1", "r2"}
    r1 = cat.get("r1")
    assert (r1.erasure_at, r1.erasure_commitment, r1.erasure_request) == (
        T0, "c" * 64, "req-1")
    assert not r1.objection
    delete(cat, "r1", at=T0, index=0)
    assert cat.erasure_salt("req-1") == b"s" * 32
    delete(cat, "r2", at=T0, index=1)
    assert cat.erasure_salt("req-1") is None
    gone = cat.get("r2")
    assert gone.erasure_commitment is None and gone.subject_ref is None


def test_an_erasure_request_on_nothing_live_keeps_no_salt(cat):
    assert cat.request_erasure(["nope"], request_id="req-2", salt=b"s" * 32,
                               commitment="c" * 64, now=T0) == set()
    assert cat.erasure_salt("req-2") is None


def test_an_objection_by_request_sets_the_objection(cat):
    store(cat, rec("r1"))
    cat.request_erasure(["r1"], request_id="req-3", salt=b"s" * 32, commitment="c" * 64,
                        now=T0, objection=True)
    assert cat.get("r1").objection


def test_deletions_are_counted_by_day_purpose_and_reason(cat):
    for i, day in enumerate((0, 0, 1)):
        store(cat, rec(f"r{i}"))
        delete(cat, f"r{i}", at=T0 + timedelta(days=day), index=i)
    store(cat, rec("live"))
    assert cat.deletions_by_day() == [
        ("2026-03-01", "quality", "retention-expired", 2),
        ("2026-03-02", "quality", "retention-expired", 1),
    ]


# -- WAL mode and the scrub: no image of an erased key left in catalog.db or -wal -----------


def catalog_files(path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


SECRET = WrappedKey(kek_id="kek-1", blob=b"KEY-" + bytes(range(40, 90)))


def test_the_catalog_runs_in_wal_mode_with_full_sync(cat):
    assert cat._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cat._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert cat._db.execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_a_destroyed_key_leaves_no_image_in_the_database_or_its_wal(cat):
    r = rec("k1")
    cat.insert_ingesting(r, wrapped=SECRET, notes_sealed=None)
    cat.mark_stored("k1", state=State.ACTIVE, size=1, ciphertext_size=2, plaintext_sha256="a",
                    ciphertext_sha256="b", version_id=None, delete_after=None,
                    sample_score=None)
    assert SECRET.blob in catalog_files(cat.path)  # the check below can fail
    delete(cat, "k1", at=T0, index=0)
    assert SECRET.blob not in catalog_files(cat.path)
    assert cat.path.with_name("catalog.db-wal").stat().st_size < 64 * 1024


def test_an_abandoned_ingest_leaves_no_image_of_its_key(cat):
    cat.insert_ingesting(rec("k2"), wrapped=SECRET, notes_sealed=None)
    assert SECRET.blob in catalog_files(cat.path)
    cat.rollback_ingest("k2")
    assert SECRET.blob not in catalog_files(cat.path)


def test_a_reader_holding_an_old_snapshot_delays_the_scrub_and_says_so(
        cat, tmp_path, monkeypatch, caplog):
    import retentiond.adapters.sqlite_catalog as module

    monkeypatch.setattr(module, "SCRUB_WAIT_MS", 50)
    store(cat, rec("k3"))
    cat.insert_ingesting(rec("k4"), wrapped=SECRET, notes_sealed=None)
    reader = sqlite3.connect(cat.path)  # another process's `retentiond ls`, mid-query
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM data_keys").fetchone()
    try:
        cat.rollback_ingest("k4")  # commits; its scrub cannot truncate -wal yet
        assert "still reads an old snapshot" in caplog.text
        assert SECRET.blob in catalog_files(cat.path)
        assert cat.scrub() is False
    finally:
        reader.rollback()
        reader.close()
    assert cat.scrub() is True
    assert SECRET.blob not in catalog_files(cat.path)
    assert cat.scrub() is True  # nothing erased since: nothing to do


def test_a_new_process_scrubs_what_a_dead_one_left_in_the_wal(tmp_path):
    path = tmp_path / "catalog.db"
    first = SQLiteCatalog(path)
    first.insert_ingesting(rec("k5"), wrapped=SECRET, notes_sealed=None)
    # the process dies between the commit erasing the key and its scrub: simulated by
    # erasing with a plain connection, which leaves the images in -wal
    other = sqlite3.connect(path)
    other.execute("PRAGMA secure_delete=ON")
    other.execute("DELETE FROM data_keys WHERE object_id='k5'")
    other.commit()
    other.close()  # not the last connection: -wal stays as it is
    assert SECRET.blob in catalog_files(path)
    second = SQLiteCatalog(path)  # while the first is still open (it never closes)
    try:
        assert SECRET.blob not in catalog_files(path)
    finally:
        second.close()
        first._db.close()


def test_a_sampling_tally_month_dropped_at_ingest_is_scrubbed(cat):
    store(cat, rec("t1", agent="AGENT-OLD-77"))
    assert b"AGENT-OLD-77" in catalog_files(cat.path)
    # the recording's own row names the agent until its deletion; the tally row too
    delete(cat, "t1", at=T0, index=0)
    later = T0 + timedelta(days=400)
    store(cat, rec("t2", ingested_at=later, recorded_at=later))  # drops the old month
    assert b"AGENT-OLD-77" not in catalog_files(cat.path)


def test_a_waiting_scrub_does_not_hold_the_catalog(cat, monkeypatch):
    """While a scrub waits for a reader elsewhere, this process's other threads (ingest
    workers) keep reading and writing: it tries again and again, never waiting inside
    SQLite with the connection held."""
    import threading
    import time as time_module

    store(cat, rec("w1"))
    reader = sqlite3.connect(cat.path)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM data_keys").fetchone()
    outcome: list[bool] = []
    try:
        scrubber = threading.Thread(
            target=lambda: outcome.append(cat.scrub(force=True, wait_ms=1500)))
        scrubber.start()
        time_module.sleep(0.2)
        started = time_module.monotonic()
        cat.set_meta("during", "scrub")  # a write and a read while it waits
        assert cat.meta("during") == "scrub"
        assert time_module.monotonic() - started < 0.5
        scrubber.join(5)
    finally:
        reader.rollback()
        reader.close()
    assert outcome == [False]
    assert cat.scrub(force=True) is True


def test_closing_scrubs_an_erasure_a_reader_delayed(cat, caplog):
    """`retentiond subject erase` (or an ingest rolled back) while `retentiond ls` reads
    in another process: the erasing write's quick scrub gives up, closing tries again."""
    cat.insert_ingesting(rec("c1"), wrapped=SECRET, notes_sealed=None)
    keeper = sqlite3.connect(cat.path)  # keeps -wal from going when cat closes
    keeper.execute("SELECT COUNT(*) FROM meta").fetchone()
    reader = sqlite3.connect(cat.path)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM data_keys").fetchone()
    try:
        cat.rollback_ingest("c1")
        assert cat.dirty and SECRET.blob in catalog_files(cat.path)
    finally:
        reader.rollback()
        reader.close()
    cat.close()
    try:
        assert SECRET.blob not in catalog_files(cat.path)
    finally:
        keeper.close()


@contextmanager
def reading_elsewhere(path: Path) -> Iterator[None]:
    """Another process's reader (`retentiond ls` mid-query) holding its snapshot."""
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM recordings").fetchone()
    try:
        yield
    finally:
        reader.rollback()
        reader.close()


def test_opening_beside_a_reader_does_not_warn(tmp_path, caplog):
    path = tmp_path / "catalog.db"
    first = SQLiteCatalog(path)
    store(first, rec("o1"))
    with reading_elsewhere(path):
        second = SQLiteCatalog(path)  # its opening scrub cannot finish: routine, quiet
        assert "still reads an old snapshot" not in caplog.text
        assert second.dirty  # the next scrub tries again
    assert second.scrub() is True and not second.dirty
    second.close()
    first.close()


def test_closing_after_a_busy_opening_neither_waits_nor_warns_and_twice_is_fine(
        tmp_path, caplog):
    """Dirty only because its opening scrub met a reader (nothing erased by this
    process): `retentiond ls` must not wait 5 s at exit for it."""
    import time as time_module

    path = tmp_path / "catalog.db"
    first = SQLiteCatalog(path)
    store(first, rec("q1"))
    with reading_elsewhere(path):
        second = SQLiteCatalog(path)
        assert second.dirty
        started = time_module.monotonic()
        second.close()
        assert time_module.monotonic() - started < 1.0
        second.close()  # again: nothing
        assert second.scrub() is False  # closed and still dirty: says so, never raises
        assert "still reads an old snapshot" not in caplog.text
        assert "closed database" not in caplog.text
    first.close()


def test_closing_right_after_a_full_wait_failed_waits_briefly(cat, monkeypatch):
    """`subject erase` beside a stuck reader: the proof gate waited its full time in
    vain; closing does not wait that long again for the same reader."""
    import time as time_module

    import retentiond.adapters.sqlite_catalog as module

    monkeypatch.setattr(module, "SCRUB_WAIT_MS", 1500)
    monkeypatch.setattr(module, "SCRUB_QUICK_MS", 10)
    cat.insert_ingesting(rec("f1"), wrapped=SECRET, notes_sealed=None)
    with reading_elsewhere(cat.path):
        cat.rollback_ingest("f1")
        assert cat.scrub(force=True) is False  # the full wait, in vain
        started = time_module.monotonic()
        cat.close()
        assert time_module.monotonic() - started < 0.75


def test_versions_a_deletion_asks_for_are_kept_until_the_record_names_them(cat):
    store(cat, rec("r1"))
    store(cat, rec("r2"))
    with pytest.raises(StorageError, match="r1 is not being deleted"):
        cat.note_deletion_attempts({"r1": ["v-a"]})  # only during a deletion
    assert cat.start_deletions([("r1", "retention-expired", T0)]) == {"r1"}
    with pytest.raises(StorageError, match="r2 is not being deleted"):  # all or none
        cat.note_deletion_attempts({"r1": ["v-0"], "r2": ["v-x"]})
    assert cat.attempted_versions(["r1"]) == {}
    cat.note_deletion_attempts({"r1": ["v-a", "v-b"]})
    cat.note_deletion_attempts({"r1": ["v-b", "v-c"], "r2": []})  # after, each once
    assert cat.attempted_versions(["r1", "r2", "nope"]) == {"r1": ("v-a", "v-b", "v-c")}
    cat.destroy_keys([("r1", b"{}", T0)])
    assert cat.attempted_versions(["r1"]) == {}


def test_a_standing_objection_flags_what_is_stored_after_it_and_keeps_no_salt(cat):
    being_ingested = rec("r1", subject_ref="subj-A")
    cat.insert_ingesting(being_ingested, wrapped=KEY, notes_sealed=None)
    cat.add_standing_objection("subj-A", request_id="req-1", commitment="c" * 64, now=T0)
    assert [(ref, rid) for ref, rid, _ in cat.standing_objections()] == [("subj-A", "req-1")]
    assert cat.erasure_salt("req-1") is None  # beside the commitment, it would name S

    def mark(object_id: str) -> bool:
        return cat.mark_stored(object_id, state=State.ACTIVE, size=1, ciphertext_size=2,
                               plaintext_sha256="a" * 64, ciphertext_sha256="b" * 64,
                               version_id=None, delete_after=None, sample_score=0.5)

    assert mark("r1") is True  # objected to while it was being ingested: not missed
    got = cat.get("r1")
    assert (got.objection, got.erasure_request, got.erasure_commitment) == (
        True, "req-1", "c" * 64)
    cat.insert_ingesting(rec("r2", subject_ref="subj-B"), wrapped=KEY, notes_sealed=None)
    assert mark("r2") is False and cat.get("r2").objection is False
    # Art. 21 does not reach a legal obligation or a contract: kept under the policy
    for i, basis in enumerate(("legal-obligation", "contract", "vital-interests")):
        cat.insert_ingesting(rec(f"o{i}", subject_ref="subj-A", legal_basis=basis),
                             wrapped=KEY, notes_sealed=None)
        assert mark(f"o{i}") is False, basis
    for i, basis in enumerate(("consent", "public-task")):
        cat.insert_ingesting(rec(f"c{i}", subject_ref="subj-A", legal_basis=basis),
                             wrapped=KEY, notes_sealed=None)
        assert mark(f"c{i}") is True, basis
    # a newer objection replaced it: withdrawing the old one changes nothing
    cat.add_standing_objection("subj-A", request_id="req-2", commitment="d" * 64, now=T0)
    assert cat.remove_standing_objection("subj-A", "req-1") is False
    assert cat.remove_standing_objection("subj-A", "req-2") is True
    assert cat.standing_objections() == []
