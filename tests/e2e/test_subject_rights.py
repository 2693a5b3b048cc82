"""Subject rights and holds by subject and case, as a DPO runs them: real ``retentiond``
subprocesses on a setup made by ``init`` (plus a few in-process passes with a manual
clock where time has to move years ahead)."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retentiond.core.duration import parse_duration
from retentiond.core.model import State
from retentiond.errors import StorageError
from retentiond.service.ingest import Ingestor
from retentiond.service.subject import erase_subject
from retentiond.service.sweep import Sweeper
from tests.conftest import cli_env, make_wav, run_cli, write_sidecar

S = "+33 6 12 34 56 78"
S_OTHER_SPELLING = "+33612345678"  # the same caller, typed without spaces
OTHER = "+33 7 00 00 00 01"
SECRETS = ("12 34 56 78", "612345678", "700000001", "00 00 00 01")


def _no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr, p.stderr


def _ok(p: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    _no_traceback(p)
    return p


def _ingest(setup: Path, tmp_path: Path, name: str, *, seed: int, purpose: str,
            recorded_at: datetime | None = None, **sidecar: Any) -> tuple[str, bytes]:
    src = tmp_path / "drop" / name
    data = make_wav(src, seed=seed)
    when = recorded_at or datetime.now(UTC) - timedelta(days=1)
    write_sidecar(src, purpose=purpose, recorded_at=when.isoformat(), **sidecar)
    p = _ok(run_cli("ingest", str(src), setup=setup))
    outcome, object_id = p.stdout.split()[:2]
    assert outcome == "stored", p.stdout
    return object_id, data


def _audit(setup: Path) -> list[dict[str, Any]]:
    text = (setup / "state" / "audit.log").read_text(encoding="utf-8")
    for secret in (*SECRETS, "LIT-2026-9"):
        assert secret not in text, secret  # never a clear identifier in the audit log
    return [json.loads(line) for line in text.splitlines()]


def _ls(setup: Path, *extra: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in json.loads(_ok(run_cli("ls", "--json", *extra,
                                                       setup=setup)).stdout)}


def _sweep(setup: Path, code: int) -> dict[str, tuple[str, int | None]]:
    p = _ok(run_cli("sweep", "--json", setup=setup), code)
    return {i["id"]: (i["outcome"], i["proof_index"]) for i in json.loads(p.stdout)["items"]}


def _proof(setup: Path, object_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(_ok(run_cli("proof", "show", object_id, "--json",
                                                   setup=setup)).stdout)
    return shown


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- right of access ----------------------------------------------------------------------


def test_export_decrypts_every_live_recording_with_manifest_and_audit(short_setup, tmp_path):
    a, data_a = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training",
                        subject=S, call_id="C-1", agent="agent-7",
                        notes="Le client rappellera lundi pour son contrat.")
    b, data_b = _ingest(short_setup, tmp_path, "b.wav", seed=2, purpose="banking-evidence",
                        subject=S_OTHER_SPELLING, call_id="C-2")
    c, _ = _ingest(short_setup, tmp_path, "c.wav", seed=3, purpose="training", subject=OTHER)
    out = tmp_path / "dsar"
    p = _ok(run_cli("subject", "export", S, "--out", str(out), "--reason", "DSAR-2026-7",
                    "--actor", "dpo", "--json", setup=short_setup))
    result = json.loads(p.stdout)
    assert sorted(result["recordings"]) == sorted([a, b])
    assert result["not_exportable"] == [] and result["unreadable"] == []

    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert {f.name for f in out.iterdir()} == {
        f"{a}.wav", f"{a}.json", f"{b}.wav", f"{b}.json", "manifest.json"}
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert (out / f"{a}.wav").read_bytes() == data_a  # byte-identical
    assert (out / f"{b}.wav").read_bytes() == data_b

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert _sha256(out / "manifest.json") == result["manifest_sha256"]
    assert manifest["format"] == "retentiond-subject-export/1"
    assert manifest["policy"]["name"] == "test-short" and len(manifest["policy"]["sha256"]) == 64
    assert {f["name"] for f in manifest["files"]} == {f.name for f in out.iterdir()} - {
        "manifest.json"}
    for f in manifest["files"]:
        assert f["sha256"] == _sha256(out / f["name"]), f
        assert f["size"] == (out / f["name"]).stat().st_size, f
    assert manifest["recordings"] == sorted([a, b]) and manifest["not_exportable"] == []

    meta_a = json.loads((out / f"{a}.json").read_text(encoding="utf-8"))
    assert meta_a["notes"] == "Le client rappellera lundi pour son contrat."
    assert (meta_a["purpose"], meta_a["legal_basis"], meta_a["call_id"], meta_a["agent"],
            meta_a["media"]) == ("training", "legitimate-interests", "C-1", "agent-7", "audio")
    assert meta_a["sha256"] == hashlib.sha256(data_a).hexdigest()
    meta_b = json.loads((out / f"{b}.json").read_text(encoding="utf-8"))
    assert meta_b["notes"] is None and meta_b["legal_basis"] == "legal-obligation"
    assert meta_b["delete_after"] > meta_a["delete_after"]  # 5 years against 6 months
    for f in out.glob("*.json"):
        text = f.read_text(encoding="utf-8")
        assert "source" not in json.loads(text) and "hmac-sha256" not in text
        assert not any(s in text for s in SECRETS), f

    exports = [e for e in _audit(short_setup) if e["action"] == "export"]
    assert sorted(e["object_id"] for e in exports) == sorted([a, b])  # one per recording
    for e in exports:
        assert (e["actor"], e["reason"]) == ("dpo", "DSAR-2026-7")
        assert e["details"]["subject"].startswith("hmac-sha256:")
    assert exports[0]["details"]["subject"] == exports[1]["details"]["subject"]
    assert c not in json.dumps(exports)
    _ok(run_cli("audit", "verify", setup=short_setup))

    # an existing non-empty folder is refused (before any decrypt); an empty one is used
    entries = len(_audit(short_setup))
    p = _ok(run_cli("subject", "export", S, "--out", str(out), "--reason", "again",
                    setup=short_setup), 2)
    assert "not empty" in p.stderr and len(_audit(short_setup)) == entries
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    p = _ok(run_cli("subject", "export", S, "--out", str(empty), setup=short_setup))
    assert f"exported 2 recording(s) to {empty}" in p.stdout
    assert stat.S_IMODE(empty.stat().st_mode) == 0o700
    # SPEC's form, without --reason: the request itself is the audited reason
    assert [e["reason"] for e in _audit(short_setup)[entries:]] == [
        "right of access request (GDPR Art. 15)"] * 2


# -- erasure and objection ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        pytest.param([], "erasure-request", id="erasure-art-17"),
        pytest.param(["--objection"], "objection", id="objection-art-21"),
    ],
)
def test_erase_deletes_now_with_proofs_carrying_the_commitment(short_setup, tmp_path, flags,
                                                               reason):
    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training", subject=S,
                   notes="rappeler")
    b, _ = _ingest(short_setup, tmp_path, "b.wav", seed=2, purpose="quality",
                   subject=S_OTHER_SPELLING)
    c, data_c = _ingest(short_setup, tmp_path, "c.wav", seed=3, purpose="training",
                        subject=OTHER)
    p = _ok(run_cli("subject", "erase", S, "--reason", "DSAR-8", "--actor", "dpo", "--json",
                    *flags, setup=short_setup))
    receipt = json.loads(p.stdout)
    salt = bytes.fromhex(receipt["salt"])
    assert len(salt) == 32
    assert receipt["commitment"] == hashlib.sha256(salt + S.encode("utf-8")).hexdigest()
    assert (receipt["reason"], receipt["kept"], receipt["complete"]) == (reason, [], True)
    assert sorted(d["id"] for d in receipt["deleted"]) == sorted([a, b])

    for d in receipt["deleted"]:
        shown = _proof(short_setup, d["id"])
        assert shown["index"] == d["proof_index"]
        record = shown["record"]
        assert record["subject_commitment"] == receipt["commitment"]
        assert (record["reason"], d["reason"]) == (reason, reason)
        assert "hmac-sha256" not in json.dumps(record)
    p = _ok(run_cli("proof", "verify", setup=short_setup))
    assert "2 entries" in p.stdout

    # the deleted recordings cannot be read; the other subject's is untouched
    p = _ok(run_cli("get", a, "--out", str(tmp_path / "x.wav"), "--actor", "dpo",
                    "--reason", "check", setup=short_setup), 3)
    assert f"recording {a} is deleted" in p.stderr
    assert set(_ls(short_setup)) == {c}
    _ok(run_cli("get", c, "--out", str(tmp_path / "c.wav"), "--actor", "dpo", "--reason", "r",
                setup=short_setup))
    assert (tmp_path / "c.wav").read_bytes() == data_c

    # nothing left to export or erase for this subject
    out = tmp_path / "after"
    p = _ok(run_cli("subject", "export", S, "--out", str(out), "--reason", "DSAR-9",
                    setup=short_setup))
    assert "nothing exportable" in p.stdout
    assert json.loads((out / "manifest.json").read_text())["recordings"] == []
    assert [f.name for f in out.iterdir()] == ["manifest.json"]
    p = _ok(run_cli("subject", "erase", S, "--reason", "DSAR-8 again", setup=short_setup))
    assert "nothing to erase" in p.stdout

    erases = [e for e in _audit(short_setup) if e["action"] == "erase"]
    assert sorted(e["object_id"] for e in erases[:2]) == sorted([a, b])
    for e in erases[:2]:
        assert (e["actor"], e["reason"]) == ("dpo", "DSAR-8")
        assert e["details"]["request"] == receipt["request_id"]
        assert e["details"]["objection"] is (reason == "objection")
    assert erases[2]["object_id"] is None and erases[2]["details"]["recordings"] == 0
    _ok(run_cli("audit", "verify", setup=short_setup))


def test_an_objection_stands_for_later_recordings_until_withdrawn(short_setup, tmp_path):
    """Art. 21: once the person objects, no further processing. A later recording of the
    same caller (any spelling) is deleted by the next pass, its proof carrying the
    objection's commitment; an erasure request (Art. 17) does not stand; a withdrawn
    objection no longer applies."""
    p = _ok(run_cli("subject", "erase", S, "--objection", "--reason", "OPP-1", "--json",
                    setup=short_setup))
    receipt = json.loads(p.stdout)
    assert (receipt["standing_objection"], receipt["deleted"], receipt["kept"]) == (
        True, [], [])
    salt = bytes.fromhex(receipt["salt"])
    assert receipt["commitment"] == hashlib.sha256(salt + S.encode("utf-8")).hexdigest()
    p = _ok(run_cli("subject", "erase", OTHER, "--reason", "DSAR-2", setup=short_setup))
    assert "nothing to erase" in p.stdout

    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training",
                   subject=S_OTHER_SPELLING)
    o, _ = _ingest(short_setup, tmp_path, "o.wav", seed=2, purpose="training", subject=OTHER)
    items = json.loads(_ok(run_cli("sweep", "--json", setup=short_setup)).stdout)["items"]
    assert [(i["id"], i["outcome"], i["rule"]) for i in items] == [(a, "deleted", "objection")]
    record = _proof(short_setup, a)["record"]
    assert (record["reason"], record["subject_commitment"]) == ("objection",
                                                                receipt["commitment"])
    assert set(_ls(short_setup)) == {o}  # the erasure request did not stand

    def standing() -> int:  # the DPO's report counts them
        p = run_cli("audit", "report", "--json", setup=short_setup)
        assert p.returncode in (0, 1), p.stderr
        return int(json.loads(p.stdout)["summary"]["standing_objections"])

    assert standing() == 1
    p = _ok(run_cli("subject", "withdraw-objection", S, "--reason", "consent 2026-12",
                    "--actor", "dpo", setup=short_setup))
    assert standing() == 0
    assert f"standing objection {receipt['request_id']} withdrawn" in p.stdout
    b, _ = _ingest(short_setup, tmp_path, "b.wav", seed=3, purpose="training", subject=S)
    assert json.loads(_ok(run_cli("sweep", "--json", setup=short_setup)).stdout)["items"] == []
    assert set(_ls(short_setup)) == {o, b}
    p = _ok(run_cli("subject", "withdraw-objection", S, "--reason", "again",
                    setup=short_setup), 3)
    assert "no standing objection" in p.stderr

    audit = _audit(short_setup)
    standing = [e for e in audit if e["action"] == "objection-standing"]
    assert [e["details"]["request"] for e in standing] == [receipt["request_id"]]
    withdrawn = [e for e in audit if e["action"] == "objection-withdrawn"]
    assert [(e["actor"], e["reason"]) for e in withdrawn] == [("dpo", "consent 2026-12")]
    _ok(run_cli("audit", "verify", setup=short_setup))


def test_text_receipt_names_salt_commitment_and_proofs(short_setup, tmp_path):
    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training", subject=S)
    p = _ok(run_cli("subject", "erase", S, "--reason", "DSAR-1", setup=short_setup))
    lines = p.stdout.splitlines()
    assert lines[0] == "erasure receipt"
    salt = next(x.split()[1] for x in lines if x.strip().startswith("salt:"))
    commitment = next(x.split()[1] for x in lines if x.strip().startswith("commitment:"))
    assert commitment == hashlib.sha256(bytes.fromhex(salt) + S.encode()).hexdigest()
    assert f"  {a}  training  erasure-request  proof #0" in lines
    assert "SHA-256(salt || UTF-8 bytes of the identifier as given)" in p.stdout
    assert not any(s in p.stdout for s in SECRETS)


def test_erase_keeps_banking_evidence_under_min_retention_until_its_floor(short_setup,
                                                                         tmp_path):
    recorded = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    t, _ = _ingest(short_setup, tmp_path, "t.wav", seed=1, purpose="training", subject=S,
                   recorded_at=recorded)
    k, _ = _ingest(short_setup, tmp_path, "k.wav", seed=2, purpose="banking-evidence",
                   subject=S, recorded_at=recorded)
    p = _ok(run_cli("subject", "erase", S, "--reason", "DSAR-3", "--json", setup=short_setup),
            1)
    receipt = json.loads(p.stdout)
    floor = parse_duration("P5Y").add_to(recorded)  # 29 February: 28 February + 5 years
    assert [d["id"] for d in receipt["deleted"]] == [t]
    [kept] = receipt["kept"]
    assert (kept["id"], kept["stays_because"], kept["held"]) == (k, "minimum-retention", False)
    assert datetime.fromisoformat(kept["until"]) == floor
    assert "min_retention P5Y" in kept["why"] and not receipt["complete"]

    p = _ok(run_cli("subject", "erase", S, "--reason", "DSAR-3", setup=short_setup), 1)
    assert f"{k}  banking-evidence  minimum-retention  until {floor.isoformat()}" in p.stdout

    assert _ls(short_setup)[k]["state"] == "active"
    before = json.loads(_ok(run_cli("plan", "--at", (floor - timedelta(days=1)).isoformat(),
                                    "--json", setup=short_setup)).stdout)
    assert k not in [i["id"] for i in before["items"]]
    after = json.loads(_ok(run_cli("plan", "--at", (floor + timedelta(days=1)).isoformat(),
                                   "--json", setup=short_setup)).stdout)
    [item] = [i for i in after["items"] if i["id"] == k]
    assert (item["action"], item["rule"], item["reason"]) == (
        "delete", "erasure-request", "erasure-request")
    assert datetime.fromisoformat(item["due"]) == floor


def test_hold_on_objected_recording_keeps_it_held_overdue(short_setup, tmp_path):
    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training", subject=S)
    _ok(run_cli("hold", "add", a, "--reason", "litigation 5", setup=short_setup))
    p = _ok(run_cli("subject", "erase", S, "--objection", "--reason", "opposition 12",
                    "--json", setup=short_setup), 1)
    receipt = json.loads(p.stdout)
    assert receipt["deleted"] == []
    [kept] = receipt["kept"]
    assert (kept["id"], kept["stays_because"], kept["until"], kept["held"]) == (
        a, "legal-hold", None, True)
    assert _sweep(short_setup, 1) == {a: ("held-overdue", None)}
    # objected to: never decrypted again, not even for the person's own access request
    p = _ok(run_cli("subject", "export", S, "--out", str(tmp_path / "dsar"), "--reason", "r",
                    "--json", setup=short_setup))
    export = json.loads(p.stdout)
    assert export["recordings"] == [] and export["files"] == []
    assert [(n["id"], "objected" in n["why"]) for n in export["not_exportable"]] == [(a, True)]
    plan = json.loads(_ok(run_cli("plan", "--json", setup=short_setup)).stdout)
    assert [(i["id"], i["rule"], i["reason"]) for i in plan["items"]] == [
        (a, "legal-hold-overdue", "objection")]

    _ok(run_cli("hold", "remove", a, "--reason", "closed", setup=short_setup))
    assert _sweep(short_setup, 0) == {a: ("deleted", 0)}
    record = _proof(short_setup, a)["record"]
    assert (record["reason"], record["subject_commitment"]) == ("objection",
                                                                receipt["commitment"])
    _ok(run_cli("proof", "verify", setup=short_setup))


def test_identifier_read_from_stdin_stays_off_the_command_line(short_setup, tmp_path):
    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training", subject=S)
    p = subprocess.run([sys.executable, "-m", "retentiond", "subject", "erase", "-",
                        "--reason", "DSAR-4", "--json"], input=S + "\n", capture_output=True,
                       text=True, env=cli_env(short_setup), timeout=120, check=False)
    receipt = json.loads(_ok(p).stdout)
    assert [d["id"] for d in receipt["deleted"]] == [a]
    assert receipt["commitment"] == hashlib.sha256(
        bytes.fromhex(receipt["salt"]) + S.encode()).hexdigest()


# -- holds by subject and case --------------------------------------------------------------


def test_subject_hold_covers_recordings_ingested_after_it(short_setup, tmp_path):
    p = _ok(run_cli("hold", "add", "--subject", S, "--reason", "police request 42",
                    "--actor", "dpo", setup=short_setup))
    assert "0 recordings now; future recordings of this subject are held too" in p.stdout
    old = datetime.now(UTC) - timedelta(days=1)  # quality: 30 s, so due at once
    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="quality",
                   subject=S_OTHER_SPELLING, recorded_at=old)
    b, _ = _ingest(short_setup, tmp_path, "b.wav", seed=2, purpose="quality", subject=OTHER,
                   recorded_at=old)
    rows = _ls(short_setup)
    assert (rows[a]["hold"], rows[b]["hold"]) == (True, False)
    assert _sweep(short_setup, 1) == {a: ("held-overdue", None), b: ("deleted", 0)}

    p = _ok(run_cli("hold", "add", "--subject", S, "--reason", "police request 42",
                    setup=short_setup))
    assert "already held for this reason; nothing changed (1 recording now" in p.stdout
    [entry] = [e for e in _audit(short_setup) if e["action"] == "hold-add"]
    assert (entry["object_id"], entry["actor"], entry["details"]["scope"]) == (
        None, "dpo", "subject")
    assert entry["details"]["target"].startswith("hmac-sha256:")
    assert entry["details"]["recordings_now"] == 0

    p = _ok(run_cli("hold", "remove", "--subject", S_OTHER_SPELLING, "--reason", "closed",
                    setup=short_setup))
    assert "released 1 hold(s) on subject hmac-sha256:" in p.stdout
    assert _ls(short_setup)[a]["hold"] is False
    assert _sweep(short_setup, 0) == {a: ("deleted", 1)}
    [removed] = [e for e in _audit(short_setup) if e["action"] == "hold-remove"]
    assert removed["details"]["target"] == entry["details"]["target"]
    assert removed["details"]["had_hold"] is True


def test_case_hold_keeps_every_recording_of_the_case(short_setup, tmp_path):
    old = datetime.now(UTC) - timedelta(days=1)
    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="quality", subject=S,
                   case_id="LIT-2026-9", recorded_at=old)
    b, _ = _ingest(short_setup, tmp_path, "b.wav", seed=2, purpose="quality", subject=OTHER,
                   case_id="LIT-2026-9", recorded_at=old)
    c, _ = _ingest(short_setup, tmp_path, "c.wav", seed=3, purpose="quality", subject=OTHER,
                   recorded_at=old)
    p = _ok(run_cli("hold", "add", "--case", "LIT-2026-9", "--reason", "lawsuit 9",
                    setup=short_setup))
    assert "held case hmac-sha256:" in p.stdout and "2 recordings now" in p.stdout
    assert a in p.stdout and b in p.stdout and c not in p.stdout
    assert _sweep(short_setup, 1) == {a: ("held-overdue", None), b: ("held-overdue", None),
                                      c: ("deleted", 0)}
    # recordings of the case that arrive later are held too
    d, _ = _ingest(short_setup, tmp_path, "d.wav", seed=4, purpose="quality", subject=OTHER,
                   case_id="LIT-2026-9", recorded_at=old)
    assert _ls(short_setup)[d]["hold"] is True
    [entry] = [e for e in _audit(short_setup) if e["action"] == "hold-add"]
    assert (entry["details"]["scope"], entry["details"]["recordings_now"]) == ("case", 2)

    # the subject erasure leaves the case's recordings of this subject in place
    receipt = json.loads(_ok(run_cli("subject", "erase", S, "--reason", "DSAR", "--json",
                                     setup=short_setup), 1).stdout)
    assert [(k["id"], k["stays_because"]) for k in receipt["kept"]] == [(a, "legal-hold")]

    p = _ok(run_cli("hold", "remove", "--case", "LIT-2026-9", "--reason", "judgment",
                    setup=short_setup))
    assert "released 1 hold(s) on case" in p.stdout
    swept = _sweep(short_setup, 0)
    assert {i: o for i, (o, _) in swept.items()} == {a: "deleted", b: "deleted", d: "deleted"}
    assert _proof(short_setup, a)["record"]["subject_commitment"] == receipt["commitment"]
    assert "subject_commitment" not in _proof(short_setup, b)["record"]


def test_same_hold_twice_is_a_no_op_another_reason_is_added(short_setup, tmp_path):
    a, _ = _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training", subject=S)
    assert _ok(run_cli("hold", "add", a, "--reason", "case 1", setup=short_setup)).stdout == \
        f"held {a}\n"
    p = _ok(run_cli("hold", "add", a, "--reason", "case 1", setup=short_setup))
    assert p.stdout == f"{a}: already held for this reason; nothing changed\n"
    _ok(run_cli("hold", "add", a, "--reason", "case 2", setup=short_setup))
    assert len([e for e in _audit(short_setup) if e["action"] == "hold-add"]) == 2
    p = _ok(run_cli("hold", "remove", a, "--reason", "both closed", setup=short_setup))
    assert p.stdout == f"released 2 hold(s) on {a}\n"
    assert _ls(short_setup)[a]["hold"] is False


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["subject", "erase", S, "--reason", ""], 2, "must not be empty",
                     id="erase-empty-reason"),
        pytest.param(["subject", "erase", S, "--reason", " ", "--actor", "dpo"], 2,
                     "must not be empty", id="erase-blank-reason"),
        pytest.param(["subject", "erase", "", "--reason", "r"], 2, "empty identifier",
                     id="erase-empty-subject"),
        pytest.param(["subject", "export", "  ", "--out", "{tmp}/o", "--reason", "r"], 2,
                     "empty identifier", id="export-blank-subject"),
        pytest.param(["subject", "erase", S], 2, "--reason", id="erase-no-reason"),
        pytest.param(["subject", "export", S, "--reason", "r"], 2, "--out",
                     id="export-no-out"),
        pytest.param(["subject", "export", S, "--out", "{tmp}/o", "--reason", ""], 2,
                     "must not be empty", id="export-empty-reason"),
        pytest.param(["subject", "export", S, "--out", "{tmp}/file", "--reason", "r"], 2,
                     "not a folder", id="export-out-is-a-file"),
        pytest.param(["subject", "forget", S], 2, "invalid choice", id="unknown-subcommand"),
        pytest.param(["hold", "add", "--reason", "r"], 2, "exactly one kind",
                     id="hold-no-selector"),
        pytest.param(["hold", "add", "x", "--subject", S, "--reason", "r"], 2,
                     "exactly one kind", id="hold-ids-and-subject"),
        pytest.param(["hold", "add", "--subject", S, "--case", "C", "--reason", "r"], 2,
                     "not allowed with", id="hold-subject-and-case"),
        pytest.param(["hold", "add", "--case", " ", "--reason", "r"], 2, "empty",
                     id="hold-blank-case"),
        pytest.param(["hold", "add", "--subject", S, "--reason", ""], 2, "must not be empty",
                     id="hold-empty-reason"),
        pytest.param(["hold", "add", "nope", "--reason", "r"], 3, "no recording with id 'nope'",
                     id="hold-unknown-id"),
        pytest.param(["hold", "remove", "--subject", S, "--reason", "r"], 1, "no active hold",
                     id="release-subject-without-hold"),
        pytest.param(["subject", "erase", S, "--reason", "r"], 0, "nothing to erase",
                     id="erase-unknown-subject-is-not-an-error"),
        pytest.param(["subject", "export", S, "--out", "{tmp}/o", "--reason", "r"], 0,
                     "nothing exportable", id="export-unknown-subject"),
    ],
)
def test_bad_input_has_an_exit_code_and_no_traceback(short_setup, tmp_path, args, code,
                                                     message):
    (tmp_path / "file").write_text("x")
    p = run_cli(*(a.replace("{tmp}", str(tmp_path)) for a in args), setup=short_setup)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert message in p.stdout + p.stderr
    if code >= 2:
        assert p.stderr.splitlines()[-1].startswith("retentiond: error:"), p.stderr
    _no_traceback(p)
    assert not any(s in p.stdout + p.stderr for s in SECRETS)


# -- in process, with a manual clock ---------------------------------------------------------


def _ingest_in(app, clock, name: str, **sidecar: Any) -> str:
    inbox = Path(app.settings.inbox[0])
    make_wav(inbox / name, seed=len(name))
    write_sidecar(inbox / name, recorded_at=clock.now().isoformat(), **sidecar)
    o = Ingestor(app).ingest(inbox, name, now=clock.now())
    assert o.outcome == "stored", o.message
    assert o.object_id is not None
    return o.object_id


def test_kept_recording_goes_at_its_floor_with_the_same_commitment(app, clock):
    k = _ingest_in(app, clock, "k.wav", purpose="banking-evidence", subject=S)
    receipt = erase_subject(app, S, reason="DSAR", actor="dpo", now=clock.now())
    assert receipt.deleted == () and [x.id for x in receipt.kept] == [k]
    assert app.catalog.erasure_salt(receipt.request_id) == bytes.fromhex(receipt.salt_hex)
    floor = receipt.kept[0].until
    assert floor is not None
    clock.advance(floor - clock.now() - timedelta(seconds=1))
    assert Sweeper(app).sweep(now=clock.now()).items == ()
    clock.advance(timedelta(seconds=1))
    report = Sweeper(app).sweep(now=clock.now())
    assert [(i.id, i.outcome, i.rule) for i in report.items] == [
        (k, "deleted", "erasure-request")]
    record = json.loads(app.proof_log.entry(report.items[0].proof_index))
    assert (record["subject_commitment"], record["reason"]) == (receipt.commitment,
                                                                "erasure-request")
    # the salt went with the subject's last recording: nobody can link the proof any more
    assert app.catalog.erasure_salt(receipt.request_id) is None


def test_sweep_only_limits_the_pass_to_those_ids(app, clock):
    a = _ingest_in(app, clock, "a.wav", purpose="quality")
    b = _ingest_in(app, clock, "bb.wav", purpose="quality")
    clock.advance(timedelta(minutes=1))
    report = Sweeper(app).sweep(now=clock.now(), only=[a])
    assert [(i.id, i.outcome) for i in report.items] == [(a, "deleted")]
    assert app.catalog.get(b).state is State.ACTIVE
    assert app.metrics.last_sweep_success._value.get() == 0  # not a full pass
    report = Sweeper(app).sweep(now=clock.now())
    assert [(i.id, i.outcome) for i in report.items] == [(b, "deleted")]


def test_receipt_survives_a_proof_log_that_cannot_be_written(app, clock, monkeypatch):
    a = _ingest_in(app, clock, "a.wav", purpose="training", subject=S)

    def unwritable(entries):
        raise StorageError("proofs: disk full")

    monkeypatch.setattr(app.proof_log, "append", unwritable)
    receipt = erase_subject(app, S, reason="DSAR", actor="dpo", now=clock.now())
    assert receipt.proof_error is not None and "disk full" in receipt.proof_error
    assert [(d.id, d.proof_index) for d in receipt.deleted] == [(a, None)]
    assert receipt.salt_hex is not None and not receipt.complete
    monkeypatch.undo()
    report = Sweeper(app).sweep(now=clock.now())  # the next pass appends the proof
    assert app.catalog.get(a).state is State.DELETED and report.items == ()
    record = json.loads(app.proof_log.entry(app.catalog.get(a).proof_index))
    assert record["subject_commitment"] == hashlib.sha256(
        bytes.fromhex(receipt.salt_hex) + S.encode()).hexdigest()


def test_receipt_survives_a_reader_that_delays_the_proofs(app, clock, monkeypatch):
    """A reader in another process keeps an old snapshot of the catalog, so the -wal file
    cannot be emptied of the destroyed key: the proof waits, the receipt does not."""
    import sqlite3

    import retentiond.adapters.sqlite_catalog as catalog_module

    monkeypatch.setattr(catalog_module, "SCRUB_WAIT_MS", 50)
    monkeypatch.setattr(catalog_module, "SCRUB_QUICK_MS", 10)
    a = _ingest_in(app, clock, "a.wav", purpose="training", subject=S)
    reader = sqlite3.connect(app.catalog.path)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM data_keys").fetchone()
    try:
        receipt = erase_subject(app, S, reason="DSAR", actor="dpo", now=clock.now())
    finally:
        reader.rollback()
        reader.close()
    assert receipt.proof_error is not None and "old snapshot" in receipt.proof_error
    assert [(d.id, d.proof_index) for d in receipt.deleted] == [(a, None)]
    Sweeper(app).sweep(now=clock.now())  # the next pass appends the proof
    assert app.catalog.get(a).state is State.DELETED


@pytest.mark.parametrize("args, code", [
    (["subject", "erase", S, "--reason", "DSAR"], 0),
    (["ls", "--json"], 0),
    (["hold", "remove", "no-such-id", "--reason", "r"], 3),  # an error ends it
])
def test_every_command_closes_its_catalog_before_it_exits(short_setup, tmp_path,
                                                          monkeypatch, args, code):
    """Closing is the erasing write's last chance to scrub the catalog's -wal file when a
    reader elsewhere made its own scrub give up (sqlite_catalog ``close``)."""
    import retentiond.cli as cli
    from retentiond.cli import common, main

    # in this process: main() would set the log level for every later test (caplog)
    monkeypatch.setattr(cli, "setup_logging", lambda **_: None)
    _ingest(short_setup, tmp_path, "a.wav", seed=1, purpose="training", subject=S)
    opened: list[Any] = []
    real = common.build_app

    def capture(*a: Any, **kw: Any) -> Any:
        opened.append(real(*a, **kw))
        return opened[-1]

    monkeypatch.setattr(common, "build_app", capture)
    monkeypatch.setenv("RETENTIOND_CONFIG", str(short_setup / "retentiond.yaml"))
    result = main(args)
    assert result == code  # closing kept the command's own exit code
    assert opened and all(app.catalog._closed for app in opened)


def test_a_recording_stored_while_an_objection_is_made_is_not_missed(app, clock,
                                                                      monkeypatch):
    """The standing objection is recorded before the subject's recordings are looked up:
    a recording stored just after the lookup is flagged when stored, and the next pass
    deletes it with the objection's commitment."""
    real_query = app.catalog.query
    stored: list[str] = []

    def query_then_an_ingest(**kwargs: Any) -> Any:
        found = real_query(**kwargs)
        if not stored:  # a recording of S completes its ingest just after the lookup
            stored.append(_ingest_in(app, clock, "mid.wav", purpose="training",
                                     subject=S_OTHER_SPELLING))
        return found

    monkeypatch.setattr(app.catalog, "query", query_then_an_ingest)
    receipt = erase_subject(app, S, reason="OPP-3", actor="dpo", now=clock.now(),
                            objection=True)
    assert receipt.deleted == () and receipt.kept == () and stored
    report = Sweeper(app).sweep(now=clock.now())
    assert [(i.id, i.outcome, i.rule) for i in report.items] == [
        (stored[0], "deleted", "objection")]
    record = json.loads(app.proof_log.entry(0))
    assert record["subject_commitment"] == receipt.commitment


