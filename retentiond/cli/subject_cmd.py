"""``subject export`` (right of access) and ``subject erase`` (erasure, objection)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from retentiond.cli.common import Subparsers, actor_default, app_from, iso, now, print_json
from retentiond.errors import EXIT_OK, EXIT_WARNINGS, IntegrityError, ProofError, UsageError
from retentiond.service.subject import (
    COMMITMENT_CONSTRUCTION,
    MANIFEST,
    ErasureReceipt,
    ExportResult,
    erase_subject,
    export_subject,
    withdraw_objection,
)

IDENTIFIER_HELP = ("the clear identifier (e.g. the phone number, as given at ingest; "
                   "looked up by its pseudonym, never stored); '-' reads it from the first "
                   "line of standard input, keeping it out of shell history and ps")

# SPEC section 4 lists ``subject export S --out DIR``: the request is the reason
EXPORT_REASON = "right of access request (GDPR Art. 15)"


def identifier(value: str, *, what: str) -> str:
    """The identifier given on the command line, or read from stdin for ``-``."""
    if value == "-":
        value = sys.stdin.readline().rstrip("\r\n")
    if not value.strip():
        raise UsageError(f"{what}: empty identifier")
    return value


def register(sub: Subparsers) -> None:
    p = sub.add_parser("subject", help="data subject rights: access, erasure, objection")
    ssub = p.add_subparsers(dest="subject_command", metavar="SUBCOMMAND", required=True)

    e = ssub.add_parser(
        "export", help="right of access (GDPR Art. 15): the subject's recordings, metadata "
        "and notes",
        description="Decrypt every live recording of subject S into the new folder DIR "
        "(mode 0700, files 0600): the recording, ID.json (purpose, legal basis, dates, "
        "notes...) and manifest.json (SHA-256 and size of every file). Every decrypt is "
        "written to the audit log (action 'export') before its key is used.")
    e.add_argument("subject", metavar="S", help=IDENTIFIER_HELP)
    e.add_argument("--out", metavar="DIR", type=Path, required=True,
                   help="new (or empty) folder to write to")
    e.add_argument("--reason", metavar="R", default=EXPORT_REASON,
                   help=f"why, for the audit log: best the request's reference (default: "
                   f"{EXPORT_REASON!r})")
    e.add_argument("--actor", metavar="A", default=None,
                   help="who exports (default: the login name)")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_export)

    r = ssub.add_parser(
        "erase", help="erasure (GDPR Art. 17) or objection (Art. 21): delete the subject's "
        "recordings now, with proofs",
        description="Delete every recording of subject S now, with a deletion proof each "
        "carrying a salted commitment to S. Recordings under legal hold or minimum "
        "retention stay, listed with the reason and the date they can go; they are "
        "deleted as soon as allowed. Prints the receipt to hand to the person. Exit 0 "
        "when everything was deleted, 1 when some recordings stay.")
    _subject_request(r, reason="why (the request's reference)", actor="who decides")
    r.add_argument("--objection", action="store_true",
                   help="the person objects to the processing (Art. 21): the proofs say "
                   "'objection' instead of 'erasure-request', and the objection stands: "
                   "later recordings of S (consent, legitimate-interests or public-task "
                   "purposes) are deleted as soon as allowed, with the same commitment, "
                   "until 'subject withdraw-objection'")
    r.set_defaults(func=cmd_erase)

    w = ssub.add_parser(
        "withdraw-objection", help="end a standing objection (the person withdraws it)",
        description="End the standing objection of subject S made by 'subject erase "
        "--objection': later recordings of S are kept under the policy again. Recordings "
        "already objected to still go. Audited. Exit 3 when S has no standing objection.")
    _subject_request(w, reason="why (the person's request, its reference)",
                     actor="who records it")
    w.set_defaults(func=cmd_withdraw)


def _subject_request(parser: argparse.ArgumentParser, *, reason: str, actor: str) -> None:
    """S, a required --reason, --actor and --json: a request about one subject."""
    parser.add_argument("subject", metavar="S", help=IDENTIFIER_HELP)
    parser.add_argument("--reason", metavar="R", required=True, help=reason)
    parser.add_argument("--actor", metavar="A", default=None,
                        help=f"{actor} (default: the login name)")
    parser.add_argument("--json", action="store_true")


def export_json(result: ExportResult) -> dict[str, Any]:
    return {
        "out": str(result.out),
        "exported_at": iso(result.exported_at),
        "manifest": MANIFEST,
        "manifest_sha256": result.manifest_sha256,
        "recordings": list(result.recordings),
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size,
                   "recording": f.recording, "kind": f.kind} for f in result.files],
        "not_exportable": [{"id": n.id, "state": n.state, "why": n.why}
                           for n in result.not_exportable],
        "unreadable": [{"id": n.id, "state": n.state, "why": n.why}
                       for n in result.unreadable],
    }


def cmd_export(args: argparse.Namespace) -> int:
    subject = identifier(args.subject, what="subject")
    app = app_from(args, need_signer=False)
    result = export_subject(app, subject, out=args.out, actor=args.actor or actor_default(),
                            reason=args.reason, now=now())
    if args.json:
        print_json(export_json(result))
    else:
        n = len(result.recordings)
        if n:
            print(f"exported {n} recording(s) to {result.out}; every decrypt audited")
            for f in result.files:
                print(f"  {f.name}  {f.size} bytes  sha256 {f.sha256}")
        else:
            print(f"nothing exportable: no live recording of this subject in the catalog "
                  f"(manifest written to {result.out})")
        for item in result.not_exportable:
            print(f"not exportable: {item.id} ({item.why})")
        print(f"{MANIFEST}: sha256 {result.manifest_sha256}")
    if result.unreadable:
        raise IntegrityError(
            f"{len(result.unreadable)} recording(s) could not be decrypted: "
            f"{', '.join(u.id for u in result.unreadable)} (listed in {MANIFEST}; "
            "see 'retentiond get' for each)")
    return EXIT_OK


def receipt_json(receipt: ErasureReceipt) -> dict[str, Any]:
    return {
        "request_id": receipt.request_id,
        "requested_at": iso(receipt.requested_at),
        "reason": receipt.reason,
        "salt": receipt.salt_hex,
        "commitment": receipt.commitment,
        "commitment_construction": COMMITMENT_CONSTRUCTION,
        "standing_objection": receipt.objection,
        "complete": receipt.complete,
        "deleted": [{"id": d.id, "purpose": d.purpose, "reason": d.reason,
                     "proof_index": d.proof_index, "commitment_of_request": d.request}
                    for d in receipt.deleted],
        "kept": [{"id": k.id, "purpose": k.purpose, "stays_because": k.stays_because,
                  "until": iso(k.until), "held": k.held, "why": k.why,
                  "commitment_of_request": k.request}
                 for k in receipt.kept],
        "proof_error": receipt.proof_error,
    }


def _until(stays_because: str, until: str | None) -> str:
    if stays_because == "legal-hold":
        return f"until the hold is released, not before {until}" if until else \
            "until the hold is released"
    if stays_because == "minimum-retention":
        return f"until {until}"
    if stays_because in ("blocked-by-lock", "deletion-failed", "deletion-pending"):
        return "retried at every pass"
    return "until the policy says what to do"


def _earlier(receipt: ErasureReceipt, request: str) -> str:
    """A note for a recording already under an earlier request: that request's commitment
    (on the receipt handed over then) is the one its proof carries."""
    if request in ("", receipt.request_id):
        return ""
    return f"  [already under request {request}: its proof carries that request's commitment]"


def print_receipt(receipt: ErasureReceipt) -> None:
    if receipt.objection and receipt.commitment is not None and not receipt.deleted \
            and not receipt.kept:
        print(f"objection {receipt.request_id}: no live recording of this subject in the "
              "catalog; the objection stands for later recordings (audited)")
        print(f"  salt:        {receipt.salt_hex}")
        print(f"  commitment:  {receipt.commitment}")
        print(f"               = {COMMITMENT_CONSTRUCTION}")
        return
    if receipt.commitment is None:
        print(f"erasure request {receipt.request_id}: no live recording of this subject in "
              "the catalog; nothing to erase (request audited)")
        return
    print("erasure receipt")
    print(f"  request:     {receipt.request_id}")
    print(f"  at:          {iso(receipt.requested_at)}")
    print(f"  reason:      {receipt.reason} (in every deletion proof)")
    print(f"  salt:        {receipt.salt_hex}")
    print(f"  commitment:  {receipt.commitment}")
    print(f"               = {COMMITMENT_CONSTRUCTION}")
    print(f"deleted ({len(receipt.deleted)}):")
    for d in receipt.deleted:
        proof = f"proof #{d.proof_index}" if d.proof_index is not None else \
            "proof pending (appended at the next pass)"
        print(f"  {d.id}  {d.purpose}  {d.reason}  {proof}{_earlier(receipt, d.request)}")
    if receipt.kept:
        print(f"kept for now ({len(receipt.kept)}); each goes as soon as allowed, with the "
              "same commitment in its proof:")
        for k in receipt.kept:
            print(f"  {k.id}  {k.purpose}  {k.stays_because}  "
                  f"{_until(k.stays_because, iso(k.until))}  ({k.why})"
                  f"{_earlier(receipt, k.request)}")
    requests = {d.request for d in receipt.deleted} | {k.request for k in receipt.kept}
    print("check: retentiond proof show ID shows subject_commitment equal to the "
          "commitment above" + (" (or, where noted, to the earlier request's)"
                                if requests - {"", receipt.request_id} else ""))
    if receipt.objection:
        print("the objection stands: later recordings of this subject are deleted as soon "
              "as stored, with the same commitment (subject withdraw-objection ends it)")


def cmd_withdraw(args: argparse.Namespace) -> int:
    subject = identifier(args.subject, what="subject")
    app = app_from(args)
    request_id = withdraw_objection(app, subject, reason=args.reason,
                                    actor=args.actor or actor_default(), now=now())
    if args.json:
        print_json({"withdrawn": request_id})
    else:
        print(f"standing objection {request_id} withdrawn: later recordings of this subject "
              "are kept under the policy")
    return EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    subject = identifier(args.subject, what="subject")
    app = app_from(args)
    receipt = erase_subject(app, subject, reason=args.reason,
                            actor=args.actor or actor_default(), now=now(),
                            objection=args.objection)
    if args.json:
        print_json(receipt_json(receipt))
    else:
        print_receipt(receipt)
    if receipt.proof_error is not None:
        raise ProofError(f"deleted, but the proof log could not be written (the next pass "
                         f"appends the proofs; keep this receipt): {receipt.proof_error}")
    return EXIT_OK if receipt.complete else EXIT_WARNINGS
