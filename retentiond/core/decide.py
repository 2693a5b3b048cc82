"""The one decision function. ``plan``, ``sweep``, ``ls``, logs, metrics and deletion
records all come from ``decide``, so prediction and enforcement cannot drift.

Rules, in order (fail closed: anything unclear keeps the recording and says why):

1. a recording already being deleted stays on course (its key may already be gone);
2. the due date: quarantine -> ingested_at + policy quarantine retention
   (``quarantine-expired``, or ``objection`` / ``erasure-request`` when one was made: the
   review period still runs, since the purpose is unknown); caller objection -> at once
   (``objection``); the subject's erasure request -> from the request
   (``erasure-request``); over the purpose's sampling cap -> at once (``sampling-cap``);
   otherwise recorded_at + the purpose's retention (``retention-expired``). CNIL:
   recordings kept 6 months for quality and training, 5 years as banking proof
   (context/003_fac5e16efc5eae4d.txt: "La Cnil préconise la conservation des
   enregistrements 6 mois, 5 ans dans le cas d'une preuve bancaire");
3. a purpose missing from the policy in force: keep and report (never guess);
4. ``min_retention`` pushes the date back: nothing is deleted before
   recorded_at + min_retention, not even on objection. The floor is also fixed at ingest
   (``retain_until``, the largest min_retention of every purpose the recording could
   belong to), so neither a later policy edit nor quarantine can delete it earlier;
5. a legal hold keeps the recording; past its date it is reported as held-overdue;
6. due date reached -> delete, else keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from retentiond.core.model import QUARANTINE, Reason, Recording, State, require_aware
from retentiond.core.policy import Policy


class Action(StrEnum):
    KEEP = "keep"
    DELETE = "delete"


@dataclass(frozen=True)
class Decision:
    """What to do with one recording, and why."""

    action: Action
    rule: str
    due: datetime | None
    reason: Reason | None
    reasons: tuple[str, ...]

    @property
    def overdue_and_kept(self) -> bool:
        return self.action is Action.KEEP and self.rule == "legal-hold-overdue"


def over_sample_cap(rec: Recording, *, policy: Policy) -> bool:
    """Is ``rec`` outside its purpose's sample (``max_sample_ratio``)? Its keyed score of
    ``call_id`` (of the plaintext's SHA-256 when there is none, so a replay decides the
    same) must be below the ratio to be kept. CNIL: recording "ne peut être ni automatique
    ni systématique" (context/002_4fefc22a382397cf.txt)."""
    purpose = policy.purposes.get(rec.purpose)
    return (purpose is not None and purpose.max_sample_ratio is not None
            and rec.sample_score is not None and rec.sample_score >= purpose.max_sample_ratio)


def due_date(rec: Recording, *, policy: Policy) -> tuple[datetime | None, Reason | None, str]:
    """(due, reason, explanation) before holds; due is None when it cannot be computed."""
    due, reason, why = _base_due(rec, policy=policy)
    if due is not None and rec.retain_until is not None and due < rec.retain_until \
            and rec.state is not State.DELETING:
        due = rec.retain_until
        why += "; minimum retention fixed at ingest keeps it until then"
    return due, reason, why


def _base_due(rec: Recording, *, policy: Policy) -> tuple[datetime | None, Reason | None, str]:
    if rec.state is State.DELETING and rec.delete_reason is not None:
        due = rec.due_at or rec.ingested_at
        return due, Reason(rec.delete_reason), "deletion already under way"
    if rec.state is State.QUARANTINED or rec.purpose == QUARANTINE:
        due = policy.quarantine_retention.add_to(rec.ingested_at)
        # an objection or an erasure request still waits for the review: the purpose is
        # unknown, so a legal obligation (Art. 17(3)(b), Art. 21 does not apply) cannot be
        # ruled out (fail closed); the proof then says why it went
        if rec.objection:
            return due, Reason.OBJECTION, (
                f"quarantined ({rec.quarantine_reason}), and the caller objected: deleted "
                f"when the {policy.quarantine_retention.iso()} review period ends, unless "
                "reclassified")
        if rec.erasure_at is not None:
            return max(due, rec.erasure_at), Reason.ERASURE_REQUEST, (
                f"quarantined ({rec.quarantine_reason}), and the subject asked for erasure: "
                f"deleted when the {policy.quarantine_retention.iso()} review period ends")
        return due, Reason.QUARANTINE_EXPIRED, (
            f"quarantined ({rec.quarantine_reason}); kept {policy.quarantine_retention.iso()} "
            "for review"
        )
    purpose = policy.purposes.get(rec.purpose)
    if purpose is None:
        return None, None, (
            f"purpose {rec.purpose!r} is not in policy {policy.name}; kept until the policy "
            "says what to do (fail closed)"
        )
    if rec.objection:
        due, reason = rec.ingested_at, Reason.OBJECTION
        why = "the caller objected to the recording: not retained"
    elif rec.erasure_at is not None:
        due, reason = rec.erasure_at, Reason.ERASURE_REQUEST
        why = "the subject asked for erasure (GDPR Art. 17)"
    elif over_sample_cap(rec, policy=policy):
        assert purpose.max_sample_ratio is not None
        due, reason = rec.ingested_at, Reason.SAMPLING_CAP
        why = (
            f"outside the {purpose.max_sample_ratio:.0%} sample kept for {purpose.name} "
            "(no systematic recording)"
        )
    else:
        due, reason = purpose.retention.add_to(rec.recorded_at), Reason.RETENTION_EXPIRED
        why = f"{purpose.name}: kept {purpose.retention.iso()} from recorded_at"
    if purpose.min_retention is not None:
        floor = purpose.min_retention.add_to(rec.recorded_at)
        if due < floor:
            due = floor
            why += f"; min_retention {purpose.min_retention.iso()} keeps it until then"
    return due, reason, why


def decide(rec: Recording, *, policy: Policy, held: bool, now: datetime) -> Decision:
    """Decide whether ``rec`` is deleted at ``now``."""
    require_aware(now, "now")
    due, reason, why = due_date(rec, policy=policy)
    if due is None or reason is None:
        return Decision(Action.KEEP, "unknown-purpose", None, None, (why,))
    if rec.state is State.DELETING:
        return Decision(Action.DELETE, "resume-deletion", due, reason, (why,))
    if held:
        if due <= now:
            return Decision(
                Action.KEEP, "legal-hold-overdue", due, reason,
                (why, "legal hold: kept past its date until the hold is removed"),
            )
        return Decision(Action.KEEP, "legal-hold", due, reason, (why, "legal hold"))
    if due <= now:
        return Decision(Action.DELETE, reason.value, due, reason, (why,))
    return Decision(Action.KEEP, "not-due", due, reason, (why,))