def test_a_second_request_keeps_the_first_receipts_commitment(app, clock, capsys):
    """Erasure asked while the recording is held, then asked again: the first receipt,
    already handed to the person, promised its commitment in the proof, so the
    recording keeps it; the second receipt says so. (A new user found the second
    request's commitment replacing the first: the first receipt could never be checked.)"""
    from retentiond.cli.subject_cmd import print_receipt, receipt_json
    from retentiond.service.holds import add_holds, remove_holds
    r = _ingest_in(app, clock, "r.wav", purpose="quality", subject=S)
    add_holds(app, [r], reason="litigation 12", actor="legal", now=clock.now())
    first = erase_subject(app, S, reason="DSAR 1", actor="dpo", now=clock.now())
    assert [k.id for k in first.kept] == [r] and first.kept[0].request == first.request_id
    clock.advance(timedelta(minutes=5))
    second = erase_subject(app, S, reason="DSAR 2", actor="dpo", now=clock.now())
    assert second.commitment != first.commitment
    assert [(k.id, k.request) for k in second.kept] == [(r, first.request_id)]
    assert receipt_json(second)["kept"][0]["commitment_of_request"] == first.request_id
    print_receipt(second)
    assert f"already under request {first.request_id}" in capsys.readouterr().out
    # the first request's salt stays while a recording carries its commitment
    assert app.catalog.erasure_salt(first.request_id) == bytes.fromhex(first.salt_hex)
    remove_holds(app, r, reason="settled", actor="legal", now=clock.now())
    report = Sweeper(app).sweep(now=clock.now())
    assert [(i.id, i.outcome) for i in report.items] == [(r, "deleted")]
    record = json.loads(app.proof_log.entry(report.items[0].proof_index))
    assert record["subject_commitment"] == first.commitment
