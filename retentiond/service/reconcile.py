"""The reconciler: compare the vault's listing with the catalog, so a change made behind
retentiond's back is seen (SPEC section 2: "a periodic reconciling listing").

Findings, kept in the catalog (``store_findings``), logged and exported as
``retentiond_store_findings{kind}``:

- ``missing``: a live recording's object is gone from the vault (deleted out of band, or
  the vault points at the wrong place). Confirmed by a HEAD. The key is *kept*: the object
  may come back from a replica or backup, and a wrong vault location must never turn into
  crypto-shredding everything. The recording's normal due date then deletes the key with a
  proof whose evidence says the store held nothing.
- ``changed``: the object's size differs from what was written (replaced or truncated;
  opening it would fail authentication anyway).
- ``reappeared``: an object of a recording whose deletion is already proven is back (a
  restore, a replica): it is deleted again, every version, at once. Its key is long gone,
  so it is undecryptable, but it must not stay ("nothing kept too long").
- ``orphan``: an object under the vault's key layout that the catalog does not know at
  all (another catalog, a restore): reported only, never deleted.

Recordings being ingested or deleted are in flight and skipped.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from retentiond.core.model import State
from retentiond.errors import NotFoundError, ObjectNotFoundError, StorageError
from retentiond.ports import DeleteResult, ObjectInfo
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)

KINDS = ("missing", "changed", "reappeared", "orphan")
_VAULT_KEY = re.compile(r"^v1/[0-9a-f]{2}/([0-9a-f]{32})\.rtd$")


@dataclass(frozen=True)
class Finding:
    location: str
    object_id: str | None
    kind: str
    detail: str


@dataclass(frozen=True)
class ReconcileReport:
    findings: tuple[Finding, ...]
    listed: int  # objects listed in the vault

    def count(self, kind: str) -> int:
        return sum(1 for f in self.findings if f.kind == kind)


class Reconciler:
    def __init__(self, app: App) -> None:
        self.app = app

    def reconcile(self, *, now: datetime) -> ReconcileReport:
        """One comparison of the vault with the catalog. Raises StorageError if the vault
        cannot be listed (nothing is concluded from a failed listing)."""
        app = self.app
        beat = app.progress.beat  # a listing of millions, or many HEADs: work moves
        listed: dict[str, ObjectInfo] = {}
        for item in app.vault.list("v1/"):
            listed[item.key] = item
            beat()
        total = len(listed)
        findings: list[Finding] = []
        for rec in app.catalog.query(states=[State.ACTIVE, State.QUARANTINED]):
            beat()
            info = listed.pop(rec.location, None)
            if info is None:
                try:  # a listing may lag; a HEAD is authoritative
                    info = app.vault.head(rec.location)
                except ObjectNotFoundError:
                    findings.append(Finding(rec.location, rec.id, "missing",
                                            "object absent from the vault; key kept"))
                    continue
            if info.size != rec.ciphertext_size:
                findings.append(Finding(rec.location, rec.id, "changed",
                                        f"size {info.size}, written {rec.ciphertext_size}"))
        again: dict[str, str] = {}
        for key in listed:
            beat()
            m = _VAULT_KEY.match(key)
            if m is None:
                continue  # not ours (the vault prefix may hold other things)
            try:
                state = app.catalog.get(m.group(1)).state
            except NotFoundError:
                findings.append(Finding(key, None, "orphan", "not in the catalog"))
                continue
            if state is State.DELETED:
                again[key] = m.group(1)
        if again:
            results = app.vault.delete_many(list(again))
            for key, result in results.items():
                if isinstance(result, DeleteResult):
                    logger.warning("deleted recording %s had reappeared in the vault; "
                                   "deleted again (%d versions)", again[key],
                                   len(result.version_ids),
                                   extra={"event": "reconcile.reappeared",
                                          "object_id": again[key]})
                else:
                    findings.append(Finding(key, again[key], "reappeared",
                                            f"deleted recording back in the vault; "
                                            f"cannot delete it: {result}"))
        self._record(findings, now=now)
        return ReconcileReport(tuple(findings), total)

    def _record(self, findings: list[Finding], *, now: datetime) -> None:
        app = self.app
        known = {loc for loc, *_ in app.catalog.findings()}
        for f in findings:
            if f.location not in known:
                logger.warning("vault %s: %s: %s", f.kind, f.object_id or "-", f.detail,
                               extra={"event": f"reconcile.{f.kind}",
                                      "object_id": f.object_id})
        app.catalog.replace_findings(
            [(f.location, f.object_id, f.kind, f.detail) for f in findings], now=now)
        counts = Counter(f.kind for f in findings)
        for kind in KINDS:
            app.metrics.store_findings.labels(kind=kind).set(counts[kind])


def reconcile_safely(app: App, *, now: datetime) -> ReconcileReport | None:
    """``reconcile`` for the daemon: a store failure is logged and counted, not raised."""
    try:
        return Reconciler(app).reconcile(now=now)
    except StorageError as e:
        app.metrics.errors.labels(stage="reconcile").inc()
        logger.error("reconciliation failed, retried later: %s", e,
                     extra={"event": "reconcile.failed"})
        return None
