"""``retentiond run``: the daemon."""

from __future__ import annotations

import argparse
import logging

from retentiond.cli.common import Subparsers, app_from
from retentiond.errors import ObjectNotFoundError, RetentiondError
from retentiond.logsetup import setup_logging
from retentiond.service.daemon import Daemon
from retentiond.service.http import StatusServer
from retentiond.service.sweep import compute_backlog
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)


def register(sub: Subparsers) -> None:
    p = sub.add_parser("run", help="the daemon: watch, ingest, enforce, serve /metrics",
                       description="Watch the inboxes, ingest, enforce deletion dates and "
                       "serve /metrics, /healthz and /readyz until SIGTERM.")
    p.add_argument("--once", action="store_true",
                   help="do all pending work (ingest, one sweep) and exit")
    p.add_argument("--metrics-addr", metavar="HOST:PORT",
                   help="listen address for /metrics, /healthz, /readyz ('off' to disable)")
    p.set_defaults(func=cmd_run, daemon_logging=True)


def _readiness(app: App) -> str | None:
    try:
        app.catalog.counts()
    except Exception as e:  # noqa: BLE001 (any failure means not ready)
        return f"catalog: {e}"
    if not app.policy.purposes:
        return "no policy loaded"
    try:
        app.vault.head("readyz-probe")
    except ObjectNotFoundError:
        pass  # the store answered
    except RetentiondError as e:
        return f"vault: {e}"
    return None


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {"metrics_addr": args.metrics_addr} if args.metrics_addr else {}
    app = app_from(args, **overrides)
    setup_logging(level=app.settings.log_level, json_lines=not args.once)
    daemon = Daemon(app)
    if args.once:
        report = daemon.run_once()
        for o in report.ingested:
            print(f"{o.outcome:12} {o.object_id or '-':32} {o.source}"
                  + (f"  ({o.message})" if o.message else ""))
        if report.sweep is not None:
            for i in report.sweep.items:
                print(f"{i.outcome:12} {i.id:32} {i.purpose} {i.rule}"
                      + (f" proof #{i.proof_index}" if i.proof_index is not None else "")
                      + (f"  ({i.error})" if i.error else ""))
        return 1 if report.has_warnings else 0
    app.metrics.watch_backlog(lambda: compute_backlog(daemon.app, now=daemon.app.clock.now()))
    server = None
    if app.settings.metrics_addr:
        server = StatusServer(app.settings.metrics_addr, registry=app.metrics.registry,
                              ready=lambda: _readiness(daemon.app))
        server.start()
    daemon.install_signal_handlers()
    try:
        return daemon.run_forever()
    finally:
        if server is not None:
            server.stop()
        app.close()
