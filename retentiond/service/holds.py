"""Legal holds: nothing held is deleted. Every change is written to the audit log first,
so a hold change is never in force without its audit entry.

A hold targets one recording (scope ``object``, by id), every recording of a subject
(scope ``subject``, by the keyed pseudonym of the caller identifier) or every recording
of a case (scope ``case``, by the keyed pseudonym of the sidecar's ``case_id``). Subject
and case holds also keep the recordings that arrive after them: the catalog matches them
at every decision. The clear identifiers never reach the catalog, the audit log or a log
line; only their pseudonyms do.

A second hold with the same scope, target and reason as one in force changes nothing
("already held"); a hold with another reason (another case, another authority) is a
hold of its own, released with the others by ``hold remove``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from retentiond.core.model import State, case_pseudonym_input
from retentiond.errors import NotFoundError, RefusedError, StorageError, UsageError
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)

SCOPES = ("object", "subject", "case")


@dataclass(frozen=True)
class HoldTarget:
    """What a hold is placed on: a recording id, or a subject's or case's pseudonym."""

    scope: str
    target: str

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"hold scope must be one of {', '.join(SCOPES)}")
        if not self.target:
            raise ValueError("empty hold target")

    @property
    def label(self) -> str:
        """How the target is named to the operator: the id, or the scope and a short
        pseudonym (never the clear identifier, which retentiond does not keep)."""
        if self.scope == "object":
            return self.target
        return f"{self.scope} {short_pseudonym(self.target)}"


@dataclass(frozen=True)
class HoldChange:
    """The outcome of placing or releasing a hold on one target.

    ``changed``: a hold was added or at least one released (False: already held for this
    reason, or nothing to release). ``released``: how many holds were released.
    ``covered``: the recordings the target covers now (active or quarantined).
    ``not_held``: the target's recordings whose deletion is already under way, which no
    hold can stop any more. ``warnings``: store legal holds that could not be mirrored."""

    target: HoldTarget
    changed: bool
    covered: tuple[str, ...]
    released: int = 0
    not_held: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def short_pseudonym(pseudonym: str) -> str:
    """``hmac-sha256:1a2b3c4d…`` (the first 8 hex digits): enough to tell holds apart."""
    prefix, _, digest = pseudonym.partition(":")
    return f"{prefix}:{digest[:8]}…" if digest else pseudonym[:20]


def object_targets(ids: Sequence[str]) -> list[HoldTarget]:
    """The hold targets of recording ids; UsageError for an empty id."""
    if any(not i.strip() for i in ids):
        raise UsageError("hold: empty recording id")
    return [HoldTarget("object", i) for i in ids]


def subject_target(app: App, subject: str) -> HoldTarget:
    """The hold target of a caller identifier (its keyed pseudonym, as ingest stores it)."""
    return HoldTarget("subject", subject_pseudonym(app, subject))


def case_target(app: App, case_id: str) -> HoldTarget:
    """The hold target of a case id (its keyed pseudonym, as ingest stores it)."""
    if not case_id.strip():
        raise UsageError("--case: empty case id")
    return HoldTarget("case", app.keys.pseudonym(case_pseudonym_input(case_id)))


def subject_pseudonym(app: App, subject: str) -> str:
    """The keyed pseudonym ingest stores for ``subject``; UsageError when it is empty."""
    try:
        return app.keys.pseudonym(subject)
    except ValueError:
        raise UsageError("subject: empty identifier") from None


def _check(reason: str, actor: str) -> None:
    if not reason.strip() or not actor.strip():
        raise UsageError("hold: --reason and --actor must not be empty")


def mirror_hold(app: App, object_id: str, *, on: bool) -> str | None:
    """Mirror the hold on the vault's own legal hold (S3 Object Lock); a failure leaves
    retentiond's hold in force and is returned as a warning."""
    rec = app.catalog.get(object_id)
    try:
        app.vault.mirror_legal_hold(rec.location, version_id=rec.version_id, on=on)
    except StorageError as e:
        app.metrics.errors.labels(stage="vault").inc()
        logger.warning("legal hold of %s not mirrored on the store: %s", object_id, e,
                       extra={"event": "hold.mirror_failed", "object_id": object_id})
        return (f"{object_id}: retentiond's hold is {'set' if on else 'released'}, but the "
                f"store's legal hold could not be {'set' if on else 'released'}: {e}")
    return None


def _recordings_of(app: App, target: HoldTarget) -> tuple[list[str], list[str]]:
    """(ids a hold on ``target`` keeps now, ids of it already being deleted)."""
    if target.scope == "object":
        rec = app.catalog.get(target.target)
        recs = [rec]
    elif target.scope == "subject":
        recs = app.catalog.query(subject_ref=target.target,
                                 states=[State.ACTIVE, State.QUARANTINED, State.DELETING])
    else:
        recs = app.catalog.query(case_ref=target.target,
                                 states=[State.ACTIVE, State.QUARANTINED, State.DELETING])
    live = [r.id for r in recs if r.state in (State.ACTIVE, State.QUARANTINED)]
    deleting = [r.id for r in recs if r.state is State.DELETING]
    return live, deleting


