"""kill -9 during ingest and during sweep: real processes, really killed (SIGKILL), at
named points and at random moments. After a restart nothing is lost or duplicated, no
plaintext remains for an ingested recording, no orphan key or orphan ciphertext exists,
and every deletion is proven exactly once."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import cli_env, make_wav, run_cli, write_sidecar

pytestmark = pytest.mark.slow

INGEST_POINTS = [
    "ingest.after_catalog_insert",
    "ingest.before_vault_commit",
    "ingest.after_vault_write",
    "ingest.after_mark_stored",
    "ingest.after_unlink",
]
SWEEP_POINTS = [
    "sweep.after_start_deletion",
    "sweep.after_vault_delete",
    "sweep.after_key_destroyed",
    "prooflog.after_tiles",
    "sweep.after_proof_append",
]


def invariants(setup: Path) -> dict:
    """Check the cross-store invariants; return the catalog's live rows."""
    with sqlite3.connect(setup / "state" / "catalog.db") as db:
        rows = db.execute("SELECT id, state, location, inbox_pending FROM recordings").fetchall()
        keys = {r[0] for r in db.execute("SELECT object_id FROM data_keys")}
    live = {r[0]: r for r in rows if r[1] in ("active", "quarantined")}
    assert not [r for r in rows if r[1] in ("ingesting", "deleting")], rows
    assert not [r for r in rows if r[3]], "plaintext removal left pending"
    vault = setup / "vault"
    objects = {p.relative_to(vault).as_posix() for p in vault.rglob("*.rtd")}
    assert objects == {r[2] for r in live.values()}, "orphan or missing ciphertext"
    assert keys == set(live), "orphan or missing key"
    assert not list((vault / ".tmp").glob("*")), "temporary ciphertext left"
    return live


def crash(args: list[str], setup: Path, point: str) -> None:
    p = run_cli(*args, env=cli_env(setup, RETENTIOND_CRASH_AT=point))
    assert p.returncode == -signal.SIGKILL, (point, p.returncode, p.stdout, p.stderr)


@pytest.mark.parametrize("point", INGEST_POINTS)
def test_kill_during_ingest(short_setup, point, tmp_path):
    inbox = short_setup / "inbox"
    data = make_wav(inbox / "call.wav", seconds=3)
    write_sidecar(inbox / "call.wav", purpose="training", subject="+33611111111")
    crash(["run", "--once"], short_setup, point)
    p = run_cli("run", "--once", setup=short_setup)
    assert p.returncode == 0, p.stderr
    live = invariants(short_setup)
    assert len(live) == 1, "lost or duplicated"
    assert not any(inbox.iterdir()), "plaintext left in the inbox"
    out = tmp_path / "out.wav"
    p = run_cli("get", next(iter(live)), "--out", str(out), "--actor", "t", "--reason", "t",
                setup=short_setup)
    assert p.returncode == 0 and out.read_bytes() == data


@pytest.mark.parametrize("point", SWEEP_POINTS)
def test_kill_during_sweep(short_setup, point):
    inbox = short_setup / "inbox"
    old = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
    for i in range(3):
        make_wav(inbox / f"c{i}.wav", seed=i)
        write_sidecar(inbox / f"c{i}.wav", purpose="quality" if i < 2 else "training",
                      recorded_at=old)
    p = run_cli("ingest", *(str(inbox / f"c{i}.wav") for i in range(3)), setup=short_setup)
    assert p.returncode == 0, p.stdout + p.stderr
    crash(["sweep"], short_setup, point)
    p = run_cli("sweep", "--json", setup=short_setup)
    assert p.returncode == 0, p.stderr
    live = invariants(short_setup)
    assert len(live) == 1
    p = run_cli("proof", "verify", setup=short_setup)
    assert p.returncode == 0, p.stderr
    deleted = [r for r in json.loads(run_cli("ls", "--all", "--json", setup=short_setup).stdout)
               if r["state"] == "deleted"]
    assert len(deleted) == 2
    indexes = sorted(r["proof_index"] for r in deleted)
    assert indexes == [0, 1], "each deletion proven exactly once"
    for r in deleted:
        shown = json.loads(run_cli("proof", "show", r["id"], "--json", setup=short_setup).stdout)
        assert shown["record"]["object_id"] == r["id"]
        # the file is named as deleted even when the killed pass unlinked it
        assert shown["record"]["version_ids"] == ["null"], (point, shown["record"])


def test_kill_daemon_at_random_moments(short_setup, tmp_path):
    """A daemon ingesting larger files, killed at random moments several times."""
    inbox = short_setup / "inbox"
    rng = random.Random(20261123)
    originals = {}
    for i in range(6):
        staging = tmp_path / f"s{i}.wav"
        originals[i] = make_wav(staging, seconds=40, seed=i)  # ~640 KB each
        write_sidecar(staging, purpose="training", call_id=f"CALL-{i}")
        (tmp_path / f"s{i}.wav.json").rename(inbox / f"s{i}.wav.json")
        staging.rename(inbox / f"s{i}.wav")
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-m", "retentiond", "run", "--metrics-addr", "off"],
            env=cli_env(short_setup), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.8, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    p = run_cli("run", "--once", setup=short_setup)
    assert p.returncode == 0, p.stderr
    live = invariants(short_setup)
    assert len(live) == 6 and not any(inbox.iterdir())
    rows = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)
    assert sorted(r["call_id"] for r in rows) == [f"CALL-{i}" for i in range(6)]
    for r in rows:
        out = tmp_path / f"{r['call_id']}.out"
        assert run_cli("get", r["id"], "--out", str(out), "--actor", "t", "--reason", "t",
                       setup=short_setup).returncode == 0
        assert out.read_bytes() == originals[int(r["call_id"].split("-")[1])]
