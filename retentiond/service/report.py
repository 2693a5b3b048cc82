"""The compliance report (``retentiond audit report``, SPEC section 6): what a DPO or an
auditor needs to see that recordings are kept only as long, and only as many, as the
policy allows, and that every deletion is proven.

``build_report(app, now=...)`` reads the catalog, the policy, the proof log and the audit
log once and returns a frozen ``Report``; ``assemble_report`` is the pure part (plain data
in, report out) so the figures are testable without a setup. Nothing here prints.

Due, overdue and held figures come from ``Sweeper.plan`` (hence from ``decide``), so the
report can never disagree with ``plan``, ``sweep`` or the ``retentiond_objects_overdue``
metric. The report never contains a note's text, a caller identifier or a file name:
notes findings are (recording id, purpose, categories, rule ids) only.
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retentiond import __version__
from retentiond.core.decide import Action
from retentiond.core.model import QUARANTINE, State
from retentiond.core.policy import Policy
from retentiond.core.residency import LocationCheck, LocationStatus, residency_rows
from retentiond.crypto.keys import kek_file_ids
from retentiond.errors import EXIT_OK, EXIT_WARNINGS, RetentiondError, StorageError
from retentiond.service.locations import check_locations
from retentiond.service.prooflog import ProofLog, verify_log
from retentiond.service.sweep import PlanItem, Sweeper, next_due_date
from retentiond.service.wiring import App

REPORT_VERSION = 1

JSONScalar = None | bool | int | float | str
ResidencyValue = JSONScalar | tuple[str, ...]
Json = JSONScalar | Sequence["Json"] | Mapping[str, "Json"]
# rule names of ``decide`` that mean "kept by a legal hold"
HOLD_RULES = frozenset({"legal-hold", "legal-hold-overdue"})


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with an offset, whole seconds (as ``ls`` prints)."""
    return None if dt is None else dt.astimezone(UTC).isoformat(timespec="seconds")


def ratio(part: int, whole: int) -> float | None:
    return None if whole <= 0 else part / whole


# -- the report value ------------------------------------------------------------------


@dataclass(frozen=True)
class PurposeRow:
    """Live recordings of one purpose (quarantine excluded: see ``QuarantineSummary``).

    ``overdue``: due and not deleted yet, not held (the next sweep deletes them);
    ``held``: kept by a legal hold, of which ``held_overdue`` are past their date;
    ``kept_ratio``: share of the ingested calls kept by the sampling cap (ingest tally,
    deletions included), None before any ingest."""

    purpose: str
    in_policy: bool
    legal_basis: str | None
    retention: str | None
    min_retention: str | None
    max_sample_ratio: float | None
    count: int
    bytes: int
    oldest_recorded_at: datetime | None
    next_due: datetime | None
    overdue: int
    held: int
    held_overdue: int
    deleting: int
    deleted: int
    ingested: int
    over_cap: int

    @property
    def kept_ratio(self) -> float | None:
        return ratio(self.ingested - self.over_cap, self.ingested)

    def to_json(self) -> dict[str, Json]:
        return {
            "purpose": self.purpose, "in_policy": self.in_policy,
            "legal_basis": self.legal_basis, "retention": self.retention,
            "min_retention": self.min_retention, "max_sample_ratio": self.max_sample_ratio,
            "count": self.count, "bytes": self.bytes,
            "oldest_recorded_at": iso(self.oldest_recorded_at), "next_due": iso(self.next_due),
            "overdue": self.overdue, "held": self.held, "held_overdue": self.held_overdue,
            "deleting": self.deleting, "deleted": self.deleted,
            "ingested": self.ingested, "over_cap": self.over_cap,
            "kept_ratio": self.kept_ratio,
        }


