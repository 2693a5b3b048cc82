"""``retentiond init DIR``."""

from __future__ import annotations

import argparse
from pathlib import Path

from retentiond.cli.common import Subparsers
from retentiond.service.setup import init_setup


def register(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="create a working embedded setup in DIR",
                       description="Create a complete embedded setup (inbox, vault, proofs, "
                       "keys, policies, config) in DIR. Never overwrites existing keys.")
    p.add_argument("dir", metavar="DIR", type=Path)
    p.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    result = init_setup(args.dir)
    for path in result.created:
        print(f"created {path}")
    if not result.created:
        print(f"{args.dir}: setup already complete; nothing changed")
    print(f"config: {result.config}")
    print("proof-log verifier key (give it to auditors):")
    print(result.verifier_key)
    return 0
