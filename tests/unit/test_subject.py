"""The pure parts of subject rights and holds: the erasure commitment (known answers and
twins that must differ), why a recording stays after an erasure, what an export holds,
hold targets."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retentiond.core.decide import decide
from retentiond.core.model import Recording, State
from retentiond.core.policy import parse_policy
from retentiond.service.holds import HoldTarget, short_pseudonym
from retentiond.service.subject import (
    EXPORT_FORMAT,
    ErasedRecording,
    ErasureReceipt,
    ExportedFile,
    KeptRecording,
    NotExported,
    erasure_commitment,
    export_manifest,
    export_metadata,
    kept_entry,
    media_suffix,
    not_exportable_because,
)
from retentiond.service.sweep import SweepItem

POLICY = parse_policy(
    """
version: 1
name: test
purposes:
  training:
    legal_basis: legitimate-interests
    retention: P6M
  banking-evidence:
    legal_basis: legal-obligation
    retention: P5Y
    min_retention: P5Y
quarantine:
  retention: P30D
""",
    filename="test.yaml",
)
T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SALT = bytes(range(32))
BANKING = {"purpose": "banking-evidence", "legal_basis": "legal-obligation"}


def rec(**kw: object) -> Recording:
    base = Recording(
        id="r1", state=State.ACTIVE, purpose="training", legal_basis="legitimate-interests",
        media="audio", recorded_at=T0 - timedelta(days=3), ingested_at=T0 - timedelta(days=3),
        policy_name="test", policy_sha256="p" * 64, location="v1/r1",
        source="/srv/inbox/+33612345678-2026.wav", call_id="C-1",
        subject_ref="hmac-sha256:" + "a" * 64, case_ref="hmac-sha256:" + "b" * 64,
        agent="agent-17", erasure_at=T0, erasure_commitment="c" * 64, erasure_request="q1",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


# -- commitment -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("salt", "subject", "expected"),
    [
        # checked with: (python3 -c '...bytes(range(32))'; printf '%s' S) | sha256sum
        pytest.param(SALT, "+33 6 12 34 56 78",
                     "728d361fc0ecd765c7675528b9dfc6f6e17a436530a105a21d0b4a43069beb30",
                     id="phone-number-as-typed"),
        pytest.param(SALT, "Zoë Dupont",
                     "0fc0cb255c55669e926e20e1450407f80429b09f6fda893b4308532723fac0f5",
                     id="non-ascii-utf8"),
    ],
)
def test_commitment_known_answers(salt: bytes, subject: str, expected: str) -> None:
    assert erasure_commitment(salt, subject) == expected
    assert expected == hashlib.sha256(salt + subject.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    ("salt", "subject"),
    [
        pytest.param(bytes([1]) + SALT[1:], "+33 6 12 34 56 78", id="one-salt-bit-flipped"),
        pytest.param(SALT, "+33612345678", id="same-number-typed-differently"),
        pytest.param(SALT, "+33 6 12 34 56 79", id="other-number"),
        pytest.param(SALT[1:] + SALT[:1], "+33 6 12 34 56 78", id="salt-rotated"),
    ],
)
def test_commitment_twins_differ(salt: bytes, subject: str) -> None:
    assert erasure_commitment(salt, subject) != \
        "728d361fc0ecd765c7675528b9dfc6f6e17a436530a105a21d0b4a43069beb30"


@given(salt=st.binary(min_size=32, max_size=32), subject=st.text(min_size=1),
       other=st.text(min_size=1))
def test_commitment_is_sha256_of_salt_then_utf8_and_binds_the_subject(
        salt: bytes, subject: str, other: str) -> None:
    c = erasure_commitment(salt, subject)
    assert c == hashlib.sha256(salt + subject.encode("utf-8")).hexdigest()
    assert len(c) == 64 and c == c.lower()
    if other != subject:
        assert erasure_commitment(salt, other) != c


@pytest.mark.parametrize(
    ("salt", "subject"),
    [
        pytest.param(SALT[:31], "x", id="short-salt"),
        pytest.param(SALT + b"\0", "x", id="long-salt"),
        pytest.param(SALT, "", id="empty-subject"),
    ],
)
def test_commitment_refuses_bad_input(salt: bytes, subject: str) -> None:
    with pytest.raises(ValueError):
        erasure_commitment(salt, subject)


# -- export -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "suffix"),
    [
        pytest.param("/srv/inbox/call.wav", ".wav", id="wav"),
        pytest.param("s3://rec/incoming/CALL.WAV", ".wav", id="s3-upper-case"),
        pytest.param("/srv/inbox/+33612345678", ".bin", id="no-extension-number-name"),
        pytest.param("/srv/inbox/a.tar.gz", ".gz", id="last-extension"),
        pytest.param("/srv/inbox/a.averylongext", ".bin", id="too-long"),
        pytest.param("/srv/inbox/a.w v", ".bin", id="space"),
        pytest.param("/srv/inbox/a.", ".bin", id="trailing-dot"),
        pytest.param(None, ".bin", id="no-source"),
    ],
)
def test_media_suffix(source: str | None, suffix: str) -> None:
    assert media_suffix(source) == suffix


@pytest.mark.parametrize(
    ("r", "word"),
    [
        pytest.param(rec(), None, id="active-exported"),
        pytest.param(rec(state=State.QUARANTINED), None, id="quarantined-exported"),
        pytest.param(rec(erasure_at=T0, **BANKING), None,
                     id="erasure-requested-but-kept-is-still-exported"),
        pytest.param(rec(state=State.DELETING), "being deleted", id="deleting"),
        pytest.param(rec(objection=True), "objected", id="objected-never-decrypted"),
        pytest.param(rec(state=State.DELETED), "deleted", id="deleted"),
    ],
)
def test_not_exportable_because(r: Recording, word: str | None) -> None:
    why = not_exportable_because(r)
    assert (why is None) if word is None else (why is not None and word in why)


def test_export_metadata_has_notes_and_no_source_or_pseudonyms() -> None:
    r = rec(erasure_at=None)
    d = decide(r, policy=POLICY, held=False, now=T0)
    f = ExportedFile("r1.wav", "d" * 64, 123, "r1", "recording")
    meta = export_metadata(r, d, held=False, file=f, notes="rappeler lundi")
    assert meta["notes"] == "rappeler lundi"
    assert (meta["purpose"], meta["legal_basis"], meta["call_id"], meta["agent"]) == (
        "training", "legitimate-interests", "C-1", "agent-17")
    assert meta["delete_after"] == "2027-05-20T09:00:00Z"
    assert (meta["file"], meta["sha256"], meta["size"]) == ("r1.wav", "d" * 64, 123)
    text = json.dumps(meta)
    for secret in ("source", "subject", "case", "+33612345678", "hmac-sha256", "v1/r1"):
        assert secret not in text, secret


def test_manifest_lists_files_sorted_with_hashes_and_what_was_not_exported() -> None:
    files = [ExportedFile("b.json", "1" * 64, 10, "b", "metadata"),
             ExportedFile("a.wav", "2" * 64, 20, "a", "recording")]
    m = export_manifest(exported_at=T0, policy=POLICY, files=files,
                        not_exportable=[NotExported("c", "deleting", "being deleted")],
                        unreadable=[])
    assert m["format"] == EXPORT_FORMAT and m["exported_at"] == "2026-11-23T09:00:00Z"
    assert m["policy"] == {"name": "test", "sha256": POLICY.sha256}
    assert [f["name"] for f in m["files"]] == ["a.wav", "b.json"]
    assert m["recordings"] == ["a", "b"]
    assert m["not_exportable"] == [{"id": "c", "state": "deleting", "why": "being deleted"}]


# -- why a recording stays after an erasure ----------------------------------------------

FLOOR = datetime(2031, 11, 20, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("r", "held", "outcome", "because", "until"),
    [
        pytest.param(rec(**BANKING), False, None, "minimum-retention", FLOOR,
                     id="banking-min-retention-until-floor"),
        pytest.param(rec(**BANKING, retain_until=None), True, None, "legal-hold", FLOOR,
                     id="held-and-under-floor-not-before-floor"),
        pytest.param(rec(), True, None, "legal-hold", None, id="held-overdue-until-release"),
        pytest.param(rec(objection=True), True, None, "legal-hold", None,
                     id="hold-on-objected-recording"),
        pytest.param(rec(purpose="gone"), False, None, "unknown-purpose", None,
                     id="purpose-missing-from-policy"),
        pytest.param(rec(), False, SweepItem("r1", "training", "failed", "erasure-request", T0,
                                             error="disk full"),
                     "deletion-failed", None, id="store-failed"),
        pytest.param(rec(), False, SweepItem("r1", "training", "blocked-by-lock",
                                             "erasure-request", T0, error="locked"),
                     "blocked-by-lock", None, id="object-lock"),
        pytest.param(rec(), False, SweepItem("r1", "training", "held-overdue",
                                             "legal-hold-overdue", T0),
                     "legal-hold", None, id="held-during-the-pass"),
    ],
)
def test_kept_entry(r: Recording, held: bool, outcome: SweepItem | None, because: str,
                    until: datetime | None) -> None:
    d = decide(r, policy=POLICY, held=held, now=T0)
    k = kept_entry(r, d, held=held, outcome=outcome, now=T0)
    assert (k.id, k.stays_because, k.until) == ("r1", because, until)
    assert k.why  # always explained
    if outcome is not None and outcome.error:
        assert outcome.error in k.why


def test_receipt_complete_only_when_all_deleted_and_proven() -> None:
    gone = ErasedRecording("a", "training", "erasure-request", 4)
    base = ErasureReceipt("q", T0, False, "00" * 32, "c" * 64, (gone,), ())
    assert base.complete and base.reason == "erasure-request"
    assert replace(base, objection=True).reason == "objection"
    assert not replace(base, deleted=(replace(gone, proof_index=None),)).complete
    assert not replace(base, proof_error="append failed").complete
    kept = KeptRecording("b", "banking-evidence", "minimum-retention", FLOOR, False, "why")
    assert not replace(base, kept=(kept,)).complete


# -- hold targets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "target"),
    [
        pytest.param("folder", "x", id="unknown-scope"),
        pytest.param("subject", "", id="empty-target"),
    ],
)
def test_hold_target_validated(scope: str, target: str) -> None:
    with pytest.raises(ValueError):
        HoldTarget(scope, target)


def test_hold_target_label_never_shows_a_whole_pseudonym() -> None:
    p = "hmac-sha256:" + "0123456789abcdef" * 4
    assert HoldTarget("object", "r1").label == "r1"
    assert HoldTarget("subject", p).label == "subject hmac-sha256:01234567…"
    assert HoldTarget("case", p).label == "case hmac-sha256:01234567…"
    assert short_pseudonym(p) == "hmac-sha256:01234567…"
