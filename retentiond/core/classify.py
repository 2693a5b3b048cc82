"""Classification: purpose, legal basis, media and recorded-at time of a new recording.

Precedence for the purpose: explicit ``ingest --purpose`` flag, then the sidecar's
``purpose``, then the policy's ``classify`` rules (first match wins). A recording that
cannot be classified, or whose media the purpose does not allow, is quarantined, never
kept silently: CNIL allows screen capture coupled with calls only for training
(context/002_4fefc22a382397cf.txt: "le couplage des enregistrements téléphoniques avec
l'image ... est disproportionné lorsqu'il est utilisé pour d'autres finalités que la
formation").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from retentiond.core.model import QUARANTINE, require_aware
from retentiond.core.policy import Policy
from retentiond.core.sidecar import Sidecar

MAX_CLOCK_SKEW = timedelta(days=1)  # recorded_at further in the future than this: quarantine
# earlier than this is a recorder clock reset (epoch), not a real call: quarantine rather
# than delete at once
EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=UTC)

_MEDIA_BY_SUFFIX = {
    **dict.fromkeys(
        (".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".gsm", ".au",
         ".amr", ".wma", ".vox", ".raw"),
        "audio",
    ),
    **dict.fromkeys((".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v"), "video"),
    **dict.fromkeys((".pdf", ".csv", ".txt", ".docx", ".xlsx", ".odt", ".ods"), "document"),
}


def guess_media(name: str) -> str | None:
    """Media from the file extension, None when unknown (the sidecar's ``media`` wins)."""
    return _MEDIA_BY_SUFFIX.get(PurePosixPath(name).suffix.lower())


@dataclass(frozen=True)
class Overrides:
    """Values given on the ``ingest`` command line; they win over the sidecar."""

    purpose: str | None = None
    legal_basis: str | None = None
    recorded_at: datetime | None = None
    subject: str | None = None


@dataclass(frozen=True)
class Classification:
    """Outcome of classification. ``purpose`` is ``quarantine`` when ``quarantine_reason``."""

    purpose: str
    legal_basis: str | None
    media: str
    recorded_at: datetime
    declared_purpose: str | None
    quarantine_reason: str | None
    retain_until: datetime | None
    call_id: str | None
    subject: str | None
    agent: str | None
    objection: bool
    notes: str | None
    case_id: str | None = None

    def __repr__(self) -> str:  # subject and notes never reach logs
        return (
            f"Classification(purpose={self.purpose!r}, media={self.media!r}, "
            f"quarantine_reason={self.quarantine_reason!r})"
        )

    @property
    def quarantined(self) -> bool:
        return self.quarantine_reason is not None


def classify(
    *,
    policy: Policy,
    relpath: str,
    mtime: datetime,
    now: datetime,
    sidecar: Sidecar | None,
    sidecar_error: str | None = None,
    overrides: Overrides | None = None,
) -> Classification:
    """Decide purpose, legal basis, media and recorded_at for one recording."""
    require_aware(mtime, "mtime")
    require_aware(now, "now")
    sc = sidecar or Sidecar()
    overrides = overrides or Overrides()
    guessed = sc.media or guess_media(relpath)
    media = guessed or "unknown"
    recorded_at = overrides.recorded_at or sc.recorded_at or mtime
    declared = overrides.purpose or sc.purpose
    reason: str | None = sidecar_error
    purpose_name: str | None = None
    legal_basis = overrides.legal_basis or sc.legal_basis

    rule = policy.classify(relpath=relpath, media=guessed)
    # every purpose this recording could belong to, even if it ends in quarantine: the
    # largest min_retention among them is a floor (a typo in a banking call's sidecar must
    # not let it be deleted before its legal minimum)
    candidates = [p for p in (declared, rule.purpose if rule else None)
                  if p is not None and p in policy.purposes]
    floors = [m.add_to(recorded_at) for p in candidates
              if (m := policy.purposes[p].min_retention) is not None]
    retain_until = max(floors) if floors else None
    if reason is None:
        if declared is not None:
            purpose_name = declared
        elif rule is not None:
            purpose_name = rule.purpose
        if guessed is None:
            reason = (f"unknown media: extension {PurePosixPath(relpath).suffix or '(none)'!r} "
                      "is not a known audio/video/document type and the sidecar has no media")
        elif purpose_name is None:
            reason = "no purpose: no sidecar purpose and no classify rule matched"
        elif purpose_name not in policy.purposes:
            at = None if overrides.purpose else sc.purpose_at  # the sidecar's line, field
            reason = (
                (f"{at}: " if at else "")
                + f"unknown purpose {purpose_name!r} (policy {policy.name} defines: "
                f"{', '.join(sorted(policy.purposes))})"
            )
        else:
            allowed = policy.purposes[purpose_name].media
            if media not in allowed:
                reason = (
                    f"media {media!r} not allowed for purpose {purpose_name!r} "
                    f"(allowed: {', '.join(sorted(allowed))})"
                )
        if reason is None and recorded_at > now + MAX_CLOCK_SKEW:
            reason = "recorded_at is more than one day in the future (clock trouble?)"
        if reason is None and recorded_at < EARLIEST_PLAUSIBLE:
            reason = "recorded_at is before 2000 (recorder clock reset?)"

    if reason is not None:
        return Classification(
            purpose=QUARANTINE, legal_basis=legal_basis, media=media, recorded_at=recorded_at,
            declared_purpose=declared, quarantine_reason=reason, retain_until=retain_until,
            call_id=sc.call_id,
            subject=overrides.subject or sc.subject, agent=sc.agent, objection=sc.objection,
            notes=sc.notes, case_id=sc.case_id,
        )
    assert purpose_name is not None
    purpose = policy.purposes[purpose_name]
    return Classification(
        purpose=purpose_name, legal_basis=legal_basis or purpose.legal_basis, media=media,
        recorded_at=recorded_at, declared_purpose=declared, quarantine_reason=None,
        retain_until=retain_until, call_id=sc.call_id,
        subject=overrides.subject or sc.subject, agent=sc.agent, objection=sc.objection,
        notes=sc.notes, case_id=sc.case_id,
    )
