"""The embedded path through the service layer, with a manual clock: ingest, get,
sweep, proofs, holds, quarantine, failures."""

from __future__ import annotations

import errno
import io
import json
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from retentiond.adapters import localfs
from retentiond.core.classify import Overrides
from retentiond.core.decide import Action
from retentiond.core.model import State
from retentiond.crypto.envelope import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    new_data_key,
    seal_stream,
)
from retentiond.errors import (
    IntegrityError,
    KeyUnavailableError,
    TransientStorageError,
)
from retentiond.service.access import retrieve
from retentiond.service.ingest import Ingestor
from retentiond.service.prooflog import verify_log
from retentiond.service.sweep import Sweeper
from tests.conftest import make_wav, open_app, write_sidecar


def _inbox(app) -> Path:
    return Path(app.settings.inbox[0])


def _vault_files(app) -> list[Path]:
    root = Path(app.settings.vault)
    return [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts]


def _ingest(app, clock, name="call.wav", seed=0, **sidecar):
    path = _inbox(app) / name
    data = make_wav(path, seed=seed)
    if sidecar:
        sidecar.setdefault("recorded_at", clock.now().isoformat())
        write_sidecar(path, **sidecar)
    outcome = Ingestor(app).ingest(_inbox(app), name, now=clock.now())
    return path, data, outcome


def test_ingest_encrypts_catalogues_and_removes_plaintext(app, clock, tmp_path):
    path, data, o = _ingest(app, clock, purpose="training", call_id="C-1",
                            subject="+33 6 12 34 56 78", agent="a-17", notes="rappeler lundi")
    assert o.outcome == "stored", o.message
    assert not path.exists() and not path.with_name("call.wav.json").exists()
    files = _vault_files(app)
    assert len(files) == 1
    ciphertext = files[0].read_bytes()
    assert data[100:164] not in ciphertext and b"RIFF" not in ciphertext
    rec = app.catalog.get(o.object_id)
    assert rec.state is State.ACTIVE and rec.purpose == "training"
    assert rec.subject_ref.startswith("hmac-sha256:") and "612345678" not in rec.subject_ref
    assert rec.policy_sha256 == app.policy.sha256
    db = app.settings.catalog_path.read_bytes()
    assert b"12 34 56 78" not in db and b"rappeler" not in db

    out = tmp_path / "copy.wav"
    got = retrieve(app, o.object_id, out=out, actor="alice", reason="ticket 1", now=clock.now())
    assert out.read_bytes() == data and got.size == len(data)
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert app.audit.verify().entries == 1


def test_due_recording_is_deleted_with_proof_and_key_gone(app, clock):
    _, _, o = _ingest(app, clock, purpose="quality", subject="+33612345678", agent="a-17",
                      notes="client mécontent")
    wrapped = app.catalog.wrapped_key(o.object_id)
    assert wrapped is not None
    report = Sweeper(app).sweep(now=clock.now())
    assert report.count("deleted") == 0
    clock.advance(timedelta(seconds=31))
    report = Sweeper(app).sweep(now=clock.now())
    assert [i.outcome for i in report.items] == ["deleted"]
    assert _vault_files(app) == []
    assert app.catalog.wrapped_key(o.object_id) is None
    assert wrapped.blob not in app.settings.catalog_path.read_bytes()
    rec = app.catalog.get(o.object_id)
    assert rec.state is State.DELETED and rec.proof_index == 0
    assert rec.subject_ref is None and rec.source is None

    v = verify_log(app.proof_log.store, verifier=app.proof_log.verifier,
                   origin=app.settings.proof_origin)
    assert v.size == 1
    record = json.loads(app.proof_log.entry(0))
    assert record["object_id"] == o.object_id and record["reason"] == "retention-expired"
    assert record["key_destroyed"] is True and record["policy"]["sha256"] == app.policy.sha256
    text = app.proof_log.entry(0).decode()
    for private in ("+3361", "a-17", "mécontent", "call.wav"):
        assert private not in text
    # a second pass changes nothing and proves nothing twice
    assert Sweeper(app).sweep(now=clock.now()).items == ()
    assert app.proof_log.size() == 1