@dataclass(frozen=True)
class SamplingRow:
    """Calls ingested for a purpose (and one agent, when ``agent`` is given) and how many
    the sampling cap removed. ``agent`` None in a per-agent row: no agent in the sidecar."""

    purpose: str
    agent: str | None
    ingested: int
    over_cap: int
    cap: float | None

    @property
    def kept(self) -> int:
        return self.ingested - self.over_cap

    @property
    def kept_ratio(self) -> float | None:
        return ratio(self.kept, self.ingested)

    def to_json(self) -> dict[str, Json]:
        return {"purpose": self.purpose, "agent": self.agent, "ingested": self.ingested,
                "over_cap": self.over_cap, "kept": self.kept, "kept_ratio": self.kept_ratio,
                "max_sample_ratio": self.cap}


@dataclass(frozen=True)
class QuarantineReason:
    reason: str
    count: int
    bytes: int

    def to_json(self) -> dict[str, Json]:
        return {"reason": self.reason, "count": self.count, "bytes": self.bytes}


@dataclass(frozen=True)
class QuarantineItem:
    id: str
    reason: str
    declared_purpose: str | None
    media: str
    bytes: int
    ingested_at: datetime
    due: datetime | None
    held: bool

    def to_json(self) -> dict[str, Json]:
        return {"id": self.id, "reason": self.reason, "declared_purpose": self.declared_purpose,
                "media": self.media, "bytes": self.bytes, "ingested_at": iso(self.ingested_at),
                "due": iso(self.due), "held": self.held}


@dataclass(frozen=True)
class QuarantineSummary:
    """Recordings that could not be classified (or whose media the purpose refuses):
    kept encrypted for review, deleted after the policy's quarantine retention."""

    retention: str
    count: int
    bytes: int
    oldest_ingested_at: datetime | None
    next_due: datetime | None
    overdue: int
    held: int
    held_overdue: int
    reasons: tuple[QuarantineReason, ...]
    items: tuple[QuarantineItem, ...]

    def to_json(self) -> dict[str, Json]:
        return {"retention": self.retention, "count": self.count, "bytes": self.bytes,
                "oldest_ingested_at": iso(self.oldest_ingested_at),
                "next_due": iso(self.next_due), "overdue": self.overdue, "held": self.held,
                "held_overdue": self.held_overdue, "reasons": [r.to_json() for r in self.reasons],
                "items": [i.to_json() for i in self.items]}


@dataclass(frozen=True)
class NotesFinding:
    """A live recording whose notes the lint flagged. Never the note's text."""

    id: str
    purpose: str
    categories: tuple[str, ...]
    rules: tuple[str, ...]

    def to_json(self) -> dict[str, Json]:
        return {"id": self.id, "purpose": self.purpose, "categories": list(self.categories),
                "rules": list(self.rules)}


@dataclass(frozen=True)
class ResidencyRow:
    """One declared store or processor, as ``retentiond.core.residency`` describes it."""

    fields: tuple[tuple[str, ResidencyValue], ...]

    def get(self, key: str) -> ResidencyValue:
        return dict(self.fields).get(key)

    def to_json(self) -> dict[str, Json]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.fields}


@dataclass(frozen=True)
class DeletionDay:
    """Recordings deleted on one UTC day (``YYYY-MM-DD``), for one purpose and reason."""

    day: str
    purpose: str
    reason: str
    count: int

    def to_json(self) -> dict[str, Json]:
        return {"day": self.day, "purpose": self.purpose, "reason": self.reason,
                "count": self.count}


