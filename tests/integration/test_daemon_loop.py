from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from retentiond.service.daemon import Daemon
from tests.conftest import make_wav, write_sidecar


def test_ingest_batch_is_bounded_so_sweeps_are_not_starved(app, clock):
    inbox = Path(app.settings.inbox[0])
    for i in range(3):
        make_wav(inbox / f"c{i}.wav", seed=i)
        write_sidecar(inbox / f"c{i}.wav", purpose="training")
    daemon = Daemon(app)
    assert daemon.ingest_ready(now=clock.now())[0] == []  # first sight: not settled yet
    clock.advance(timedelta(seconds=5))
    real = daemon.ingestor.ingest

    def slow_ingest(*a, **kw):
        clock.advance(timedelta(seconds=2))  # each file takes 2 s
        return real(*a, **kw)

    daemon.ingestor.ingest = slow_ingest
    outcomes, next_in, pending = daemon.ingest_ready(now=clock.now(), budget=1.0)
    assert [o.outcome for o in outcomes] == ["stored"]
    assert next_in == 0.0 and pending == 2
    outcomes, _, pending = daemon.ingest_ready(now=clock.now(), budget=10.0)
    assert len(outcomes) == 2 and pending == 0


def test_late_objection_sidecar_is_applied_and_deleted(app, clock):
    inbox = Path(app.settings.inbox[0])
    make_wav(inbox / "late.wav")
    write_sidecar(inbox / "late.wav", purpose="training")
    daemon = Daemon(app)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (outcome,), _, _ = daemon.ingest_ready(now=clock.now())
    assert outcome.outcome == "stored"
    # the recorder sends the caller's objection afterwards
    write_sidecar(inbox / "late.wav", objection=True)
    daemon.ingest_ready(now=clock.now())
    assert app.catalog.get(outcome.object_id).objection is False  # not yet: maybe sidecar-first
    clock.advance(timedelta(seconds=5))
    daemon.ingest_ready(now=clock.now())
    assert app.catalog.get(outcome.object_id).objection is True
    assert not (inbox / "late.wav.json").exists()
    report = daemon.sweeper.sweep(now=clock.now())
    assert [(i.outcome, i.rule) for i in report.items] == [("deleted", "objection")]
    assert app.audit.verify().entries == 1


def test_sidecar_dropped_before_its_recording_is_not_late(app, clock):
    inbox = Path(app.settings.inbox[0])
    make_wav(inbox / "a.wav")
    write_sidecar(inbox / "a.wav", purpose="training")
    daemon = Daemon(app)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (first,), _, _ = daemon.ingest_ready(now=clock.now())
    # same name again later: sidecar first (with an objection), recording shortly after
    write_sidecar(inbox / "a.wav", purpose="training", objection=True)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(milliseconds=500))
    make_wav(inbox / "a.wav", seed=9)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (second,), _, _ = daemon.ingest_ready(now=clock.now())
    assert app.catalog.get(first.object_id).objection is False
    assert app.catalog.get(second.object_id).objection is True
