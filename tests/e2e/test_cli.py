"""The command line as a user runs it: real subprocesses on a setup made by ``init``."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import cli_env, make_wav, run_cli, write_sidecar


def _no_traceback(p) -> None:
    assert "Traceback" not in p.stderr, p.stderr


def test_init_creates_complete_setup_and_never_overwrites_keys(tmp_path):
    p = run_cli("init", str(tmp_path / "demo"), env=cli_env())
    assert p.returncode == 0, p.stderr
    demo = tmp_path / "demo"
    for sub in ("inbox", "vault", "proofs", "keys", "state", "policies"):
        assert (demo / sub).is_dir()
    assert (demo / "retentiond.yaml").is_file()
    vkey = (demo / "keys" / "proof-log.vkey").read_text().strip()
    assert vkey in p.stdout
    for key in (demo / "keys").iterdir():
        if key.name != "proof-log.vkey":
            assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE((demo / "keys").stat().st_mode) == 0o700
    before = {k.name: k.read_bytes() for k in (demo / "keys").iterdir()}
    p = run_cli("init", str(demo), env=cli_env())
    assert p.returncode == 0 and "nothing changed" in p.stdout
    assert before == {k.name: k.read_bytes() for k in (demo / "keys").iterdir()}
    p = run_cli("--config", str(demo / "retentiond.yaml"), "policy", "check", env=cli_env())
    assert p.returncode == 0 and "cnil-fr-contact-centre" in p.stdout


def test_ingest_ls_get_roundtrip(short_setup, tmp_path):
    src = tmp_path / "call-0001.wav"
    data = make_wav(src, seconds=2)
    write_sidecar(src, purpose="training", call_id="C-1", subject="+33612345678",
                  recorded_at="2026-11-23T09:30:00+01:00")
    p = run_cli("ingest", str(src), setup=short_setup)
    assert p.returncode == 0, p.stderr
    assert not src.exists()
    rows = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)
    assert len(rows) == 1
    row = rows[0]
    for key in ("id", "purpose", "legal_basis", "recorded_at", "delete_after", "hold", "state",
                "call_id", "source"):
        assert key in row
    assert row["recorded_at"] == "2026-11-23T08:30:00+00:00"
    assert row["delete_after"] == "2027-05-23T08:30:00+00:00"
    assert (row["purpose"], row["state"], row["hold"]) == ("training", "active", False)
    by_subject = json.loads(run_cli("ls", "--json", "--subject", "+33 6 12 34 56 78",
                                    setup=short_setup).stdout)
    assert [r["id"] for r in by_subject] == [row["id"]]
    out = tmp_path / "out.wav"
    p = run_cli("get", row["id"], "--out", str(out), "--actor", "alice", "--reason", "T-1",
                setup=short_setup)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == data
    audit = (short_setup / "state" / "audit.log").read_text()
    assert '"actor":"alice"' in audit and row["id"] in audit
    assert run_cli("audit", "verify", setup=short_setup).returncode == 0
    p = run_cli("ls", setup=short_setup)
    assert row["id"] in p.stdout and "training" in p.stdout


def test_sweep_plan_proof_show_and_tamper(short_setup, tmp_path):
    src = tmp_path / "q.wav"
    make_wav(src)
    recorded_at = datetime.now(UTC) - timedelta(seconds=20)  # due in 10 s (PT30S)
    write_sidecar(src, purpose="quality", recorded_at=recorded_at.isoformat())
    assert run_cli("ingest", str(src), setup=short_setup).returncode == 0
    rid = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)[0]["id"]
    plan = json.loads(run_cli("plan", "--at", "PT1M", "--json", setup=short_setup).stdout)
    assert [(i["id"], i["rule"]) for i in plan["items"]] == [(rid, "retention-expired")]
    dry = json.loads(run_cli("sweep", "--dry-run", "--json", setup=short_setup).stdout)
    assert dry["items"] == []
    time.sleep(max(0.0, (recorded_at + timedelta(seconds=31) - datetime.now(UTC)).total_seconds()))
    p = run_cli("sweep", "--json", setup=short_setup)
    assert p.returncode == 0, p.stderr
    items = json.loads(p.stdout)["items"]
    assert [(i["id"], i["outcome"], i["proof_index"]) for i in items] == [(rid, "deleted", 0)]
    p = run_cli("proof", "show", rid, "--json", setup=short_setup)
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert shown["record"]["object_id"] == rid and shown["index"] == 0
    p = run_cli("proof", "verify", setup=short_setup)
    assert p.returncode == 0 and ": 1 entry, root" in p.stdout, p.stdout + p.stderr
    p = run_cli("get", rid, "--out", str(tmp_path / "x"), "--actor", "a", "--reason", "r",
                setup=short_setup)
    assert p.returncode == 3 and "deleted" in p.stderr

    proofs = short_setup / "proofs"
    for f in sorted(x for x in proofs.rglob("*") if x.is_file()):
        original = f.read_bytes()
        for pos in sorted({0, len(original) // 2, len(original) - 2}):
            flipped = bytearray(original)
            flipped[pos] ^= 0x04
            f.write_bytes(bytes(flipped))
            p = run_cli("proof", "verify", "--log", str(proofs), "--vkey",
                        str(short_setup / "keys" / "proof-log.vkey"), setup=short_setup)
            assert p.returncode == 7, (f, pos, p.stdout, p.stderr)
            assert p.stderr.startswith("retentiond: error:")
            _no_traceback(p)
        f.write_bytes(original)
    assert run_cli("proof", "verify", setup=short_setup).returncode == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["get", "nope", "--out", "{tmp}/out.wav", "--actor", "a", "--reason", "r"], 3,
                     "no recording with id 'nope'", id="unknown-id"),
        pytest.param(["ingest", "/nonexistent.wav"], 3, "", id="missing-file"),
        pytest.param(["ingest", "--purpose", "marketing", "X"], 4, "unknown purpose 'marketing'",
                     id="unknown-purpose-flag"),
        pytest.param(["plan", "--at", "tomorrow"], 2, "not an ISO 8601", id="bad-time"),
        pytest.param(["proof", "show", "nope"], 3, "no deletion record", id="no-proof"),
        pytest.param(["policy", "explain", "nope"], 3, "no recording", id="explain-unknown"),
        pytest.param(["frobnicate"], 2, "invalid choice", id="unknown-command"),
    ],
)
def test_errors_have_codes_and_no_traceback(short_setup, tmp_path, args, code, message):
    p = run_cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), setup=short_setup)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert message in p.stderr + p.stdout
    _no_traceback(p)


def test_bad_policy_is_a_config_error_naming_file_line_key(short_setup):
    bad = short_setup / "policies" / "test.yaml"
    bad.write_text(bad.read_text().replace("retention: PT30S", "retention: P6X"))
    for args in (["ls"], ["policy", "check"], ["run", "--once"]):
        p = run_cli(*args, setup=short_setup)
        assert p.returncode == 2, p.stderr
        assert "test.yaml:6: purposes.quality.retention" in p.stderr
        _no_traceback(p)


def test_bad_config_and_key_permissions(short_setup):
    config = short_setup / "retentiond.yaml"
    text = config.read_text()
    config.write_text(text + "vualt: x\n")
    p = run_cli("ls", setup=short_setup)
    assert p.returncode == 2 and "vualt: unknown key" in p.stderr
    config.write_text(text)
    key = short_setup / "keys" / "proof-log.key"
    key.chmod(0o644)
    p = run_cli("sweep", setup=short_setup)
    assert p.returncode == 2 and "proof-log.key" in p.stderr and "chmod 600" in p.stderr
    _no_traceback(p)
    p = run_cli("ls", env=cli_env(), setup=None)
    assert p.returncode == 2 and "configuration file not found" in p.stderr


def test_malformed_sidecar_through_cli_quarantines_with_warning(short_setup, tmp_path):
    src = tmp_path / "m.wav"
    make_wav(src)
    src.with_name("m.wav.json").write_text('{"purpose": "quality",\n  "agent": }')
    p = run_cli("ingest", str(src), setup=short_setup)
    assert p.returncode == 1, p.stderr
    assert "m.wav  (sidecar:2: malformed JSON" in p.stdout
    rows = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)
    assert rows[0]["state"] == "quarantined"
    table = run_cli("ls", setup=short_setup).stdout  # the reason, in the human table too
    assert f"quarantined:\n  {rows[0]['id']}  sidecar:2: malformed JSON" in table


def test_hold_cli_blocks_sweep(short_setup, tmp_path):
    src = tmp_path / "h.wav"
    make_wav(src)
    write_sidecar(src, purpose="quality",
                  recorded_at=(datetime.now(UTC) - timedelta(minutes=5)).isoformat())
    assert run_cli("ingest", str(src), setup=short_setup).returncode == 0
    rid = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)[0]["id"]
    assert run_cli("hold", "add", rid, "--reason", "case 9", setup=short_setup).returncode == 0
    p = run_cli("sweep", setup=short_setup)
    assert p.returncode == 1 and "held-overdue" in p.stdout
    assert run_cli("hold", "remove", rid, "--reason", "closed", setup=short_setup).returncode == 0
    p = run_cli("sweep", setup=short_setup)
    assert p.returncode == 0 and "deleted" in p.stdout
    assert run_cli("audit", "verify", setup=short_setup).returncode == 0


def test_audit_tamper_detected(short_setup, tmp_path):
    src = tmp_path / "a.wav"
    make_wav(src)
    write_sidecar(src, purpose="training")
    run_cli("ingest", str(src), setup=short_setup)
    rid = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)[0]["id"]
    run_cli("get", rid, "--out", str(tmp_path / "o1"), "--actor", "eve", "--reason", "x",
            setup=short_setup)
    log = short_setup / "state" / "audit.log"
    log.write_text(log.read_text().replace("eve", "bob"))
    p = run_cli("audit", "verify", setup=short_setup)
    assert p.returncode == 8 and "audit.log:2" in p.stderr  # line 1: the policy in force
    _no_traceback(p)


def test_walkthrough_paths_are_relative_to_config(short_setup, tmp_path):
    moved = tmp_path / "moved"
    short_setup.rename(moved)
    p = run_cli("policy", "check", setup=moved)
    assert p.returncode == 0, p.stderr
    assert Path(moved / "retentiond.yaml").exists()


def _ingest_one(setup: Path, tmp_path: Path, name: str, seed: int) -> tuple[str, bytes]:
    src = tmp_path / name
    data = make_wav(src, seed=seed)
    write_sidecar(src, purpose="training")
    p = run_cli("ingest", str(src), setup=setup)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()[1], data


def test_corrupt_ciphertext_and_wrong_key_exit_6(short_setup, tmp_path):
    bad_id, _ = _ingest_one(short_setup, tmp_path, "a.wav", 1)
    good_id, good = _ingest_one(short_setup, tmp_path, "b.wav", 2)
    target = next((short_setup / "vault").rglob(f"{bad_id}.rtd"))
    blob = bytearray(target.read_bytes())
    blob[-20] ^= 0x80
    target.write_bytes(bytes(blob))
    p = run_cli("get", bad_id, "--out", str(tmp_path / "x"), "--actor", "a", "--reason", "r",
                setup=short_setup)
    assert p.returncode == 6 and "segment" in p.stderr, p.stderr
    assert not (tmp_path / "x").exists()
    _no_traceback(p)
    p = run_cli("get", good_id, "--out", str(tmp_path / "y"), "--actor", "a", "--reason", "r",
                setup=short_setup)
    assert p.returncode == 0 and (tmp_path / "y").read_bytes() == good

    keys = short_setup / "keys"
    kek = keys / ((keys / "kek.current").read_text().strip() + ".key")
    line = kek.read_text().split()
    line[2] = base64.b64encode(bytes(32)).decode()
    kek.write_text(" ".join(line) + "\n")
    p = run_cli("get", good_id, "--out", str(tmp_path / "z"), "--actor", "a", "--reason", "r",
                setup=short_setup)
    assert p.returncode == 6, p.stderr
    assert line[2] not in p.stderr
    _no_traceback(p)


def test_fresh_setup_proof_log_verifies_empty(setup_dir):
    p = run_cli("proof", "verify", setup=setup_dir)
    assert p.returncode == 0 and "0 entries" in p.stdout, p.stdout + p.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(("vault: vault/", "vault: vualt/"), "vault: ", id="vault-typo"),
        pytest.param(("origin: retentiond.local/", "origin: example.com/"),
                     "differs from the signing key's name", id="origin-edited"),
    ],
)
def test_config_mistakes_refused_before_any_work(setup_dir, edit, message):
    config = setup_dir / "retentiond.yaml"
    config.write_text(config.read_text().replace(*edit))
    p = run_cli("run", "--once", setup=setup_dir)
    assert p.returncode == 2 and message in p.stderr, p.stderr
    assert not (setup_dir / "vualt").exists()


def test_epoch_recording_is_quarantined_not_deleted(short_setup, tmp_path):
    src = tmp_path / "e.wav"
    make_wav(src)
    write_sidecar(src, purpose="quality", recorded_at="1970-01-01T00:00:00Z")
    assert run_cli("ingest", str(src), setup=short_setup).returncode == 1
    rows = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)
    assert rows[0]["state"] == "quarantined" and "before 2000" in rows[0]["quarantine_reason"]


def test_policy_explain_file_matches_what_ingest_would_do(short_setup):
    """explain reads the file the way ingest does: inbox-relative rules, the min-retention
    floor of a quarantined banking call, and a FIFO sidecar refused instead of hanging."""
    banking = short_setup / "inbox" / "banking"
    make_wav(banking / "order.wav")
    (banking / "order.wav.json").write_text('{"objecton": true}')
    p = run_cli("policy", "explain", str(banking / "order.wav"), "--json", setup=short_setup)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["facts"]["purpose"] == "quarantine" and out["rule"] == "not-due"
    assert int(out["due"][:4]) >= datetime.now(UTC).year + 4
    make_wav(short_setup / "inbox" / "f.wav")
    os.mkfifo(short_setup / "inbox" / "f.wav.json")
    p = run_cli("policy", "explain", str(short_setup / "inbox" / "f.wav"), "--json",
                setup=short_setup, timeout=30)
    assert p.returncode == 0 and "not a regular file" in p.stdout, p.stderr


def test_an_auditor_with_only_the_log_and_key_detects_a_rollback(app, clock, short_setup,
                                                                 tmp_path: Path) -> None:
    """``proof verify --log --vkey`` keeps the checkpoint it verified (one file per log
    origin, under $XDG_STATE_HOME), so an older copy of the same log shown later fails;
    ``--no-witness`` verifies an archived copy on its own and says what it did not check."""
    import shutil

    from retentiond.cli.proof_cmd import default_witness
    from retentiond.service.sweep import Sweeper
    from tests.integration.test_pipeline import _ingest

    for i in range(2):
        _ingest(app, clock, f"c{i}.wav", seed=i, purpose="quality")
        clock.advance(timedelta(minutes=1))
        Sweeper(app).sweep(now=clock.now())
        shutil.copytree(short_setup / "proofs", tmp_path / f"copy{i + 1}")
    vkey = str(short_setup / "keys" / "proof-log.vkey")
    env = cli_env(XDG_STATE_HOME=str(tmp_path / "auditor"))

    def verify(copy: str, *extra: str):
        return run_cli("proof", "verify", "--log", str(tmp_path / copy), "--vkey", vkey,
                       *extra, env=env)

    p = verify("copy2")
    assert p.returncode == 0 and "first verification of this log here" in p.stdout, p.stdout
    from retentiond.service.wiring import VERIFIER_KEY_FILE, load_verifier

    default = default_witness(load_verifier(short_setup / "keys" / VERIFIER_KEY_FILE))
    assert default is not None
    name = default.name  # the origin, quoted, and the key's id
    witness = tmp_path / "auditor" / "retentiond" / "witnesses" / name
    assert witness.is_file() and name.endswith(".checkpoint") and "/" not in name
    p = verify("copy1")  # an older copy of the same log: a rollback
    assert p.returncode == 7 and "shrank" in p.stderr, p.stdout + p.stderr
    _no_traceback(p)
    p = verify("copy1", "--no-witness")
    assert p.returncode == 0 and "not compared with an earlier checkpoint" in p.stdout
    p = verify("copy2", "--json")
    assert p.returncode == 0
    out = json.loads(p.stdout)
    assert out["consistent_with_previous"] is True and out["witness"] == str(witness)
    # a witness that cannot be kept: the verification stands, with a warning
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    p = run_cli("proof", "verify", "--log", str(tmp_path / "copy2"), "--vkey", vkey,
                env=env | {"XDG_STATE_HOME": str(blocked)})
    assert p.returncode == 0 and "first verification of this log here" in p.stdout, p.stderr
    assert "warning:" in p.stderr and "cannot detect a rollback" in p.stderr
    _no_traceback(p)
    p = run_cli("proof", "verify", "--log", str(tmp_path / "copy2"), "--vkey", vkey,
                "--witness", str(blocked / "w"), env=env)  # named by the user: an error
    assert p.returncode == 5 and "cannot record the verified checkpoint" in p.stderr


@pytest.mark.parametrize(("use_log", "code"), [(False, 5), (True, 0)])
def test_a_witness_that_cannot_be_kept(setup_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str], use_log: bool,
                                       code: int) -> None:
    """With the config (no --log) the witness is the setup's own state/ file: failing to
    write it is a storage error (exit 5). An auditor's per-user default only warns."""
    from retentiond.cli import main, proof_cmd
    from retentiond.errors import StorageError

    def full_disk(path: Path, data: bytes) -> None:
        raise StorageError(f"{path}: cannot record the verified checkpoint: No space left")

    monkeypatch.setattr(proof_cmd, "_write_witness", full_disk)
    monkeypatch.setenv("RETENTIOND_CONFIG", str(setup_dir / "retentiond.yaml"))
    extra = ["--log", str(setup_dir / "proofs")] if use_log else []
    # main() sets up the command's logging (no propagation): undone after, so the later
    # tests' caplog still sees retentiond's records
    logger = logging.getLogger("retentiond")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        assert main(["proof", "verify", *extra]) == code
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "cannot record the verified checkpoint" in err
    assert ("warning:" in err) is use_log
