"""The reconciler: out-of-band changes to the vault are seen, reported and repaired where
that is safe (a folder vault here, a bucket vault on a live S3 server below)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from retentiond.clock import ManualClock
from retentiond.core.model import State
from retentiond.service.reconcile import Reconciler
from retentiond.service.sweep import Sweeper
from retentiond.service.wiring import App
from tests.e2e.test_s3_pipeline import app_ingest, make_buckets, put, s3_app
from tests.integration.test_pipeline import _ingest
from tests.s3server import S3Server, moto_s3

__all__ = ["moto_s3", "s3_app"]


@pytest.fixture
def buckets(moto_s3: S3Server, short_setup: Path) -> dict[str, Any]:
    """On moto only (the RGW run of the shared scenarios is tests/e2e/test_s3_pipeline.py)."""
    return make_buckets(moto_s3, short_setup)


def gauge(app: App, kind: str) -> float | None:
    return app.metrics.registry.get_sample_value("retentiond_store_findings", {"kind": kind})


def test_clean_vault_has_no_findings(app: App, clock: ManualClock) -> None:
    _ingest(app, clock, purpose="training")
    report = Reconciler(app).reconcile(now=clock.now())
    assert report.findings == () and report.listed == 1
    assert gauge(app, "missing") == 0 and app.catalog.findings() == []


def test_missing_changed_orphan_reappeared(app: App, clock: ManualClock,
                                           caplog: pytest.LogCaptureFixture) -> None:
    vault = Path(app.settings.vault)
    _, _, gone = _ingest(app, clock, "a.wav", seed=1, purpose="training")
    _, _, bent = _ingest(app, clock, "b.wav", seed=2, purpose="training")
    _, _, due = _ingest(app, clock, "c.wav", seed=3, purpose="quality")
    gone_rec, bent_rec, due_rec = (app.catalog.get(o.object_id) for o in (gone, bent, due))
    (vault / gone_rec.location).unlink()
    with open(vault / bent_rec.location, "ab") as fh:
        fh.write(b"extra")
    stray = vault / "v1/ff" / ("f" * 32 + ".rtd")
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"unknown")
    # a proven deletion whose object comes back (a restore)
    saved = vault.parent / "saved.rtd"
    shutil.copy(vault / due_rec.location, saved)
    clock.advance(timedelta(minutes=1))
    assert [i.outcome for i in Sweeper(app).sweep(now=clock.now()).items] == ["deleted"]
    shutil.copy(saved, vault / due_rec.location)

    report = Reconciler(app).reconcile(now=clock.now())
    kinds = {f.kind: f for f in report.findings}
    assert set(kinds) == {"missing", "changed", "orphan"}
    assert kinds["missing"].object_id == gone_rec.id
    assert kinds["changed"].object_id == bent_rec.id and "size" in kinds["changed"].detail
    assert kinds["orphan"].object_id is None
    assert not (vault / due_rec.location).exists()  # the reappeared copy was deleted again
    assert "reconcile.reappeared" in [getattr(r, "event", "") for r in caplog.records]
    # the key of the missing recording is kept (the object may come back)
    assert app.catalog.wrapped_key(gone_rec.id) is not None
    assert app.catalog.get(gone_rec.id).state is State.ACTIVE
    assert (gauge(app, "missing"), gauge(app, "changed"), gauge(app, "orphan")) == (1, 1, 1)
    first = {f[0]: f[4] for f in app.catalog.findings()}

    # lasting findings keep their first sighting; resolved ones go
    stray.unlink()
    clock.advance(timedelta(hours=1))
    report = Reconciler(app).reconcile(now=clock.now())
    assert {f.kind for f in report.findings} == {"missing", "changed"}
    now_found = {f[0]: f[4] for f in app.catalog.findings()}
    assert now_found == {k: v for k, v in first.items() if k in now_found}
    assert gauge(app, "orphan") == 0


def test_missing_recording_is_still_deleted_with_proof_when_due(
        app: App, clock: ManualClock) -> None:
    _, _, o = _ingest(app, clock, purpose="quality")
    rec = app.catalog.get(o.object_id)
    (Path(app.settings.vault) / rec.location).unlink()
    Reconciler(app).reconcile(now=clock.now())
    clock.advance(timedelta(minutes=1))
    (item,) = Sweeper(app).sweep(now=clock.now()).items
    assert item.outcome == "deleted"
    assert app.catalog.wrapped_key(rec.id) is None
    assert Reconciler(app).reconcile(now=clock.now()).findings == ()


@pytest.mark.slow
def test_bucket_vault_out_of_band_delete_is_found(
        buckets: dict[str, Any], s3_app: tuple[App, ManualClock], tmp_path: Path) -> None:
    app, clock = s3_app
    c, vault = buckets["client"], buckets["vault"]
    from tests.conftest import make_wav

    put(c, buckets["inbox"], "incoming/r.wav", make_wav(tmp_path / "r.wav"),
        Metadata={"retentiond-purpose": "training"})
    rec = app.catalog.get(app_ingest(app, buckets["inbox"], "r.wav", clock).object_id)
    c.delete_object(Bucket=vault, Key=f"v/{rec.location}")  # a delete marker on top
    report = Reconciler(app).reconcile(now=clock.now())
    assert [(f.kind, f.object_id) for f in report.findings] == [("missing", rec.id)]
