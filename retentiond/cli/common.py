"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from retentiond.clock import SystemClock
from retentiond.core.duration import parse_duration
from retentiond.core.sidecar import parse_datetime
from retentiond.errors import UsageError
from retentiond.service.policy_audit import record_policy_in_force
from retentiond.service.wiring import App, build_app
from retentiond.settings import Settings, find_config, load_settings

logger = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]
Subparsers = Any  # argparse's _SubParsersAction is private


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(find_config(args.config, os.environ), overrides=overrides)


# the apps this command opened: ``close_apps`` closes them before the process exits, so
# an erasing write whose catalog scrub met a reader gets its last try (sqlite_catalog)
_opened: list[App] = []


def close_apps() -> None:
    """Close every app ``app_from`` opened (closing twice does nothing). A failure is
    logged, never raised: the command's own outcome is what it exits with."""
    while _opened:
        app = _opened.pop()
        try:
            app.close()
        except Exception as e:  # noqa: BLE001 (closing must not replace the exit code)
            logger.warning("closing the catalog %s: %s", app.settings.catalog_path, e,
                           extra={"event": "catalog.close_failed"})


def app_from(args: argparse.Namespace, *, need_signer: bool = True, **overrides: Any) -> App:
    """The App for a command; a command that acts (signs proofs: ``ingest``, ``sweep``,
    ``run``) first audits a change of the policy in force."""
    app = build_app(settings_from(args, **overrides), need_signer=need_signer)
    _opened.append(app)
    if need_signer:
        record_policy_in_force(app, actor=actor_default(), now=now())
    return app


def parse_time(text: str, *, now: datetime, flag: str) -> datetime:
    """An ISO 8601 date-time with offset, or a duration from now (``P6M``, ``+P30D``)."""
    t = text.strip()
    if t.lstrip("+").startswith("P"):
        try:
            return parse_duration(t.lstrip("+")).add_to(now)
        except ValueError as e:
            raise UsageError(f"{flag}: {e}") from None
    try:
        return parse_datetime(t, what=flag)
    except ValueError as e:
        raise UsageError(str(e)) from None


def iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.isoformat(timespec="seconds")


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, sort_keys=True)
    sys.stdout.write("\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def locate_in_inbox(path: Path, inboxes: list[Path]) -> tuple[Path, str]:
    """(root, relpath) for a file given on the command line. A file inside a configured
    inbox is classified by its inbox-relative path, exactly as the watcher would (path
    rules such as ``banking/``); any other file by its name."""
    path = Path(os.path.abspath(path))
    for inbox in inboxes:
        if path.is_relative_to(inbox):
            return inbox, path.relative_to(inbox).as_posix()
    return path.parent, path.name


def now() -> datetime:
    return SystemClock().now()


def actor_default() -> str:
    """Who runs the command, for the audit log: the user behind ``sudo``, else the login
    name (environment, else the password database: cron and containers set no USER)."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (OSError, KeyError):  # an uid with no name
        return f"uid {os.getuid()}"
