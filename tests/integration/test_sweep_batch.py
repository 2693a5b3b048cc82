"""The sweep's batched deletion: what it tells the store (the versions it wrote, except
where the version may already be gone), its batches and SIGTERM between them, and the
catalog's batch statements, which must leave exactly what simple per-row statements (the
reference below, the catalog's code before it was batched) leave."""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retentiond.adapters.sqlite_catalog import (
    _HELD,
    _PERSONAL_COLUMNS,
    SQLiteCatalog,
    _count_sampling,
    _drop_unused_salts,
    _ts,
)
from retentiond.clock import ManualClock
from retentiond.core.model import LIVE_STATES, Recording, State
from retentiond.errors import StorageError
from retentiond.ports import WrappedKey
from retentiond.service import sweep as sweep_module
from retentiond.service.prooflog import verify_log
from retentiond.service.reconcile import Reconciler
from retentiond.service.sweep import Sweeper
from retentiond.service.wiring import App
from tests.integration.test_pipeline import _ingest


class SpyVault:
    """The real vault, recording what each ``delete_many`` was told."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def delete_many(self, keys: Any, **kwargs: Any) -> Any:
        self.calls.append({"keys": list(keys), **kwargs})
        return self.inner.delete_many(keys, **kwargs)


def _due(app: App, clock: ManualClock, n: int) -> list[Recording]:
    outs = [_ingest(app, clock, f"c{i}.wav", seed=i, purpose="quality")[2] for i in range(n)]
    clock.advance(timedelta(minutes=1))  # quality: PT30S
    return [app.catalog.get(o.object_id) for o in outs]


def test_the_store_is_told_the_versions_it_wrote(app: App, clock: ManualClock) -> None:
    recs = _due(app, clock, 3)
    spy = app.vault = SpyVault(app.vault)  # type: ignore[assignment]
    report = Sweeper(app).sweep(now=clock.now())
    assert sorted(i.outcome for i in report.items) == ["deleted"] * 3
    (call,) = spy.calls
    assert sorted(call["keys"]) == sorted(r.location for r in recs)
    assert call["known"] == {r.location: r.version_id for r in recs}  # None: a folder
    assert call["population"] == 3


def test_a_resumed_or_missing_recording_is_listed_first(app: App, clock: ManualClock) -> None:
    """A deletion resumed after a failure may have deleted the version already, and a
    recording the reconciler found missing has none: neither is announced as known, so
    the record names only versions the store showed."""
    resumed, missing, fresh = _due(app, clock, 3)
    assert app.catalog.start_deletions([(resumed.id, "retention-expired", clock.now())])
    (Path(app.settings.vault) / missing.location).unlink()
    Reconciler(app).reconcile(now=clock.now())
    spy = app.vault = SpyVault(app.vault)  # type: ignore[assignment]
    report = Sweeper(app).sweep(now=clock.now())
    assert sorted(i.outcome for i in report.items) == ["deleted"] * 3
    (call,) = spy.calls
    assert call["known"] == {fresh.location: fresh.version_id}
    assert set(call["keys"]) == {resumed.location, missing.location, fresh.location}
    assert verify_log(app.proof_log.store, verifier=app.proof_log.verifier).size == 3


def test_batches_and_a_stop_between_them(app: App, clock: ManualClock,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _due(app, clock, 5)
    monkeypatch.setattr(sweep_module, "DELETE_BATCH", 2)
    spy = app.vault = SpyVault(app.vault)  # type: ignore[assignment]
    asked: list[int] = []

    def stop_after_one() -> bool:
        asked.append(1)
        return len(asked) > 1

    first = Sweeper(app).sweep(now=clock.now(), should_stop=stop_after_one)
    assert [i.outcome for i in first.items] == ["deleted"] * 2 and len(spy.calls) == 1
    second = Sweeper(app).sweep(now=clock.now())
    assert [i.outcome for i in second.items] == ["deleted"] * 3
    assert [len(c["keys"]) for c in spy.calls] == [2, 2, 1]
    assert [i.proof_index for i in first.items + second.items] == [0, 1, 2, 3, 4]


# -- the catalog's bulk statements ----------------------------------------------------------

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
KEY = WrappedKey(kek_id="kek-1", blob=b"wrapped")


def _rec(i: int, **kw: Any) -> Recording:
    base = Recording(
        id=f"r{i:03d}", state=State.INGESTING, purpose="quality",
        legal_basis="legitimate-interests", media="audio", recorded_at=T0, ingested_at=T0,
        policy_name="p", policy_sha256="0" * 64, location=f"v1/00/r{i:03d}.rtd",
        source=f"/in/{i}", subject_ref=f"subj-{i % 3}", agent=f"agent-{i % 4}",
        case_ref=f"case-{i % 2}", version_id=f"ver-{i}",
    )
    return replace(base, **kw)


def _fill(cat: SQLiteCatalog, n: int) -> None:
    for i in range(n):
        # ingests over 16 months, some recordings quarantined, some with notes findings
        at = T0 + timedelta(days=30 * (i % 16))
        r = _rec(i, ingested_at=at, recorded_at=at)
        cat.insert_ingesting(r, wrapped=KEY, notes_sealed=b"n" if i % 5 == 0 else None,
                             notes_findings=(("health", "h1"),) if i % 3 == 0 else ())
        cat.mark_stored(r.id, state=State.QUARANTINED if i % 7 == 0 else State.ACTIVE,
                        size=10, ciphertext_size=50, plaintext_sha256="a" * 64,
                        ciphertext_sha256="b" * 64, version_id=r.version_id,
                        delete_after=None, sample_score=0.5, tally=i % 7 != 0)
    cat.add_hold("subj-1", reason="case", actor="dpo", now=T0, scope="subject")
    cat.add_hold("r004", reason="case", actor="dpo", now=T0)
    cat.request_erasure(["r010", "r011"], request_id="req-1", salt=b"s", commitment="c",
                        now=T0)


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in ("recordings", "data_keys", "notes_findings", "sampling_tally",
                          "erasure_requests", "holds")}


def _start_per_row(cat: SQLiteCatalog, items: list[tuple[str, str, datetime]]) -> set[str]:
    """Reference for ``start_deletions``: one guarded UPDATE per recording."""
    started: set[str] = set()
    with cat._tx() as db:
        for object_id, reason, due_at in items:
            cur = db.execute(
                "UPDATE recordings SET state=?, delete_reason=?, due_at=? "
                f"WHERE id=? AND state IN (?, ?) AND NOT {_HELD}",
                (State.DELETING.value, reason, _ts(due_at), object_id,
                 State.ACTIVE.value, State.QUARANTINED.value))
            if cur.rowcount == 1:
                started.add(object_id)
    return started


def _destroy_per_row(cat: SQLiteCatalog, items: list[tuple[str, bytes, datetime]]) -> None:
    """Reference for ``destroy_keys``: the tally, the row, the key and the findings of
    one recording after the other."""
    sets = ", ".join(f"{c}=NULL" for c in _PERSONAL_COLUMNS)
    with cat._tx() as db:
        for object_id, record, deleted_at in items:
            _count_sampling(db, object_id, ingested=0, over_cap=1,
                            only_reason="sampling-cap")
            cur = db.execute(
                f"UPDATE recordings SET {sets}, proof_record=?, deleted_at=? "
                "WHERE id=? AND state=?",
                (record, _ts(deleted_at), object_id, State.DELETING.value))
            assert cur.rowcount == 1
            db.execute("DELETE FROM data_keys WHERE object_id=?", (object_id,))
            db.execute("DELETE FROM notes_findings WHERE object_id=?", (object_id,))
        _drop_unused_salts(db)


def _reason(i: int) -> str:
    return "sampling-cap" if i % 4 == 1 else "retention-expired"


def test_batch_deletion_statements_leave_what_per_row_ones_leave(tmp_path: Path) -> None:
    n = 40
    cats = {}
    for kind in ("rows", "bulk"):
        cat = SQLiteCatalog(tmp_path / f"{kind}.db")
        _fill(cat, n)
        cats[kind] = cat
    now = T0 + timedelta(days=600)
    items = [(f"r{i:03d}", _reason(i), now - timedelta(seconds=i)) for i in range(n)]
    items.append(items[3])  # a repeated id: its first item applies, once
    started = _start_per_row(cats["rows"], items)
    assert cats["bulk"].start_deletions(items) == started
    assert "r004" not in started and "r001" not in started  # held by id, by subject
    assert len(started) < n
    gone = [(i, f'{{"id":"{i}"}}'.encode(), now) for i in sorted(started)]
    # per row, the sampling tally's clean-up depends on the order: keep a mixed order
    gone = gone[1::2] + gone[::2]
    _destroy_per_row(cats["rows"], gone)
    cats["bulk"].destroy_keys(gone)
    for cat in cats.values():
        cat.close()
    rows, bulk = _dump(tmp_path / "rows.db"), _dump(tmp_path / "bulk.db")
    assert rows["sampling_tally"]  # something for the comparison to compare
    assert bulk == rows


def test_key_destruction_is_all_or_none(tmp_path: Path) -> None:
    cat = SQLiteCatalog(tmp_path / "c.db")
    _fill(cat, 6)
    now = T0 + timedelta(days=600)
    assert cat.start_deletions([("r002", "retention-expired", now)]) == {"r002"}
    before = _dump(tmp_path / "c.db")
    with pytest.raises(StorageError, match="r003 is not being deleted"):
        cat.destroy_keys([("r002", b"{}", now), ("r003", b"{}", now)])
    assert _dump(tmp_path / "c.db") == before
    assert cat.start_deletions([]) == set()
    cat.destroy_keys([])
    cat.close()


def test_query_reads_rows_back_as_written(tmp_path: Path) -> None:
    """``query`` converts rows by position: every field comes back as it was written."""
    cat = SQLiteCatalog(tmp_path / "c.db")
    _fill(cat, 12)
    cat.start_deletions([("r005", "retention-expired", T0)])
    live = cat.query(states=list(LIVE_STATES))
    assert len(live) == 12 and [r.id for r in live] == sorted(r.id for r in live)
    (deleting,) = cat.query(states=[State.DELETING])
    at = T0 + timedelta(days=150)
    assert deleting == replace(
        _rec(5, ingested_at=at, recorded_at=at), state=State.DELETING, size=10,
        ciphertext_size=50, plaintext_sha256="a" * 64, ciphertext_sha256="b" * 64,
        sample_score=0.5, inbox_pending=True, delete_reason="retention-expired", due_at=T0)
    assert cat.get("r005") == deleting
    assert {r.state for r in cat.query(states=[State.QUARANTINED])} == {State.QUARANTINED}
    cat.close()


def test_a_proof_waits_until_no_image_of_the_keys_is_left(
        app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The record says the key is gone from the catalog: with a reader in another process
    keeping an old snapshot, the catalog's -wal file may still hold the key, so the sweep
    deletes and destroys but appends no proof (ProofError, exit code 7); the next pass,
    once the reader is done, scrubs the file and proves."""
    import retentiond.adapters.sqlite_catalog as catalog_module
    from retentiond.errors import ProofError

    monkeypatch.setattr(catalog_module, "SCRUB_WAIT_MS", 50)
    monkeypatch.setattr(catalog_module, "SCRUB_QUICK_MS", 10)
    (rec,) = _due(app, clock, 1)
    blob = app.catalog.wrapped_key(rec.id).blob  # type: ignore[union-attr]
    path = app.catalog.path
    reader = sqlite3.connect(path)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM data_keys").fetchone()
    try:
        with pytest.raises(ProofError, match="still reads an old snapshot"):
            Sweeper(app).sweep(now=clock.now())
        assert app.proof_log.size() == 0
        assert app.catalog.get(rec.id).state is State.DELETING
        assert app.catalog.wrapped_key(rec.id) is None
    finally:
        reader.rollback()
        reader.close()
    report = Sweeper(app).sweep(now=clock.now())
    assert report.items == ()  # nothing new to delete: the pending proof was appended
    assert app.proof_log.size() == 1
    assert app.catalog.get(rec.id).state is State.DELETED
    assert blob not in b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert "deletion proofs not appended" in caplog.text


