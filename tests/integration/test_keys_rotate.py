"""``keys rotate`` in-process: every data key re-wrapped under a new KEK, never the data;
``--retire`` destroys the old KEKs only once nothing needs them; a process that loaded
the keys before the rotation wraps under the new KEK; an interrupted rotation loses
nothing and is finished by the next one."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from retentiond.adapters.sqlite_catalog import SQLiteCatalog
from retentiond.crypto.keys import FileKeyProvider
from retentiond.errors import BusyError, KeyUnavailableError, StorageError
from retentiond.service import keyrotation
from retentiond.service.access import retrieve
from retentiond.service.ingest import Ingestor
from retentiond.service.keyrotation import rotate_keys
from retentiond.service.sweep import Sweeper
from tests.conftest import make_wav, open_app, write_sidecar


def _ingest(app, clock, name: str, seed: int, purpose: str = "training") -> tuple[str, bytes]:
    inbox = Path(app.settings.inbox[0])
    data = make_wav(inbox / name, seed=seed)
    write_sidecar(inbox / name, purpose=purpose, recorded_at=clock.now().isoformat())
    out = Ingestor(app).ingest(inbox, name, now=clock.now())
    assert out.outcome == "stored", out.message
    return out.object_id, data


def _keys_rows(app) -> dict[str, tuple[str, bytes]]:
    with sqlite3.connect(app.settings.catalog_path) as db:
        return {r[0]: (r[1], bytes(r[2]))
                for r in db.execute("SELECT object_id, kek_id, wrapped FROM data_keys")}


def _kek_files(app) -> set[str]:
    return {p.name.removesuffix(".key") for p in app.settings.keys_dir.glob("kek-*.key")}


def _read(app, clock, object_id: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"{object_id}.out"
    retrieve(app, object_id, out=out, actor="t", reason="t", now=clock.now())
    data = out.read_bytes()
    out.unlink()
    return data


def _audit(app) -> list[dict]:
    lines = app.settings.audit_log.read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["action"] == "keys-rotate"]


def test_rotation_rewraps_every_key_and_touches_no_recording(app, clock, tmp_path):
    stored = dict(_ingest(app, clock, f"c{i}.wav", i) for i in range(3))
    before = _keys_rows(app)
    old_kek = app.keys.current_kek_id()
    vault = Path(app.settings.vault)
    objects = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in vault.rglob("*.rtd")}

    result = rotate_keys(app, actor="ops", reason="yearly", retire=False, now=clock.now())

    assert result.previous == old_kek and result.kek_id != old_kek
    assert (result.rewrapped, result.failed, result.retired) == (3, 0, [])
    assert result.kept == {old_kek: 0}
    after = _keys_rows(app)
    assert set(after) == set(stored)
    for object_id, (kek, blob) in after.items():
        assert kek == result.kek_id and blob != before[object_id][1]
        assert app.catalog.get(object_id).kek_id == result.kek_id
    # the data is never read or rewritten
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in vault.rglob("*.rtd")} == objects
    assert _kek_files(app) == {old_kek, result.kek_id}  # kept without --retire
    for object_id, data in stored.items():
        assert _read(app, clock, object_id, tmp_path) == data
    started, finished = _audit(app)  # before any key is unwrapped, and the outcome
    assert {(e["actor"], e["reason"]) for e in (started, finished)} == {("ops", "yearly")}
    assert started["details"] == {"stage": "started", "previous": old_kek, "retire": False}
    assert finished["details"] == {"stage": "finished", "kek_id": result.kek_id,
                                   "previous": old_kek, "retire": False, "rewrapped": 3,
                                   "failed": 0, "retired": [], "kept": {old_kek: 0}}
    # this process's own provider follows: new data keys go under the new KEK
    new_id, _ = _ingest(app, clock, "later.wav", 9)
    assert _keys_rows(app)[new_id][0] == result.kek_id


def test_retire_destroys_old_keks_so_an_older_catalog_backup_opens_nothing(
        app, clock, tmp_path):
    object_id, data = _ingest(app, clock, "c.wav", 1)
    backup = tmp_path / "catalog-backup.db"
    app.catalog.scrub(force=True)
    with sqlite3.connect(app.settings.catalog_path) as db, sqlite3.connect(backup) as dst:
        db.backup(dst)
    first = rotate_keys(app, actor="ops", reason="r", retire=False, now=clock.now())
    clock.advance(timedelta(days=1))
    second = rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())

    assert second.rewrapped == 1
    assert sorted(second.retired) == sorted([first.previous, first.kek_id])
    assert second.kept == {}
    assert _kek_files(app) == {second.kek_id}
    assert set(app.catalog.retired_keks()) == {first.previous, first.kek_id}
    assert _read(app, clock, object_id, tmp_path) == data

    old = SQLiteCatalog(backup)
    try:
        wrapped = old.wrapped_key(object_id)
    finally:
        old.close()
    assert wrapped is not None and wrapped.kek_id == first.previous
    with pytest.raises(KeyUnavailableError, match="does not exist"):
        FileKeyProvider(app.settings.keys_dir).unwrap(wrapped, object_id=object_id)


def test_a_key_that_does_not_unwrap_is_reported_and_its_kek_kept(app, clock, tmp_path):
    bad, _ = _ingest(app, clock, "bad.wav", 1)
    good, data = _ingest(app, clock, "good.wav", 2)
    old_kek = app.keys.current_kek_id()
    with sqlite3.connect(app.settings.catalog_path) as db:
        blob = bytearray(db.execute("SELECT wrapped FROM data_keys WHERE object_id=?",
                                    (bad,)).fetchone()[0])
        blob[-1] ^= 1
        db.execute("UPDATE data_keys SET wrapped=? WHERE object_id=?", (bytes(blob), bad))

    result = rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())

    assert (result.rewrapped, result.failed) == (1, 1)
    ((failed_id, why),) = result.failures
    assert failed_id == bad and "does not authenticate" in why
    assert result.retired == [] and result.kept == {old_kek: 1}
    assert old_kek in _kek_files(app)  # still needed by the row that did not re-wrap
    assert _keys_rows(app)[bad][0] == old_kek and _keys_rows(app)[good][0] == result.kek_id
    assert _read(app, clock, good, tmp_path) == data
    assert _audit(app)[-1]["details"]["failed"] == 1


def test_a_process_loaded_before_the_rotation_wraps_under_the_new_kek(
        short_setup, clock, tmp_path):
    daemon = open_app(short_setup, clock)  # loaded its keys before the rotation
    operator = open_app(short_setup, clock)
    try:
        _ingest(daemon, clock, "before.wav", 1)
        result = rotate_keys(operator, actor="ops", reason="r", retire=True,
                             now=clock.now())
        object_id, data = _ingest(daemon, clock, "after.wav", 2)
        assert _keys_rows(daemon)[object_id][0] == result.kek_id
        assert _kek_files(daemon) == {result.kek_id}
        assert _read(operator, clock, object_id, tmp_path) == data
    finally:
        daemon.close()
        operator.close()


def test_a_key_wrapped_under_a_retiring_kek_is_refused_and_the_ingest_retried(
        app, clock, tmp_path, monkeypatch):
    """The window --retire closes: a wrap that happened just before the process saw the
    new KEK. The catalog refuses the key, the plaintext stays for the next try."""
    stale = FileKeyProvider(app.settings.keys_dir)
    monkeypatch.setattr(stale, "_fresh", lambda: stale._keys)  # never sees the rotation
    result = rotate_keys(app, actor="ops", reason="r", retire=False, now=clock.now())
    app.catalog.mark_keks_retiring([result.previous], now=clock.now())
    real = app.keys
    app.keys = stale
    inbox = Path(app.settings.inbox[0])
    data = make_wav(inbox / "c.wav", seed=3)
    write_sidecar(inbox / "c.wav", purpose="training")
    out = Ingestor(app).ingest(inbox, "c.wav", now=clock.now())
    assert out.outcome == "failed" and "being retired" in out.message
    assert (inbox / "c.wav").read_bytes() == data
    assert _keys_rows(app) == {}
    assert [p for p in Path(app.settings.vault).rglob("*") if p.is_file()
            and ".tmp" not in p.parts] == []
    app.keys = real
    out = Ingestor(app).ingest(inbox, "c.wav", now=clock.now())
    assert out.outcome == "stored" and not (inbox / "c.wav").exists()
    assert _keys_rows(app)[out.object_id][0] == result.kek_id


def test_interrupted_rotation_loses_nothing_and_the_next_one_finishes(
        app, clock, tmp_path, monkeypatch):
    stored = dict(_ingest(app, clock, f"c{i}.wav", i) for i in range(4))
    first_kek = app.keys.current_kek_id()
    monkeypatch.setattr(keyrotation, "REWRAP_PAGE", 1)
    real = app.catalog.rewrap_keys
    calls = []

    def failing(items):
        calls.append(items)
        if len(calls) == 3:
            raise StorageError("catalog: disk full (test)")
        return real(items)

    monkeypatch.setattr(app.catalog, "rewrap_keys", failing)
    with pytest.raises(StorageError, match="disk full"):
        rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())
    monkeypatch.undo()
    kinds = {kek for kek, _ in _keys_rows(app).values()}
    assert len(kinds) == 2 and first_kek in kinds  # half way: both KEKs in use
    assert first_kek in _kek_files(app)
    for object_id, data in stored.items():  # every recording still opens
        assert _read(app, clock, object_id, tmp_path) == data
    assert _audit(app)[-1]["details"]["stage"] == "interrupted"
    assert "disk full" in _audit(app)[-1]["details"]["error"]

    result = rotate_keys(app, actor="ops", reason="again", retire=True, now=clock.now())
    assert result.rewrapped == 4 and result.failed == 0
    assert _kek_files(app) == {result.kek_id}
    assert {kek for kek, _ in _keys_rows(app).values()} == {result.kek_id}
    for object_id, data in stored.items():
        assert _read(app, clock, object_id, tmp_path) == data


def test_a_deletion_after_rotation_is_proven_under_the_new_kek(app, clock):
    object_id, _ = _ingest(app, clock, "q.wav", 1, purpose="quality")
    result = rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())
    clock.advance(timedelta(seconds=31))
    report = Sweeper(app).sweep(now=clock.now())
    assert report.count("deleted") == 1
    record = json.loads(next(app.proof_log.entries()))
    assert record["object_id"] == object_id
    assert record["key_id"] == f"{result.kek_id}/{object_id}" and record["key_destroyed"]
    assert app.catalog.kek_usage() == {}


def test_one_rotation_at_a_time(app, clock):
    with app.exclusive("keys"), pytest.raises(BusyError, match=r"keys\.lock"):
        rotate_keys(app, actor="ops", reason="r", retire=False, now=clock.now())
    assert len(_kek_files(app)) == 1


def test_rewrap_replaces_only_the_key_it_read(app, clock):
    """A key destroyed (or changed) after the rotation read it is never brought back."""
    gone, _ = _ingest(app, clock, "q.wav", 1, purpose="quality")
    changed, _ = _ingest(app, clock, "t.wav", 2)
    provider = FileKeyProvider(app.settings.keys_dir)
    page, _ = app.catalog.wrapped_keys_page(not_under="kek-none", limit=10)
    assert {oid for oid, _ in page} == {gone, changed}
    items = [(oid, old, provider.wrap(provider.unwrap(old, object_id=oid), object_id=oid))
             for oid, old in page]
    clock.advance(timedelta(seconds=31))
    assert Sweeper(app).sweep(now=clock.now()).count("deleted") == 1  # destroys `gone`
    other = provider.wrap(provider.unwrap(app.catalog.wrapped_key(changed),
                                          object_id=changed), object_id=changed)
    with sqlite3.connect(app.settings.catalog_path) as db:
        db.execute("UPDATE data_keys SET wrapped=? WHERE object_id=?", (other.blob, changed))
    before = app.catalog.get(changed).kek_id
    assert app.catalog.rewrap_keys(items) == 0
    assert app.catalog.wrapped_key(gone) is None
    assert app.catalog.wrapped_key(changed) == other
    assert app.catalog.get(changed).kek_id == before  # follows only a replaced key


def test_a_stale_wrap_is_refused_up_to_the_moment_the_old_kek_is_destroyed(
        app, clock, monkeypatch):
    """The old KEK is marked retiring before its use is counted and its file destroyed:
    an ingest by a process still wrapping under it, even at the last moment, fails (its
    plaintext kept for the next try) instead of landing under a destroyed KEK."""
    inbox = Path(app.settings.inbox[0])
    stale = FileKeyProvider(app.settings.keys_dir)
    monkeypatch.setattr(stale, "_fresh", lambda: stale._keys)  # never sees the rotation
    daemon = open_app(app.settings.config_file.parent, clock)
    daemon.keys = stale
    outcomes = []
    real_retire = keyrotation.retire_kek

    def retire(keys_dir, kek_id):
        make_wav(inbox / "late.wav", seed=4)
        write_sidecar(inbox / "late.wav", purpose="training")
        outcomes.append(Ingestor(daemon).ingest(inbox, "late.wav", now=clock.now()))
        return real_retire(keys_dir, kek_id)

    monkeypatch.setattr(keyrotation, "retire_kek", retire)
    try:
        result = rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())
    finally:
        daemon.close()
    (out,) = outcomes
    assert out.outcome == "failed" and "being retired" in out.message
    assert result.retired == [result.previous] and (inbox / "late.wav").exists()
    assert app.catalog.kek_usage() == {}


def test_a_failure_before_the_new_kek_is_audited_as_interrupted(app, clock, monkeypatch):
    def read_only(*_args, **_kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(keyrotation, "rotate", read_only)
    with pytest.raises(StorageError, match="cannot change the key folder: Read-only"):
        rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())
    started, interrupted = _audit(app)
    assert started["details"]["stage"] == "started"
    assert interrupted["details"]["stage"] == "interrupted"
    assert interrupted["details"]["kek_id"] is None
    assert "Read-only" in interrupted["details"]["error"]
    assert len(_kek_files(app)) == 1


def test_the_outcome_entry_is_dated_when_the_rotation_ends(app, clock, monkeypatch):
    _ingest(app, clock, "c.wav", 1)
    real = app.catalog.kek_usage

    def slow():
        clock.advance(timedelta(seconds=5))  # the re-wrapping took a while
        return real()

    monkeypatch.setattr(app.catalog, "kek_usage", slow)
    rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())
    started, finished = _audit(app)
    took = datetime.fromisoformat(finished["at"]) - datetime.fromisoformat(started["at"])
    assert took == timedelta(seconds=5)
    (retired_at,) = app.catalog.retired_keks().values()
    assert retired_at == clock.now()


def test_the_report_warns_of_keys_left_behind_and_of_a_missing_kek(app, clock):
    from retentiond.service.report import build_report

    bad, _ = _ingest(app, clock, "bad.wav", 1)
    _ingest(app, clock, "good.wav", 2)
    with sqlite3.connect(app.settings.catalog_path) as db:
        db.execute("UPDATE data_keys SET wrapped=zeroblob(61) WHERE object_id=?", (bad,))
    result = rotate_keys(app, actor="ops", reason="r", retire=True, now=clock.now())
    assert result.kept == {result.previous: 1}

    def warned() -> dict[str, int]:
        return {w.code: w.count for w in build_report(app, now=clock.now()).warnings}

    keys = build_report(app, now=clock.now()).keys
    assert keys is not None and keys.kept == (result.previous,)
    assert warned().get("keys-not-rotated") == 1 and "keys-missing" not in warned()
    (app.settings.keys_dir / f"{result.previous}.key").unlink()  # its file lost
    assert warned().get("keys-missing") == 1
