"""``retentiond run``: the daemon.

As a service it also: serves ``/metrics``, ``/healthz`` and ``/readyz``; counts store and
key provider errors by wrapping the app's ports; counts reloads and applies a reloaded
``log_level``; tells systemd (``$NOTIFY_SOCKET``) READY=1 once ``/readyz`` would answer
200, RELOADING=1/READY=1 around a SIGHUP reload and STOPPING=1 when SIGTERM arrives.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import threading
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path

from retentiond.adapters.localfs import scan_inbox
from retentiond.cli.common import Subparsers, app_from
from retentiond.core.model import State
from retentiond.errors import ObjectNotFoundError, RetentiondError
from retentiond.logsetup import setup_logging
from retentiond.metrics import (
    InstrumentedKeyProvider,
    InstrumentedObjectStore,
    InstrumentedStore,
    ServiceStatus,
)
from retentiond.service.daemon import Daemon
from retentiond.service.http import StatusServer
from retentiond.service.ingest import IngestOutcome
from retentiond.service.locations import enforce_locations
from retentiond.service.sdnotify import Notifier, watchdog_period
from retentiond.service.sweep import Sweeper, SweepReport, compute_backlog
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)

READY_PROBE_KEY = "readyz-probe"  # never a valid vault key: the store answers "not found"
READY_RETRY_SECONDS = 1.0


def register(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="the daemon: watch, ingest, enforce, serve /metrics",
                       description="Watch the inboxes, ingest, enforce deletion dates and "
                       "serve /metrics, /healthz and /readyz until SIGTERM.")
    p.add_argument("--once", action="store_true",
                   help="do all pending work (ingest, one sweep) and exit")
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="listen address for /metrics, /healthz, /readyz ('off' to disable)")
    p.set_defaults(func=cmd_run, daemon_logging=True)


def readiness(app: App) -> str | None:
    """None when the daemon can do its work, else why not (one line, no secrets): a policy
    is loaded, and the catalog, the vault, the proof log, the inboxes and the key provider
    answer."""
    if not app.policy.purposes:
        return "no policy loaded"
    try:
        app.catalog.counts()
    except Exception as e:  # noqa: BLE001 (any failure means not ready)
        return f"catalog: {e}"
    try:
        app.vault.head(READY_PROBE_KEY)
    except ObjectNotFoundError:
        pass  # the store answered
    except Exception as e:  # noqa: BLE001
        return f"vault: {e}"
    try:
        app.proof_log.size()
    except Exception as e:  # noqa: BLE001
        return f"proof log: {e}"
    for folder in app.folder_inboxes:
        if not folder.is_dir():
            return f"inbox: {folder} is not a folder"
    for inbox in app.s3_inboxes:
        try:
            inbox.check()
        except Exception as e:  # noqa: BLE001
            return f"inbox: {e}"
    try:
        probe = bytes(32)
        wrapped = app.keys.wrap(probe, object_id=READY_PROBE_KEY)
        if app.keys.unwrap(wrapped, object_id=READY_PROBE_KEY) != probe:
            raise RetentiondError("the probe key did not round-trip")
    except Exception as e:  # noqa: BLE001
        app.metrics.key_errors.labels(operation="probe").inc()
        return f"keys: {e}"
    return None


def service_status(app: App, *, ready: Callable[[], str | None]) -> ServiceStatus:
    """Scrape-time figures: readiness, policy in force, quarantine, folder-inbox backlog."""
    q_objects = q_bytes = 0
    for _purpose, state, n, size in app.catalog.counts():
        if state == State.QUARANTINED.value:
            q_objects += n
            q_bytes += size
    files: int | None = None
    oldest: float | None = None
    now = app.clock.now()
    for root in app.settings.inbox:
        if "://" in root or not Path(root).is_dir():  # bucket inboxes: not counted here
            continue
        found = scan_inbox(Path(root))
        files = (files or 0) + len(found)
        for f in found:
            age = max(0.0, (now - f.mtime).total_seconds())
            oldest = age if oldest is None else max(oldest, age)
    return ServiceStatus(
        ready=ready() is None, policy_name=app.policy.name, policy_sha256=app.policy.sha256,
        quarantined_objects=q_objects, quarantined_bytes=q_bytes, inbox_files=files,
        inbox_oldest_age_seconds=oldest,
    )


def status_line(app: App) -> str:
    return f"running: policy {app.policy.name} ({app.policy.sha256[:12]})"


class _CountingSweeper(Sweeper):
    """The sweeper, counting what it leaves to be retried."""

    def sweep(self, *, now: datetime, dry_run: bool = False,
              should_stop: Callable[[], bool] | None = None,
              only: Collection[str] | None = None) -> SweepReport:
        try:
            report = super().sweep(now=now, dry_run=dry_run, should_stop=should_stop,
                                   only=only)
        except RetentiondError:
            self.app.metrics.retries.labels(operation="pass").inc()
            raise
        failed = report.count("failed") + report.count("blocked-by-lock")
        if failed and not dry_run:
            self.app.metrics.retries.labels(operation="delete").inc(failed)
        return report


class ServiceDaemon(Daemon):
    """The daemon loop plus what an operated service needs around it (module docstring).

    Signal handlers still only set flags: ``request_stop`` also sets ``stop_requested``,
    which the lifecycle thread waits on to log and notify outside the handler.
    """

    def __init__(self, app: App, *, notifier: Notifier) -> None:
        super().__init__(app)
        self.notifier = notifier
        self.stop_requested = threading.Event()  # also set when run() ends for any reason
        self.stop_signalled = False
        self.loop_running = threading.Event()  # the loop holds the daemon lock and works
        self.sweeper = _CountingSweeper(app)

    def ingest_ready(
        self, *, now: datetime, budget: float | None = None
    ) -> tuple[list[IngestOutcome], float | None, int]:
        self.loop_running.set()  # called by every turn of the loop, after recovery
        outcomes, next_in, pending = super().ingest_ready(now=now, budget=budget)
        failed = sum(1 for o in outcomes if o.outcome == "failed")  # left in the inbox
        if failed:
            self.app.metrics.retries.labels(operation="ingest").inc(failed)
        return outcomes, next_in, pending

    def request_stop(self) -> None:
        super().request_stop()
        self.stop_signalled = True
        self.stop_requested.set()

    def reload(self) -> None:
        app = self.app
        before = app.settings
        self.notifier.reloading()
        super().reload()  # logs reload.done or reload.refused
        if app.settings is before:
            app.metrics.reloads.labels(outcome="refused").inc()
            app.metrics.last_reload_successful.set(0)
            self.notifier.reloaded(f"reload refused (see log); {status_line(app)}")
            return
        if not isinstance(app.keys, InstrumentedKeyProvider):
            app.keys = InstrumentedKeyProvider.around(app.keys, metrics=app.metrics)
        logging.getLogger("retentiond").setLevel(app.settings.log_level.upper())
        app.metrics.reloads.labels(outcome="applied").inc()
        app.metrics.last_reload_successful.set(1)
        app.metrics.last_reload_success.set(app.clock.now().timestamp())
        self.notifier.reloaded(status_line(app))

    def lifecycle(self, *, ready: Callable[[], str | None]) -> None:
        """Thread body: READY=1 once the loop runs and the daemon is ready (checked every
        second), then, when a stop is requested, the ``daemon.stopping`` event and
        STOPPING=1."""
        last: str | None = None
        while not (self.loop_running.wait(0.1) or self.stop_requested.is_set()):
            pass
        while not self.stop_requested.is_set():
            why = ready()
            if why is None:
                self.notifier.ready(status_line(self.app))
                logger.info("ready: %s", status_line(self.app), extra={"event": "daemon.ready"})
                break
            if why != last:
                logger.warning("not ready yet: %s", why, extra={"event": "daemon.not_ready"})
                last = why
            self.stop_requested.wait(READY_RETRY_SECONDS)
        self.stop_requested.wait()
        if self.stop_signalled:
            logger.info("stop requested: finishing the current file or deletion",
                        extra={"event": "daemon.stopping"})
            self.notifier.stopping()


# /healthz (Kubernetes' liveness probe) fails once the daemon's work has not moved for
# this long (under systemd: the watchdog's period): as the unit's WatchdogSec, longer than
# any step a living but slow store can take (an S3 request with its retries: up to about
# 6 min by default)
STALL_SECONDS = 1800.0


def liveness(daemon: ServiceDaemon, *, stall_after: float = STALL_SECONDS) -> str | None:
    """None while the daemon's work moves (or its loop has not started: start-up has its
    own probe), else why it looks stuck (``/healthz`` answers 503)."""
    if not daemon.loop_running.is_set():
        return None
    idle = daemon.app.progress.idle_for()
    return None if idle < stall_after else \
        f"no progress for {idle:.0f} s (limit {stall_after:.0f} s)"


def feed_watchdog(daemon: ServiceDaemon, *, period: float) -> None:
    """Thread body: systemd's watchdog (``WatchdogSec=``). ``WATCHDOG=1`` every third of
    ``period`` once the loop runs, but only while the daemon's work moved within half of
    it (``App.progress``: each loop turn, recording started, batch of deletions, page of
    a plan or a listing, 8 MiB read, wait for another process's lock): a daemon stuck
    anywhere stops feeding it, systemd kills it (SIGABRT: faulthandler prints every
    thread's stack to the journal first) and restarts it, and the next start finishes
    the interrupted work."""
    progress = daemon.app.progress
    stalled = False
    limit = period / 2  # fed while idle for less: systemd kills 1.17 to 1.5 periods idle
    while not daemon.stop_requested.wait(period / 3):
        if not daemon.loop_running.is_set():
            continue
        idle = progress.idle_for()
        if idle < limit:
            daemon.notifier.watchdog()
            if stalled:
                logger.warning("the daemon's work moves again after %.0f s", idle,
                               extra={"event": "daemon.resumed"})
            stalled = False
        elif not stalled:
            stalled = True
            logger.error("no progress for %.0f s: the watchdog is no longer fed, systemd "
                         "restarts the daemon within %.0f s", idle, period,
                         extra={"event": "daemon.stalled"})


def instrument(app: App, daemon: Daemon) -> Callable[[], str | None]:
    """Wrap the app's ports to count their errors and register the scrape-time
    collectors; returns the readiness check (for ``/readyz``)."""
    if not isinstance(app.vault, InstrumentedObjectStore):
        app.vault = InstrumentedObjectStore.around(app.vault, store="vault", metrics=app.metrics)
    if not isinstance(app.keys, InstrumentedKeyProvider):
        app.keys = InstrumentedKeyProvider.around(app.keys, metrics=app.metrics)
    if not isinstance(app.proof_log.store, InstrumentedStore):
        app.proof_log.store = InstrumentedStore.around(app.proof_log.store, store="proofs",
                                                       metrics=app.metrics)

    def ready() -> str | None:
        return readiness(daemon.app)

    app.metrics.last_reload_success.set(app.clock.now().timestamp())
    app.metrics.watch_backlog(lambda: compute_backlog(daemon.app, now=daemon.app.clock.now()),
                              monotonic=app.clock.monotonic)
    app.metrics.watch_status(lambda: service_status(daemon.app, ready=ready))
    app.metrics.watch_process()
    return ready


def _print_once(daemon: Daemon) -> int:
    report = daemon.run_once()
    for o in report.ingested:
        print(f"{o.outcome:12} {o.object_id or '-':32} {o.source}"
              + (f"  ({o.message})" if o.message else ""))
    if report.sweep is not None:
        for i in report.sweep.items:
            print(f"{i.outcome:12} {i.id:32} {i.purpose} {i.rule}"
                  + (f" proof #{i.proof_index}" if i.proof_index is not None else "")
                  + (f"  ({i.error})" if i.error else ""))
    return report.exit_code


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {"metrics_addr": args.metrics_addr} if args.metrics_addr else {}
    app = app_from(args, **overrides)
    setup_logging(level=app.settings.log_level, json_lines=not args.once)
    if args.once:
        try:
            enforce_locations(app)  # a bucket where no recording may go: stop before storing
            return _print_once(Daemon(app))
        finally:
            app.close()
    try:
        # one daemon per setup: a second one stops here (exit 10), before it listens on
        # anything or asks the stores anything
        with app.exclusive("daemon", wait=False):
            enforce_locations(app)
            return _serve(app)
    finally:
        app.close()


def _serve(app: App) -> int:
    """The daemon with its HTTP endpoints, systemd notifications and watchdog; the
    caller holds the daemon lock."""
    daemon = ServiceDaemon(app, notifier=Notifier())
    daemon.install_signal_handlers()  # from here on SIGTERM drains instead of killing
    ready = instrument(app, daemon)
    server = None
    period = watchdog_period()
    lifecycle = threading.Thread(target=daemon.lifecycle, kwargs={"ready": ready},
                                 name="retentiond-lifecycle", daemon=True)
    if period is not None:
        faulthandler.enable()  # the watchdog's SIGABRT shows where each thread was stuck
        threading.Thread(target=feed_watchdog, args=(daemon,), kwargs={"period": period},
                         name="retentiond-watchdog", daemon=True).start()
    try:
        if app.settings.metrics_addr:
            server = StatusServer(app.settings.metrics_addr, registry=app.metrics.registry,
                                  ready=ready, alive=lambda: liveness(
                                      daemon, stall_after=period or STALL_SECONDS))
            server.start()
        lifecycle.start()
        return daemon.run_forever(locked=True)
    finally:
        daemon.stop_requested.set()
        if lifecycle.is_alive():
            lifecycle.join(timeout=2.0)
        if server is not None:
            server.stop()
