"""The real daemon in a subprocess: drop folder in, deletion on time, proofs, metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import cli_env, make_wav, run_cli, write_sidecar

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, *, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if labels else name):
            return float(value)
    return None


def drop(inbox: Path, name: str, *, sidecar: dict | None = None, raw_sidecar: str | None = None,
         seed: int = 0) -> bytes:
    """Sidecar first, then the recording, each written aside and renamed in."""
    staging = inbox.parent / "staging"
    staging.mkdir(exist_ok=True)
    data = make_wav(staging / name, seed=seed)
    if sidecar is not None:
        write_sidecar(staging / name, **sidecar)
    if raw_sidecar is not None:
        (staging / f"{name}.json").write_text(raw_sidecar)
    if (staging / f"{name}.json").exists():
        os.rename(staging / f"{name}.json", inbox / f"{name}.json")
    os.rename(staging / name, inbox / name)
    return data


def ls(setup: Path, *extra: str) -> list[dict]:
    p = run_cli("ls", "--json", *extra, setup=setup)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_daemon_ingests_deletes_on_time_and_proves(short_setup, tmp_path):
    port = free_port()
    log = open(tmp_path / "daemon.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "retentiond", "run", "--metrics-addr", f"127.0.0.1:{port}"],
        env=cli_env(short_setup), stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    inbox = short_setup / "inbox"
    try:
        wait_for(lambda: http_get(base + "/healthz")[0] == 200, timeout=15, what="/healthz",
                 proc=proc)
        assert http_get(base + "/readyz")[0] == 200

        # a long-lived recording, a malformed sidecar, and one due in a few seconds
        keep = drop(inbox, "keep.wav", sidecar={"purpose": "training", "call_id": "K"}, seed=1)
        drop(inbox, "bad.wav", raw_sidecar='{"purpose": "quality",\n "agent": }', seed=2)
        due_at = datetime.now(UTC) + timedelta(seconds=6)
        drop(inbox, "soon.wav", seed=3, sidecar={
            "purpose": "quality", "recorded_at": (due_at - timedelta(seconds=30)).isoformat(),
            "subject": "+33 1 23 45 67 89"})

        wait_for(lambda: not any(inbox.iterdir()), timeout=20, what="inbox emptied", proc=proc)
        def three_listed():
            rows = ls(short_setup)
            return rows if len(rows) == 3 else None

        rows = wait_for(three_listed, timeout=10, what="3 recordings listed")
        states = sorted((r["purpose"], r["state"]) for r in rows)
        assert states == [("quality", "active"), ("quarantine", "quarantined"),
                          ("training", "active")]
        vault_files = [p for p in (short_setup / "vault").rglob("*.rtd")]
        assert len(vault_files) == 3
        soon = next(r for r in rows if r["purpose"] == "quality")
        wrapped = None
        import sqlite3

        with sqlite3.connect(short_setup / "state" / "catalog.db") as db:
            wrapped = db.execute("SELECT wrapped FROM data_keys WHERE object_id=?",
                                 (soon["id"],)).fetchone()[0]

        _, text = http_get(base + "/metrics")
        assert metric(text, "retentiond_ingested_total", purpose="training", outcome="stored") == 1
        assert metric(text, "retentiond_ingested_total", purpose="quarantine",
                      outcome="quarantined") == 1
        assert metric(text, "retentiond_objects", purpose="quality", state="active") == 1

        # deleted by the daemon on time (due_at), not long after
        def deleted():
            r = [x for x in ls(short_setup, "--all") if x["id"] == soon["id"]]
            return r and r[0]["state"] == "deleted"

        wait_for(deleted, timeout=30, what="deletion of the due recording")
        late = (datetime.now(UTC) - due_at).total_seconds()
        assert late < 8, f"deleted {late:.1f}s after due"
        assert len(list((short_setup / "vault").rglob("*.rtd"))) == 2
        assert bytes(wrapped) not in (short_setup / "state" / "catalog.db").read_bytes()
        p = run_cli("proof", "verify", setup=short_setup)
        assert p.returncode == 0 and "1 entries" in p.stdout, p.stderr
        _, text = http_get(base + "/metrics")
        assert metric(text, "retentiond_deletions_total", purpose="quality",
                      reason="retention-expired") == 1
        assert metric(text, "retentiond_proof_log_entries") == 1

        # the daemon is still serving: another file goes through
        drop(inbox, "after.wav", sidecar={"purpose": "training"}, seed=4)
        wait_for(lambda: len(ls(short_setup)) == 3 and not any(inbox.iterdir()), timeout=20,
                 what="ingest after errors")
        keep_id = next(r["id"] for r in ls(short_setup) if r["call_id"] == "K")
        out = tmp_path / "keep.wav"
        p = run_cli("get", keep_id, "--out", str(out), "--actor", "qa", "--reason", "test",
                    setup=short_setup)
        assert p.returncode == 0 and out.read_bytes() == keep
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        log.close()
    assert code == 0, (tmp_path / "daemon.log").read_text()
    lines = (tmp_path / "daemon.log").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines if line.startswith("{")]
    assert "daemon.started" in events and "ingest.stored" in events
    assert "ingest.quarantined" in events and "daemon.stopped" in events
    assert "Traceback" not in "\n".join(lines)
    assert "+33 1 23" not in "\n".join(lines)


def test_files_dropped_while_stopped_are_ingested_at_start(short_setup):
    inbox = short_setup / "inbox"
    data = drop(inbox, "offline.wav", sidecar={"purpose": "training"})
    p = run_cli("run", "--once", setup=short_setup)
    assert p.returncode == 0, p.stderr
    assert not any(inbox.iterdir())
    rows = ls(short_setup)
    assert len(rows) == 1 and rows[0]["size"] == len(data)


def test_sighup_swaps_valid_policy_and_keeps_old_on_invalid(short_setup, tmp_path):
    log_path = tmp_path / "daemon.log"
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "retentiond", "run", "--metrics-addr", "off"],
        env=cli_env(short_setup), stdout=log, stderr=subprocess.STDOUT,
    )
    policy = short_setup / "policies" / "test.yaml"
    try:
        wait_for(lambda: "daemon.started" in log_path.read_text(), timeout=15,
                 what="start", proc=proc)
        good = policy.read_text()
        policy.write_text(good.replace("retention: PT30S", "retention: P6X"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload.refused" in log_path.read_text(), timeout=10,
                 what="refused reload", proc=proc)
        assert "test.yaml:6: purposes.quality.retention" in log_path.read_text()
        # still running on the old policy: a quality recording is ingested as before
        drop(short_setup / "inbox", "a.wav", sidecar={"purpose": "training"})
        wait_for(lambda: not any((short_setup / "inbox").iterdir()), timeout=15,
                 what="ingest under the old policy", proc=proc)
        policy.write_text(good)
        assert [r["purpose"] for r in ls(short_setup)] == ["training"]
        policy.write_text(good.replace("name: test-short", "name: test-renamed"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload.done" in log_path.read_text(), timeout=10, what="reload",
                 proc=proc)
        assert "test-renamed" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        log.close()
    assert code == 0