@dataclass(frozen=True)
class ProofLogStatus:
    """The deletion-proof log as ``proof verify`` sees it. ``verified`` False with
    ``error`` (and the exit code ``proof verify`` would give) when it does not verify;
    ``consistent_with_witness`` None when no earlier verified checkpoint was kept."""

    location: str
    origin: str
    key_name: str
    key_id: str
    verified: bool
    entries: int | None
    checkpoint_size: int | None
    root: str | None
    consistent_with_witness: bool | None
    catalog_proofs: int
    uncommitted: int = 0
    error: str | None = None
    error_exit_code: int | None = None

    def to_json(self) -> dict[str, Json]:
        return {
            "location": self.location, "verified": self.verified, "entries": self.entries,
            "checkpoint": {"origin": self.origin, "tree_size": self.checkpoint_size,
                           "root_hash": self.root, "key_name": self.key_name,
                           "key_id": self.key_id},
            "consistent_with_witness": self.consistent_with_witness,
            "catalog_proofs": self.catalog_proofs, "uncommitted_files": self.uncommitted,
            "error": self.error,
        }


@dataclass(frozen=True)
class AuditLogStatus:
    path: str
    verified: bool
    entries: int | None
    head: str | None
    error: str | None = None
    error_exit_code: int | None = None

    def to_json(self) -> dict[str, Json]:
        return {"path": self.path, "verified": self.verified, "entries": self.entries,
                "head": self.head, "error": self.error}


@dataclass(frozen=True)
class KeysStatus:
    """Key management at a glance (GDPR Art. 32): the key-encryption key (KEK) in force,
    since when (the date is part of its id), how many data keys each KEK wraps, the old
    KEK files still in the key folder, and the KEKs ``keys rotate --retire`` destroyed."""

    current: str
    in_use: tuple[tuple[str, int], ...]  # (KEK id, data keys wrapped under it)
    retired: tuple[tuple[str, datetime], ...]  # (KEK id, when its file was destroyed)
    files: tuple[str, ...] = ()  # KEK files in the key folder

    @property
    def current_since(self) -> str | None:
        """``YYYY-MM-DD`` from the id (``kek-YYYYMMDD-...``), if it has that form."""
        day = self.current[4:12]
        return f"{day[:4]}-{day[4:6]}-{day[6:]}" if day.isdigit() and len(day) == 8 else None

    @property
    def kept(self) -> tuple[str, ...]:
        """Old KEK files still in the folder (a catalog backup they wrapped still opens)."""
        return tuple(k for k in self.files if k != self.current)

    @property
    def not_current(self) -> int:
        """Data keys under a KEK other than the one in force."""
        return sum(n for kek, n in self.in_use if kek != self.current)

    @property
    def missing(self) -> int:
        """Data keys under a KEK whose file is not in the key folder: undecryptable."""
        return sum(n for kek, n in self.in_use if kek not in self.files)

    def to_json(self) -> dict[str, Json]:
        return {"current": self.current, "current_since": self.current_since,
                "in_use": dict(self.in_use), "kept": list(self.kept),
                "missing": sorted(k for k, n in self.in_use if k not in self.files),
                "retired": [{"kek_id": k, "retired_at": iso(at)} for k, at in self.retired]}


@dataclass(frozen=True)
class StoreFinding:
    """A vault/catalog inconsistency found by the reconciler (``catalog.findings()``)."""

    location: str
    object_id: str | None
    kind: str
    detail: str
    first_seen: datetime
    last_seen: datetime

    def to_json(self) -> dict[str, Json]:
        return {"location": self.location, "object_id": self.object_id, "kind": self.kind,
                "detail": self.detail, "first_seen": iso(self.first_seen),
                "last_seen": iso(self.last_seen)}


@dataclass(frozen=True)
class ReportWarning:
    """Something the DPO or the operator must look at. ``code`` is stable (scripts)."""

    code: str
    count: int
    message: str

    def to_json(self) -> dict[str, Json]:
        return {"code": self.code, "count": self.count, "message": self.message}


@dataclass(frozen=True)
class PolicyVersion:
    """Recordings (live) stored under one policy version (name + sha256 at ingest)."""

    name: str
    sha256: str
    count: int

    def to_json(self) -> dict[str, Json]:
        return {"name": self.name, "sha256": self.sha256, "count": self.count}


