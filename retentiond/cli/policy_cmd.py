"""``policy check`` and ``policy explain``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from retentiond.cli.common import (
    Subparsers,
    app_from,
    iso,
    locate_in_inbox,
    now,
    print_json,
    settings_from,
)
from retentiond.core.decide import Decision, decide
from retentiond.core.policy import load_policy_dir
from retentiond.service.ingest import Ingestor


def register(sub: Subparsers) -> None:
    p = sub.add_parser("policy", help="validate and explain retention policies")
    psub = p.add_subparsers(dest="policy_command", metavar="SUBCOMMAND", required=True)
    c = psub.add_parser("check", help="validate a policy folder")
    c.add_argument("dir", metavar="DIR", nargs="?", type=Path,
                   help="policy folder (default: the config's policies)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_check)
    e = psub.add_parser("explain", help="explain the decision for a recording id or a file")
    e.add_argument("target", metavar="ID-or-FILE")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_explain)


def cmd_check(args: argparse.Namespace) -> int:
    folder = args.dir or settings_from(args).policies
    policy = load_policy_dir(folder)
    purposes: dict[str, dict[str, Any]] = {
        name: {"legal_basis": p.legal_basis, "retention": p.retention.iso(),
               "min_retention": p.min_retention.iso() if p.min_retention else None,
               "media": sorted(p.media), "max_sample_ratio": p.max_sample_ratio}
        for name, p in sorted(policy.purposes.items())
    }
    if args.json:
        print_json({"ok": True, "name": policy.name, "sha256": policy.sha256,
                    "files": list(policy.files), "purposes": purposes,
                    "quarantine_retention": policy.quarantine_retention.iso(),
                    "rules": len(policy.rules)})
        return 0
    print(f"ok: policy {policy.name} (sha256 {policy.sha256})")
    for name, p in purposes.items():
        extra = f", min {p['min_retention']}" if p["min_retention"] else ""
        extra += f", sample cap {p['max_sample_ratio']}" if p["max_sample_ratio"] else ""
        print(f"  {name}: {p['retention']} ({p['legal_basis']}; {', '.join(p['media'])}{extra})")
    print(f"  quarantine: {policy.quarantine_retention.iso()}; {len(policy.rules)} classify rules")
    return 0


def _explain_file(args: argparse.Namespace, path: Path) -> tuple[str, Decision, dict[str, str]]:
    app = app_from(args, need_signer=False)
    t = now()
    root, relpath = locate_in_inbox(path, [Path(p) for p in app.settings.inbox])
    rec = Ingestor(app).preview(root, relpath, now=t)
    d = decide(rec, policy=app.policy, held=False, now=t)
    facts = {"file": str(path), "purpose": rec.purpose, "media": rec.media,
             "recorded_at": iso(rec.recorded_at) or "",
             "quarantine_reason": rec.quarantine_reason or ""}
    return app.policy.name, d, facts


def cmd_explain(args: argparse.Namespace) -> int:
    path = Path(args.target)
    if path.is_file():
        policy_name, d, facts = _explain_file(args, path)
    else:
        app = app_from(args, need_signer=False)
        rec = app.catalog.get(args.target)
        policy_name = app.policy.name
        held = app.catalog.is_held(rec.id)
        d = decide(rec, policy=app.policy, held=held, now=now())
        facts = {"id": rec.id, "purpose": rec.purpose, "state": rec.state.value,
                 "recorded_at": iso(rec.recorded_at) or "", "held": str(held).lower()}
    out = {"policy": policy_name, "facts": facts, "action": d.action.value, "rule": d.rule,
           "due": iso(d.due), "reason": d.reason.value if d.reason else None,
           "why": list(d.reasons)}
    if args.json:
        print_json(out)
        return 0
    for k, v in facts.items():
        if v:
            print(f"{k}: {v}")
    print(f"decision under policy {policy_name}: {d.action.value} ({d.rule}), due {iso(d.due)}")
    for why in d.reasons:
        print(f"  - {why}")
    return 0
