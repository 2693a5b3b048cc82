"""What ingest records for the DPO, through the CLI: notes-lint findings (categories,
never the text), the sampling tally per purpose and agent, case pseudonyms, and the
policy-change entries of the audit log."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from retentiond.crypto.keys import SAMPLING_FILE
from tests.conftest import (
    SHORT_POLICY,
    catalog_bytes,
    cli_env,
    make_wav,
    run_cli,
    use_policy,
    write_sidecar,
)

SENSITIVE_NOTE = "Client hystérique, il sort de chimiothérapie, rappeler lundi"
CLEAN_NOTE = "Client rappelé, dossier complet, envoi du contrat par courrier"

SAMPLED_POLICY = SHORT_POLICY.replace(
    "    retention: P6M\n    media: [audio, screen]\n",
    "    retention: P6M\n    media: [audio, screen]\n    max_sample_ratio: 0.5\n",
)


def _audit_entries(setup: Path) -> list[dict[str, object]]:
    lines = (setup / "state" / "audit.log").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _ingest(setup: Path, tmp_path: Path, name: str, seed: int, **sidecar: object) -> str:
    return _ingest_logged(setup, tmp_path, name, seed, **sidecar)[0]


def _ingest_logged(setup: Path, tmp_path: Path, name: str, seed: int,
                   **sidecar: object) -> tuple[str, str]:
    """Ingest one WAV with its sidecar, logging at debug level; (id, stderr)."""
    src = tmp_path / name
    make_wav(src, seed=seed)
    write_sidecar(src, **sidecar)
    p = run_cli("ingest", "--json", str(src),
                env=cli_env(setup, RETENTIOND_LOG_LEVEL="debug"))
    assert p.returncode in (0, 1), p.stderr
    (row,) = json.loads(p.stdout)
    return str(row["id"]), p.stderr


def test_notes_findings_are_stored_by_category_and_never_logged_as_text(short_setup,
                                                                        tmp_path):
    flagged, log = _ingest_logged(short_setup, tmp_path, "a.wav", 1, purpose="training",
                                  notes=SENSITIVE_NOTE, agent="A-1")
    assert flagged in log and "notes-lint finding" in log  # reported by recording id
    for text in (SENSITIVE_NOTE, "chimioth", "hyst", "health", "insulting"):
        assert text not in log
    _ingest(short_setup, tmp_path, "b.wav", 2, purpose="training", notes=CLEAN_NOTE,
            agent="A-1")
    db = sqlite3.connect(short_setup / "state" / "catalog.db")
    rows = db.execute("SELECT object_id, category FROM notes_findings").fetchall()
    assert {oid for oid, _ in rows} == {flagged}
    assert {c for _, c in rows} == {"health", "insulting"}
    # the notes themselves are sealed, never in clear in the catalog file
    assert b"chimioth" not in catalog_bytes(short_setup)


def test_the_sampling_tally_counts_kept_and_surplus_calls_per_agent(short_setup, tmp_path):
    use_policy(short_setup, SAMPLED_POLICY)
    for i in range(12):
        _ingest(short_setup, tmp_path, f"c{i}.wav", 10 + i, purpose="training",
                call_id=f"CALL-{i}", agent="A-1" if i % 2 else "A-2")
    db = sqlite3.connect(short_setup / "state" / "catalog.db")

    def tally() -> dict[str, tuple[int, int]]:
        rows = db.execute("SELECT agent, SUM(ingested), SUM(over_cap) FROM sampling_tally "
                          "GROUP BY agent").fetchall()
        return {agent: (n, over) for agent, n, over in rows}

    assert tally() == {"A-1": (6, 0), "A-2": (6, 0)}  # nothing deleted by the cap yet
    p = run_cli("sweep", "--json", setup=short_setup)
    deleted = [i for i in json.loads(p.stdout)["items"] if i["rule"] == "sampling-cap"]
    assert 0 < len(deleted) < 12
    # what the cap deleted is counted, per agent, and stays after the deletions
    after = tally()
    assert sum(n for n, _ in after.values()) == 12
    assert sum(o for _, o in after.values()) == len(deleted)


def test_policy_changes_are_audited_by_acting_commands(short_setup, tmp_path):
    _ingest(short_setup, tmp_path, "a.wav", 1, purpose="training")
    first = [e for e in _audit_entries(short_setup) if e["action"] == "policy-change"]
    assert len(first) == 1 and first[0]["details"]["from"] is None
    assert first[0]["details"]["to"]["name"] == "test-short"
    run_cli("sweep", setup=short_setup)
    assert len([e for e in _audit_entries(short_setup) if e["action"] == "policy-change"]) == 1
    use_policy(short_setup, SAMPLED_POLICY)
    assert run_cli("ls", setup=short_setup).returncode == 0  # reading records nothing
    assert run_cli("sweep", setup=short_setup).returncode in (0, 1)
    changes = [e for e in _audit_entries(short_setup) if e["action"] == "policy-change"]
    assert len(changes) == 2
    assert changes[1]["details"]["from"] == changes[0]["details"]["to"]
    assert changes[1]["details"]["to"]["sha256"] != changes[0]["details"]["to"]["sha256"]
    assert run_cli("audit", "verify", setup=short_setup).returncode == 0


def test_a_case_id_is_stored_only_as_a_pseudonym(short_setup, tmp_path):
    _ingest(short_setup, tmp_path, "a.wav", 1, purpose="training", case_id="LITIGE-2026-77")
    assert b"LITIGE-2026-77" not in catalog_bytes(short_setup)
    db = sqlite3.connect(short_setup / "state" / "catalog.db")
    (ref,) = db.execute("SELECT case_ref FROM recordings").fetchone()
    assert ref and len(ref) >= 32


def test_an_objection_is_not_retained_and_its_proof_says_why(short_setup, tmp_path):
    rid = _ingest(short_setup, tmp_path, "o.wav", 3, purpose="training", objection=True,
                  subject="+33612345678")
    kept = _ingest(short_setup, tmp_path, "k.wav", 4, purpose="training")
    p = run_cli("get", rid, "--out", str(tmp_path / "o.out"), "--actor", "agent-1",
                "--reason", "quality review", setup=short_setup)
    assert p.returncode == 9 and "objected" in p.stderr, p.stderr
    assert not (tmp_path / "o.out").exists()
    plan = json.loads(run_cli("plan", "--json", setup=short_setup).stdout)["items"]
    assert [(i["id"], i["reason"]) for i in plan] == [(rid, "objection")]
    p = run_cli("sweep", "--json", setup=short_setup)
    assert [(i["id"], i["outcome"]) for i in json.loads(p.stdout)["items"]] == [
        (rid, "deleted")]
    record = json.loads(run_cli("proof", "show", rid, "--json", setup=short_setup).stdout)
    assert record["record"]["reason"] == "objection"
    assert "33612345678" not in json.dumps(record)
    assert run_cli("proof", "verify", setup=short_setup).returncode == 0
    states = {r["id"]: r["state"] for r in
              json.loads(run_cli("ls", "--all", "--json", setup=short_setup).stdout)}
    assert states == {rid: "deleted", kept: "active"}


def test_screen_capture_outside_training_is_quarantined_and_reported(short_setup, tmp_path):
    screen = _ingest(short_setup, tmp_path, "s.mp4", 5, purpose="quality", media="screen")
    allowed = _ingest(short_setup, tmp_path, "t.mp4", 6, purpose="training", media="screen")
    rows = {r["id"]: r for r in json.loads(run_cli("ls", "--json", setup=short_setup).stdout)}
    assert rows[screen]["state"] == "quarantined"
    assert rows[allowed]["state"] == "active" and rows[allowed]["purpose"] == "training"
    explained = run_cli("policy", "explain", screen, setup=short_setup)
    assert "screen" in explained.stdout and "quality" in explained.stdout, explained.stdout


def test_sampling_without_call_id_is_decided_by_the_content(short_setup, tmp_path):
    """A missing call_id does not escape the cap: the keyed score of the plaintext's
    SHA-256 decides, so the same bytes get the same decision on every replica."""
    use_policy(short_setup, SAMPLED_POLICY)
    ids = [_ingest(short_setup, tmp_path, f"n{i}.wav", 100 + i, purpose="training")
           for i in range(10)]
    plan = json.loads(run_cli("plan", "--json", setup=short_setup).stdout)["items"]
    capped = {i["id"] for i in plan if i["reason"] == "sampling-cap"}
    assert 0 < len(capped) < 10 and capped <= set(ids)
    # the same bytes, under other names, in a replica sharing the sampling key, are
    # decided the same
    other = tmp_path / "replica"
    assert run_cli("init", str(other), env=cli_env()).returncode == 0
    sampling_key = other / "keys" / SAMPLING_FILE
    sampling_key.write_bytes((short_setup / "keys" / SAMPLING_FILE).read_bytes())
    use_policy(other, SAMPLED_POLICY)
    replica = [_ingest(other, tmp_path / "r", f"renamed-{i}.wav", 100 + i, purpose="training")
               for i in range(10)]
    plan = json.loads(run_cli("plan", "--json", setup=other).stdout)["items"]
    replica_capped = {i["id"] for i in plan if i["reason"] == "sampling-cap"}
    assert [i in capped for i in ids] == [r in replica_capped for r in replica]


def test_records_carry_their_controller_and_processor(short_setup, tmp_path):
    config = short_setup / "retentiond.yaml"
    config.write_text(config.read_text(encoding="utf-8") + (
        "controllers:\n  - name: Banque Exemple SA\n    processor: {name: CallCo SARL, "
        "country: MA, transfer_safeguard: standard-contractual-clauses}\n"), encoding="utf-8")
    rid = _ingest(short_setup, tmp_path, "a.wav", 1, purpose="training")
    (row,) = json.loads(run_cli("ls", "--json", setup=short_setup).stdout)
    assert (row["id"], row["controller"], row["processor"]) == (
        rid, "Banque Exemple SA", "CallCo SARL")
