"""``sweep``, ``plan`` and ``hold``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from retentiond.cli.common import (
    Subparsers,
    actor_default,
    app_from,
    iso,
    now,
    parse_time,
    print_json,
    table,
)
from retentiond.core.decide import Action
from retentiond.errors import EXIT_OK, EXIT_WARNINGS
from retentiond.service.holds import add_holds, remove_holds
from retentiond.service.sweep import Sweeper


def register(sub: Subparsers) -> None:
    p = sub.add_parser("sweep", help="one enforcement pass now")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be deleted; change nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plan", help="what will be deleted by time T, when and by which rule")
    p.add_argument("--at", metavar="T", help="ISO 8601 time, or a duration from now (P6M); "
                   "default: now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("hold", help="legal holds: nothing held is deleted")
    hsub = p.add_subparsers(dest="hold_command", metavar="SUBCOMMAND", required=True)
    for name, helptext in (("add", "put recordings under legal hold"),
                           ("remove", "release legal holds")):
        h = hsub.add_parser(name, help=helptext)
        h.add_argument("ids", metavar="ID", nargs="+")
        h.add_argument("--reason", metavar="R", required=True)
        h.add_argument("--actor", metavar="A", default=None,
                       help="who decides (default: the login name)")
        h.set_defaults(func=cmd_hold_add if name == "add" else cmd_hold_remove)


def cmd_sweep(args: argparse.Namespace) -> int:
    app = app_from(args, need_signer=not args.dry_run)
    report = Sweeper(app).sweep(now=now(), dry_run=args.dry_run)
    items = [
        {"id": i.id, "purpose": i.purpose, "outcome": i.outcome, "rule": i.rule,
         "due": iso(i.due), "proof_index": i.proof_index, "error": i.error}
        for i in report.items
    ]
    if args.json:
        print_json({"dry_run": report.dry_run, "at": iso(report.now), "items": items})
    else:
        for i in report.items:
            extra = f" proof #{i.proof_index}" if i.proof_index is not None else ""
            extra += f" ({i.error})" if i.error else ""
            print(f"{i.outcome:13} {i.id} {i.purpose} {i.rule} due {iso(i.due)}{extra}")
        done = ("would-delete", "would be deleted") if report.dry_run else ("deleted", "deleted")
        print(f"{report.count(done[0])} {done[1]}, {report.count('failed')} failed, "
              f"{report.count('held-overdue')} held past their date, "
              f"{report.count('kept-unknown-purpose')} kept for an unknown purpose")
    return EXIT_WARNINGS if report.has_warnings else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    app = app_from(args, need_signer=False)
    t = now()
    at = parse_time(args.at, now=t, flag="--at") if args.at else t
    items = Sweeper(app).plan(at=at)
    rows: list[dict[str, Any]] = []
    for it in items:
        d = it.decision
        if d.action is Action.DELETE or d.rule in ("legal-hold-overdue", "unknown-purpose"):
            rows.append({
                "id": it.recording.id, "purpose": it.recording.purpose,
                "action": d.action.value, "rule": d.rule, "due": iso(d.due),
                "reason": d.reason.value if d.reason else None, "why": list(d.reasons),
            })
    rows.sort(key=lambda r: (r["due"] or "", r["id"]))
    if args.json:
        print_json({"at": iso(at), "items": rows})
        return 0
    print(f"plan at {iso(at)}: {sum(r['action'] == 'delete' for r in rows)} to delete")
    if rows:
        print(table([[r["id"], r["purpose"], r["action"], r["rule"], r["due"] or "-"]
                     for r in rows], ["ID", "PURPOSE", "ACTION", "RULE", "DUE"]))
    return 0


def cmd_hold_add(args: argparse.Namespace) -> int:
    app = app_from(args, need_signer=False)
    warnings = add_holds(app, args.ids, reason=args.reason,
                         actor=args.actor or actor_default(), now=now())
    for object_id in args.ids:
        print(f"held {object_id}")
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return EXIT_WARNINGS if warnings else 0


def cmd_hold_remove(args: argparse.Namespace) -> int:
    app = app_from(args, need_signer=False)
    actor, t = args.actor or actor_default(), now()
    code = 0
    for object_id in args.ids:
        n, warning = remove_holds(app, object_id, reason=args.reason, actor=actor, now=t)
        print(f"released {n} hold(s) on {object_id}" if n else f"{object_id}: no active hold")
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        code = code if n and not warning else EXIT_WARNINGS
    return code
