"""Enforcement: decide, delete every version, check it is gone, destroy the data key,
append the signed deletion record, commit (ARCHITECTURE "Deletion order").

Every step is idempotent, so a crash at any point is finished by the next pass:

- a row in ``deleting`` without a record: the vault delete and key destruction run again
  (deleting an absent object succeeds);
- a row in ``deleting`` with a record (key already destroyed) but no proof index: the
  record is looked for in the log tail (a crash after the append but before the commit)
  and appended only if absent, so no deletion is ever proven twice or not at all.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from retentiond.adapters.sqlite_catalog import SCRUB_QUICK_MS
from retentiond.core.canonical import JSONValue, canonical_json, rfc3339
from retentiond.core.decide import Action, Decision, decide
from retentiond.core.model import LIVE_STATES, Reason, Recording, State
from retentiond.core.policy import Policy
from retentiond.errors import (
    NotWrittenDownError,
    ObjectLockedError,
    ProofError,
    RetentiondError,
    StorageError,
)
from retentiond.faults import crashpoint
from retentiond.metrics import Backlog
from retentiond.ports import DeleteResult
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)

KEY_EVIDENCE = "wrapped data key deleted from the catalog (SQLite secure_delete)"
# recordings per batch: one catalog transaction per step, and the store deletes them all
# (DeleteObjects of up to 1,000 versions each on S3) before one listing confirms them;
# about 15 MB of results and records in memory. SIGTERM is honoured between batches: a
# batch takes seconds (10 DeleteObjects, 1 listing, 3 commits, 1 proof-log append), more
# where the confirming listing walks a very large vault prefix (about 1,000 pages per
# million objects); a SIGKILL after the stop timeout is safe, the next pass finishes it.
DELETE_BATCH = 10_000
# live recordings read and decided at a time by ``Sweeper.iter_plan`` (a few MB)
PLAN_PAGE = 5_000
LIVE_STATE_NAMES = {s.value for s in LIVE_STATES}


@dataclass(frozen=True)
class PlanItem:
    recording: Recording
    decision: Decision


@dataclass(frozen=True)
class SweepItem:
    """One recording's fate in a pass. ``outcome``: deleted, would-delete, failed,
    blocked-by-lock (the store's Object Lock refuses: retried each pass), held-overdue,
    kept-unknown-purpose."""

    id: str
    purpose: str
    outcome: str
    rule: str
    due: datetime | None
    proof_index: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class SweepReport:
    now: datetime
    dry_run: bool
    items: tuple[SweepItem, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for i in self.items if i.outcome == outcome)

    @property
    def has_warnings(self) -> bool:
        return any(i.outcome in ("failed", "blocked-by-lock", "held-overdue",
                                 "kept-unknown-purpose") for i in self.items)


def deletion_record(
    rec: Recording, *, decision: Decision, result: DeleteResult, vault_url: str,
    policy: Policy, now: datetime,
) -> bytes:
    """The canonical JSON deletion record (SPEC section 5). No personal data: no caller,
    agent, notes or original file name; ``location`` is the opaque vault key."""
    assert decision.reason is not None and decision.due is not None
    record: dict[str, JSONValue] = {
        "type": "deletion",
        "object_id": rec.id,
        "location": f"{vault_url.rstrip('/')}/{rec.location}",
        "version_ids": list(result.version_ids),
        "purpose": rec.purpose,
        "legal_basis": rec.legal_basis or "",
        "policy": {"name": policy.name, "sha256": policy.sha256},
        "policy_at_ingest": {"name": rec.policy_name, "sha256": rec.policy_sha256},
        "recorded_at": rfc3339(rec.recorded_at),
        "due_at": rfc3339(decision.due),
        "deleted_at": rfc3339(now),
        "reason": decision.reason.value,
        "plaintext_sha256": rec.plaintext_sha256,
        "ciphertext_sha256": rec.ciphertext_sha256,
        "size": rec.size,
        "key_id": f"{rec.kek_id}/{rec.id}",
        "key_destroyed": True,
        "evidence": {"store": result.evidence, "key": KEY_EVIDENCE},
    }
    if rec.erasure_commitment and decision.reason in (Reason.ERASURE_REQUEST,
                                                      Reason.OBJECTION):
        # SHA-256(salt || subject): the subject, given the salt with the erasure receipt,
        # can check the request was honoured; nobody else can link it to anyone
        record["subject_commitment"] = rec.erasure_commitment
    return canonical_json(record)


def _resumed_result(result: DeleteResult, earlier: tuple[str, ...]) -> DeleteResult:
    """The result of a deletion finished by a later pass, which listed first and so found
    only what was left: its record also names the versions earlier passes asked the
    store to delete (written down before each request), all gone now that the listing
    shows none, first, in the order asked."""
    vids = tuple(dict.fromkeys([*earlier, *result.version_ids]))
    if vids == result.version_ids:
        return result
    return DeleteResult(key=result.key, version_ids=vids, evidence=result.evidence)


class Sweeper:
    """Runs enforcement passes over the catalog."""

    def __init__(self, app: App) -> None:
        self.app = app

    def plan(self, *, at: datetime, only: Collection[str] | None = None) -> list[PlanItem]:
        """The decision for every live recording at time ``at`` (same function as sweep);
        with ``only``, for the live recordings among those ids. All in memory: for
        ``retentiond plan`` and the reports; the daemon walks ``iter_plan``."""
        return list(self.iter_plan(at=at, only=only))

    def iter_plan(self, *, at: datetime, only: Collection[str] | None = None,
                  ) -> Iterator[PlanItem]:
        """``plan`` one page of PLAN_PAGE recordings at a time, oldest recorded first:
        memory in proportion to a page (and the holds), not to the catalog. A recording
        that changes while the walk goes on is seen as it is when its page is read."""
        held = self.app.catalog.held_ids()
        policy = self.app.policy
        after: tuple[str, str] | None = None
        while True:
            page, after = self.app.catalog.live_page(LIVE_STATES, after=after,
                                                     limit=PLAN_PAGE)
            self.app.progress.beat()  # a walk over millions of recordings moves
            for rec in page:
                if only is None or rec.id in only:
                    yield PlanItem(rec, decide(rec, policy=policy, held=rec.id in held, now=at))
            if after is None:
                return

    def sweep(self, *, now: datetime, dry_run: bool = False,
              should_stop: Callable[[], bool] | None = None,
              only: Collection[str] | None = None) -> SweepReport:
        """One enforcement pass. Deletion failures are reported and retried next pass.
        ``should_stop`` (SIGTERM) is asked before each batch of deletions: the pass then
        ends after proving what it deleted (not a whole pass: it does not set
        ``retentiond_last_sweep_success_timestamp_seconds``); the rest waits for the
        next pass. Proofs are appended after each full batch and at the end of the pass,
        also when an error ends it early.

        ``only`` limits the pass to those recording ids (``subject erase``): the same
        decisions and deletion order, on fewer recordings. Deletions already pending a
        proof are still proven first, whoever started them. A limited pass is not a full
        pass: it does not set ``retentiond_last_sweep_success_timestamp_seconds`` nor
        observe ``retentiond_sweep_duration_seconds``."""
        app = self.app
        if only is not None and not isinstance(only, (set, frozenset)):
            only = frozenset(only)  # membership tests below: O(1) each
        started = app.clock.monotonic()
        items: list[SweepItem] = []
        due: list[tuple[Recording, Decision]] = []
        deleted: dict[str, tuple[str, str, datetime | None]] = {}
        proven: dict[str, int] = {}
        proof_ok = True  # after a failure, batch proofs wait briefly for the catalog
        stopped = False  # a stop request ends the walk; the rest waits for the next pass
        with app.exclusive("sweep"):
            if not dry_run:
                # erasures of another process (a ``subject erase`` whose own scrub met a
                # reader, and said so) leave the -wal file here, proofs pending or not;
                # briefly and quietly: a reader elsewhere must not slow or flood every
                # pass (the proof gate below warns when a proof has to wait for it)
                app.catalog.scrub(force=True, wait_ms=SCRUB_QUICK_MS, quiet=True)
                # what an earlier pass deleted; a failure here delays no deletion, and
                # waits briefly: the end of the pass waits the full time
                proof_ok = self._prove_logged(proven, when="start",
                                              wait_ms=SCRUB_QUICK_MS) is None
            pending = {oid for oid, _ in app.catalog.pending_proofs()}
            # about how many objects the vault holds: lets it pick the cheaper listing
            population = sum(n for _, state, n, _ in app.catalog.counts()
                             if state in LIVE_STATE_NAMES)
            # recordings the reconciler found gone from the vault: their deletion lists
            # the store first, so the record names no version it did not see
            missing: set[str] | None = None

            def delete_due() -> None:
                """Delete the due batch, unless a stop was requested."""
                nonlocal missing, stopped
                if not due:
                    return
                if should_stop is not None and should_stop():
                    stopped = True
                else:
                    if missing is None:
                        missing = self._missing()
                    deleted.update(self._delete_batch(due, now=now, items=items,
                                                      population=population, missing=missing))
                due.clear()

            try:
                # the walk finds what is due page by page; every DELETE_BATCH due
                # recordings are deleted and proven as one batch, so memory stays in
                # proportion to a batch and a failure later in the walk loses no proof
                for plan in self.iter_plan(at=now, only=only):
                    rec, d = plan.recording, plan.decision
                    if d.rule == "legal-hold-overdue":
                        items.append(SweepItem(rec.id, rec.purpose, "held-overdue", d.rule,
                                               d.due))
                        continue
                    if d.rule == "unknown-purpose":  # kept (fail closed), never silently
                        items.append(SweepItem(rec.id, rec.purpose, "kept-unknown-purpose",
                                               d.rule, None, error=d.reasons[0]))
                        continue
                    if d.action is not Action.DELETE or rec.id in pending:
                        continue
                    if dry_run:
                        items.append(SweepItem(rec.id, rec.purpose, "would-delete", d.rule,
                                               d.due))
                        continue
                    due.append((rec, d))
                    if len(due) >= DELETE_BATCH:
                        delete_due()
                        if stopped:
                            break
                        proof_ok = self._prove_logged(
                            proven, when="batch",
                            wait_ms=None if proof_ok else SCRUB_QUICK_MS) is None
                if not stopped:
                    delete_due()
            except BaseException:
                if not dry_run:  # prove what this pass deleted before the error goes up
                    try:
                        self._prove_logged(proven, when="error", wait_ms=SCRUB_QUICK_MS)
                    except Exception:  # the walk's error is the one to report
                        app.metrics.errors.labels(stage="proof").inc()
                        logger.exception("deletion proofs not appended after an error; "
                                         "retried next pass",
                                         extra={"event": "sweep.proof_failed"})
                raise
            if stopped:
                logger.info("stop requested: the due deletions not yet made are left for "
                            "the next pass", extra={"event": "sweep.stopped"})
            if not dry_run:
                failure = self._prove_logged(proven, when="end")
                if failure is not None:
                    raise failure
        done = [
            SweepItem(i, p, "deleted", r, d, proof_index=proven[i])
            for i, (p, r, d) in deleted.items() if i in proven
        ]
        report = SweepReport(now=now, dry_run=dry_run, items=tuple(done + items))
        if not dry_run and only is None:
            app.metrics.sweep_duration.observe(app.clock.monotonic() - started)
            if report.count("failed") == 0 and not stopped:  # a stopped pass is not whole
                app.metrics.last_sweep_success.set(now.timestamp())
        return report

    def _missing(self) -> set[str]:
        """Recordings the reconciler found gone from the vault."""
        return {oid for _, oid, kind, *_ in self.app.catalog.findings()
                if kind == "missing" and oid}

    def _delete_batch(
        self, batch: list[tuple[Recording, Decision]], *, now: datetime,
        items: list[SweepItem], population: int, missing: Collection[str] = frozenset(),
    ) -> dict[str, tuple[str, str, datetime | None]]:
        """Delete a batch of recordings' data and keys, each step for the whole batch at
        once (one catalog transaction, batched store requests), in the deletion order.
        A recording held since the decision, or that the store refuses, is reported in
        ``items``; returns the deleted ones (id -> purpose, rule, due).

        The store is told the version each recording was written as, so it can delete
        that first and list once to confirm (anything else listed goes too), except for a
        deletion resumed after a failure or crash, or a recording the reconciler found
        missing: there the store lists first, as the version may already be gone."""
        app = self.app
        try:
            started = app.catalog.start_deletions([
                (rec.id, d.reason.value, d.due) for rec, d in batch
                if rec.state is not State.DELETING and d.reason is not None
                and d.due is not None])
        except RetentiondError as e:
            self._failed(batch, e, items)
            return {}
        live: list[tuple[Recording, Decision]] = []
        for rec, d in batch:
            if rec.state is State.DELETING or rec.id in started:
                live.append((rec, d))
            else:
                logger.info("%s was put on hold during the pass; kept", rec.id,
                            extra={"event": "sweep.held_late", "object_id": rec.id})
                items.append(SweepItem(rec.id, rec.purpose, "held-overdue",
                                       "legal-hold-overdue", d.due))
        crashpoint("sweep.after_start_deletion")
        known = {rec.location: rec.version_id for rec, _ in live
                 if rec.state is not State.DELETING and rec.id not in missing}
        resumed = [rec.id for rec, _ in live if rec.state is State.DELETING]
        try:  # versions earlier passes asked the store to delete (named by this proof)
            earlier = app.catalog.attempted_versions(resumed) if resumed else {}
        except RetentiondError as e:
            self._failed(live, e, items)
            return {}
        ids = {rec.location: rec.id for rec, _ in live}

        def write_down(versions: Mapping[str, tuple[str, ...]]) -> None:
            """Versions about to be deleted, in the catalog first: a pass that fails or
            is killed after the store deleted them still gets them into the proof."""
            app.catalog.note_deletion_attempts({ids[k]: v for k, v in versions.items()})

        results = app.vault.delete_many([rec.location for rec, _ in live],
                                        population=population, known=known,
                                        before_delete=write_down)
        crashpoint("sweep.after_vault_delete")
        gone: list[tuple[Recording, Decision, bytes]] = []
        vault_url = app.vault.url  # once: a folder's resolves its path every time
        for rec, d in live:
            result = results[rec.location]
            if isinstance(result, StorageError):
                self._failed([(rec, d)], result, items)
                continue
            if rec.id in earlier:
                result = _resumed_result(result, earlier[rec.id])
            gone.append((rec, d, deletion_record(rec, decision=d, result=result,
                                                 vault_url=vault_url, policy=app.policy,
                                                 now=now)))
        try:
            app.catalog.destroy_keys([(rec.id, record, now) for rec, _, record in gone])
        except RetentiondError as e:
            self._failed([(rec, d) for rec, d, _ in gone], e, items)
            return {}
        crashpoint("sweep.after_key_destroyed")
        counts: Counter[tuple[str, str]] = Counter()
        for rec, d, _ in gone:
            assert d.reason is not None
            counts[(rec.purpose, d.reason.value)] += 1
            logger.info("deleted %s (%s, %s)", rec.id, rec.purpose, d.reason.value,
                        extra={"event": "sweep.deleted", "object_id": rec.id})
        for (purpose, reason), n in counts.items():
            app.metrics.deletions.labels(purpose=purpose, reason=reason).inc(n)
        return {rec.id: (rec.purpose, d.rule, d.due) for rec, d, _ in gone}

    def _failed(self, batch: list[tuple[Recording, Decision]], e: RetentiondError,
                items: list[SweepItem]) -> None:
        """Report recordings whose deletion failed; the next pass retries them. A store
        lock (S3 Object Lock retention or legal hold) is reported as ``blocked-by-lock``."""
        locked = isinstance(e, ObjectLockedError)
        stage = ("delete" if isinstance(e, StorageError)
                 and not isinstance(e, NotWrittenDownError) else "sweep")
        for rec, d in batch:
            self.app.metrics.errors.labels(stage=stage).inc()
            logger.error("deletion of %s %s, retried next pass: %s", rec.id,
                         "blocked by a store lock" if locked else "failed", e,
                         extra={"event": "sweep.delete_blocked" if locked
                                else "sweep.delete_failed", "object_id": rec.id})
            items.append(SweepItem(rec.id, rec.purpose,
                                   "blocked-by-lock" if locked else "failed", d.rule, d.due,
                                   error=str(e)))

    def _prove_logged(self, proven: dict[str, int], *, when: str,
                      wait_ms: int | None = None) -> RetentiondError | None:
        """``_prove_pending`` into ``proven``; a failure is logged, counted and returned,
        not raised (later in the pass, or the next pass, tries again; the end of the pass
        raises it)."""
        try:
            proven.update(self._prove_pending(wait_ms=wait_ms))
        except RetentiondError as e:
            self.app.metrics.errors.labels(stage="proof").inc()
            logger.error("deletion proofs not appended (%s of the pass), retried later: %s",
                         when, e, extra={"event": "sweep.proof_failed"})
            return e
        return None

    def _prove_pending(self, *, wait_ms: int | None = None) -> dict[str, int]:
        """Append the records of deletions whose key is gone; returns id -> proof index.
        ``wait_ms``: how long the catalog scrub may wait for readers elsewhere (default
        its full wait)."""
        app = self.app
        pending = app.catalog.pending_proofs()
        if not pending:
            return {}
        # the record says the key is gone from the catalog: true once no image of it
        # is left in the catalog's -wal file either (sqlite_catalog: "scrub"), whichever
        # process destroyed it, hence forced
        if not app.catalog.scrub(force=True, wait_ms=wait_ms):
            raise ProofError(f"catalog {app.catalog.path}: another process still reads an "
                             "old snapshot, so destroyed keys may remain in its -wal file; "
                             f"{len(pending)} deletion proof(s) wait for the next pass")
        out: dict[str, int] = {}
        with app.proof_lock, app.exclusive("proof-log"):
            last = app.catalog.max_proof_index()
            start = 0 if last is None else last + 1
            # entries past the last recorded index: appended by a run that crashed before
            # its commit (normally none); read once, not once per pending record
            tail: dict[bytes, int] = {}
            if start < app.proof_log.size():
                for offset, entry in enumerate(app.proof_log.entries(start)):
                    tail.setdefault(entry, start + offset)
            fresh: list[tuple[str, bytes]] = []
            for object_id, record in pending:
                found = tail.get(record)
                if found is not None:
                    out[object_id] = found
                else:
                    fresh.append((object_id, record))
            if fresh:
                try:
                    indexes = app.proof_log.append([r for _, r in fresh])
                except StorageError as e:
                    raise ProofError(f"proof log {app.settings.proofs}: append failed: {e}") from e
                out.update({oid: idx for (oid, _), idx in zip(fresh, indexes, strict=True)})
                crashpoint("sweep.after_proof_append")
            app.catalog.finish_deletions(out)
        return out


def next_due_date(plan: Iterable[PlanItem]) -> datetime | None:
    """When the next recording that is not yet due becomes due (holds excluded)."""
    return min((p.decision.due for p in plan
                if p.decision.rule == "not-due" and p.decision.due is not None), default=None)


def compute_backlog(app: App, *, now: datetime) -> Backlog:
    """Scrape-time figures: objects by purpose/state, overdue, proof-log size."""
    objects = {(purpose, state): n for purpose, state, n, _ in app.catalog.counts()
               if state != "deleted"}
    overdue = held_overdue = 0
    next_due: datetime | None = None
    for item in Sweeper(app).iter_plan(at=now):  # a page at a time: scrapes stay small
        d = item.decision
        if d.due is not None and d.due <= now:
            if d.rule == "legal-hold-overdue":
                held_overdue += 1
            else:
                overdue += 1
        if d.rule == "not-due" and d.due is not None and (next_due is None
                                                            or d.due < next_due):
            next_due = d.due
    try:
        entries = app.proof_log.size()
    except RetentiondError:
        app.metrics.errors.labels(stage="proof").inc()
        entries = -1
    return Backlog(objects=objects, overdue=overdue, held_overdue=held_overdue,
                   proof_log_entries=entries,
                   next_due_timestamp=next_due.timestamp() if next_due else None)
