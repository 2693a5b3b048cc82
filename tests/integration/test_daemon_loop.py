from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from retentiond.clock import ManualClock
from retentiond.concurrency import Progress
from retentiond.core.model import State
from retentiond.service.daemon import Daemon
from retentiond.service.ingest import Ingestor
from retentiond.service.sdnotify import watchdog_period
from tests.conftest import logged, make_wav, open_app, write_sidecar


def test_ingest_batch_is_bounded_so_sweeps_are_not_starved(app, clock):
    # one at a time: with more workers, the recordings started before the budget ran
    # out finish too (tested below)
    app.settings = replace(app.settings, ingest_workers=1)
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


def test_ready_recordings_are_ingested_several_at_a_time(app, clock):
    """``ingest.workers`` recordings at once; outcomes in inbox order; the pass ends with
    every inbox_pending flag cleared (Ingestor.flush)."""
    app.settings = replace(app.settings, ingest_workers=3)
    inbox = Path(app.settings.inbox[0])
    names = [f"c{i:02d}.wav" for i in range(9)]
    for i, name in enumerate(names):
        make_wav(inbox / name, seed=i)
        write_sidecar(inbox / name, purpose="training")
    daemon = Daemon(app)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    real = daemon.ingestor.ingest
    lock = threading.Lock()
    running = peak = 0

    def counted(*a, **kw):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # long enough for the others to start
        try:
            return real(*a, **kw)
        finally:
            with lock:
                running -= 1

    daemon.ingestor.ingest = counted
    outcomes, _, pending = daemon.ingest_ready(now=clock.now())
    assert [o.outcome for o in outcomes] == ["stored"] * 9 and pending == 0
    assert [Path(o.source).name for o in outcomes] == sorted(names)
    assert peak == 3
    stored = app.catalog.query(states=[State.ACTIVE])
    assert len(stored) == 9 and not any(r.inbox_pending for r in stored)
    assert not any(inbox.glob("*.wav"))


def _stored(daemon: Daemon, clock, inbox: Path, name: str):
    """Drop ``name`` with its sidecar and let the daemon ingest it; its outcome."""
    make_wav(inbox / name)
    write_sidecar(inbox / name, purpose="training")
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (outcome,), _, _ = daemon.ingest_ready(now=clock.now())
    assert outcome.outcome == "stored"
    return outcome


def test_late_objection_sidecar_is_applied_and_deleted(app, clock):
    inbox = Path(app.settings.inbox[0])
    daemon = Daemon(app)
    outcome = _stored(daemon, clock, inbox, "late.wav")
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


def _same_name_again_sidecar_first(app, clock) -> None:
    """A recording ingested, then the same name again later: its sidecar (with an
    objection) first, the recording shortly after. The objection is the new one's."""
    inbox = Path(app.settings.inbox[0])
    make_wav(inbox / "a.wav")
    write_sidecar(inbox / "a.wav", purpose="training")
    daemon = Daemon(app)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (first,), _, _ = daemon.ingest_ready(now=clock.now())
    write_sidecar(inbox / "a.wav", purpose="training", objection=True)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(milliseconds=500))
    make_wav(inbox / "a.wav", seed=9)
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (second,), _, _ = daemon.ingest_ready(now=clock.now())
    assert app.catalog.get(first.object_id).objection is False
    assert app.catalog.get(second.object_id).objection is True


def test_sidecar_dropped_before_its_recording_is_not_late(app, clock):
    _same_name_again_sidecar_first(app, clock)


@pytest.mark.parametrize("behind", [0, 120])
def test_a_file_server_clock_behind_ours_never_makes_a_new_sidecar_late(short_setup, behind):
    """The wait for a recording after its sidecar is on this process's clock, not on the
    file's ctime: with the file server's clock two minutes behind ours, the new sidecar
    still belongs to the new recording of the same name, not to the old one."""
    clock = ManualClock(datetime.now(UTC) + timedelta(seconds=behind))
    app = open_app(short_setup, clock)
    try:
        _same_name_again_sidecar_first(app, clock)
    finally:
        app.close()