# -- the walk over live recordings, a page at a time -----------------------------------------


def test_live_pages_cover_every_live_recording_once_in_recorded_order(tmp_path: Path) -> None:
    cat = SQLiteCatalog(tmp_path / "catalog.db")
    try:
        _fill(cat, 40)  # 16 distinct recorded_at values: many ties, broken by id
        assert cat.start_deletions([("r002", "retention-expired", T0)]) == {"r002"}
        cat.destroy_keys([("r002", b"{}", T0)])
        cat.finish_deletions({"r002": 0})  # deleted: not live any more
        with sqlite3.connect(cat.path) as db:  # a date stored with "Z", not "+00:00"
            db.execute("UPDATE recordings SET recorded_at='2026-03-01T09:00:00Z' "
                       "WHERE id='r032'")
        seen: list[Recording] = []
        after = None
        pages = 0
        while True:
            page, after = cat.live_page(LIVE_STATES, after=after, limit=3)
            seen += page
            pages += 1
            assert pages < 40, "the walk does not end"
            if after is None:
                break
        assert [r.id for r in seen] == [r.id for r in cat.query(states=list(LIVE_STATES))]
        assert sorted(r.id for r in seen) == sorted(f"r{i:03d}" for i in range(40) if i != 2)
        plan = cat._db.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM recordings INDEXED BY recordings_live_order "
            "WHERE state <> 'deleted' AND state IN ('active') AND (recorded_at, id) > ('', '') "
            "ORDER BY recorded_at, id LIMIT 3").fetchall()
        assert "TEMP B-TREE" not in repr(plan)  # an index range, not a sort per page
    finally:
        cat.close()


