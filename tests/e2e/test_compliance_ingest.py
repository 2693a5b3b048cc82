"""What ingest records for the DPO, through the CLI: notes-lint findings (categories,
never the text), the sampling tally per purpose and agent, case pseudonyms, and the
policy-change entries of the audit log."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.conftest import SHORT_POLICY, cli_env, make_wav, run_cli, use_policy, write_sidecar

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
    assert flagged in log and "health" in log  # reported by recording id and category
    for text in (SENSITIVE_NOTE, "chimioth", "hyst"):
        assert text not in log
    _ingest(short_setup, tmp_path, "b.wav", 2, purpose="training", notes=CLEAN_NOTE,
            agent="A-1")
    db = sqlite3.connect(short_setup / "state" / "catalog.db")
    rows = db.execute("SELECT object_id, category FROM notes_findings").fetchall()
    assert {oid for oid, _ in rows} == {flagged}
    assert {c for _, c in rows} == {"health", "insulting"}
    # the notes themselves are sealed, never in clear in the catalog file
    assert b"chimioth" not in (short_setup / "state" / "catalog.db").read_bytes()


def test_the_sampling_tally_counts_kept_and_surplus_calls_per_agent(short_setup, tmp_path):
    use_policy(short_setup, SAMPLED_POLICY)
    for i in range(12):
        _ingest(short_setup, tmp_path, f"c{i}.wav", 10 + i, purpose="training",
                call_id=f"CALL-{i}", agent="A-1" if i % 2 else "A-2")
    db = sqlite3.connect(short_setup / "state" / "catalog.db")
    tally = {agent: (n, over) for _, agent, n, over in
             db.execute("SELECT purpose, agent, ingested, over_cap FROM sampling_tally")}
    assert tally.keys() == {"A-1", "A-2"}
    assert sum(n for n, _ in tally.values()) == 12
    over = sum(o for _, o in tally.values())
    # the surplus is deleted by the next sweep with reason sampling-cap, the tally stays
    p = run_cli("sweep", "--json", setup=short_setup)
    deleted = [i for i in json.loads(p.stdout)["items"] if i["rule"] == "sampling-cap"]
    assert len(deleted) == over and 0 < over < 12
    again = db.execute("SELECT SUM(ingested), SUM(over_cap) FROM sampling_tally").fetchone()
    assert again == (12, over)


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
    assert b"LITIGE-2026-77" not in (short_setup / "state" / "catalog.db").read_bytes()
    db = sqlite3.connect(short_setup / "state" / "catalog.db")
    (ref,) = db.execute("SELECT case_ref FROM recordings").fetchone()
    assert ref and len(ref) >= 32