def test_big_recordings_into_a_bucket_vault_are_limited_whatever_the_workers(app):
    """Memory bound: BIG_AT_ONCE (one) recording above BIG_OBJECT at a time (a multipart
    upload holds three part buffers); small ones are not held back."""
    from retentiond.service.ingest import BIG_AT_ONCE, BIG_OBJECT, Ingestor

    ingestor = Ingestor(app)
    assert not ingestor._bucket_vault  # a folder vault holds no part buffers: no limit
    with ingestor._big_one(BIG_OBJECT * 100), ingestor._big_one(BIG_OBJECT * 100):
        pass
    ingestor._bucket_vault = True  # as with an s3:// vault
    lock = threading.Lock()
    inside = {"big": 0, "small": 0}
    peak = {"big": 0, "small": 0}

    def one(kind: str) -> None:
        with ingestor._big_one(BIG_OBJECT + 1 if kind == "big" else BIG_OBJECT):
            with lock:
                inside[kind] += 1
                peak[kind] = max(peak[kind], inside[kind])
            time.sleep(0.03)
            with lock:
                inside[kind] -= 1

    threads = [threading.Thread(target=one, args=(k,)) for k in ["big"] * 6 + ["small"] * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak["big"] == BIG_AT_ONCE == 1
    assert peak["small"] > BIG_AT_ONCE


def test_recovery_survives_a_row_deleted_before_its_plaintext_removal_was_recorded(
        app, clock):
    """A crash between "stored" and "plaintext removed", then a sweep elsewhere deleting
    the recording (its source is wiped with its personal data): recovery clears the flag
    and warns instead of failing every pass."""
    from retentiond.core.model import Recording
    from retentiond.ports import WrappedKey
    from retentiond.service.ingest import Ingestor

    t0 = clock.now()
    rec = Recording(id="r1", state=State.INGESTING, purpose="quality",
                    legal_basis="legitimate-interests", media="audio", recorded_at=t0,
                    ingested_at=t0, policy_name="p", policy_sha256="0" * 64,
                    location="v1/r1/r1.rtd", source=str(Path(app.settings.inbox[0]) / "x.wav"))
    app.catalog.insert_ingesting(rec, wrapped=WrappedKey(kek_id="k", blob=b"w"),
                                 notes_sealed=None)
    app.catalog.mark_stored("r1", state=State.ACTIVE, size=1, ciphertext_size=2,
                            plaintext_sha256="a" * 64, ciphertext_sha256="b" * 64,
                            version_id=None, delete_after=t0, sample_score=0.5)
    assert app.catalog.start_deletions([("r1", "retention-expired", t0)]) == {"r1"}
    app.catalog.destroy_keys([("r1", b"{}", t0)])
    assert app.catalog.get("r1").source is None and app.catalog.get("r1").inbox_pending
    assert Ingestor(app).recover() == 1
    assert not app.catalog.get("r1").inbox_pending


def test_each_turn_scrubs_an_erasure_a_reader_delayed(app, clock, monkeypatch):
    """An ingest rolled back while another process read the catalog: its quick scrub
    gave up, and nothing else may force one for hours (no deletion pending a proof), so
    the daemon's loop tries again at its next turn."""
    import sqlite3

    from tests.integration.test_catalog import SECRET, catalog_files, rec

    daemon = Daemon(app)
    monkeypatch.setattr(daemon.sweeper, "sweep", lambda **_: None)  # not the sweep's scrub
    monkeypatch.setattr(daemon, "next_due_in", lambda **_: None)
    app.catalog.insert_ingesting(rec("d1"), wrapped=SECRET, notes_sealed=None)
    reader = sqlite3.connect(app.catalog.path)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM data_keys").fetchone()
    app.catalog.rollback_ingest("d1")
    reader.rollback()
    reader.close()
    assert app.catalog.dirty and SECRET.blob in catalog_files(app.catalog.path)
    runner = threading.Thread(target=daemon.run_forever)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while app.catalog.dirty and time.monotonic() < deadline:
            time.sleep(0.05)
        assert SECRET.blob not in catalog_files(app.catalog.path)
    finally:
        daemon.request_stop()
        runner.join(10)
    assert not runner.is_alive()


def test_a_stop_during_the_sweep_ends_the_loop_without_the_wake_up_walk(app, monkeypatch):
    """SIGTERM arrives while a pass runs: the daemon stops when the pass returns, without
    walking every live recording again for its next wake-up (TimeoutStopSec)."""
    daemon = Daemon(app)
    walks: list[int] = []
    told: list[bool] = []

    def sweep(**kw):
        daemon.request_stop()  # the signal handler, during the pass
        told.append(kw["should_stop"]())

    monkeypatch.setattr(daemon.sweeper, "sweep", sweep)
    monkeypatch.setattr(daemon, "next_due_in", lambda **_: walks.append(1))
    runner = threading.Thread(target=daemon.run_forever)
    runner.start()
    runner.join(10)
    assert not runner.is_alive() and walks == [] and told == [True]


def test_a_sidecar_whose_recording_never_comes_is_reported_once_and_counted(
        app, clock, caplog):
    """It may name the caller in clear: after an hour without its recording it is
    reported (once) and counted, and left in place; the count drops when it goes."""
    import logging

    caplog.set_level(logging.WARNING, logger="retentiond.service.ingest")
    inbox = Path(app.settings.inbox[0])
    lost = write_sidecar(inbox / "lost.wav", purpose="training", subject="+33 6 00 00 00 07")
    daemon = Daemon(app)
    gauge = "retentiond_inbox_orphan_sidecars"

    def turn() -> list[str]:
        daemon.ingest_ready(now=clock.now())
        return logged(caplog, "ingest.orphan_sidecar")

    assert turn() == [] and app.metrics.registry.get_sample_value(gauge) == 0
    clock.advance(timedelta(minutes=59))
    assert turn() == []
    clock.advance(timedelta(minutes=2))
    (message,) = turn()
    assert f"inbox {inbox}: 1 sidecar(s)" in message and "lost" not in message
    assert app.metrics.registry.get_sample_value(gauge) == 1
    clock.advance(timedelta(minutes=10))
    assert len(turn()) == 1  # once
    assert lost.exists()  # left in place
    lost.unlink()
    turn()
    assert app.metrics.registry.get_sample_value(gauge) == 0


def test_a_late_sidecar_is_no_orphan_and_a_recording_arriving_ends_the_count(app, clock, caplog):
    import logging

    caplog.set_level(logging.WARNING, logger="retentiond.service.ingest")
    inbox = Path(app.settings.inbox[0])
    daemon = Daemon(app)
    _stored(daemon, clock, inbox, "done.wav")
    write_sidecar(inbox / "done.wav", purpose="training", agent="A-1")  # late, not orphan
    write_sidecar(inbox / "later.wav", purpose="training")  # its recording comes late
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(minutes=61))
    daemon.ingest_ready(now=clock.now())
    gauge = "retentiond_inbox_orphan_sidecars"
    assert app.metrics.registry.get_sample_value(gauge) == 1  # later.wav.json only
    assert len(logged(caplog, "ingest.orphan_sidecar")) == 1
    assert logged(caplog, "ingest.late_sidecar")
    make_wav(inbox / "later.wav", seed=3)  # its recording comes at last
    daemon.ingest_ready(now=clock.now())
    assert app.metrics.registry.get_sample_value(gauge) == 0


