"""``ingest``, ``ls`` and ``get``."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retentiond.cli.common import (
    Subparsers,
    app_from,
    iso,
    locate_in_inbox,
    now,
    parse_time,
    print_json,
    table,
)
from retentiond.concurrency import in_order
from retentiond.core.classify import Overrides
from retentiond.core.decide import decide
from retentiond.core.model import LEGAL_BASES, LIVE_STATES, State
from retentiond.errors import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    InputError,
    UsageError,
)
from retentiond.service.access import retrieve
from retentiond.service.ingest import Ingestor, IngestOutcome


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "ingest", help="ingest files now, through the same path as the watcher",
        description="Classify, encrypt and catalogue each FILE (and its FILE.json sidecar). "
        "Like the watcher, the plaintext file and its sidecar are removed once the "
        "encrypted copy is verified in the vault.",
    )
    p.add_argument("files", metavar="FILE", nargs="+", type=Path)
    p.add_argument("--purpose", help="declared purpose (wins over the sidecar)")
    p.add_argument("--legal-basis", help="GDPR Art. 6(1) basis (default: the purpose's)")
    p.add_argument("--recorded-at", metavar="T", help="ISO 8601 time with offset")
    p.add_argument("--subject", metavar="S", help="caller identifier (stored as a pseudonym)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON array: path, outcome, id, purpose, message per file")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ls", help="list managed recordings")
    p.add_argument("--purpose", metavar="P")
    p.add_argument("--subject", metavar="S", help="caller identifier (looked up by pseudonym)")
    p.add_argument("--state", choices=[s.value for s in State])
    p.add_argument("--all", action="store_true", help="include deleted recordings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("get", help="decrypt one recording (audited)",
                       description="Decrypt recording ID to --out. The access (actor, reason, "
                       "time) is written to the audit log before the key is used.")
    p.add_argument("id", metavar="ID")
    p.add_argument("--out", metavar="FILE", type=Path, required=True)
    p.add_argument("--actor", metavar="A", required=True, help="who asks (person or system)")
    p.add_argument("--reason", metavar="R", required=True, help="why (ticket, request...)")
    p.set_defaults(func=cmd_get)


def cmd_ingest(args: argparse.Namespace) -> int:
    app = app_from(args)
    t = now()
    if args.purpose is not None and args.purpose not in app.policy.purposes:
        raise InputError(
            f"--purpose: unknown purpose {args.purpose!r} (policy {app.policy.name} defines: "
            f"{', '.join(sorted(app.policy.purposes))})"
        )
    if args.legal_basis is not None and args.legal_basis not in LEGAL_BASES:
        raise InputError(f"--legal-basis: unknown legal basis {args.legal_basis!r} "
                         f"(one of {', '.join(sorted(LEGAL_BASES))})")
    overrides = Overrides(
        purpose=args.purpose, legal_basis=args.legal_basis, subject=args.subject,
        recorded_at=parse_time(args.recorded_at, now=t, flag="--recorded-at")
        if args.recorded_at else None,
    )
    ingestor = Ingestor(app)
    ingestor.recover()
    inboxes = [Path(p) for p in app.settings.inbox]
    rows: list[dict[str, object]] = []
    finished: dict[int, IngestOutcome] = {}  # by the workers, in any order
    reported: set[int] = set()
    code = EXIT_OK

    def located() -> Iterator[tuple[int, Path, str]]:  # a bad path stops there
        for n, path in enumerate(args.files):
            yield (n, *locate_in_inbox(path, inboxes))

    def ingest(job: tuple[int, Path, str]) -> IngestOutcome:
        o = ingestor.ingest(job[1], job[2], overrides=overrides, now=t)
        finished[job[0]] = o
        return o

    def report(n: int, o: IngestOutcome) -> None:
        nonlocal code
        reported.add(n)
        path = args.files[n]
        if args.json:
            rows.append({"path": str(path), "outcome": o.outcome, "id": o.object_id,
                         "purpose": o.purpose, "message": o.message})
        else:
            print(f"{o.outcome:12} {o.object_id or '-':32} {path}"
                  + (f"  ({o.message})" if o.message else ""))
        code = max(code, EXIT_NOT_FOUND if o.outcome == "gone" else o.exit_code)

    results = in_order(located(), ingest, workers=app.settings.ingest_workers)
    try:
        for job, o in results:
            report(job[0], o)
    finally:  # a failure part-way still tells what was ingested (and left the inbox),
        results.close()  # once the ingests under way have finished
        for n in sorted(set(finished) - reported):
            report(n, finished[n])
        if args.json:
            print_json(rows)
    return code


def cmd_ls(args: argparse.Namespace) -> int:
    app = app_from(args, need_signer=False)
    t = now()
    states = [State(args.state)] if args.state else (None if args.all else list(LIVE_STATES))
    subject_ref = app.keys.pseudonym(args.subject) if args.subject else None
    held = app.catalog.held_ids()
    rows: list[dict[str, Any]] = []
    for rec in app.catalog.query(states=states, purpose=args.purpose, subject_ref=subject_ref):
        live = rec.state in LIVE_STATES
        d = decide(rec, policy=app.policy, held=rec.id in held, now=t) if live else None
        rows.append({
            "id": rec.id, "purpose": rec.purpose, "legal_basis": rec.legal_basis,
            "recorded_at": iso(rec.recorded_at), "ingested_at": iso(rec.ingested_at),
            "delete_after": iso(d.due if d else rec.due_at),
            "hold": rec.id in held, "state": rec.state.value, "call_id": rec.call_id,
            "source": rec.source, "media": rec.media, "size": rec.size,
            "rule": d.rule if d else rec.delete_reason,
            "quarantine_reason": rec.quarantine_reason,
            "policy": {"name": rec.policy_name, "sha256": rec.policy_sha256},
            "proof_index": rec.proof_index,
            "controller": rec.controller, "processor": rec.processor,
            "objection": rec.objection, "erasure_requested": rec.erasure_at is not None,
        })
    if args.json:
        print_json(rows)
        return 0
    print(table(
        [[r["id"], r["purpose"], r["legal_basis"] or "-", r["recorded_at"] or "-",
          r["delete_after"] or "-", "yes" if r["hold"] else "no", r["state"]] for r in rows],
        ["ID", "PURPOSE", "LEGAL BASIS", "RECORDED AT", "DELETE AFTER", "HOLD", "STATE"],
    ))
    quarantined = [r for r in rows if r["quarantine_reason"]]
    if quarantined:  # the reason each stays in quarantine (README: "listed with the reason")
        print("\nquarantined:")
        for r in quarantined:
            print(f"  {r['id']}  {r['quarantine_reason']}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    if args.out.is_dir():
        raise UsageError(f"--out {args.out}: is a folder; give a file name")
    app = app_from(args, need_signer=False)
    got = retrieve(app, args.id, out=args.out, actor=args.actor, reason=args.reason, now=now())
    print(f"wrote {got.out} ({got.size} bytes, sha256 {got.plaintext_sha256}); access audited")
    return 0
