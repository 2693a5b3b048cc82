from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retentiond.core.decide import Action, decide
from retentiond.core.model import QUARANTINE, Reason, Recording, State
from retentiond.core.policy import parse_policy

POLICY = parse_policy(
    """
version: 1
name: test
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: P6M
    max_sample_ratio: 0.30
  banking-evidence:
    legal_basis: legal-obligation
    retention: P5Y
    min_retention: P5Y
quarantine:
  retention: P30D
""",
    filename="test.yaml",
)
T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def rec(**kw):
    base = Recording(
        id="r1", state=State.ACTIVE, purpose="quality", legal_basis="legitimate-interests",
        media="audio", recorded_at=T0, ingested_at=T0, policy_name="test", policy_sha256="x",
        location="v1/r1", source="/in/a.wav", sample_score=0.1,
    )
    return replace(base, **kw)


@pytest.mark.parametrize(
    ("r", "now", "held", "action", "rule", "due"),
    [
        pytest.param(rec(), T0 + timedelta(days=1), False, Action.KEEP, "not-due",
                     datetime(2026, 7, 31, 12, tzinfo=UTC), id="quality-not-due"),
        pytest.param(rec(), datetime(2026, 7, 31, 12, tzinfo=UTC), False, Action.DELETE,
                     "retention-expired", datetime(2026, 7, 31, 12, tzinfo=UTC),
                     id="quality-due-exactly-six-calendar-months"),
        pytest.param(rec(), datetime(2026, 8, 1, tzinfo=UTC), True, Action.KEEP,
                     "legal-hold-overdue", datetime(2026, 7, 31, 12, tzinfo=UTC),
                     id="held-past-date-is-reported"),
        pytest.param(rec(), T0, True, Action.KEEP, "legal-hold",
                     datetime(2026, 7, 31, 12, tzinfo=UTC), id="held-not-due"),
        pytest.param(rec(objection=True), T0, False, Action.DELETE, "objection", T0,
                     id="objection-deleted-at-once"),
        pytest.param(rec(objection=True), T0, True, Action.KEEP, "legal-hold-overdue", T0,
                     id="hold-on-objected-recording-wins"),
        pytest.param(rec(sample_score=0.31), T0, False, Action.DELETE, "sampling-cap", T0,
                     id="over-sampling-cap"),
        pytest.param(rec(sample_score=0.29), T0, False, Action.KEEP, "not-due",
                     datetime(2026, 7, 31, 12, tzinfo=UTC), id="inside-sample"),
        pytest.param(rec(sample_score=None), T0, False, Action.KEEP, "not-due",
                     datetime(2026, 7, 31, 12, tzinfo=UTC), id="no-score-no-cap"),
        pytest.param(rec(purpose="banking-evidence", objection=True), T0 + timedelta(days=400),
                     False, Action.KEEP, "not-due", datetime(2031, 1, 31, 12, tzinfo=UTC),
                     id="min-retention-beats-objection"),
        pytest.param(rec(purpose="banking-evidence"), datetime(2031, 1, 31, 12, tzinfo=UTC),
                     False, Action.DELETE, "retention-expired",
                     datetime(2031, 1, 31, 12, tzinfo=UTC), id="banking-five-years"),
        pytest.param(rec(state=State.QUARANTINED, purpose=QUARANTINE), T0 + timedelta(days=30),
                     False, Action.DELETE, "quarantine-expired", T0 + timedelta(days=30),
                     id="quarantine-expires"),
        pytest.param(rec(purpose="gone"), T0 + timedelta(days=9999), False, Action.KEEP,
                     "unknown-purpose", None, id="purpose-removed-from-policy-fails-closed"),
        pytest.param(rec(erasure_at=T0 + timedelta(days=3)), T0 + timedelta(days=3), False,
                     Action.DELETE, "erasure-request", T0 + timedelta(days=3),
                     id="erasure-request-due-at-once"),
        pytest.param(rec(erasure_at=T0 + timedelta(days=3)), T0 + timedelta(days=3), True,
                     Action.KEEP, "legal-hold-overdue", T0 + timedelta(days=3),
                     id="hold-beats-erasure-and-is-reported"),
        pytest.param(rec(purpose="banking-evidence", erasure_at=T0 + timedelta(days=3)),
                     T0 + timedelta(days=3), False, Action.KEEP, "not-due",
                     datetime(2031, 1, 31, 12, tzinfo=UTC),
                     id="erasure-waits-for-min-retention"),
        pytest.param(rec(purpose="banking-evidence", erasure_at=T0 + timedelta(days=3)),
                     datetime(2031, 1, 31, 12, tzinfo=UTC), False, Action.DELETE,
                     "erasure-request", datetime(2031, 1, 31, 12, tzinfo=UTC),
                     id="erasure-honoured-when-min-retention-ends"),
        pytest.param(rec(objection=True, erasure_at=T0 + timedelta(days=3)), T0, False,
                     Action.DELETE, "objection", T0, id="objection-before-erasure"),
        pytest.param(rec(erasure_at=T0, sample_score=0.9), T0, False, Action.DELETE,
                     "erasure-request", T0, id="erasure-before-sampling-cap"),
        pytest.param(rec(state=State.QUARANTINED, purpose=QUARANTINE, objection=True), T0,
                     False, Action.KEEP, "not-due", T0 + timedelta(days=30),
                     id="quarantined-objection-waits-for-review"),
        pytest.param(rec(state=State.QUARANTINED, purpose=QUARANTINE, objection=True),
                     T0 + timedelta(days=30), False, Action.DELETE, "objection",
                     T0 + timedelta(days=30), id="quarantined-objection-goes-after-review"),
        pytest.param(rec(state=State.QUARANTINED, purpose=QUARANTINE,
                         erasure_at=T0 + timedelta(days=1)), T0 + timedelta(days=30), False,
                     Action.DELETE, "erasure-request", T0 + timedelta(days=30),
                     id="quarantined-erasure-goes-after-review"),
        pytest.param(rec(state=State.QUARANTINED, purpose=QUARANTINE, objection=True,
                         retain_until=datetime(2031, 1, 31, 12, tzinfo=UTC)), T0, False,
                     Action.KEEP, "not-due", datetime(2031, 1, 31, 12, tzinfo=UTC),
                     id="quarantined-objection-keeps-floor-fixed-at-ingest"),
        pytest.param(rec(state=State.DELETING, delete_reason="objection", due_at=T0), T0, True,
                     Action.DELETE, "resume-deletion", T0, id="started-deletion-finishes"),
    ],
)
def test_decisions(r, now, held, action, rule, due):
    d = decide(r, policy=POLICY, held=held, now=now)
    assert (d.action, d.rule, d.due) == (action, rule, due)
    assert d.reasons and all(isinstance(x, str) for x in d.reasons)