def test_a_restarted_daemon_counts_a_sidecar_from_when_it_landed(short_setup, caplog):
    """The age is the file's own (its ctime: when it came into the inbox, which no copy
    tool can set back), not the process's: a restarted daemon, or ``run --once`` from
    cron, reports a sidecar alone for an hour at its first scan."""
    import logging

    caplog.set_level(logging.WARNING, logger="retentiond.service.ingest")
    inbox = short_setup / "inbox"
    write_sidecar(inbox / "lost.wav", purpose="training", subject="+33 6 00 00 00 08")
    landed = datetime.fromtimestamp(os.stat(inbox / "lost.wav.json").st_ctime, UTC)
    gauge = "retentiond_inbox_orphan_sidecars"
    for minutes, reported in ((59, 0), (61, 1)):  # a new process each time
        clock = ManualClock(landed + timedelta(minutes=minutes))
        app = open_app(short_setup, clock)
        try:
            Daemon(app).ingest_ready(now=clock.now())
            assert app.metrics.registry.get_sample_value(gauge) == reported
        finally:
            app.close()
    (message,) = logged(caplog, "ingest.orphan_sidecar")
    assert f"inbox {inbox}: 1 sidecar(s)" in message and "lost" not in message
    assert (inbox / "lost.wav.json").exists()  # left in place


def test_a_long_ingest_tells_the_watchdog_it_moves(app, clock):
    """Every 8 MiB read is a beat of ``App.progress``: a recording that takes longer than
    WatchdogSec to ingest does not get the daemon restarted."""
    inbox = Path(app.settings.inbox[0])
    (inbox / "long.wav").write_bytes(os.urandom(40 * 1024 * 1024))
    at = clock.now().timestamp()
    os.utime(inbox / "long.wav", (at, at))  # recorded "now" on the test clock
    write_sidecar(inbox / "long.wav", purpose="training")
    beats = []

    class Counting(Progress):
        def beat(self) -> None:
            beats.append(1)
            super().beat()

    app.progress = Counting()
    outcome = Ingestor(app).ingest(inbox, "long.wav", now=clock.now())
    assert outcome.outcome == "stored"
    assert len(beats) >= 5  # 40 MiB / 8 MiB


@pytest.mark.parametrize("environ, period", [
    pytest.param({"WATCHDOG_USEC": "30000000"}, 30.0, id="no-pid"),
    pytest.param({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid())}, 1.5,
                 id="this-pid"),
    pytest.param({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": "1"}, None, id="other-pid"),
    pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
    pytest.param({"WATCHDOG_USEC": "soon"}, None, id="not-a-number"),
    pytest.param({}, None, id="no-watchdog"),
])
def test_watchdog_period_from_systemd_environment(environ, period):
    assert watchdog_period(environ) == period
