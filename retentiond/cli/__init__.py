"""Command line: argument parsing and printing only. ``main(argv) -> int``.

Expected failures print one line ``retentiond: error: ...`` and exit with the code of
the error (see ``retentiond.errors``); no traceback reaches the user. An unexpected
exception is a bug: one line, exit 70, and the traceback only with ``RETENTIOND_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import traceback
from collections.abc import Sequence

from retentiond import __version__
from retentiond.cli import (
    audit_cmd,
    daemon_cmd,
    enforce,
    keys_cmd,
    policy_cmd,
    proof_cmd,
    records,
    setup_cmd,
    subject_cmd,
)
from retentiond.cli.common import close_apps
from retentiond.errors import EXIT_USAGE, RetentiondError
from retentiond.logsetup import setup_logging

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"retentiond: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="retentiond",
        description="Keep call recordings only as long as the law allows, encrypted, "
        "and prove every deletion.",
        epilog="Exit codes: 0 ok, 1 warnings, 2 usage/config, 3 not found, 4 bad input, "
        "5 storage, 6 integrity, 7 proof log, 8 audit log, 9 refused, 10 busy, 70 internal error.",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file (default: $RETENTIOND_CONFIG, "
                        "else ./retentiond.yaml)")
    parser.add_argument("--version", action="version", version=f"retentiond {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in (setup_cmd, daemon_cmd, records, enforce, subject_cmd, proof_cmd, policy_cmd,
                   keys_cmd, audit_cmd):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if not getattr(args, "daemon_logging", False):
        setup_logging(level=os.environ.get("RETENTIOND_LOG_LEVEL", "error"))
    try:
        try:
            return int(args.func(args))
        finally:
            close_apps()
    except RetentiondError as e:
        sys.stderr.write(f"retentiond: error: {e.message}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("retentiond: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as e:  # noqa: BLE001 (a bug: one line, no traceback unless asked)
        if os.environ.get("RETENTIOND_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(
            f"retentiond: internal error: {type(e).__name__}: {e} "
            "(this is a bug; RETENTIOND_DEBUG=1 shows the traceback)\n"
        )
        return EXIT_INTERNAL


def entrypoint() -> None:
    # no core file from any command: it would hold key-encryption keys, data keys and
    # plaintext (a `get`, an ingest, the daemon killed by systemd's watchdog with SIGABRT)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
