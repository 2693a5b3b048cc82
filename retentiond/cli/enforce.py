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
from retentiond.cli.subject_cmd import IDENTIFIER_HELP, identifier
from retentiond.core.decide import Action
from retentiond.errors import EXIT_OK, EXIT_WARNINGS, UsageError
from retentiond.service.holds import (
    HoldTarget,
    case_target,
    object_targets,
    place_holds,
    release_holds,
    subject_target,
)
from retentiond.service.sweep import Sweeper
from retentiond.service.wiring import App


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
    for name, helptext, description in (
        ("add", "put recordings under legal hold",
         "Hold recordings by id, every recording of a subject, or every recording of a "
         "case (sidecar case_id). A subject or case hold also keeps the recordings that "
         "arrive after it. The same hold twice (same target and reason) changes nothing; "
         "a hold with another reason is added beside it."),
        ("remove", "release legal holds",
         "Release every hold in force on the recordings, the subject or the case."),
    ):
        h = hsub.add_parser(name, help=helptext, description=description)
        h.add_argument("ids", metavar="ID", nargs="*", help="recording ids")
        selector = h.add_mutually_exclusive_group()
        selector.add_argument("--subject", metavar="S",
                              help=f"every recording of a subject: {IDENTIFIER_HELP}")
        selector.add_argument("--case", metavar="C",
                              help="every recording of a case: the sidecar's case_id "
                              "(never stored in clear); '-' reads it from standard input")
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


def _check_selector(args: argparse.Namespace) -> None:
    """Exactly one selector kind: recording ids, --subject or --case."""
    kinds = sum((bool(args.ids), args.subject is not None, args.case is not None))
    if kinds != 1:
        raise UsageError(f"hold {args.hold_command}: give recording ids, or --subject S, "
                         "or --case C (exactly one kind)")


def _targets(args: argparse.Namespace, app: App) -> list[HoldTarget]:
    if args.subject is not None:
        return [subject_target(app, identifier(args.subject, what="--subject"))]
    if args.case is not None:
        return [case_target(app, identifier(args.case, what="--case"))]
    return object_targets(args.ids)


def _future(target: HoldTarget) -> str:
    return "" if target.scope == "object" else \
        f"; future recordings of this {target.scope} are held too"


def cmd_hold_add(args: argparse.Namespace) -> int:
    _check_selector(args)
    app = app_from(args, need_signer=False)
    targets = _targets(args, app)
    changes = place_holds(app, targets, reason=args.reason,
                          actor=args.actor or actor_default(), now=now())
    code = EXIT_OK
    for c in changes:
        t = c.target
        if t.scope == "object":
            print(f"held {t.target}" if c.changed
                  else f"{t.target}: already held for this reason; nothing changed")
        else:
            n = len(c.covered)
            now_text = f"{n} recording{'s' if n != 1 else ''} now{_future(t)}"
            print(f"held {t.label}: {now_text}" if c.changed else
                  f"{t.label}: already held for this reason; nothing changed ({now_text})")
            for object_id in c.covered:
                print(f"  {object_id}")
        for object_id in c.not_held:
            print(f"warning: {object_id}: deletion already under way; not held",
                  file=sys.stderr)
            code = EXIT_WARNINGS
        for w in c.warnings:
            print(f"warning: {w}", file=sys.stderr)
            code = EXIT_WARNINGS
    return code


def cmd_hold_remove(args: argparse.Namespace) -> int:
    _check_selector(args)
    app = app_from(args, need_signer=False)
    targets = _targets(args, app)
    actor, t = args.actor or actor_default(), now()
    code = EXIT_OK
    for target in targets:
        c = release_holds(app, target, reason=args.reason, actor=actor, now=t)
        if c.released:
            extra = "" if target.scope == "object" else \
                f" ({len(c.covered)} recording{'s' if len(c.covered) != 1 else ''} now)"
            print(f"released {c.released} hold(s) on {target.label}{extra}")
        else:
            print(f"{target.label}: no active hold")
        for w in c.warnings:
            print(f"warning: {w}", file=sys.stderr)
        code = code if c.released and not c.warnings else EXIT_WARNINGS
    return code
