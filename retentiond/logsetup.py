"""Logging: JSON lines on stderr for the daemon, short human lines for commands.

Each record carries a stable ``event`` name in ``extra``. Secrets never reach a log: the
code never passes key material, plaintext, caller identifiers or notes to a logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STD = set(vars(logging.makeLogRecord({})))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD and key not in out and key != "message":
                out[key] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info and record.levelno >= logging.ERROR:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"retentiond: {record.levelname.lower()}: {record.getMessage()}"


def setup_logging(*, level: str = "info", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if json_lines else HumanFormatter())
    root = logging.getLogger("retentiond")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
