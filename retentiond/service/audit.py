"""Access audit log: append-only JSON lines, each chained to the previous one by SHA-256.

CNIL asks contact centres for traceability of access ("qui a eu accès à quoi, qui a
modifié quoi, quand", context/000_822542ba0a462e32.txt). Every decrypt, export, hold change
and erasure is appended here: who (actor), what (action, object), when, why (reason).

Line format (canonical JSON, one per line)::

    {"action":"decrypt","actor":"alice","at":"2026-11-23T10:00:00Z","details":{...},
     "hash":"<sha256 hex>","object_id":"...","prev":"<previous hash>","reason":"...","seq":1}

``hash`` is SHA-256 over the canonical JSON of the line without ``hash``; ``prev`` of the
first line is 64 zeros. ``audit verify`` recomputes the chain: a changed, removed, inserted
or reordered line breaks it.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from retentiond.core.canonical import canonical_json, rfc3339, sha256_hex
from retentiond.errors import AuditError, StorageError, UsageError

GENESIS = "0" * 64
MAX_TEXT_CHARS = 1024  # actor and reason; keeps every line far below _TAIL_BYTES
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True)
class AuditSummary:
    entries: int
    head: str


def _entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return sha256_hex(canonical_json(body))


class AuditLog:
    """Appends to and verifies one audit log file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _last(self, fh: Any) -> tuple[int, str]:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        if end == 0:
            return 0, GENESIS
        fh.seek(max(0, end - _TAIL_BYTES))
        tail = fh.read().decode("utf-8", errors="replace")
        if not tail.endswith("\n"):
            raise AuditError(f"{self.path}: last line is truncated; run 'retentiond audit verify'")
        last = tail.rstrip("\n").rsplit("\n", 1)[-1]
        try:
            entry = json.loads(last)
            return int(entry["seq"]), str(entry["hash"])
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"{self.path}: last line is not an audit entry") from None

    def append(
        self, *, action: str, actor: str, reason: str, now: datetime,
        object_id: str | None = None, details: dict[str, Any] | None = None,
    ) -> str:
        """Append one entry durably; returns its hash."""
        for name, value in (("actor", actor), ("reason", reason)):
            if len(value) > MAX_TEXT_CHARS:
                raise UsageError(f"{name}: at most {MAX_TEXT_CHARS} characters")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise StorageError(f"{self.path}: cannot open audit log: {e.strerror}") from None
        with os.fdopen(fd, "r+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                seq, prev = self._last(fh)
                entry: dict[str, Any] = {
                    "seq": seq + 1, "at": rfc3339(now), "actor": actor, "action": action,
                    "object_id": object_id, "reason": reason, "details": details or {},
                    "prev": prev,
                }
                entry["hash"] = _entry_hash(entry)
                fh.write(canonical_json(entry) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
                return str(entry["hash"])
            except OSError as e:
                raise StorageError(f"{self.path}: cannot append: {e.strerror}") from None
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def verify(self) -> AuditSummary:
        """Check the whole chain. Raises AuditError naming the first bad line."""
        prev, seq = GENESIS, 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return AuditSummary(entries=0, head=GENESIS)
        except OSError as e:
            raise StorageError(f"{self.path}: cannot read: {e.strerror}") from None
        if data and not data.endswith(b"\n"):
            line_no = data.count(b"\n") + 1
            raise AuditError(f"{self.path}:{line_no}: truncated line")
        for line_no, raw in enumerate(data.splitlines(), start=1):
            try:
                entry = json.loads(raw)
            except ValueError:
                raise AuditError(f"{self.path}:{line_no}: not valid JSON") from None
            if not isinstance(entry, dict):
                raise AuditError(f"{self.path}:{line_no}: not an audit entry")
            if entry.get("seq") != seq + 1:
                raise AuditError(
                    f"{self.path}:{line_no}: sequence {entry.get('seq')!r}, expected {seq + 1} "
                    "(line removed, inserted or reordered)"
                )
            if entry.get("prev") != prev:
                raise AuditError(f"{self.path}:{line_no}: chain broken (prev hash mismatch)")
            try:
                recomputed = _entry_hash(entry)
            except ValueError:
                raise AuditError(f"{self.path}:{line_no}: not canonical") from None
            if entry.get("hash") != recomputed:
                raise AuditError(f"{self.path}:{line_no}: entry altered (hash mismatch)")
            prev, seq = recomputed, seq + 1
        return AuditSummary(entries=seq, head=prev)
