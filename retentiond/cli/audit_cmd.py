"""``retentiond audit verify``."""

from __future__ import annotations

import argparse

from retentiond.cli.common import Subparsers, print_json, settings_from
from retentiond.service.audit import AuditLog


def register(sub: Subparsers) -> None:
    p = sub.add_parser("audit", help="access audit log")
    asub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    v = asub.add_parser("verify", help="check the hash chain of the access audit log")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    summary = AuditLog(settings.audit_log).verify()
    if args.json:
        print_json({"ok": True, "entries": summary.entries, "head": summary.head})
    else:
        print(f"ok: {summary.entries} audit entries, chain head {summary.head}")
    return 0
