"""Value types shared by the core and the service. Frozen, validated at construction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

LEGAL_BASES = frozenset({
    "consent", "contract", "legal-obligation", "vital-interests", "public-task",
    "legitimate-interests",
})
MEDIA = frozenset({"audio", "screen", "video", "document"})
QUARANTINE = "quarantine"  # reserved purpose name under which quarantined objects are sealed


def case_pseudonym_input(case_id: str) -> str:
    """What is pseudonymised for a case id: domain-separated from caller identifiers, so a
    case number never shares a pseudonym with a subject."""
    return "case\x00" + case_id


def require_aware(dt: datetime, what: str) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must carry a UTC offset")
    return dt


class State(StrEnum):
    """Life cycle of a managed recording.

    ingesting -> (active | quarantined) -> deleting -> deleted. ``ingesting`` rows are
    rolled back by recovery (their plaintext is still in the inbox); ``deleting`` rows are
    rolled forward.
    """

    INGESTING = "ingesting"
    ACTIVE = "active"
    QUARANTINED = "quarantined"
    DELETING = "deleting"
    DELETED = "deleted"


LIVE_STATES = (State.ACTIVE, State.QUARANTINED, State.DELETING)


class Reason(StrEnum):
    """Why a recording is deleted (the deletion record's ``reason``)."""

    RETENTION_EXPIRED = "retention-expired"
    OBJECTION = "objection"
    ERASURE_REQUEST = "erasure-request"
    SAMPLING_CAP = "sampling-cap"
    QUARANTINE_EXPIRED = "quarantine-expired"


@dataclass(frozen=True)
class Recording:
    """One managed recording as the catalog holds it."""

    id: str
    state: State
    purpose: str
    legal_basis: str | None
    media: str
    recorded_at: datetime
    ingested_at: datetime
    policy_name: str
    policy_sha256: str
    location: str
    source: str
    call_id: str | None = None
    subject_ref: str | None = None
    agent: str | None = None
    objection: bool = False
    sample_score: float | None = None
    quarantine_reason: str | None = None
    declared_purpose: str | None = None
    size: int = 0
    ciphertext_size: int = 0
    plaintext_sha256: str = ""
    ciphertext_sha256: str = ""
    version_id: str | None = None
    kek_id: str = ""
    inbox_pending: bool = False
    delete_after: datetime | None = None
    delete_reason: str | None = None
    due_at: datetime | None = None
    deleted_at: datetime | None = None
    proof_index: int | None = None
    # floor fixed at ingest: recorded_at + the largest min_retention of any purpose the
    # recording could belong to; no later policy or quarantine deletes it earlier
    retain_until: datetime | None = None
    case_ref: str | None = None  # keyed pseudonym of the sidecar's case_id
    controller: str | None = None  # the controller the recording is kept for (config)
    processor: str | None = None  # the processor (outsourced centre) acting for it
    # a subject's erasure request (``subject erase``): due at once, after min_retention
    erasure_at: datetime | None = None
    # SHA-256(salt || subject identifier) of that request, carried by the deletion record
    erasure_commitment: str | None = None
    erasure_request: str | None = None

    def __post_init__(self) -> None:
        require_aware(self.recorded_at, "recorded_at")
        require_aware(self.ingested_at, "ingested_at")
        if self.erasure_at is not None:
            require_aware(self.erasure_at, "erasure_at")

