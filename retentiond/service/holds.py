"""Legal holds: nothing held is deleted. Every change is written to the audit log first,
so a hold change is never in force without its audit entry."""

from __future__ import annotations

import logging
from datetime import datetime

from retentiond.core.model import State
from retentiond.errors import NotFoundError, RefusedError, StorageError, UsageError
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)


def _check(reason: str, actor: str) -> None:
    if not reason.strip() or not actor.strip():
        raise UsageError("hold: --reason and --actor must not be empty")


def _mirror(app: App, object_id: str, *, on: bool) -> str | None:
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


def add_holds(app: App, ids: list[str], *, reason: str, actor: str,
              now: datetime) -> list[str]:
    """Hold every recording in ``ids``; refuses all if one cannot be held. Returns
    warnings (a store legal hold that could not be mirrored)."""
    _check(reason, actor)
    for object_id in ids:
        rec = app.catalog.get(object_id)
        if rec.state is State.DELETING:
            raise RefusedError(f"recording {object_id}: deletion already under way since its "
                               "due date; it can no longer be held")
        if rec.state not in (State.ACTIVE, State.QUARANTINED):
            raise NotFoundError(f"recording {object_id} is {rec.state.value}: nothing to hold")
    warnings = []
    for object_id in ids:
        app.audit.append(action="hold-add", actor=actor, reason=reason, now=now,
                         object_id=object_id)
        app.catalog.add_hold(object_id, reason=reason, actor=actor, now=now)
        warning = _mirror(app, object_id, on=True)
        if warning:
            warnings.append(warning)
    return warnings


def remove_holds(app: App, object_id: str, *, reason: str, actor: str,
                 now: datetime) -> tuple[int, str | None]:
    """Release every active hold on ``object_id``; returns (how many were released, a
    warning if the store's legal hold could not be released)."""
    _check(reason, actor)
    app.catalog.get(object_id)
    active = object_id in app.catalog.held_ids()
    app.audit.append(action="hold-remove", actor=actor, reason=reason, now=now,
                     object_id=object_id, details={"had_hold": active})
    n = app.catalog.remove_holds(object_id, reason=reason, actor=actor, now=now)
    return n, _mirror(app, object_id, on=False) if n else None
