"""The daemon loop: watch, ingest, enforce, serve metrics.

Signal handlers only set flags. ``run_once()`` is the unit tests drive. SIGTERM (or
SIGINT) finishes the current file or deletion and exits 0; SIGHUP reloads configuration
and policies and swaps them only if they are valid.

Readiness of an inbox file: its size, mtime and sidecar must stay unchanged for
``ingest.settle_seconds``, and no program may have it open for writing (a Linux read
lease, ``localfs.ReadLease``, where one can be taken; a file found still open, or opened
for writing while it is read, waits the settle time again); then it is ingested at once
if its sidecar is there, otherwise
once retentiond has seen it for ``ingest.sidecar_wait_seconds`` (a recording without
sidecar is classified by the policy's rules, or quarantined). A full scan runs at
start-up (files dropped while the daemon was stopped) and at least every minute;
watchdog events make new files visible at once in between.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import FrameType

from retentiond.adapters.fswatch import InboxWatcher
from retentiond.adapters.localfs import InboxFile, scan_inbox
from retentiond.adapters.s3_inbox import S3Candidate
from retentiond.concurrency import in_order
from retentiond.core.sidecar import METADATA_PREFIX
from retentiond.errors import (
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_WARNINGS,
    ConfigError,
    RetentiondError,
)
from retentiond.faults import hangpoint
from retentiond.service.events import (
    EventRouter,
    MinioListener,
    SqsListener,
    WebhookServer,
    read_token,
)
from retentiond.service.ingest import Ingestor, IngestOutcome
from retentiond.service.policy_audit import record_policy_in_force
from retentiond.service.reconcile import reconcile_safely
from retentiond.service.sweep import Sweeper, SweepReport, next_due_date
from retentiond.service.wiring import App, load_keys, load_policy, sqs_client
from retentiond.settings import load_settings

logger = logging.getLogger(__name__)

MAX_SLEEP_SECONDS = 60.0


@dataclass(frozen=True)
class Candidate:
    """A recording waiting in an inbox (a file or a bucket object)."""

    ident: str  # its source: path or s3:// URL
    signature: tuple[object, ...]  # changes when the recording or its sidecar changes
    has_sidecar: bool
    item: InboxFile | S3Candidate
    atomic: bool = False  # an object is complete once visible: no settle time
    server_age: float = 0.0  # seconds since the store wrote it (objects only)


@dataclass
class Settler:
    """Tracks inbox recordings until they are ready (monotonic clock, seconds)."""

    settle: float
    sidecar_wait: float
    _seen: dict[str, tuple[tuple[object, ...], float]] = field(default_factory=dict)

    def observe(
        self, candidates: list[Candidate], *, mono: float
    ) -> tuple[list[Candidate], float | None]:
        """(candidates ready now, seconds until the next one may be ready or None)."""
        ready: list[Candidate] = []
        next_in: float | None = None
        current = {c.ident for c in candidates}
        for ident in list(self._seen):
            if ident not in current:
                del self._seen[ident]
        for c in candidates:
            prev = self._seen.get(c.ident)
            if prev is None or prev[0] != c.signature:
                self._seen[c.ident] = (c.signature, mono)
                first = mono
            else:
                first = prev[1]
            stable_for = mono - first
            # files: observed time only (an mtime preserved by `cp -p` or rsync says nothing
            # about whether the sidecar is on its way); objects: S3 sets LastModified itself
            age = max(stable_for, c.server_age) if c.atomic else stable_for
            if not c.atomic and stable_for < self.settle:
                wait = self.settle - stable_for
            elif c.has_sidecar or age >= self.sidecar_wait:
                ready.append(c)
                continue
            else:
                wait = self.sidecar_wait - age
            next_in = wait if next_in is None else min(next_in, wait)
        return ready, next_in

    def forget(self, ident: str) -> None:
        self._seen.pop(ident, None)

    def restart(self, ident: str, *, mono: float) -> None:
        """The recording turned out not to be complete (changed while read, or still open
        for writing): it must stay unchanged for the settle time again before a retry."""
        seen = self._seen.get(ident)
        if seen is not None:
            self._seen[ident] = (seen[0], mono)


@dataclass(frozen=True)
class PassReport:
    ingested: tuple[IngestOutcome, ...]
    sweep: SweepReport | None
    pending: int
    store_errors: tuple[int, ...] = ()  # exit codes of store failures outside a recording

    @property
    def has_warnings(self) -> bool:
        bad = any(o.outcome != "stored" for o in self.ingested) or self.pending > 0
        return bad or (self.sweep is not None and self.sweep.has_warnings)

    @property
    def exit_code(self) -> int:
        """``run --once``: the most specific failure code among recordings that failed
        (e.g. 5 storage, 4 bad input), else 1 with warnings, else 0."""
        failed = [o.exit_code for o in self.ingested if o.outcome == "failed"]
        failed += self.store_errors
        if failed:
            return max(failed)
        return EXIT_WARNINGS if self.has_warnings else EXIT_OK


class Daemon:
    """Owns the loop; ``run_once`` and ``ingest_ready`` are usable without threads."""

    def __init__(self, app: App, *, sleep: Callable[[float], object] | None = None) -> None:
        self.app = app
        self.ingestor = Ingestor(app)
        self.sweeper = Sweeper(app)
        self.settler = Settler(app.settings.settle_seconds, app.settings.sidecar_wait_seconds)
        self._wake = threading.Event()
        self._stop = False
        self._reload = False
        self._sleep = sleep
        self.inbox_errors = 0
        self.store_error_codes: list[int] = []  # this pass: inbox listing, reconciliation
        self._metadata_seen: dict[str, tuple[str, bool]] = {}

    # -- one pass ---------------------------------------------------------------------

    def _candidates(self, *, now: datetime) -> list[Candidate]:
        out: list[Candidate] = []
        for root_path in self.app.folder_inboxes:
            if not root_path.is_dir():
                self.inbox_errors += 1
                self.store_error_codes.append(EXIT_STORAGE)
                self.app.metrics.errors.labels(stage="watch").inc()
                logger.error("inbox %s is not a folder", root_path,
                             extra={"event": "inbox.missing"})
                continue
            out.extend(Candidate(ident=str(f.path), signature=(f.size, f.mtime, f.sidecar_mtime),
                                 has_sidecar=f.sidecar is not None, item=f)
                       for f in scan_inbox(root_path))
            self.ingestor.apply_late_sidecars(root_path, now=self.app.clock.now())
        for inbox in self.app.s3_inboxes:
            try:
                listed, orphans = inbox.scan()
                self.ingestor.apply_late_object_sidecars(inbox, orphans, now=now)
            except RetentiondError as e:
                self.inbox_errors += 1
                self.store_error_codes.append(e.exit_code)
                self.app.metrics.errors.labels(stage="watch").inc()
                self.app.metrics.count_store_error("inbox", e)
                logger.error("cannot list inbox %s: %s", inbox.url, e,
                             extra={"event": "inbox.unreachable"})
                continue
            out.extend(self._object_candidate(c, now=now) for c in listed)
        return out

    def _object_candidate(self, c: S3Candidate, *, now: datetime) -> Candidate:
        """A bucket recording. Without a ``KEY.json`` it is HEADed once (per ETag) to see
        whether it carries its sidecar as ``x-amz-meta-retentiond-*`` metadata."""
        has_sidecar = c.sidecar is not None
        age = (now - c.item.modified).total_seconds()
        if not has_sidecar and age < self.app.settings.sidecar_wait_seconds:
            known = self._metadata_seen.get(c.source)
            if known is None or known[0] != c.item.etag:
                try:
                    head = c.inbox.current(c.key)
                    meta = head is not None and any(
                        k.startswith(METADATA_PREFIX) for k in head.metadata)
                except RetentiondError:
                    meta = False
                known = (c.item.etag, meta)
                self._metadata_seen[c.source] = known
            has_sidecar = known[1]
        return Candidate(ident=c.source, item=c, atomic=True, server_age=max(0.0, age),
                         signature=(c.item.etag, c.item.size,
                                    c.sidecar.etag if c.sidecar else None),
                         has_sidecar=has_sidecar)

    def ingest_ready(
        self, *, now: datetime, budget: float | None = None
    ) -> tuple[list[IngestOutcome], float | None, int]:
        """Ingest settled inbox files, for at most ``budget`` seconds (so a large backlog
        cannot delay deletions). Returns (outcomes, next check in s, still pending)."""
        started = self.app.clock.monotonic()
        candidates = self._candidates(now=now)
        pending = {c.ident for c in candidates}
        self._metadata_seen = {k: v for k, v in self._metadata_seen.items() if k in pending}
        ready, next_in = self.settler.observe(candidates, mono=self.app.clock.monotonic())
        outcomes = []
        over_budget = False

        def keep_going() -> bool:
            nonlocal over_budget
            self.app.progress.beat()  # a recording starts: the daemon is not stuck
            if budget is not None and self.app.clock.monotonic() - started > budget:
                over_budget = True
            return not self._stop and not over_budget

        for c, outcome in in_order(ready, lambda c: self._ingest_one(c, now=now),
                                   workers=self.app.settings.ingest_workers,
                                   keep_going=keep_going):
            if outcome.outcome == "changed":  # changed, or still open for writing: waits
                self.settler.restart(c.ident, mono=self.app.clock.monotonic())
            else:
                self.settler.forget(c.ident)
                pending.discard(c.ident)
            outcomes.append(outcome)
        if any(o.outcome == "changed" for o in outcomes):  # tried again after settling
            settle = self.settler.settle
            next_in = settle if next_in is None else min(next_in, settle)
        if over_budget and len(outcomes) < len(ready):
            next_in = 0.0  # more is ready: come back right after the sweep
        return outcomes, next_in, len(pending)

    def _ingest_one(self, c: Candidate, *, now: datetime) -> IngestOutcome:
        """One ready recording (in a worker thread when ``ingest.workers`` > 1)."""
        try:
            if isinstance(c.item, InboxFile):
                return self.ingestor.ingest(c.item.root, c.item.relpath, now=now)
            return self.ingestor.ingest_object(c.item.inbox, c.item.key, now=now,
                                               sidecar_listed=c.item.sidecar is not None,
                                               listed_size=c.item.item.size)
        except Exception:  # a bug must not stop the other recordings
            self.app.metrics.errors.labels(stage="ingest").inc()
            logger.exception("unexpected failure ingesting %s; left in place", c.ident,
                             extra={"event": "ingest.bug"})
            return IngestOutcome(c.ident, "failed", message="internal error")

    def run_once(self, *, wait: bool = True) -> PassReport:
        """Do all pending work: recover, ingest everything (waiting for files to settle when
        ``wait``), then one enforcement pass."""
        app = self.app
        with app.exclusive("daemon", wait=False):
            return self._run_once(wait=wait)

    def start_proof_log(self) -> bool:
        """A log in a new bucket prefix has no checkpoint yet: publish the empty one (as
        ``init`` does for a folder) so ``proof verify`` passes from day one."""
        app = self.app
        try:
            with app.proof_lock, app.exclusive("proof-log"):
                app.proof_log.initialize()
        except RetentiondError as e:
            app.metrics.errors.labels(stage="proof").inc()
            logger.error("cannot initialise the proof log: %s (retried by the next sweep)",
                         e, extra={"event": "proof.init_failed"})
            return False
        return True

    def _run_once(self, *, wait: bool) -> PassReport:
        app = self.app
        proof_log_ok = self.start_proof_log()
        self.ingestor.recover()
        self.store_error_codes = [] if proof_log_ok else [EXIT_STORAGE]
        if reconcile_safely(app, now=app.clock.now()) is None:
            self.store_error_codes.append(EXIT_STORAGE)
        final: dict[str, IngestOutcome] = {}  # the last outcome of each recording
        pending = 0
        # files still changing after this long are left for the next run (bounded exit)
        deadline = app.clock.monotonic() + app.settings.sidecar_wait_seconds + \
            10 * app.settings.settle_seconds + 5
        while not self._stop:
            batch, next_in, pending = self.ingest_ready(now=app.clock.now())
            for o in batch:  # one still being written, tried again: its latest try counts
                final.pop(o.source, None)
                final[o.source] = o
            if not wait or next_in is None or pending == 0:
                break
            if app.clock.monotonic() > deadline:
                logger.warning("%d file(s) still changing; left for the next run", pending,
                               extra={"event": "ingest.unsettled"})
                break
            self._pause(min(next_in, MAX_SLEEP_SECONDS) + 0.05)
        report = self.sweeper.sweep(now=app.clock.now())
        return PassReport(tuple(final.values()), report, pending + self.inbox_errors,
                          tuple(self.store_error_codes))

    def _pause(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self._wake.wait(seconds)
            self._wake.clear()

    # -- forever ----------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    def install_signal_handlers(self) -> None:
        def on_term(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)

    def reload(self) -> None:
        """Re-read config, policies and keys; swap only if valid. Store locations (inbox,
        vault, proofs, catalog) are read at start-up: changing them needs a restart."""
        app = self.app
        old = app.settings
        try:
            settings = load_settings(old.config_file)
            if settings.proof_origin is None:  # still the log key's name, read at start
                settings = replace(settings, proof_origin=old.proof_origin)
            moved = [name for name in ("inbox", "vault", "proofs", "catalog", "state_dir",
                                       "keys_dir", "proof_origin")
                     if getattr(settings, name) != getattr(old, name)]
            if moved:
                raise ConfigError(f"{', '.join(moved)} changed: store locations and keys "
                                  "need a restart")
            policy = load_policy(settings)
            keys = load_keys(settings)
        except RetentiondError as e:
            app.metrics.errors.labels(stage="policy").inc()
            logger.error("reload refused, keeping the running configuration: %s", e,
                         extra={"event": "reload.refused"})
            return
        app.policy, app.settings, app.keys = policy, settings, keys
        try:
            record_policy_in_force(app, actor="retentiond (reload)", now=app.clock.now())
        except RetentiondError as e:  # the policy is in force; the next acting command retries
            app.metrics.errors.labels(stage="audit").inc()
            logger.error("cannot audit the reloaded policy: %s", e,
                         extra={"event": "reload.audit_failed"})
        self.settler.settle = settings.settle_seconds
        self.settler.sidecar_wait = settings.sidecar_wait_seconds
        logger.info("reloaded: policy %s sha256 %s", policy.name, policy.sha256,
                    extra={"event": "reload.done"})

    def _event_listeners(self) -> list[WebhookServer | SqsListener | MinioListener]:
        """The configured bucket event sources (webhook, SQS), all waking this loop."""
        app, s = self.app, self.app.settings
        router = EventRouter(app.s3_inboxes, wake=self._wake.set, metrics=app.metrics)
        out: list[WebhookServer | SqsListener | MinioListener] = []
        if s.webhook_addr:
            try:
                out.append(WebhookServer(s.webhook_addr, router,
                                         token=read_token(s.webhook_token_file)))
            except OSError as e:
                raise ConfigError(f"events.webhook_addr: cannot listen on {s.webhook_addr}: "
                                  f"{e.strerror}") from None
        if s.sqs_queue_url:
            out.append(SqsListener(s.sqs_queue_url, sqs_client(s), router))
        if s.minio_listen:
            out.append(MinioListener(app.s3_inboxes, router,
                                     endpoint_url=s.s3.get("endpoint_url", ""),
                                     region=s.s3.get("region"), profile=s.s3.get("profile")))
        return out

    def _beat_then_stop(self) -> bool:
        """The sweep asks this before each batch of deletions: work moves, stop if asked."""
        self.app.progress.beat()
        return self._stop

    def next_due_in(self, *, now: datetime) -> float | None:
        due = next_due_date(self.sweeper.iter_plan(at=now))
        return None if due is None else max(0.0, (due - now).total_seconds())

    def run_forever(self, *, locked: bool = False) -> int:
        """The daemon. Returns the exit code (0 after SIGTERM). ``locked``: the caller
        already holds the daemon lock (``App.exclusive("daemon")``)."""
        if locked:
            return self._run_forever()
        with self.app.exclusive("daemon", wait=False):
            return self._run_forever()

    def _run_forever(self) -> int:
        app = self.app
        watcher = InboxWatcher(list(app.folder_inboxes), on_change=self._wake.set)
        watcher.start()
        listeners = self._event_listeners()
        for listener in listeners:
            listener.start()
        self.start_proof_log()
        logger.info("retentiond running: inbox %s, vault %s, policy %s",
                    ", ".join(app.settings.inbox), app.settings.vault, app.policy.name,
                    extra={"event": "daemon.started"})
        try:
            sweep_at = app.clock.monotonic()  # sweep once at start-up
            reconcile_at = app.clock.monotonic()
            while not self._stop:
                app.progress.beat()
                self.store_error_codes.clear()  # only run --once reports them as its exit
                if self._reload:
                    self._reload = False
                    self.reload()
                next_file_in: float | None = None
                try:
                    self.ingestor.recover()  # cheap when there is nothing to repair
                    batch, next_file_in, _ = self.ingest_ready(
                        now=app.clock.now(), budget=app.settings.sweep_interval_seconds)
                    if batch:  # a new recording may be due at once (objection, short policy)
                        hangpoint("daemon.after_ingest")
                        sweep_at = app.clock.monotonic()
                    if self._stop:
                        break
                    if app.clock.monotonic() >= reconcile_at:
                        reconcile_safely(app, now=app.clock.now())
                        reconcile_at = app.clock.monotonic() + \
                            app.settings.reconcile_interval_seconds
                    if app.clock.monotonic() >= sweep_at:
                        self.sweeper.sweep(now=app.clock.now(),
                                           should_stop=self._beat_then_stop)
                        if self._stop:  # the next wake-up walks every live recording
                            break
                        due_in = self.next_due_in(now=app.clock.now())
                        interval = app.settings.sweep_interval_seconds
                        sweep_at = app.clock.monotonic() + (
                            interval if due_in is None else min(interval, due_in)
                        )
                except RetentiondError as e:
                    app.metrics.errors.labels(stage="sweep").inc()
                    logger.error("pass failed, retrying: %s", e, extra={"event": "daemon.error"})
                    sweep_at = app.clock.monotonic() + 5.0
                # an erasing write (a rolled-back ingest, a deletion) whose quick scrub met
                # a reader elsewhere: its -wal images go at the next turn, proofs or not
                # (nothing to do unless dirty; its first failure was logged: quiet retries)
                app.catalog.scrub(quiet=True)
                waits = [sweep_at - app.clock.monotonic(), MAX_SLEEP_SECONDS,
                         app.settings.reconcile_interval_seconds]
                if next_file_in is not None:
                    waits.append(next_file_in + 0.05)
                self._wake.wait(max(0.05, min(waits)))
                self._wake.clear()
        finally:
            watcher.stop()
            for listener in listeners:
                listener.stop()
        logger.info("retentiond stopped", extra={"event": "daemon.stopped"})
        return 0