@dataclass(frozen=True)
class Report:
    """The whole report. ``to_json`` gives the ``--json`` document."""

    generated_at: datetime
    version: str
    policy_name: str
    policy_sha256: str
    policy_versions: tuple[PolicyVersion, ...]
    purposes: tuple[PurposeRow, ...]
    sampling_by_purpose: tuple[SamplingRow, ...]
    sampling_by_agent: tuple[SamplingRow, ...]
    quarantine: QuarantineSummary
    notes_findings: tuple[NotesFinding, ...]
    residency: tuple[ResidencyRow, ...]
    deletions: tuple[DeletionDay, ...]
    proof_log: ProofLogStatus
    audit_log: AuditLogStatus
    store_findings: tuple[StoreFinding, ...]
    warnings: tuple[ReportWarning, ...]
    keys: KeysStatus | None = None
    # subjects whose objection (GDPR Art. 21) stands for their later recordings
    standing_objections: int = 0

    # -- totals ---------------------------------------------------------------------

    @property
    def live(self) -> int:
        """Live recordings, quarantine included."""
        return sum(p.count for p in self.purposes) + self.quarantine.count

    @property
    def live_bytes(self) -> int:
        return sum(p.bytes for p in self.purposes) + self.quarantine.bytes

    @property
    def overdue(self) -> int:
        return sum(p.overdue for p in self.purposes) + self.quarantine.overdue

    @property
    def held(self) -> int:
        return sum(p.held for p in self.purposes) + self.quarantine.held

    @property
    def held_overdue(self) -> int:
        return sum(p.held_overdue for p in self.purposes) + self.quarantine.held_overdue

    @property
    def deleted(self) -> int:
        return sum(d.count for d in self.deletions)

    def deletions_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for d in self.deletions:
            out[d.reason] += d.count
        return dict(sorted(out.items()))

    @property
    def exit_code(self) -> int:
        """0 ok; 1 when there are warnings; the proof log's (7, or 5 when unreachable) or
        the audit log's (8) exit code when it does not verify (the report is still made)."""
        for status in (self.proof_log, self.audit_log):
            if not status.verified:
                return status.error_exit_code or EXIT_WARNINGS
        return EXIT_WARNINGS if self.warnings else EXIT_OK

    def to_json(self) -> dict[str, Json]:
        return {
            "report_version": REPORT_VERSION,
            "generated_at": iso(self.generated_at),
            "retentiond_version": self.version,
            "policy": {"name": self.policy_name, "sha256": self.policy_sha256},
            "policy_versions": [v.to_json() for v in self.policy_versions],
            "summary": {
                "live": self.live, "bytes": self.live_bytes, "overdue": self.overdue,
                "held": self.held, "held_overdue": self.held_overdue,
                "quarantined": self.quarantine.count,
                "notes_findings": len(self.notes_findings), "deleted": self.deleted,
                "proof_log_entries": self.proof_log.entries,
                "proof_log_verified": self.proof_log.verified,
                "audit_log_entries": self.audit_log.entries,
                "audit_log_verified": self.audit_log.verified,
                "store_findings": len(self.store_findings),
                "standing_objections": self.standing_objections,
            },
            "purposes": [p.to_json() for p in self.purposes],
            "sampling": {"by_purpose": [s.to_json() for s in self.sampling_by_purpose],
                         "by_agent": [s.to_json() for s in self.sampling_by_agent]},
            "quarantine": self.quarantine.to_json(),
            "notes_findings": [n.to_json() for n in self.notes_findings],
            "residency": [r.to_json() for r in self.residency],
            "deletions": {"total": self.deleted, "by_reason": dict(self.deletions_by_reason()),
                          "by_day": [d.to_json() for d in self.deletions]},
            "proof_log": self.proof_log.to_json(),
            "audit_log": self.audit_log.to_json(),
            "keys": None if self.keys is None else self.keys.to_json(),
            "store_findings": [f.to_json() for f in self.store_findings],
            "warnings": [w.to_json() for w in self.warnings],
            "exit_code": self.exit_code,
        }