def test_hold_blocks_and_reports_held_overdue(app, clock):
    _, _, o = _ingest(app, clock, purpose="quality")
    app.catalog.add_hold(o.object_id, reason="dispute", actor="dpo", now=clock.now())
    clock.advance(timedelta(minutes=5))
    report = Sweeper(app).sweep(now=clock.now())
    assert [(i.outcome, i.rule) for i in report.items] == [("held-overdue", "legal-hold-overdue")]
    assert app.catalog.get(o.object_id).state is State.ACTIVE
    app.catalog.remove_holds(o.object_id, reason="closed", actor="dpo", now=clock.now())
    assert Sweeper(app).sweep(now=clock.now()).count("deleted") == 1


def test_dry_run_and_plan_agree_with_sweep_and_change_nothing(app, clock):
    ids = [_ingest(app, clock, f"c{i}.wav", seed=i, purpose=p)[2].object_id
           for i, p in enumerate(["quality", "training", "quality"])]
    at = clock.now() + timedelta(minutes=1)
    planned = {p.recording.id for p in Sweeper(app).plan(at=at) if p.decision.action is Action.DELETE}
    dry = Sweeper(app).sweep(now=at, dry_run=True)
    assert {i.id for i in dry.items} == planned == {ids[0], ids[2]}
    assert len(_vault_files(app)) == 3 and app.proof_log.size() == 0
    real = Sweeper(app).sweep(now=at)
    assert {i.id for i in real.items if i.outcome == "deleted"} == planned


def test_unclassifiable_and_malformed_are_quarantined_not_lost(app, clock):
    _, _, o1 = _ingest(app, clock, "a.wav", seed=1)  # no sidecar, no rule: mtime is 'now'
    p2 = _inbox(app) / "b.wav"
    make_wav(p2, seed=2)
    p2.with_name("b.wav.json").write_text('{"purpose": "quality",\n "objecton": true}')
    o2 = Ingestor(app).ingest(_inbox(app), "b.wav", now=clock.now())
    _, _, o3 = _ingest(app, clock, "c.wav", seed=3, purpose="marketing")
    _, _, o4 = _ingest(app, clock, "d.mp4", seed=4, purpose="quality", media="screen")
    for o, why in ((o1, "no purpose"), (o2, "sidecar:2: objecton: unknown field"),
                   (o3, "sidecar:1: purpose: unknown purpose 'marketing'"),
                   (o4, "media 'screen'")):
        assert o.outcome == "quarantined"
        rec = app.catalog.get(o.object_id)
        assert rec.state is State.QUARANTINED and why in (rec.quarantine_reason or "")
    assert len(_vault_files(app)) == 4 and not any(_inbox(app).iterdir())
    clock.advance(timedelta(days=1, seconds=1))
    report = Sweeper(app).sweep(now=clock.now())
    assert {i.rule for i in report.items} == {"quarantine-expired"}
    assert report.count("deleted") == 4


def test_objection_is_deleted_at_once(app, clock):
    _ingest(app, clock, purpose="training", objection=True)
    report = Sweeper(app).sweep(now=clock.now())
    assert [(i.outcome, i.rule) for i in report.items] == [("deleted", "objection")]


def test_corrupt_ciphertext_fails_cleanly_and_others_still_work(app, clock, tmp_path):
    _, _, bad = _ingest(app, clock, "a.wav", seed=1, purpose="training")
    _, data, good = _ingest(app, clock, "b.wav", seed=2, purpose="training")
    target = Path(app.settings.vault) / app.catalog.get(bad.object_id).location
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    target.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        retrieve(app, bad.object_id, out=tmp_path / "x.wav", actor="a", reason="r",
                 now=clock.now())
    assert not (tmp_path / "x.wav").exists()
    assert not list(tmp_path.glob(".x.wav*"))
    retrieve(app, good.object_id, out=tmp_path / "y.wav", actor="a", reason="r", now=clock.now())
    assert (tmp_path / "y.wav").read_bytes() == data


