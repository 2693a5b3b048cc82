"""``retentiond keys rotate`` as a user runs it: output, exit codes, no traceback, and
kill -9 at every step of a rotation (real processes, SIGKILL): no recording without its
key at any moment, and the next rotation finishes the work."""

from __future__ import annotations

import fcntl
import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.conftest import cli_env, make_wav, run_cli, write_sidecar


def _ingest(setup: Path, tmp_path: Path, n: int) -> dict[str, bytes]:
    stored = {}
    for i in range(n):
        src = tmp_path / f"call-{i}.wav"
        data = make_wav(src, seed=i)
        write_sidecar(src, purpose="training")
        p = run_cli("ingest", str(src), setup=setup)
        assert p.returncode == 0, p.stderr
        stored[p.stdout.split()[1]] = data
    return stored


def _all_open(setup: Path, tmp_path: Path, stored: dict[str, bytes]) -> None:
    for object_id, data in stored.items():
        out = tmp_path / "out.wav"
        p = run_cli("get", object_id, "--out", str(out), "--actor", "t", "--reason", "t",
                    setup=setup)
        assert p.returncode == 0, p.stderr
        assert out.read_bytes() == data
        out.unlink()


def _keks(setup: Path) -> set[str]:
    return {p.name.removesuffix(".key") for p in (setup / "keys").glob("kek-*.key")}


def _no_traceback(p) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr


def test_rotate_then_retire(short_setup, tmp_path):
    stored = _ingest(short_setup, tmp_path, 2)
    (first,) = _keks(short_setup)
    p = run_cli("keys", "rotate", setup=short_setup)
    assert p.returncode == 0, p.stderr
    assert f"(was {first})" in p.stdout and "re-wrapped 2 data key(s)" in p.stdout
    assert f"kept {first}" in p.stdout
    assert len(_keks(short_setup)) == 2
    _all_open(short_setup, tmp_path, stored)

    p = run_cli("keys", "rotate", "--retire", "--json", "--reason", "suspected leak",
                "--actor", "ciso", setup=short_setup)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["rewrapped"] == 2 and out["failed"] == 0 and out["kept"] == {}
    assert first in out["retired"] and len(out["retired"]) == 2
    assert _keks(short_setup) == {out["kek_id"]}
    _all_open(short_setup, tmp_path, stored)
    p = run_cli("audit", "verify", setup=short_setup)
    assert p.returncode == 0, p.stderr
    entries = [json.loads(line) for line in
               (short_setup / "state" / "audit.log").read_text().splitlines()]
    rotations = [e for e in entries if e["action"] == "keys-rotate"]
    assert [(e["actor"], e["reason"]) for e in rotations][-1] == ("ciso", "suspected leak")


def test_tampered_key_row_exits_6_naming_it_and_rotates_the_rest(short_setup, tmp_path):
    stored = _ingest(short_setup, tmp_path, 2)
    bad, good = sorted(stored)
    (first,) = _keks(short_setup)
    with sqlite3.connect(short_setup / "state" / "catalog.db") as db:
        db.execute("UPDATE data_keys SET wrapped=zeroblob(61) WHERE object_id=?", (bad,))
    p = run_cli("keys", "rotate", "--retire", setup=short_setup)
    assert p.returncode == 6, (p.stdout, p.stderr)
    logged, last = p.stderr.splitlines()
    assert logged.startswith(f"retentiond: error: cannot re-wrap the data key of {bad}: ")
    assert "malformed (version 0, expected 1)" in logged
    assert last.startswith(f"retentiond: error: 1 data key(s) could not be re-wrapped "
                           f"(first: {bad})")
    assert f"kept {first}: 1 data key(s)" in p.stdout
    _no_traceback(p)
    assert first in _keks(short_setup)
    _all_open(short_setup, tmp_path, {good: stored[good]})
    p = run_cli("audit", "report", "--json", setup=short_setup)  # the DPO sees it too
    assert p.returncode == 1, p.stderr
    warnings = {w["code"]: w["count"] for w in json.loads(p.stdout)["warnings"]}
    assert warnings["keys-not-rotated"] == 1


def test_busy_and_broken_key_folder(short_setup):
    lock = short_setup / "state" / "keys.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        p = run_cli("keys", "rotate", setup=short_setup)
    assert p.returncode == 10 and "keys.lock" in p.stderr, p.stderr
    _no_traceback(p)
    assert len(_keks(short_setup)) == 1

    (short_setup / "keys" / "sampling.key").chmod(0o644)
    p = run_cli("keys", "rotate", setup=short_setup)
    assert p.returncode == 2 and "sampling.key" in p.stderr and "0644" in p.stderr, p.stderr
    _no_traceback(p)
    assert len(_keks(short_setup)) == 1
    p = run_cli("keys", setup=short_setup)
    assert p.returncode == 2 and "SUBCOMMAND" in p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("point", ["keys.after_new_kek", "keys.after_rewrap_page",
                                   "keys.retire_hidden", "keys.after_retire_file"])
def test_kill_during_rotation(short_setup, tmp_path, point):
    stored = _ingest(short_setup, tmp_path, 3)
    p = run_cli("keys", "rotate", "--retire",
                env=cli_env(short_setup, RETENTIOND_CRASH_AT=point))
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stderr)
    _all_open(short_setup, tmp_path, stored)  # before any repair: every key still opens
    p = run_cli("keys", "rotate", "--retire", "--json", setup=short_setup)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["rewrapped"] == 3 and out["kept"] == {}
    assert _keks(short_setup) == {out["kek_id"]}
    assert not list((short_setup / "keys").glob(".kek-*"))  # a hidden leftover is gone
    with sqlite3.connect(short_setup / "state" / "catalog.db") as db:
        assert {r[0] for r in db.execute("SELECT kek_id FROM data_keys")} == {out["kek_id"]}
    _all_open(short_setup, tmp_path, stored)
