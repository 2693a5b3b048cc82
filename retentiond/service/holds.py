"""Legal holds: nothing held is deleted. Every change is written to the audit log first,
so a hold change is never in force without its audit entry."""

from __future__ import annotations

from datetime import datetime

from retentiond.core.model import State
from retentiond.errors import NotFoundError, RefusedError, UsageError
from retentiond.service.wiring import App


def _check(reason: str, actor: str) -> None:
    if not reason.strip() or not actor.strip():
        raise UsageError("hold: --reason and --actor must not be empty")


def add_holds(app: App, ids: list[str], *, reason: str, actor: str, now: datetime) -> None:
    """Hold every recording in ``ids``; refuses all if one cannot be held."""
    _check(reason, actor)
    for object_id in ids:
        rec = app.catalog.get(object_id)
        if rec.state is State.DELETING:
            raise RefusedError(f"recording {object_id}: deletion already under way since its "
                               "due date; it can no longer be held")
        if rec.state not in (State.ACTIVE, State.QUARANTINED):
            raise NotFoundError(f"recording {object_id} is {rec.state.value}: nothing to hold")
    for object_id in ids:
        app.audit.append(action="hold-add", actor=actor, reason=reason, now=now,
                         object_id=object_id)
        app.catalog.add_hold(object_id, reason=reason, actor=actor, now=now)


def remove_holds(app: App, object_id: str, *, reason: str, actor: str, now: datetime) -> int:
    """Release every active hold on ``object_id``; returns how many were released."""
    _check(reason, actor)
    app.catalog.get(object_id)
    active = object_id in app.catalog.held_ids()
    app.audit.append(action="hold-remove", actor=actor, reason=reason, now=now,
                     object_id=object_id, details={"had_hold": active})
    return app.catalog.remove_holds(object_id, reason=reason, actor=actor, now=now)