def test_wrong_key_encryption_key_is_refused(short_setup, clock, tmp_path):
    app = open_app(short_setup, clock)
    _, _, o = _ingest(app, clock, purpose="training")
    app.close()
    keys = short_setup / "keys"
    current = (keys / "kek.current").read_text().strip()
    kek_file = next(keys.glob(f"{current}*"))
    other = tmp_path / "other"
    from retentiond.service.setup import init_setup

    init_setup(other)
    other_kek = next((other / "keys").glob("kek-*.key"))
    text = other_kek.read_text().replace(other_kek.stem, kek_file.stem)
    kek_file.write_text(text)
    app = open_app(short_setup, clock)
    with pytest.raises(IntegrityError) as e:
        retrieve(app, o.object_id, out=tmp_path / "z.wav", actor="a", reason="r",
                 now=clock.now())
    assert "key" in str(e.value).lower()


def test_destroyed_key_means_unreadable(app, clock, tmp_path):
    _, _, o = _ingest(app, clock, purpose="training")
    app.catalog._db.execute("DELETE FROM data_keys")
    with pytest.raises(KeyUnavailableError):
        retrieve(app, o.object_id, out=tmp_path / "z.wav", actor="a", reason="r",
                 now=clock.now())


class FlakyVault:
    """A vault whose deletes fail a number of times (a store outage)."""

    def __init__(self, inner, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def delete_all_versions(self, key):
        if self.failures > 0:
            self.failures -= 1
            raise TransientStorageError(f"{key}: store unreachable")
        return self._inner.delete_all_versions(key)

    def delete_many(self, keys, **_):
        out = {}
        for key in keys:
            try:
                out[key] = self.delete_all_versions(key)
            except TransientStorageError as e:
                out[key] = e
        return out


def test_failed_deletion_is_retried_and_reported(app, clock):
    _, _, o = _ingest(app, clock, purpose="quality")
    clock.advance(timedelta(minutes=1))
    app.vault = FlakyVault(app.vault, failures=1)
    report = Sweeper(app).sweep(now=clock.now())
    assert [i.outcome for i in report.items] == ["failed"] and report.has_warnings
    assert app.catalog.get(o.object_id).state is State.DELETING
    assert app.catalog.wrapped_key(o.object_id) is not None  # key kept until the data is gone
    assert app.proof_log.size() == 0
    report = Sweeper(app).sweep(now=clock.now())
    assert [i.outcome for i in report.items] == ["deleted"]
    assert app.proof_log.size() == 1


def _fds_into(folder: Path) -> list[str]:
    """What this process's open descriptors point at inside ``folder`` (Linux /proc)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder.resolve())):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_only_unlinked_plaintexts_are_closed_after_the_ingest(app, clock, monkeypatch):
    """The last close of a stored plaintext (the file system freeing its blocks) happens in
    a helper thread, only once no name leads to it; any other outcome closes at once, so
    the file is not left locked."""
    ing = Ingestor(app)
    handed: list[int] = []
    real_close = ing._closer.close

    def close(fh):
        handed.append(os.fstat(fh.fileno()).st_nlink)
        real_close(fh)

    monkeypatch.setattr(ing._closer, "close", close)
    inbox = _inbox(app)
    for i in range(3):
        make_wav(inbox / f"c{i}.wav", seed=i)
        o = ing.ingest(inbox, f"c{i}.wav", overrides=Overrides(purpose="training"),
                       now=clock.now())
        assert o.outcome == "stored" and not (inbox / f"c{i}.wav").exists()
    assert handed == [0, 0, 0]  # unlinked when handed over
    ing.drain()
    assert _fds_into(inbox) == []

    path = inbox / "growing.wav"
    make_wav(path)
    real_verify = ing._verify_vault_copy

    def append_then_verify(*a, **kw):
        with open(path, "ab") as fh:
            fh.write(b"more audio")
        return real_verify(*a, **kw)

    monkeypatch.setattr(ing, "_verify_vault_copy", append_then_verify)
    o = ing.ingest(inbox, "growing.wav", now=clock.now())
    assert o.outcome == "changed" and handed == [0, 0, 0]
    assert _fds_into(inbox) == []  # closed before ingest returned: not locked
    monkeypatch.setattr(ing, "_verify_vault_copy", real_verify)
    at = clock.now().timestamp()  # the append set a real-time mtime: the test's time
    os.utime(path, (at, at))
    o = ing.ingest(inbox, "growing.wav", overrides=Overrides(purpose="training"),
                   now=clock.now())
    assert o.outcome == "stored" and handed == [0, 0, 0, 0]


def test_a_failed_flush_while_writing_fails_the_ingest(app, clock, monkeypatch):
    """A big recording is flushed to the disk (fdatasync in a helper thread) while it is
    written; an error there fails the ingest, even though the final fsync of the same open
    file may no longer report it: nothing stored, the plaintext kept."""
    flushed: list[int] = []

    def failing_fdatasync(fd):
        flushed.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(localfs.os, "fdatasync", failing_fdatasync)
    path = _inbox(app) / "big.wav"
    path.write_bytes(os.urandom(3 * localfs._WRITE_BEHIND))
    o = Ingestor(app).ingest(path.parent, "big.wav", overrides=Overrides(purpose="training"),
                             now=clock.now())
    assert flushed, "no flush while writing"
    assert o.outcome == "failed" and "Input/output error" in o.message, o
    assert path.exists() and _vault_files(app) == []
    assert app.catalog.query() == [] and app.catalog.key_ids() == set()
    assert not list((Path(app.settings.vault) / ".tmp").iterdir())


def test_file_changing_during_ingest_is_retried(app, clock):
    path = _inbox(app) / "growing.wav"
    make_wav(path)
    ing = Ingestor(app)
    real = ing._verify_vault_copy

    def append_then_verify(*a, **kw):
        with open(path, "ab") as fh:
            fh.write(b"more audio")
        return real(*a, **kw)

    ing._verify_vault_copy = append_then_verify
    o = ing.ingest(_inbox(app), "growing.wav", now=clock.now())
    assert o.outcome == "changed"
    assert path.exists() and _vault_files(app) == []
    assert app.catalog.query() == [] and app.catalog.key_ids() == set()


def _flip_byte_at(offset: int):
    def damage(target: Path) -> None:
        blob = bytearray(target.read_bytes())
        blob[offset] ^= 0x01
        target.write_bytes(bytes(blob))
    return damage


def _cut_last_byte(target: Path) -> None:
    target.write_bytes(target.read_bytes()[:-1])


def _drop_last_segment(target: Path) -> None:
    # 1.28 MB in 256 KiB segments: 4 full segments, then a partial last one
    blob = target.read_bytes()
    target.write_bytes(blob[:HEADER_SIZE + 4 * (DEFAULT_SEGMENT_SIZE + TAG_SIZE)])


def _append_byte(target: Path) -> None:
    with open(target, "ab") as fh:
        fh.write(b"\0")


def _zero_a_block(target: Path) -> None:  # a lost write: one 4 KiB block reads as zeros
    with open(target, "r+b") as fh:
        fh.seek(DEFAULT_SEGMENT_SIZE + 4096)
        fh.write(bytes(4096))


def _other_sealed_object(target: Path) -> None:
    # a misdirected write: a valid sealed object of the same size, under another key
    out = io.BytesIO()
    seal_stream(io.BytesIO(bytes(target.stat().st_size - HEADER_SIZE - 5 * TAG_SIZE)), out,
                data_key=new_data_key(), object_id=target.stem, purpose="training")
    assert out.tell() == target.stat().st_size
    target.write_bytes(out.getvalue())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(_flip_byte_at(-5), "not what was sealed", id="flipped-last-tag-byte"),
        pytest.param(_flip_byte_at(12), "not what was sealed", id="flipped-header-byte"),
        pytest.param(_flip_byte_at(HEADER_SIZE + 1000), "not what was sealed",
                     id="flipped-first-segment-byte"),
        pytest.param(_cut_last_byte, "read back", id="shorter-than-head-said"),
        pytest.param(_drop_last_segment, "not what was sealed", id="last-segment-lost"),
        pytest.param(_append_byte, "not what was sealed", id="longer-than-head-said"),
        pytest.param(_zero_a_block, "not what was sealed", id="zeroed-block"),
        pytest.param(_other_sealed_object, "not what was sealed", id="another-sealed-object"),
    ],
)
def test_vault_copy_unlike_what_was_written_fails_the_ingest(app, clock, monkeypatch, damage,
                                                             message):
    """The read-back check reads the stored bytes: damage them after the durable write and
    before the read-back, and the ingest fails with nothing stored and the plaintext kept."""
    path = _inbox(app) / "long.wav"
    make_wav(path, seconds=80)  # 1.28 MB: several segments
    real_open = app.vault.open_read

    def open_damaged(key):
        damage(Path(app.settings.vault) / key)
        return real_open(key)

    monkeypatch.setattr(app.vault, "open_read", open_damaged)
    o = Ingestor(app).ingest(path.parent, "long.wav", overrides=Overrides(purpose="training"),
                             now=clock.now())
    assert o.outcome == "failed" and message in o.message, o
    assert path.exists() and _vault_files(app) == []
    assert app.catalog.query() == [] and app.catalog.key_ids() == set()


def test_recover_finishes_interrupted_ingest(app, clock):
    path, _, o = _ingest(app, clock, purpose="training")
    rec = app.catalog.get(o.object_id)
    # simulate a crash after the catalog commit but before the plaintext was removed
    make_wav(path)
    app.catalog._db.execute("UPDATE recordings SET inbox_pending=1 WHERE id=?", (rec.id,))
    Ingestor(app).recover()
    assert not path.exists()
    assert app.catalog.get(rec.id).inbox_pending is False
    assert replace(rec, inbox_pending=False) == app.catalog.get(rec.id)


def test_hold_placed_during_a_pass_wins(app, clock):
    _, _, o = _ingest(app, clock, purpose="quality")
    clock.advance(timedelta(minutes=1))
    sweeper = Sweeper(app)
    real_plan = sweeper.iter_plan

    def plan_then_hold(*, at, only=None):
        items = list(real_plan(at=at, only=only))  # decided "delete" ...
        app.catalog.add_hold(o.object_id, reason="late", actor="dpo", now=at)  # ... then held
        yield from items

    sweeper.iter_plan = plan_then_hold
    report = sweeper.sweep(now=clock.now())
    assert [i.outcome for i in report.items] == ["held-overdue"]
    assert app.catalog.get(o.object_id).state is State.ACTIVE
    assert len(_vault_files(app)) == 1 and app.proof_log.size() == 0


def test_quarantined_banking_call_keeps_its_legal_minimum(app, clock):
    """A typo in a banking call's sidecar quarantines it, but the banking/ rule's
    min_retention (5 years) still applies: quarantine expiry cannot delete it earlier."""
    path = _inbox(app) / "banking" / "order.wav"
    make_wav(path)
    path.with_name("order.wav.json").write_text('{"objecton": true}')
    o = Ingestor(app).ingest(_inbox(app), "banking/order.wav", now=clock.now())
    assert o.outcome == "quarantined"
    clock.advance(timedelta(days=400))
    assert Sweeper(app).sweep(now=clock.now()).items == ()
    rec = app.catalog.get(o.object_id)
    assert rec.retain_until is not None and rec.retain_until.year == clock.now().year + 4


def test_policy_edit_cannot_lower_min_retention_fixed_at_ingest(short_setup, clock):
    app = open_app(short_setup, clock)
    _, _, o = _ingest(app, clock, purpose="banking-evidence")
    app.close()
    policy = short_setup / "policies" / "test.yaml"
    policy.write_text(policy.read_text().replace("    retention: P5Y\n    min_retention: P5Y\n",
                                                 "    retention: P6M\n"))
    app = open_app(short_setup, clock)
    assert app.policy.purposes["banking-evidence"].min_retention is None
    clock.advance(timedelta(days=200))
    assert Sweeper(app).sweep(now=clock.now()).items == ()
    assert app.catalog.get(o.object_id).state is State.ACTIVE
