"""The daemon loop: watch, ingest, enforce, serve metrics.

Signal handlers only set flags. ``run_once()`` is the unit tests drive. SIGTERM (or
SIGINT) finishes the current file or deletion and exits 0; SIGHUP reloads configuration
and policies and swaps them only if they are valid.

Readiness of an inbox file: its size, mtime and sidecar must stay unchanged for
``ingest.settle_seconds``; then it is ingested at once if its sidecar is there, otherwise
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType

from retentiond.adapters.fswatch import InboxWatcher
from retentiond.adapters.localfs import InboxFile, scan_inbox
from retentiond.errors import ConfigError, RetentiondError
from retentiond.service.ingest import Ingestor, IngestOutcome
from retentiond.service.sweep import Sweeper, SweepReport, next_due_date
from retentiond.service.wiring import App, load_keys, load_policy
from retentiond.settings import load_settings

logger = logging.getLogger(__name__)

MAX_SLEEP_SECONDS = 60.0


@dataclass
class Settler:
    """Tracks inbox files until they stop changing (monotonic clock, seconds)."""

    settle: float
    sidecar_wait: float
    _seen: dict[Path, tuple[tuple[object, ...], float]] = field(default_factory=dict)

    def observe(
        self, files: list[InboxFile], *, mono: float, now: datetime
    ) -> tuple[list[InboxFile], float | None]:
        """(files ready now, seconds until the next one may be ready or None)."""
        ready: list[InboxFile] = []
        next_in: float | None = None
        current = {f.path for f in files}
        for path in list(self._seen):
            if path not in current:
                del self._seen[path]
        for f in files:
            sig = (f.size, f.mtime, f.sidecar_mtime)
            prev = self._seen.get(f.path)
            if prev is None or prev[0] != sig:
                self._seen[f.path] = (sig, mono)
                first = mono
            else:
                first = prev[1]
            stable_for = mono - first
            # observed time only: an mtime preserved by `cp -p` or rsync says nothing about
            # whether the sidecar is still on its way
            age = stable_for
            if stable_for < self.settle:
                wait = self.settle - stable_for
            elif f.sidecar is not None or age >= self.sidecar_wait:
                ready.append(f)
                continue
            else:
                wait = self.sidecar_wait - age
            next_in = wait if next_in is None else min(next_in, wait)
        return ready, next_in

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)


@dataclass(frozen=True)
class PassReport:
    ingested: tuple[IngestOutcome, ...]
    sweep: SweepReport | None
    pending: int

    @property
    def has_warnings(self) -> bool:
        bad = any(o.outcome != "stored" for o in self.ingested) or self.pending > 0
        return bad or (self.sweep is not None and self.sweep.has_warnings)


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

    # -- one pass ---------------------------------------------------------------------

    def _inbox_files(self) -> list[tuple[Path, InboxFile]]:
        out: list[tuple[Path, InboxFile]] = []
        for root in self.app.settings.inbox:
            root_path = Path(root)
            if not root_path.is_dir():
                self.inbox_errors += 1
                self.app.metrics.errors.labels(stage="watch").inc()
                logger.error("inbox %s is not a folder", root, extra={"event": "inbox.missing"})
                continue
            out.extend((root_path, f) for f in scan_inbox(root_path))
            self.ingestor.apply_late_sidecars(root_path, now=self.app.clock.now())
        return out

    def ingest_ready(
        self, *, now: datetime, budget: float | None = None
    ) -> tuple[list[IngestOutcome], float | None, int]:
        """Ingest settled inbox files, for at most ``budget`` seconds (so a large backlog
        cannot delay deletions). Returns (outcomes, next check in s, still pending)."""
        started = self.app.clock.monotonic()
        files = self._inbox_files()
        by_path = {f.path: root for root, f in files}
        ready, next_in = self.settler.observe([f for _, f in files],
                                              mono=self.app.clock.monotonic(), now=now)
        outcomes = []
        for f in ready:
            if self._stop:
                break
            if budget is not None and self.app.clock.monotonic() - started > budget:
                next_in = 0.0  # more is ready: come back right after the sweep
                break
            try:
                outcome = self.ingestor.ingest(f.root, f.relpath, now=now)
            except Exception:  # a bug must not stop the other recordings
                self.app.metrics.errors.labels(stage="ingest").inc()
                logger.exception("unexpected failure ingesting %s; left in place", f.path,
                                 extra={"event": "ingest.bug"})
                outcome = IngestOutcome(str(f.path), "failed", message="internal error")
            if outcome.outcome != "changed":
                self.settler.forget(f.path)
            outcomes.append(outcome)
            del by_path[f.path]
        return outcomes, next_in, len(by_path)

    def run_once(self, *, wait: bool = True) -> PassReport:
        """Do all pending work: recover, ingest everything (waiting for files to settle when
        ``wait``), then one enforcement pass."""
        app = self.app
        with app.exclusive("daemon", wait=False):
            return self._run_once(wait=wait)

    def _run_once(self, *, wait: bool) -> PassReport:
        app = self.app
        self.ingestor.recover()
        outcomes: list[IngestOutcome] = []
        pending = 0
        # files still changing after this long are left for the next run (bounded exit)
        deadline = app.clock.monotonic() + app.settings.sidecar_wait_seconds + \
            10 * app.settings.settle_seconds + 5
        while not self._stop:
            batch, next_in, pending = self.ingest_ready(now=app.clock.now())
            outcomes.extend(batch)
            if not wait or next_in is None or pending == 0:
                break
            if app.clock.monotonic() > deadline:
                logger.warning("%d file(s) still changing; left for the next run", pending,
                               extra={"event": "ingest.unsettled"})
                break
            self._pause(min(next_in, MAX_SLEEP_SECONDS) + 0.05)
        report = self.sweeper.sweep(now=app.clock.now())
        return PassReport(tuple(outcomes), report, pending + self.inbox_errors)

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
        self.settler.settle = settings.settle_seconds
        self.settler.sidecar_wait = settings.sidecar_wait_seconds
        logger.info("reloaded: policy %s sha256 %s", policy.name, policy.sha256,
                    extra={"event": "reload.done"})

    def next_due_in(self, *, now: datetime) -> float | None:
        due = next_due_date(self.sweeper.plan(at=now))
        return None if due is None else max(0.0, (due - now).total_seconds())

    def run_forever(self) -> int:
        """The daemon. Returns the exit code (0 after SIGTERM)."""
        with self.app.exclusive("daemon", wait=False):
            return self._run_forever()

    def _run_forever(self) -> int:
        app = self.app
        watcher = InboxWatcher([Path(p) for p in app.settings.inbox], on_change=self._wake.set)
        watcher.start()
        logger.info("retentiond running: inbox %s, vault %s, policy %s",
                    ", ".join(app.settings.inbox), app.settings.vault, app.policy.name,
                    extra={"event": "daemon.started"})
        try:
            sweep_at = app.clock.monotonic()  # sweep once at start-up
            while not self._stop:
                if self._reload:
                    self._reload = False
                    self.reload()
                next_file_in: float | None = None
                try:
                    self.ingestor.recover()  # cheap when there is nothing to repair
                    batch, next_file_in, _ = self.ingest_ready(
                        now=app.clock.now(), budget=app.settings.sweep_interval_seconds)
                    if self._stop:
                        break
                    if batch:  # a new recording may be due at once (objection, short policy)
                        sweep_at = app.clock.monotonic()
                    if app.clock.monotonic() >= sweep_at:
                        self.sweeper.sweep(now=app.clock.now())
                        due_in = self.next_due_in(now=app.clock.now())
                        interval = app.settings.sweep_interval_seconds
                        sweep_at = app.clock.monotonic() + (
                            interval if due_in is None else min(interval, due_in)
                        )
                except RetentiondError as e:
                    app.metrics.errors.labels(stage="sweep").inc()
                    logger.error("pass failed, retrying: %s", e, extra={"event": "daemon.error"})
                    sweep_at = app.clock.monotonic() + 5.0
                waits = [sweep_at - app.clock.monotonic(), MAX_SLEEP_SECONDS,
                         app.settings.reconcile_interval_seconds]
                if next_file_in is not None:
                    waits.append(next_file_in + 0.05)
                self._wake.wait(max(0.05, min(waits)))
                self._wake.clear()
        finally:
            watcher.stop()
        logger.info("retentiond stopped", extra={"event": "daemon.stopped"})
        return 0
