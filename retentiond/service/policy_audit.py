"""Policy changes go to the access audit log.

Every decision is traceable to the exact policy text in force (SPEC section 3: each
recording records the policy's name and SHA-256). When the policy in force differs from the
last one this setup acted under, an audit entry ``policy-change`` names both (name and
SHA-256 of the canonical form), so an auditor can tell which policy decided each deletion
and who changed it when. Recorded by the daemon at start and on reload, and by the commands
that act (``ingest``, ``sweep``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from retentiond.service.wiring import App

logger = logging.getLogger(__name__)

META_KEY = "policy_in_force"


def record_policy_in_force(app: App, *, actor: str, now: datetime) -> bool:
    """Audit the policy in force if it changed since the last time; True if it did."""
    policy = app.policy
    current = f"{policy.sha256} {policy.name}"
    previous = app.catalog.meta(META_KEY)
    if previous == current:
        return False
    before = None
    if previous is not None:
        sha, _, name = previous.partition(" ")
        before = {"name": name, "sha256": sha}
    # the audit entry first: a crash before the catalog remembers it only repeats it
    app.audit.append(
        action="policy-change", actor=actor, now=now,
        reason="first policy in force" if before is None else "policy in force changed",
        details={"from": before, "to": {"name": policy.name, "sha256": policy.sha256}},
    )
    app.catalog.set_meta(META_KEY, current)
    logger.info("policy in force: %s sha256 %s", policy.name, policy.sha256,
                extra={"event": "policy.recorded"})
    return True