# -- assembling (pure) -----------------------------------------------------------------


def _residency_value(value: object) -> ResidencyValue:
    """A residency field as the report keeps it: a JSON scalar, or a tuple of strings for
    a list (``inboxes``); anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(str(v) for v in value)
    return str(value)


def _purpose_rows(
    plan: Sequence[PlanItem], *, policy: Policy, now: datetime,
    counts: Iterable[tuple[str, str, int, int]], tally: Mapping[str, tuple[int, int]],
) -> tuple[PurposeRow, ...]:
    live: dict[str, list[PlanItem]] = defaultdict(list)
    for item in plan:
        if item.recording.state is not State.QUARANTINED and item.recording.purpose != QUARANTINE:
            live[item.recording.purpose].append(item)
    deleted: Counter[str] = Counter()
    for purpose, state, n, _ in counts:
        if state == State.DELETED.value and purpose != QUARANTINE:
            deleted[purpose] += n
    names = list(policy.purposes) + sorted(
        (set(live) | set(deleted) | set(tally)) - set(policy.purposes) - {QUARANTINE})
    rows = []
    for name in names:
        items = live.get(name, [])
        p = policy.purposes.get(name)
        ingested, over_cap = tally.get(name, (0, 0))
        rows.append(PurposeRow(
            purpose=name, in_policy=p is not None,
            legal_basis=p.legal_basis if p else None,
            retention=p.retention.iso() if p else None,
            min_retention=p.min_retention.iso() if p and p.min_retention else None,
            max_sample_ratio=p.max_sample_ratio if p else None,
            count=len(items), bytes=sum(i.recording.size for i in items),
            oldest_recorded_at=min((i.recording.recorded_at for i in items), default=None),
            next_due=next_due_date(items),
            overdue=sum(1 for i in items if _overdue(i, now=now)),
            held=sum(1 for i in items if i.decision.rule in HOLD_RULES),
            held_overdue=sum(1 for i in items if i.decision.overdue_and_kept),
            deleting=sum(1 for i in items if i.recording.state is State.DELETING),
            deleted=deleted.get(name, 0), ingested=ingested, over_cap=over_cap,
        ))
    return tuple(rows)


def _overdue(item: PlanItem, *, now: datetime) -> bool:
    """Due and not deleted, not held: the same rule as ``retentiond_objects_overdue``."""
    d = item.decision
    return d.action is Action.DELETE and d.due is not None and d.due <= now


def _quarantine(plan: Sequence[PlanItem], *, policy: Policy, now: datetime) -> QuarantineSummary:
    items = [i for i in plan
             if i.recording.state is State.QUARANTINED or i.recording.purpose == QUARANTINE]
    reasons: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    out = []
    for i in items:
        rec = i.recording
        reason = rec.quarantine_reason or "(no reason recorded)"
        reasons[reason][0] += 1
        reasons[reason][1] += rec.size
        out.append(QuarantineItem(
            id=rec.id, reason=reason, declared_purpose=rec.declared_purpose, media=rec.media,
            bytes=rec.size, ingested_at=rec.ingested_at, due=i.decision.due,
            held=i.decision.rule in HOLD_RULES))
    return QuarantineSummary(
        retention=policy.quarantine_retention.iso(), count=len(items),
        bytes=sum(i.recording.size for i in items),
        oldest_ingested_at=min((i.recording.ingested_at for i in items), default=None),
        next_due=next_due_date(items),
        overdue=sum(1 for i in items if _overdue(i, now=now)),
        held=sum(1 for i in items if i.decision.rule in HOLD_RULES),
        held_overdue=sum(1 for i in items if i.decision.overdue_and_kept),
        reasons=tuple(QuarantineReason(r, n, b) for r, (n, b) in
                      sorted(reasons.items(), key=lambda kv: (-kv[1][0], kv[0]))),
        items=tuple(sorted(out, key=lambda q: (q.ingested_at, q.id))),
    )


def _sampling(
    tally: Iterable[tuple[str, str | None, int, int]], *, policy: Policy,
) -> tuple[tuple[SamplingRow, ...], tuple[SamplingRow, ...]]:
    per_purpose: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_agent: dict[tuple[str, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for purpose, agent, ingested, over_cap in tally:
        for acc in (per_purpose[purpose], per_agent[(purpose, agent)]):
            acc[0] += ingested
            acc[1] += over_cap

    def cap(purpose: str) -> float | None:
        p = policy.purposes.get(purpose)
        return p.max_sample_ratio if p else None

    by_purpose = tuple(SamplingRow(p, None, n, o, cap(p))
                       for p, (n, o) in sorted(per_purpose.items()))
    by_agent = tuple(SamplingRow(p, a, n, o, cap(p)) for (p, a), (n, o) in
                     sorted(per_agent.items(), key=lambda kv: (kv[0][0], kv[0][1] is None,
                                                               kv[0][1] or "")))
    return by_purpose, by_agent


def _notes(rows: Iterable[tuple[str, str, str, str]]) -> tuple[NotesFinding, ...]:
    by_id: dict[str, tuple[str, set[str], set[str]]] = {}
    for object_id, purpose, category, rule in rows:
        _, cats, rules = by_id.setdefault(object_id, (purpose, set(), set()))
        cats.add(category)
        rules.add(rule)
    return tuple(NotesFinding(oid, p, tuple(sorted(c)), tuple(sorted(r)))
                 for oid, (p, c, r) in sorted(by_id.items(), key=lambda kv: (kv[1][0], kv[0])))


def _warnings(
    *, purposes: Sequence[PurposeRow], quarantine: QuarantineSummary,
    notes: Sequence[NotesFinding], findings: Sequence[StoreFinding], proof: ProofLogStatus,
    audit: AuditLogStatus, undeclared: int = 0, keys: KeysStatus | None = None,
    contradicted: int = 0,
) -> tuple[ReportWarning, ...]:
    out: list[ReportWarning] = []

    def add(code: str, count: int, message: str) -> None:
        if count:
            out.append(ReportWarning(code, count, message))

    add("proof-log-unverified", 0 if proof.verified else 1,
        f"the deletion-proof log does not verify: {proof.error}")
    add("audit-log-unverified", 0 if audit.verified else 1,
        f"the access audit log does not verify: {audit.error}")
    add("overdue", sum(p.overdue for p in purposes) + quarantine.overdue,
        "recordings are past their deletion date and not deleted yet (is the daemon's "
        "sweep running?)")
    add("held-overdue", sum(p.held_overdue for p in purposes) + quarantine.held_overdue,
        "recordings are past their deletion date and kept only by a legal hold: check "
        "each hold is still needed")
    unknown = [p for p in purposes if not p.in_policy and p.count]
    add("unknown-purpose", sum(p.count for p in unknown),
        "recordings have a purpose the policy in force does not define "
        f"({', '.join(p.purpose for p in unknown)}); they are kept until it does")
    add("quarantined", quarantine.count,
        "recordings are in quarantine (not classified, or media not allowed): review them")
    add("notes-findings", len(notes),
        "recordings have notes with sensitive data or subjective judgments: review them")
    add("store-findings", len(findings),
        "the reconciler found the vault and the catalog disagree")
    add("residency-undeclared", undeclared,
        "stores whose location is not declared (add a 'residency' section to the "
        "configuration: docs/residency.md); transfers outside the EU cannot be ruled out")
    add("residency-contradicted", contradicted,
        "stores whose own answer (S3 GetBucketLocation) contradicts the declared location: "
        "see each store's location check; the residency verdicts rest on the declaration")
    if keys is not None:
        add("keys-missing", keys.missing,
            "data keys are wrapped under a key-encryption key whose file is not in the key "
            "folder: those recordings cannot be decrypted; restore the file from a backup "
            "of the key folder")
        add("keys-not-rotated", keys.not_current,
            "data keys are wrapped under a key-encryption key other than the one in force: "
            "a 'keys rotate' did not finish, or could not unwrap them (a damaged catalog "
            "row); run it again and read what it reports")
    if proof.verified and proof.entries is not None and proof.catalog_proofs > proof.entries:
        add("proof-log-behind-catalog", proof.catalog_proofs - proof.entries,
            f"the catalog records {proof.catalog_proofs} proven deletions but the proof "
            f"log holds {proof.entries} entries")
    return tuple(out)


def assemble_report(
    *, now: datetime, policy: Policy, plan: Sequence[PlanItem],
    counts: Iterable[tuple[str, str, int, int]],
    tally: Iterable[tuple[str, str | None, int, int]],
    notes: Iterable[tuple[str, str, str, str]],
    deletions: Iterable[tuple[str, str, str, int]],
    findings: Iterable[tuple[str, str | None, str, str, datetime, datetime]],
    residency: Iterable[Mapping[str, object]],
    proof_log: ProofLogStatus, audit_log: AuditLogStatus, keys: KeysStatus | None = None,
    standing_objections: int = 0, contradicted_stores: int = 0,
) -> Report:
    """The report from plain data (the shapes the catalog methods return).
    ``contradicted_stores``: stores whose own answer contradicts the declared location
    (``CONTRADICTING`` location checks)."""
    tally = list(tally)
    residency_list = list(residency)
    by_purpose, by_agent = _sampling(tally, policy=policy)
    purposes = _purpose_rows(plan, policy=policy, now=now, counts=counts,
                             tally={s.purpose: (s.ingested, s.over_cap) for s in by_purpose})
    quarantine = _quarantine(plan, policy=policy, now=now)
    notes_findings = _notes(notes)
    store_findings = tuple(StoreFinding(*f) for f in findings)
    versions: Counter[tuple[str, str]] = Counter(
        (i.recording.policy_name, i.recording.policy_sha256) for i in plan)
    return Report(
        generated_at=now, version=__version__, policy_name=policy.name,
        policy_sha256=policy.sha256,
        policy_versions=tuple(PolicyVersion(n, s, c) for (n, s), c in
                              sorted(versions.items(), key=lambda kv: (-kv[1], kv[0]))),
        purposes=purposes, sampling_by_purpose=by_purpose, sampling_by_agent=by_agent,
        quarantine=quarantine, notes_findings=notes_findings,
        residency=tuple(ResidencyRow(tuple((str(k), _residency_value(v)) for k, v in row.items()))
                        for row in residency_list),
        deletions=tuple(sorted((DeletionDay(*d) for d in deletions),
                               key=lambda d: (d.day, d.reason, d.purpose))),
        proof_log=proof_log, audit_log=audit_log, keys=keys, store_findings=store_findings,
        standing_objections=standing_objections,
        warnings=_warnings(purposes=purposes, quarantine=quarantine, notes=notes_findings,
                           findings=store_findings, proof=proof_log, audit=audit_log,
                           undeclared=sum(1 for row in residency_list
                                          if row.get("kind") == "store"
                                          and row.get("zone") is None), keys=keys,
                           contradicted=contradicted_stores),
    )


# -- reading the stores ----------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def proof_log_status(log: ProofLog, *, location: str, catalog_proofs: int,
                     witness: Path | None) -> ProofLogStatus:
    """Verify the whole log as ``proof verify`` does (read-only: the witness file, the
    last checkpoint ``proof verify`` saw, is read for the consistency check, never
    written). A failure is reported in the status, not raised."""
    def status(**kw: Any) -> ProofLogStatus:
        return ProofLogStatus(location=location, origin=log.origin, key_name=log.verifier.name,
                              key_id=log.verifier.key_id.hex(), catalog_proofs=catalog_proofs,
                              **kw)

    last: bytes | None = None
    try:
        if witness is not None and witness.is_file():
            try:
                last = witness.read_bytes()
            except OSError as e:
                raise StorageError(f"{witness}: cannot read: {e.strerror}") from None
        v = verify_log(log.store, verifier=log.verifier, origin=log.origin,
                       last_checkpoint=last)
    except RetentiondError as e:
        size = root = None
        try:  # the signed head may still be readable
            cp = log.checkpoint()
            size, root = cp.size, _b64(cp.root)
        except RetentiondError:
            pass
        return status(verified=False, entries=None, checkpoint_size=size, root=root,
                      consistent_with_witness=None, error=e.message,
                      error_exit_code=e.exit_code)
    return status(verified=True, entries=v.entries, checkpoint_size=v.size, root=_b64(v.root),
                  consistent_with_witness=True if last is not None else None,
                  uncommitted=len(v.uncommitted))


def audit_log_status(app: App) -> AuditLogStatus:
    path = app.audit.path
    try:
        s = app.audit.verify()
    except RetentiondError as e:
        return AuditLogStatus(str(path), verified=False, entries=None, head=None,
                              error=e.message, error_exit_code=e.exit_code)
    return AuditLogStatus(str(path), verified=True, entries=s.entries, head=s.head)


def keys_status(app: App) -> KeysStatus:
    """Read-only: the catalog's counts and the names of the KEK files in the key folder."""
    current = app.keys.current_kek_id()
    usage = {current: 0} | app.catalog.kek_usage()
    retired = sorted((k, at) for k, at in app.catalog.retired_keks().items() if at is not None)
    try:
        files = kek_file_ids(app.settings.keys_dir)
    except OSError as e:
        raise StorageError(f"{app.settings.keys_dir}: cannot list: {e.strerror}") from None
    return KeysStatus(current=current, in_use=tuple(sorted(usage.items())),
                      retired=tuple(retired), files=tuple(files))


