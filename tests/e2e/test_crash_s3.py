"""kill -9 with the inbox, vault and proof log in buckets of a live S3 server: at every
named crash point of ingest and sweep, the next run finishes the work; no plaintext stays
in the inbox bucket for a stored recording, no key without its ciphertext or ciphertext
without its key, no multipart upload left behind, every deletion proven exactly once."""

from __future__ import annotations

import json
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_wav, run_cli
from tests.e2e.test_crash import INGEST_POINTS, SWEEP_POINTS
from tests.e2e.test_s3_pipeline import aws_env, keys, make_buckets, put
from tests.s3server import S3Server, moto_s3

__all__ = ["moto_s3"]


@pytest.fixture
def buckets(moto_s3: S3Server, short_setup: Path) -> dict[str, Any]:
    """On moto only (the RGW run of the shared scenarios is tests/e2e/test_s3_pipeline.py)."""
    return make_buckets(moto_s3, short_setup)

pytestmark = pytest.mark.slow


def s3_invariants(b: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    setup, c = b["setup"], b["client"]
    with sqlite3.connect(setup / "state" / "catalog.db") as db:
        rows = db.execute("SELECT id, state, location, inbox_pending FROM recordings").fetchall()
        data_keys = {r[0] for r in db.execute("SELECT object_id FROM data_keys")}
    live = {r[0]: r for r in rows if r[1] in ("active", "quarantined")}
    assert not [r for r in rows if r[1] in ("ingesting", "deleting")], rows
    assert not [r for r in rows if r[3]], "plaintext removal left pending"
    versions = c.list_object_versions(Bucket=b["vault"], Prefix="v/")
    stored = {v["Key"][2:] for v in versions.get("Versions", [])}
    assert stored == {r[2] for r in live.values()}, "orphan or missing ciphertext"
    assert versions.get("DeleteMarkers", []) == []
    assert data_keys == set(live), "orphan or missing key"
    assert c.list_multipart_uploads(Bucket=b["vault"]).get("Uploads", []) == []
    return live


def crash(args: list[str], b: dict[str, Any], point: str) -> None:
    env = aws_env(b["setup"]) | {"RETENTIOND_CRASH_AT": point}
    p = run_cli(*args, env=env)
    assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("point", INGEST_POINTS)
def test_kill_during_bucket_ingest(buckets: dict[str, Any], point: str, tmp_path: Path) -> None:
    b = buckets
    data = make_wav(tmp_path / "call.wav", seconds=3)
    put(b["client"], b["inbox"], "incoming/call.wav", data)
    put(b["client"], b["inbox"], "incoming/call.wav.json",
        json.dumps({"purpose": "training", "subject": "+33611111111"}).encode())
    crash(["run", "--once"], b, point)
    env = aws_env(b["setup"])
    p = run_cli("run", "--once", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    live = s3_invariants(b)
    assert len(live) == 1, "lost or duplicated"
    assert keys(b["client"], b["inbox"]) == [], "plaintext left in the inbox bucket"
    out = tmp_path / "out.wav"
    p = run_cli("get", next(iter(live)), "--out", str(out), "--actor", "t", "--reason", "t",
                env=env)
    assert p.returncode == 0 and out.read_bytes() == data


@pytest.mark.parametrize("point", SWEEP_POINTS)
def test_kill_during_bucket_sweep(buckets: dict[str, Any], point: str, tmp_path: Path) -> None:
    b = buckets
    env = aws_env(b["setup"])
    old = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    for i in range(3):
        put(b["client"], b["inbox"], f"incoming/c{i}.wav", make_wav(tmp_path / f"{i}.wav", seed=i),
            Metadata={"retentiond-purpose": "quality" if i < 2 else "training",
                      "retentiond-recorded-at": old})
    # ingest only (the sweep of `run --once` would delete the due ones at once)
    p = run_cli("run", "--once", env=env | {"RETENTIOND_CRASH_AT": point})
    if p.returncode != -signal.SIGKILL:  # the point is in the sweep: run once more killed
        crash(["sweep"], b, point)
    p = run_cli("sweep", "--json", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    live = s3_invariants(b)
    assert len(live) == 1
    p = run_cli("proof", "verify", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    deleted = [r for r in json.loads(run_cli("ls", "--all", "--json", env=env).stdout)
               if r["state"] == "deleted"]
    assert sorted(r["proof_index"] for r in deleted) == [0, 1], "each proven exactly once"
    for r in deleted:  # the one version written, named even when the killed pass deleted it
        shown = json.loads(run_cli("proof", "show", r["id"], "--json", env=env).stdout)
        assert len(shown["record"]["version_ids"]) == 1, (point, shown["record"])
        assert shown["record"]["version_ids"][0] not in ("", "null"), shown["record"]