def test_naive_now_rejected():
    with pytest.raises(ValueError):
        decide(rec(), policy=POLICY, held=False, now=datetime(2026, 1, 1))


times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1),
                     timezones=st.just(UTC))


@given(
    recorded=times, offset=st.integers(0, 20 * 365), objection=st.booleans(),
    score=st.none() | st.floats(0, 0.999), purpose=st.sampled_from(["quality", "banking-evidence"]),
    quarantined=st.booleans(), erasure=st.none() | st.integers(0, 20 * 365),
)
def test_nothing_held_is_ever_deleted(recorded, offset, objection, score, purpose, quarantined,
                                      erasure):
    r = rec(recorded_at=recorded, ingested_at=recorded, objection=objection, sample_score=score,
            purpose=QUARANTINE if quarantined else purpose,
            state=State.QUARANTINED if quarantined else State.ACTIVE,
            erasure_at=None if erasure is None else recorded + timedelta(days=erasure))
    now = recorded + timedelta(days=offset)
    assert decide(r, policy=POLICY, held=True, now=now).action is Action.KEEP


@given(recorded=times, offset=st.integers(0, 20 * 365), objection=st.booleans(),
       erasure=st.none() | st.integers(0, 20 * 365), quarantined=st.booleans())
def test_nothing_deleted_before_min_retention(recorded, offset, objection, erasure, quarantined):
    """Neither an objection, an erasure request nor quarantine deletes banking evidence
    before its floor (for a quarantined one: the floor fixed at ingest)."""
    floor = POLICY.purposes["banking-evidence"].min_retention.add_to(recorded)
    r = rec(recorded_at=recorded, ingested_at=recorded, objection=objection,
            erasure_at=None if erasure is None else recorded + timedelta(days=erasure),
            purpose=QUARANTINE if quarantined else "banking-evidence",
            state=State.QUARANTINED if quarantined else State.ACTIVE,
            retain_until=floor if quarantined else None)
    now = recorded + timedelta(days=offset)
    d = decide(r, policy=POLICY, held=False, now=now)
    if d.action is Action.DELETE:
        assert now >= floor
        assert d.reason in (Reason.RETENTION_EXPIRED, Reason.OBJECTION,
                            Reason.ERASURE_REQUEST, Reason.QUARANTINE_EXPIRED)


@given(recorded=times, offset=st.integers(0, 3 * 365))
def test_plan_and_sweep_agree_over_time(recorded, offset):
    """Deciding at a later time never un-deletes: once due, always due (monotonic)."""
    r = rec(recorded_at=recorded, ingested_at=recorded)
    now = recorded + timedelta(days=offset)
    if decide(r, policy=POLICY, held=False, now=now).action is Action.DELETE:
        later = now + timedelta(days=1)
        assert decide(r, policy=POLICY, held=False, now=later).action is Action.DELETE