def _already_held(app: App, target: HoldTarget, reason: str) -> bool:
    return any(scope == target.scope and held == target.target
               and existing.strip() == reason.strip()
               for _, scope, held, existing, _, _ in app.catalog.active_holds())


def place_holds(app: App, targets: Sequence[HoldTarget], *, reason: str, actor: str,
                now: datetime) -> list[HoldChange]:
    """Hold every target. A recording id must be live: refuses all if one cannot be held
    (unknown: NotFoundError; deletion under way: RefusedError). A subject or case needs
    no recording yet: its hold keeps whatever arrives later. A target already held for
    the same reason is left as it is (not audited: nothing changes)."""
    _check(reason, actor)
    for t in targets:
        if t.scope != "object":
            continue
        rec = app.catalog.get(t.target)
        if rec.state is State.DELETING:
            raise RefusedError(f"recording {t.target}: deletion already under way since its "
                               "due date; it can no longer be held")
        if rec.state not in (State.ACTIVE, State.QUARANTINED):
            raise NotFoundError(f"recording {t.target} is {rec.state.value}: nothing to hold")
    changes: list[HoldChange] = []
    for t in targets:
        covered, deleting = _recordings_of(app, t)
        if _already_held(app, t, reason):
            changes.append(HoldChange(t, changed=False, covered=tuple(covered),
                                      not_held=tuple(deleting)))
            continue
        if t.scope == "object":
            app.audit.append(action="hold-add", actor=actor, reason=reason, now=now,
                             object_id=t.target)
        else:
            app.audit.append(action="hold-add", actor=actor, reason=reason, now=now,
                             details={"scope": t.scope, "target": t.target,
                                      "recordings_now": len(covered)})
        app.catalog.add_hold(t.target, reason=reason, actor=actor, now=now, scope=t.scope)
        logger.info("hold added on %s (%d recordings now)", t.label, len(covered),
                    extra={"event": "hold.added", "scope": t.scope})
        warnings = [w for w in (mirror_hold(app, oid, on=True) for oid in covered) if w]
        changes.append(HoldChange(t, changed=True, covered=tuple(covered),
                                  not_held=tuple(deleting), warnings=tuple(warnings)))
    return changes


def release_holds(app: App, target: HoldTarget, *, reason: str, actor: str,
                  now: datetime) -> HoldChange:
    """Release every hold in force on ``target`` (audited first, even when there is
    none). The store's legal hold is released only on the recordings that no other hold
    (by id, subject or case) still keeps."""
    _check(reason, actor)
    covered, _ = _recordings_of(app, target)
    active = sum(1 for _, scope, held, _, _, _ in app.catalog.active_holds()
                 if scope == target.scope and held == target.target)
    if target.scope == "object":
        app.audit.append(action="hold-remove", actor=actor, reason=reason, now=now,
                         object_id=target.target, details={"had_hold": active > 0})
    else:
        app.audit.append(action="hold-remove", actor=actor, reason=reason, now=now,
                         details={"scope": target.scope, "target": target.target,
                                  "had_hold": active > 0,
                                  "recordings_now": len(covered)})
    n = app.catalog.remove_holds(target.target, reason=reason, actor=actor, now=now,
                                 scope=target.scope)
    warnings: list[str] = []
    if n:
        logger.info("%d hold(s) released on %s", n, target.label,
                    extra={"event": "hold.released", "scope": target.scope})
        still_held = app.catalog.held_ids()
        warnings = [w for w in (mirror_hold(app, oid, on=False) for oid in covered
                                if oid not in still_held) if w]
    return HoldChange(target, changed=n > 0, covered=tuple(covered), released=n,
                      warnings=tuple(warnings))


def add_holds(app: App, ids: list[str], *, reason: str, actor: str,
              now: datetime) -> list[str]:
    """Hold every recording in ``ids``; refuses all if one cannot be held. Returns
    warnings (a store legal hold that could not be mirrored)."""
    changes = place_holds(app, object_targets(ids), reason=reason, actor=actor, now=now)
    return [w for c in changes for w in c.warnings]


def remove_holds(app: App, object_id: str, *, reason: str, actor: str,
                 now: datetime) -> tuple[int, str | None]:
    """Release every active hold on ``object_id``; returns (how many were released, a
    warning if the store's legal hold could not be released)."""
    change = release_holds(app, object_targets([object_id])[0], reason=reason,
                           actor=actor, now=now)
    return change.released, change.warnings[0] if change.warnings else None
