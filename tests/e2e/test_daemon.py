"""The real daemon in a subprocess: drop folder in, deletion on time, proofs, metrics."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import catalog_bytes, cli_env, make_wav, run_cli, write_sidecar

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


class NotifyListener:
    """A systemd stand-in: the datagram socket ``$NOTIFY_SOCKET`` names (abstract namespace,
    so no path-length limit), collecting what the daemon sends."""

    def __init__(self) -> None:
        self.address = f"@retentiond-test-{os.getpid()}-{secrets.token_hex(4)}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def poll(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                return
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))

    def wait(self, key: str, *, count: int = 1, timeout: float, proc=None) -> dict[str, str]:
        def got():
            self.poll()
            hits = [m for m in self.messages if key in m]
            return hits[count - 1] if len(hits) >= count else None

        return wait_for(got, timeout=timeout, what=f"sd_notify {key} #{count}", proc=proc)

    def close(self) -> None:
        self.sock.close()


def scrape(base: str) -> str:
    status, text = http_get(base + "/metrics")
    assert status == 200, text
    return text


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
        def swept_once():
            text = scrape(base)
            return text if metric(text, "retentiond_last_sweep_success_timestamp_seconds") else None

        text = wait_for(swept_once, timeout=10, what="the start-up sweep", proc=proc)
        assert metric(text, "retentiond_ready") == 1
        assert metric(text, "retentiond_objects_overdue") == 0
        assert metric(text, "retentiond_quarantined_objects") == 0
        assert metric(text, "retentiond_inbox_files") == 0
        assert metric(text, "retentiond_next_deletion_due_timestamp_seconds") is None
        started_at = metric(text, "retentiond_last_sweep_success_timestamp_seconds")
        assert abs(started_at - time.time()) < 30

        # a long-lived recording, a malformed sidecar, and one due in a few seconds
        keep = drop(inbox, "keep.wav", sidecar={"purpose": "training", "call_id": "K"}, seed=1)
        bad = drop(inbox, "bad.wav", raw_sidecar='{"purpose": "quality",\n "agent": }', seed=2)
        due_at = datetime.now(UTC) + timedelta(seconds=6)
        soon_bytes = drop(inbox, "soon.wav", seed=3, sidecar={
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

        text = scrape(base)
        assert metric(text, "retentiond_ingested_total", purpose="training", outcome="stored") == 1
        assert metric(text, "retentiond_ingested_total", purpose="quarantine",
                      outcome="quarantined") == 1
        assert metric(text, "retentiond_objects", purpose="quality", state="active") == 1
        assert metric(text, "retentiond_objects", purpose="training", state="active") == 1
        assert metric(text, "retentiond_quarantined_objects") == 1
        assert metric(text, "retentiond_quarantined_bytes") == len(bad)
        assert metric(text, "retentiond_ingest_duration_seconds_count") == 3
        assert metric(text, "retentiond_ingest_bytes_total") == len(keep) + len(bad) + len(soon_bytes)
        assert metric(text, "retentiond_inbox_files") == 0
        # the next deletion is the quality recording, exactly when it falls due
        next_due = metric(text, "retentiond_next_deletion_due_timestamp_seconds")
        assert abs(next_due - due_at.timestamp()) < 1, (next_due, due_at)
        assert metric(text, "retentiond_proof_log_entries") == 0

        # deleted by the daemon on time (due_at), not long after
        def deleted():
            r = [x for x in ls(short_setup, "--all") if x["id"] == soon["id"]]
            return r and r[0]["state"] == "deleted"

        wait_for(deleted, timeout=30, what="deletion of the due recording")
        late = (datetime.now(UTC) - due_at).total_seconds()
        assert late < 8, f"deleted {late:.1f}s after due"
        assert len(list((short_setup / "vault").rglob("*.rtd"))) == 2
        assert bytes(wrapped) not in catalog_bytes(short_setup)
        p = run_cli("proof", "verify", setup=short_setup)
        assert p.returncode == 0 and ": 1 entry, root" in p.stdout, p.stderr
        text = scrape(base)
        assert metric(text, "retentiond_deletions_total", purpose="quality",
                      reason="retention-expired") == 1
        assert metric(text, "retentiond_proof_log_entries") == 1
        assert metric(text, "retentiond_objects", purpose="quality", state="active") is None
        assert metric(text, "retentiond_objects_overdue") == 0
        assert metric(text, "retentiond_last_sweep_success_timestamp_seconds") >= due_at.timestamp()
        assert metric(text, "retentiond_next_deletion_due_timestamp_seconds") > next_due + 3600
        assert metric(text, "retentiond_errors_total", stage="delete") == 0
        assert metric(text, "retentiond_store_errors_total", store="vault", kind="permanent") == 0

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
    assert events.index("daemon.stopping") < events.index("daemon.stopped")
    assert events.index("daemon.started") < events.index("daemon.ready")  # loop runs first
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
    """systemd's view (sd_notify) and Prometheus' (reload metrics) of two reloads: a bad
    policy is refused and the old one keeps working; a good one, with a new purpose, is
    in force for the very next recording."""
    log_path = tmp_path / "daemon.log"
    log = open(log_path, "w")  # noqa: SIM115
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    notify = NotifyListener()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retentiond", "run", "--metrics-addr", f"127.0.0.1:{port}"],
        env=cli_env(short_setup, NOTIFY_SOCKET=notify.address), stdout=log,
        stderr=subprocess.STDOUT,
    )
    policy = short_setup / "policies" / "test.yaml"
    try:
        ready = notify.wait("READY", timeout=15, proc=proc)
        assert http_get(base + "/readyz")[0] == 200  # READY=1 means ready
        assert "daemon.started" in log_path.read_text()
        assert "policy test-short" in ready["STATUS"]
        text = scrape(base)
        assert metric(text, "retentiond_config_last_reload_successful") == 1
        sha_before = next(line for line in text.splitlines()
                          if line.startswith("retentiond_policy_info{"))
        assert 'name="test-short"' in sha_before

        good = policy.read_text()
        policy.write_text(good.replace("retention: PT30S", "retention: P6X"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload.refused" in log_path.read_text(), timeout=10,
                 what="refused reload", proc=proc)
        assert "test.yaml:6: purposes.quality.retention" in log_path.read_text()
        notify.wait("RELOADING", timeout=5, proc=proc)
        after = notify.wait("READY", count=2, timeout=5, proc=proc)
        assert after["STATUS"].startswith("reload refused")
        text = scrape(base)
        assert metric(text, "retentiond_config_reloads_total", outcome="refused") == 1
        assert metric(text, "retentiond_config_reloads_total", outcome="applied") == 0
        assert metric(text, "retentiond_config_last_reload_successful") == 0
        assert sha_before in text  # the old policy is still in force
        assert http_get(base + "/readyz")[0] == 200
        # still running on the old policy: a training recording is ingested as before
        drop(short_setup / "inbox", "a.wav", sidecar={"purpose": "training"})
        wait_for(lambda: not any((short_setup / "inbox").iterdir()), timeout=15,
                 what="ingest under the old policy", proc=proc)
        policy.write_text(good)  # `ls` (a fresh process) needs a valid policy
        assert [r["purpose"] for r in ls(short_setup)] == ["training"]

        renamed = good.replace("name: test-short", "name: test-renamed").replace(
            "purposes:\n", "purposes:\n  demo:\n    legal_basis: consent\n"
            "    retention: P1D\n    media: [audio]\n", 1)
        policy.write_text(renamed)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload.done" in log_path.read_text(), timeout=10, what="reload",
                 proc=proc)
        assert "test-renamed" in log_path.read_text()
        assert "test-renamed" in notify.wait("READY", count=3, timeout=5, proc=proc)["STATUS"]
        text = scrape(base)
        assert metric(text, "retentiond_config_reloads_total", outcome="applied") == 1
        assert metric(text, "retentiond_config_last_reload_successful") == 1
        assert 'retentiond_policy_info{name="test-renamed"' in text
        # the new purpose is in force for the next recording
        drop(short_setup / "inbox", "b.wav", sidecar={"purpose": "demo"}, seed=5)
        wait_for(lambda: metric(scrape(base), "retentiond_ingested_total", purpose="demo",
                                outcome="stored") == 1,
                 timeout=15, what="a recording for the new purpose", proc=proc)
        rows = {r["purpose"]: r for r in ls(short_setup)}
        assert rows["demo"]["state"] == "active"
        assert rows["demo"]["policy"]["name"] == "test-renamed"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        log.close()
    stopping = notify.wait("STOPPING", timeout=2)
    notify.close()
    assert stopping["STOPPING"] == "1"
    assert code == 0, log_path.read_text()


def catalog_rows(setup: Path) -> list[tuple[str, str, str]]:
    """(id, state, plaintext_sha256) of every catalog row, read straight from SQLite."""
    with sqlite3.connect(setup / "state" / "catalog.db") as db:
        return db.execute("SELECT id, state, plaintext_sha256 FROM recordings").fetchall()


def start_daemon(setup: Path, log_path: Path) -> tuple[subprocess.Popen, object]:
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "retentiond", "run", "--metrics-addr", "off"],
        env=cli_env(setup), stdout=log, stderr=subprocess.STDOUT,
    )
    return proc, log


def sigterm_on_first(proc: subprocess.Popen, log_path: Path, event: str) -> float:
    """SIGTERM as soon as ``event`` is logged (mid-work); returns how long the exit took."""
    wait_for(lambda: f'"event": "{event}"' in log_path.read_text(), timeout=30,
             what=event, proc=proc)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    try:
        code = proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("no exit within 20 s of SIGTERM") from None
    assert code == 0, log_path.read_text()
    return time.monotonic() - sent


def test_sigterm_mid_ingest_exits_promptly_and_loses_nothing(short_setup, tmp_path):
    inbox = short_setup / "inbox"
    originals = {}
    for i in range(80):  # dropped while stopped: all ready together at start-up
        name = f"call-{i:03}.wav"
        originals[name] = drop(inbox, name, sidecar={"purpose": "training", "call_id": f"C{i}"},
                               seed=i)
    log_path = tmp_path / "daemon.log"
    proc, log = start_daemon(short_setup, log_path)
    try:
        took = sigterm_on_first(proc, log_path, "ingest.stored")
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert took < 10, f"exit took {took:.1f}s after SIGTERM"
    events = [json.loads(line)["event"] for line in log_path.read_text().splitlines()
              if line.startswith("{")]
    assert events[-1] == "daemon.stopped", events[-5:]
    # the files being ingested when SIGTERM came (at most ingest.workers, 8 by default)
    # are finished, no other one is started
    assert events[events.index("daemon.stopping"):].count("ingest.stored") <= 8, events[-12:]
    assert "Traceback" not in log_path.read_text()

    # stopped mid-work: some recordings stored, the rest untouched in the inbox
    rows = catalog_rows(short_setup)
    stored = events.count("ingest.stored")
    assert 0 < stored < len(originals), f"not mid-work: {stored} of {len(originals)} stored"
    assert len(rows) == stored and {state for _, state, _ in rows} == {"active"}
    assert len(list((short_setup / "vault").rglob("*.rtd"))) == stored
    assert not list((short_setup / "vault" / ".tmp").glob("*"))
    left = {p.name: p.read_bytes() for p in inbox.iterdir() if p.suffix == ".wav"}
    assert len(left) == len(originals) - stored
    for name, data in left.items():
        assert data == originals[name] and (inbox / f"{name}.json").exists()
    assert {h for _, _, h in rows}.isdisjoint(hashlib.sha256(d).hexdigest()
                                              for d in left.values())

    # the next run finishes the work: every recording stored exactly once, none lost
    p = run_cli("run", "--once", setup=short_setup)
    assert p.returncode == 0, p.stderr
    assert not any(inbox.iterdir())
    rows = catalog_rows(short_setup)
    assert sorted(h for _, _, h in rows) == sorted(
        hashlib.sha256(d).hexdigest() for d in originals.values())
    assert len(list((short_setup / "vault").rglob("*.rtd"))) == len(originals)


def test_sigterm_mid_sweep_leaves_no_half_deletion(short_setup, tmp_path):
    staging = tmp_path / "calls"
    files = []
    for i in range(40):
        make_wav(staging / f"due-{i:02}.wav", seed=i)
        files.append(str(staging / f"due-{i:02}.wav"))
    recorded = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    p = run_cli("ingest", *files, "--purpose", "quality", "--recorded-at", recorded,
                setup=short_setup)
    assert p.returncode == 0, p.stderr
    assert len(catalog_rows(short_setup)) == 40  # all due at once (PT30S)

    log_path = tmp_path / "daemon.log"
    proc, log = start_daemon(short_setup, log_path)
    try:
        took = sigterm_on_first(proc, log_path, "sweep.deleted")
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert took < 15, f"exit took {took:.1f}s after SIGTERM"

    # every deletion begun was finished and proven: no recording half-deleted
    with sqlite3.connect(short_setup / "state" / "catalog.db") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state"))
        unproven = db.execute("SELECT COUNT(*) FROM recordings WHERE state = 'deleted' "
                              "AND proof_index IS NULL").fetchone()[0]
    assert set(states) <= {"active", "deleted"} and states.get("deleted", 0) >= 1, states
    assert unproven == 0
    deleted = states["deleted"]
    assert len(list((short_setup / "vault").rglob("*.rtd"))) == 40 - deleted
    p = run_cli("proof", "verify", setup=short_setup)
    assert p.returncode == 0 and f"{deleted} entries" in p.stdout, p.stdout + p.stderr

    p = run_cli("run", "--once", setup=short_setup)  # finishes whatever was left
    assert p.returncode == 0, p.stderr
    assert {state for _, state, _ in catalog_rows(short_setup)} == {"deleted"}
    p = run_cli("proof", "verify", setup=short_setup)
    assert p.returncode == 0 and "40 entries" in p.stdout, p.stdout + p.stderr


def test_systemd_watchdog_is_fed_while_work_moves_and_not_when_stuck(short_setup, tmp_path):
    """``WatchdogSec=``: the daemon sends WATCHDOG=1 while its work moves (here: idle
    turns of its loop), stops once it is stuck (a hang point after an ingest, as a system
    call on a dead mount), says so in the log and on /healthz (503: Kubernetes' liveness
    probe), and the SIGABRT systemd then sends prints where every thread was
    (faulthandler)."""
    log_path = tmp_path / "daemon.log"
    log = open(log_path, "w")  # noqa: SIM115
    notify = NotifyListener()
    period = 6.0  # fed every 2 s while the work moved in the last 3 s (loop turns: 1 s)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "retentiond", "run", "--metrics-addr", f"127.0.0.1:{port}"],
        env=cli_env(short_setup, NOTIFY_SOCKET=notify.address,
                    WATCHDOG_USEC=str(int(period * 1_000_000)),
                    RETENTIOND_HANG_AT="daemon.after_ingest"),
        stdout=log, stderr=subprocess.STDOUT)
    try:
        notify.wait("READY", timeout=15, proc=proc)
        notify.wait("WATCHDOG", count=3, timeout=20, proc=proc)  # every period / 3
        assert http_get(base + "/healthz")[0] == 200
        assert "daemon.stalled" not in log_path.read_text()  # an idle daemon is not stuck
        drop(short_setup / "inbox", "a.wav", sidecar={"purpose": "training"})
        wait_for(lambda: "daemon.stalled" in log_path.read_text(), timeout=30,
                 what="the stall to be logged", proc=proc)
        notify.poll()
        fed = sum(1 for m in notify.messages if "WATCHDOG" in m)
        time.sleep(period * 2 / 3 + 0.5)  # more than one feeding interval
        notify.poll()
        assert sum(1 for m in notify.messages if "WATCHDOG" in m) == fed  # no longer fed
        wait_for(lambda: http_get(base + "/healthz")[0] == 503, timeout=10,
                 what="/healthz to fail (Kubernetes' liveness probe)", proc=proc)
        assert "stalled: no progress for" in http_get(base + "/healthz")[1]
        assert proc.poll() is None  # alive but stuck: systemd's watchdog ends it
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        core = next(line for line in limits.splitlines() if line.startswith("Max core"))
        assert core.split()[4:6] == ["0", "0"]  # "Max core file size 0 0 bytes": never a core
        proc.send_signal(signal.SIGABRT)
        assert proc.wait(timeout=10) == -signal.SIGABRT
        text = log_path.read_text()
        assert "Fatal Python error: Aborted" in text and "in hangpoint" in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        log.close()
    assert not (short_setup / "inbox" / "a.wav").exists()  # ingested before the hang


def test_no_watchdog_for_another_process(short_setup, tmp_path):
    """``$WATCHDOG_PID`` naming another process (inherited from a parent): not fed."""
    notify = NotifyListener()
    proc = subprocess.Popen(
        [sys.executable, "-m", "retentiond", "run"],
        env=cli_env(short_setup, NOTIFY_SOCKET=notify.address, WATCHDOG_USEC="300000",
                    WATCHDOG_PID=str(os.getpid())),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        notify.wait("READY", timeout=15, proc=proc)
        time.sleep(1.0)
        notify.poll()
        assert not any("WATCHDOG" in m for m in notify.messages)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        notify.close()


def test_a_second_daemon_on_the_same_setup_stops_before_listening(short_setup, tmp_path):
    """One daemon per setup (exit 10): the second stops on the lock before it listens on
    its metrics port or asks any store anything."""
    port = free_port()
    log = open(tmp_path / "first.log", "w")  # noqa: SIM115
    first = subprocess.Popen(
        [sys.executable, "-m", "retentiond", "run", "--metrics-addr", f"127.0.0.1:{port}"],
        env=cli_env(short_setup), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, timeout=15,
                 what="the first daemon", proc=first)
        other = free_port()
        second = subprocess.run(
            [sys.executable, "-m", "retentiond", "run", "--metrics-addr",
             f"127.0.0.1:{other}"], env=cli_env(short_setup), capture_output=True,
            text=True, timeout=60, check=False)
        assert second.returncode == 10, second.stderr
        assert "daemon.lock" in second.stderr and "http.started" not in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None and http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    finally:
        first.terminate()
        assert first.wait(timeout=30) == 0
        log.close()
