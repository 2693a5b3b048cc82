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