# location checks that contradict the declaration (the report's residency-contradicted)
CONTRADICTING = frozenset({LocationStatus.TRANSFER, LocationStatus.DIFFERS,
                           LocationStatus.UNKNOWN_REGION})


def _with_location_checks(rows: list[dict[str, object]],
                          checks: Sequence[LocationCheck]) -> list[dict[str, object]]:
    """Each store row (in placement order, as ``residency_rows`` gives them) with what its
    store answered: ``location_check`` is "STATUS: detail" (``LocationStatus``)."""
    stores = iter(checks)
    for row in rows:
        if row.get("kind") == "store":
            c = next(stores)
            row["location_check"] = c.summary
    return rows


def build_report(app: App, *, now: datetime, witness: Path | None = None) -> Report:
    """Read everything the report needs from ``app`` at ``now``. ``witness``: the last
    checkpoint ``proof verify`` recorded (checked for consistency, never written)."""
    catalog = app.catalog
    last_index = catalog.max_proof_index()
    checks = check_locations(app)
    return assemble_report(
        now=now, policy=app.policy, plan=Sweeper(app).plan(at=now), counts=catalog.counts(),
        tally=catalog.sampling_tally(), notes=catalog.notes_findings(),
        deletions=catalog.deletions_by_day(), findings=catalog.findings(),
        residency=_with_location_checks(residency_rows(app.settings), checks),
        contradicted_stores=sum(1 for c in checks if c.status in CONTRADICTING),
        proof_log=proof_log_status(app.proof_log, location=app.settings.proofs,
                                   catalog_proofs=0 if last_index is None else last_index + 1,
                                   witness=witness),
        audit_log=audit_log_status(app), keys=keys_status(app),
        standing_objections=len(catalog.standing_objections()),
    )