def test_a_sweep_walks_pages_and_deletes_in_batches(app: App, clock: ManualClock,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    due = _due(app, clock, 7)
    kept = _ingest(app, clock, "later.wav", seed=99, purpose="training")[2]  # 6 months
    monkeypatch.setattr(sweep_module, "PLAN_PAGE", 2)
    monkeypatch.setattr(sweep_module, "DELETE_BATCH", 3)
    spy = app.vault = SpyVault(app.vault)  # type: ignore[assignment]
    sweeper = Sweeper(app)
    assert [p.recording.id for p in sweeper.iter_plan(at=clock.now())] == \
        [p.recording.id for p in sweeper.plan(at=clock.now())]
    assert len(sweeper.plan(at=clock.now())) == 8
    report = sweeper.sweep(now=clock.now())
    assert sorted(i.id for i in report.items if i.outcome == "deleted") == \
        sorted(r.id for r in due)
    assert [len(c["keys"]) for c in spy.calls] == [3, 3, 1]
    assert app.catalog.get(kept.object_id).state is State.ACTIVE  # type: ignore[arg-type]
    assert app.proof_log.size() == 7


def test_a_stop_during_the_walk_ends_the_walk(app: App, clock: ManualClock,
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    _due(app, clock, 5)
    monkeypatch.setattr(sweep_module, "PLAN_PAGE", 2)
    monkeypatch.setattr(sweep_module, "DELETE_BATCH", 2)
    caplog.set_level(logging.INFO, logger="retentiond.service.sweep")
    asked: list[int] = []
    pages: list[int] = []
    live_page = app.catalog.live_page

    def counted(*args: Any, **kwargs: Any) -> Any:
        pages.append(1)
        return live_page(*args, **kwargs)

    monkeypatch.setattr(app.catalog, "live_page", counted)

    def stop_after_one() -> bool:
        asked.append(1)
        return len(asked) > 1

    report = Sweeper(app).sweep(now=clock.now(), should_stop=stop_after_one)
    assert [i.outcome for i in report.items] == ["deleted"] * 2
    assert all(i.proof_index is not None for i in report.items)
    assert "stop requested" in caplog.text
    assert len(asked) == 2  # asked before each batch until it said stop, then not again
    assert len(pages) == 2  # the third page is not read once stopped
    success = "retentiond_last_sweep_success_timestamp_seconds"
    assert app.metrics.registry.get_sample_value(success) in (None, 0.0)  # not whole
    rest = Sweeper(app).sweep(now=clock.now())  # the next pass does the rest
    assert [i.outcome for i in rest.items] == ["deleted"] * 3
    assert app.metrics.registry.get_sample_value(success) == clock.now().timestamp()
    assert verify_log(app.proof_log.store, verifier=app.proof_log.verifier).size == 5


def test_each_full_batch_is_proven_before_the_walk_goes_on(
        app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Proofs are appended batch by batch: an error later in the walk leaves the
    deletions already made proven, and the error still reaches the caller."""
    _due(app, clock, 5)
    monkeypatch.setattr(sweep_module, "PLAN_PAGE", 2)
    monkeypatch.setattr(sweep_module, "DELETE_BATCH", 2)
    live_page = app.catalog.live_page
    calls: list[int] = []

    at_third: list[int] = []

    def fails_third(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            at_third.append(app.proof_log.size())
            raise StorageError("catalog: disk I/O error")
        return live_page(*args, **kwargs)

    monkeypatch.setattr(app.catalog, "live_page", fails_third)
    with pytest.raises(StorageError):
        Sweeper(app).sweep(now=clock.now())
    assert at_third == [4]  # both full batches proven before the walk went on
    assert app.catalog.pending_proofs() == []
    assert app.proof_log.size() == 4
    monkeypatch.setattr(app.catalog, "live_page", live_page)
    rest = Sweeper(app).sweep(now=clock.now())
    assert [i.outcome for i in rest.items] == ["deleted"]
    assert verify_log(app.proof_log.store, verifier=app.proof_log.verifier).size == 5


def _catalog_files(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


def test_a_proof_waits_for_keys_another_process_destroyed_without_scrubbing(
        app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """`retentiond sweep` (another process) destroys the key and dies before its scrub,
    while the daemon's catalog stays open: the daemon must not trust its own "nothing
    erased here" and append the proof with the key still in -wal."""
    from retentiond.errors import ProofError
    from tests.conftest import open_app

    (rec,) = _due(app, clock, 1)
    blob = app.catalog.wrapped_key(rec.id).blob  # type: ignore[union-attr]
    other = open_app(app.settings.config_file.parent, clock)  # the CLI's process
    monkeypatch.setattr(other.catalog, "scrub", lambda **_: False)  # dies before scrubbing

    def dies(entries: Any) -> Any:
        raise StorageError("killed")

    monkeypatch.setattr(other.proof_log, "append", dies)
    with pytest.raises(ProofError):
        Sweeper(other).sweep(now=clock.now())
    assert app.catalog.wrapped_key(rec.id) is None and blob in _catalog_files(app.catalog.path)
    at_append: list[bool] = []
    real_append = app.proof_log.append

    def append(entries: Any) -> Any:
        at_append.append(blob in _catalog_files(app.catalog.path))
        return real_append(entries)

    monkeypatch.setattr(app.proof_log, "append", append)
    try:
        Sweeper(app).sweep(now=clock.now())
    finally:
        other.catalog._db.close()  # never closed cleanly (closing would checkpoint)
    assert at_append == [False]
    assert app.catalog.get(rec.id).state is State.DELETED


def test_a_pending_proof_that_cannot_be_appended_delays_no_deletion(
        app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = _due(app, clock, 2)
    assert app.catalog.start_deletions([(first.id, "retention-expired", clock.now())])
    app.catalog.destroy_keys([(first.id, b'{"id":"x"}', clock.now())])  # proof pending

    def unwritable(entries: Any) -> Any:
        raise StorageError("proofs: disk full")

    monkeypatch.setattr(app.proof_log, "append", unwritable)
    from retentiond.errors import ProofError

    with pytest.raises(ProofError, match="disk full"):
        Sweeper(app).sweep(now=clock.now())
    assert app.catalog.get(second.id).state is State.DELETING  # deleted all the same
    assert app.catalog.wrapped_key(second.id) is None
    assert app.metrics.errors.labels(stage="proof")._value.get() == 2


def test_a_pass_scrubs_what_another_process_erased_with_no_proof_pending(
        app: App, clock: ManualClock) -> None:
    """A `retentiond subject erase` in another process met a reader and exited before
    its scrub could finish: nothing waits for a proof, yet the daemon's next pass leaves
    no image of the erased key in -wal."""
    (rec,) = _due(app, clock, 1)
    blob = app.catalog.wrapped_key(rec.id).blob  # type: ignore[union-attr]
    other = sqlite3.connect(app.catalog.path)  # erases and dies before any checkpoint
    other.execute("PRAGMA secure_delete=ON")
    other.execute("DELETE FROM data_keys WHERE object_id=?", (rec.id,))
    other.commit()
    other.close()
    assert blob in _catalog_files(app.catalog.path) and not app.catalog.dirty
    Sweeper(app).sweep(now=clock.now() - timedelta(days=3650))  # nothing due then
    assert blob not in _catalog_files(app.catalog.path)


def test_an_error_after_keys_are_destroyed_still_proves_them(
        app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever ends the pass after the keys went (here a bug counting the metric), the
    deletions are proven before the error goes up: the record does not wait a pass."""
    _due(app, clock, 3)

    def broken(**labels: str) -> Any:
        raise RuntimeError("metrics bug")

    monkeypatch.setattr(app.metrics.deletions, "labels", broken)
    with pytest.raises(RuntimeError, match="metrics bug"):
        Sweeper(app).sweep(now=clock.now())
    assert app.catalog.pending_proofs() == []
    assert verify_log(app.proof_log.store, verifier=app.proof_log.verifier).size == 3


def test_a_proof_failing_after_an_error_does_not_hide_the_error(
        app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walk's error is the one that goes up, even when proving after it fails in
    an unexpected way; that failure is counted, and the next pass proves."""
    _due(app, clock, 2)

    def broken(**labels: str) -> Any:
        raise RuntimeError("metrics bug")

    def append_bug(entries: Any) -> Any:
        raise ValueError("proof store bug")

    real_labels, real_append = app.metrics.deletions.labels, app.proof_log.append
    monkeypatch.setattr(app.metrics.deletions, "labels", broken)
    monkeypatch.setattr(app.proof_log, "append", append_bug)
    with pytest.raises(RuntimeError, match="metrics bug"):
        Sweeper(app).sweep(now=clock.now())
    assert app.metrics.registry.get_sample_value(
        "retentiond_errors_total", {"stage": "proof"}) == 1
    assert len(app.catalog.pending_proofs()) == 2
    monkeypatch.setattr(app.metrics.deletions, "labels", real_labels)
    monkeypatch.setattr(app.proof_log, "append", real_append)
    Sweeper(app).sweep(now=clock.now())
    assert app.catalog.pending_proofs() == []
    assert verify_log(app.proof_log.store, verifier=app.proof_log.verifier).size == 2


def test_a_version_no_pass_asked_for_is_not_named(app: App, clock: ManualClock) -> None:
    """A pass killed after starting the deletion, before asking the store; the file then
    removed behind retentiond's back: the proof names no version (retentiond deleted
    none), where a pass that did ask names it (tests/e2e/test_crash.py)."""
    import json

    (rec,) = _due(app, clock, 1)
    assert app.catalog.start_deletions([(rec.id, "retention-expired", clock.now())])
    (Path(app.settings.vault) / rec.location).unlink()
    report = Sweeper(app).sweep(now=clock.now())
    assert [i.outcome for i in report.items] == ["deleted"]
    assert json.loads(app.proof_log.entry(0))["version_ids"] == []
