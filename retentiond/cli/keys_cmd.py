"""``keys rotate``."""

from __future__ import annotations

import argparse

from retentiond.cli.common import Subparsers, actor_default, app_from, now, print_json
from retentiond.errors import EXIT_OK, IntegrityError
from retentiond.service.keyrotation import rotate_keys

ROTATE_HELP = """\
Create a new key-encryption key (KEK), make it current, and re-wrap every data key of the
catalog under it. The recordings themselves are never read or rewritten. The old KEK
files are kept, so a catalog backup taken before still opens.

--retire then destroys every old KEK that no data key needs any more. From then on, a
catalog backup older than the rotation can no longer open any recording, including
recordings deleted since, provided older backups of the key folder are gone too:
rotating with --retire bounds how long a deleted recording survives in backups. Take
fresh backups of the catalog and the key folder right after. A running daemon needs no
restart: its next ingest uses the new KEK.

The rotation is written to the access audit log (action keys-rotate) before any data key
is unwrapped, and again with its outcome.
"""

ROTATE_EPILOG = """\
exit codes:
  0   every data key re-wrapped (and, with --retire, every old KEK destroyed)
  2   the key folder does not load, or is a copy made by the Helm chart; nothing changed
  5   the key folder cannot be written (read-only mount), or the audit log cannot (then
      before any data key is unwrapped)
  6   some data keys could not be re-wrapped (tampered catalog row, or its KEK file is
      missing): they are listed and stay under their old KEK, which is kept; the others
      are rotated
  8   the audit log does not verify (its last line is damaged): nothing changed
  10  another 'keys rotate' is running
"""


def register(sub: Subparsers) -> None:
    p = sub.add_parser("keys", help="key-encryption keys: rotate")
    ksub = p.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    r = ksub.add_parser("rotate", help="new key-encryption key; data keys are re-wrapped, "
                        "never the data", description=ROTATE_HELP, epilog=ROTATE_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--retire", action="store_true",
                   help="then destroy the old KEK files no data key needs any more")
    r.add_argument("--reason", metavar="R", default="key rotation",
                   help="why, for the audit log (default: 'key rotation')")
    r.add_argument("--actor", metavar="A", default=None,
                   help="who decides (default: the login name)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_rotate)


def cmd_rotate(args: argparse.Namespace) -> int:
    app = app_from(args, need_signer=False)
    result = rotate_keys(app, actor=args.actor or actor_default(), reason=args.reason,
                         retire=args.retire, now=now())
    if args.json:
        print_json(result.as_json())
    else:
        print(f"new key-encryption key {result.kek_id} (was {result.previous})")
        print(f"re-wrapped {result.rewrapped} data key(s); no recording was read or rewritten")
        for kek in result.retired:
            print(f"retired {kek}: no data key needs it any more; file destroyed")
        for kek, n in sorted(result.kept.items()):
            why = f"{n} data key(s) still wrapped under it" if n else \
                "no data key needs it any more (--retire destroys it)"
            print(f"kept {kek}: {why}")
    if result.failed:
        raise IntegrityError(
            f"{result.failed} data key(s) could not be re-wrapped (first: "
            f"{result.failures[0][0]}); they stay under their old key-encryption key, "
            "which is kept")
    return EXIT_OK
