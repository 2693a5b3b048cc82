"""``retentiond audit verify`` and ``retentiond audit report``."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from retentiond.cli.common import Subparsers, app_from, now, print_json, settings_from, table
from retentiond.cli.proof_cmd import WITNESS_FILE
from retentiond.errors import StorageError, UsageError
from retentiond.service.audit import AuditLog
from retentiond.service.report import Report, build_report
from retentiond.service.report_html import fmt_bytes, fmt_ratio, fmt_time, render_html

REPORT_HELP = """\
The compliance report a DPO or an auditor reads: per purpose (live recordings, size,
oldest, next deletion, overdue, held, held past their date, deleted, sampling cap and
the real kept ratio), sampling per agent, quarantine, notes-lint findings (recording id
and categories, never the note), residency of stores and processors, deletions by reason
over time, the deletion-proof log (entries, last checkpoint, verified) and the access
audit log (entries, chain head, verified), the reconciler's store findings, the policy in
force. Read-only: nothing is changed, not even the proof-verify witness.

Output: --json prints the JSON document; --out FILE writes a self-contained HTML page
(no external file, script or font: opens offline); --out FILE --json writes the JSON to
FILE; neither prints a short text summary. Files are written atomically, mode 0600.
"""

REPORT_EPILOG = """\
exit codes (the report is produced in every case below):
  0  nothing to look at
  1  warnings: recordings overdue (due, not deleted), held past their date, of a purpose
     the policy does not define, in quarantine, with notes findings, or store findings
     from the reconciler (the JSON's "warnings" lists them with a stable "code")
  7  the deletion-proof log does not verify (5 if it cannot be read)
  8  the access audit log does not verify
  2, 5, 10 as for every command (configuration, storage, busy): no report
"""


def register(sub: Subparsers) -> None:
    p = sub.add_parser("audit", help="access audit log and compliance report")
    asub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    v = asub.add_parser("verify", help="check the hash chain of the access audit log")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)
    r = asub.add_parser("report", help="compliance report (JSON, self-contained HTML, or a "
                        "text summary)", description=REPORT_HELP, epilog=REPORT_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--out", metavar="FILE", type=Path,
                   help="write the report to FILE: HTML, or JSON with --json")
    r.add_argument("--json", action="store_true", help="JSON instead of HTML or text")
    r.set_defaults(func=cmd_report)


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    summary = AuditLog(settings.audit_log).verify()
    if args.json:
        print_json({"ok": True, "entries": summary.entries, "head": summary.head})
    else:
        print(f"ok: {summary.entries} audit entries, chain head {summary.head}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    out: Path | None = args.out
    if out is not None and out.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a file name")
    app = app_from(args, need_signer=False)
    try:
        report = build_report(app, now=now(), witness=app.settings.state_dir / WITNESS_FILE)
    finally:
        app.close()
    if out is None:
        if args.json:
            print_json(report.to_json())
        else:
            print(summary_text(report))
        return report.exit_code
    if args.json:
        text = json.dumps(report.to_json(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    else:
        text = render_html(report)
    write_private(out, text)
    kind = "JSON" if args.json else "HTML"
    print(f"wrote {out} ({kind}): {report.live} live recordings, {report.overdue} overdue, "
          f"{len(report.warnings)} warning(s)")
    for w in report.warnings:
        print(f"warning: {w.code} ({w.count}): {w.message}")
    return report.exit_code


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder, fsync, rename),
    mode 0600: the report names recordings and agents."""
    folder = path.parent if str(path.parent) else Path()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise StorageError(f"--out {path}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise StorageError(f"--out {path}: cannot write: {e.strerror}") from None


def summary_text(r: Report) -> str:
    """The short text form (no --json, no --out)."""
    lines = [f"compliance report {fmt_time(r.generated_at)}, policy {r.policy_name} "
             f"(sha256 {r.policy_sha256[:16]}...)"]
    lines.append(table(
        [[p.purpose + ("" if p.in_policy else " (not in policy)"), str(p.count),
          fmt_bytes(p.bytes), fmt_time(p.oldest_recorded_at), fmt_time(p.next_due),
          str(p.overdue), str(p.held), str(p.held_overdue), str(p.deleted),
          fmt_ratio(p.kept_ratio).replace("\u00a0", " ")] for p in r.purposes],
        ["PURPOSE", "LIVE", "SIZE", "OLDEST", "NEXT DUE", "OVERDUE", "HELD", "HELD-OVERDUE",
         "DELETED", "KEPT"]))
    q = r.quarantine
    lines.append(f"quarantine: {q.count} ({fmt_bytes(q.bytes)})"
                 + (f", oldest ingested {fmt_time(q.oldest_ingested_at)}, "
                    f"{len(q.reasons)} reason(s)" if q.count else ""))
    cats = Counter(c for n in r.notes_findings for c in n.categories)
    lines.append(f"notes findings: {len(r.notes_findings)} recording(s)"
                 + (" (" + ", ".join(f"{c} {n}" for c, n in sorted(cats.items())) + ")"
                    if cats else ""))
    by_reason = r.deletions_by_reason()
    lines.append(f"deleted: {r.deleted}" + (" (" + ", ".join(
        f"{k} {v}" for k, v in by_reason.items()) + ")" if by_reason else ""))
    p = r.proof_log
    lines.append(
        f"proof log: {p.entries if p.verified else '?'} entries, checkpoint size "
        f"{p.checkpoint_size}, root {p.root}, signed by {p.key_name}: "
        + ("verified" if p.verified else f"DOES NOT VERIFY: {p.error}"))
    a = r.audit_log
    lines.append(f"audit log: {a.entries if a.verified else '?'} entries, chain head "
                 f"{a.head}: " + ("verified" if a.verified else f"DOES NOT VERIFY: {a.error}"))
    if r.keys is not None:
        k = r.keys
        lines.append(f"keys: {k.current} in force (since {k.current_since or '?'}), "
                     f"{sum(n for _, n in k.in_use)} data key(s), {k.not_current} under "
                     f"older keys, {len(k.kept)} old key(s) kept, {len(k.retired)} retired")
    kinds = Counter(str(x.get("kind") or "other") for x in r.residency)
    lines.append("residency: " + (", ".join(f"{n} {k}(s)" for k, n in sorted(kinds.items()))
                                  if kinds else "not declared"))
    lines.append(f"store findings: {len(r.store_findings)}")
    lines.append(f"standing objections: {r.standing_objections}")
    if r.warnings:
        lines.append(f"{len(r.warnings)} warning(s), exit code {r.exit_code}:")
        lines += [f"  {w.code} ({w.count}): {w.message}" for w in r.warnings]
    else:
        lines.append("no warnings")
    return "\n".join(lines)
