"""An inbox is written by other systems: symlinks, FIFOs, files replaced mid-ingest and
concurrent processes must never make retentiond delete what it did not store."""

from __future__ import annotations

import os
from pathlib import Path

from retentiond.core.model import State
from retentiond.service.ingest import Ingestor
from tests.conftest import make_wav, write_sidecar


def _inbox(app) -> Path:
    return Path(app.settings.inbox[0])


def test_symlinked_file_is_refused_and_target_untouched(app, clock, tmp_path):
    victim = tmp_path / "payroll.wav"
    data = make_wav(victim)
    (_inbox(app) / "call.wav").symlink_to(victim)
    o = Ingestor(app).ingest(_inbox(app), "call.wav", now=clock.now())
    assert o.outcome == "failed" and "symbolic link" in o.message
    assert victim.read_bytes() == data and app.catalog.query() == []


def test_symlinked_folder_below_the_inbox_is_not_followed(app, clock, tmp_path):
    outside = tmp_path / "outside"
    data = make_wav(outside / "payroll.wav")
    (_inbox(app) / "training").symlink_to(outside, target_is_directory=True)
    o = Ingestor(app).ingest(_inbox(app), "training/payroll.wav", now=clock.now())
    assert o.outcome == "failed"
    assert (outside / "payroll.wav").read_bytes() == data and app.catalog.query() == []


def test_fifo_sidecar_does_not_hang(app, clock):
    make_wav(_inbox(app) / "a.wav")
    os.mkfifo(_inbox(app) / "a.wav.json")
    o = Ingestor(app).ingest(_inbox(app), "a.wav", now=clock.now())
    assert o.outcome == "quarantined" and "not a regular file" in o.message


def test_file_replaced_during_ingest_is_not_deleted(app, clock):
    inbox = _inbox(app)
    make_wav(inbox / "a.wav", seed=1)
    write_sidecar(inbox / "a.wav", purpose="training")
    replacement = make_wav(inbox / "new.tmp", seed=2)
    st = (inbox / "a.wav").stat()
    os.utime(inbox / "new.tmp", ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
    ing = Ingestor(app)
    real = ing._verify_vault_copy

    def replace_then_verify(*a, **kw):
        os.replace(inbox / "new.tmp", inbox / "a.wav")
        return real(*a, **kw)

    ing._verify_vault_copy = replace_then_verify
    o = ing.ingest(inbox, "a.wav", now=clock.now())
    assert o.outcome == "changed"
    assert (inbox / "a.wav").read_bytes() == replacement
    assert app.catalog.query() == [] and app.catalog.key_ids() == set()


def test_sidecar_rewritten_after_reading_is_kept(app, clock):
    inbox = _inbox(app)
    make_wav(inbox / "a.wav")
    write_sidecar(inbox / "a.wav", purpose="training")
    ing = Ingestor(app)
    real = ing._verify_vault_copy

    def rewrite_sidecar(*a, **kw):
        write_sidecar(inbox / "a.wav", purpose="training", objection=True)
        return real(*a, **kw)

    ing._verify_vault_copy = rewrite_sidecar
    o = ing.ingest(inbox, "a.wav", now=clock.now())
    assert o.outcome == "stored"
    assert (inbox / "a.wav.json").exists() and not (inbox / "a.wav").exists()


def test_recovery_waits_while_an_ingest_runs_elsewhere(app, clock):
    inbox = _inbox(app)
    make_wav(inbox / "a.wav")
    write_sidecar(inbox / "a.wav", purpose="training")
    ing = Ingestor(app)
    real = ing._verify_vault_copy
    seen = {}

    def recover_meanwhile(*a, **kw):
        # another process's recovery, in the middle of this ingest: must not touch it
        seen["repaired"] = Ingestor(app).recover()
        return real(*a, **kw)

    ing._verify_vault_copy = recover_meanwhile
    o = ing.ingest(inbox, "a.wav", now=clock.now())
    assert seen["repaired"] == 0 and o.outcome == "stored"
    assert app.catalog.get(o.object_id).state is State.ACTIVE
    assert app.catalog.wrapped_key(o.object_id) is not None


def test_recovery_removes_the_sidecar_of_a_stored_recording(app, clock):
    inbox = _inbox(app)
    make_wav(inbox / "a.wav")
    write_sidecar(inbox / "a.wav", purpose="training", subject="+33600000000")
    o = Ingestor(app).ingest(inbox, "a.wav", now=clock.now())
    # as after a crash between the two unlinks: recording gone, sidecar left
    write_sidecar(inbox / "a.wav", purpose="training", subject="+33600000000")
    app.catalog._db.execute("UPDATE recordings SET inbox_pending=1 WHERE id=?", (o.object_id,))
    Ingestor(app).recover()
    assert not any(inbox.iterdir())
