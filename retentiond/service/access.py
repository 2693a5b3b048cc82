"""Audited access: decrypting one recording for a named actor and reason.

The audit entry is written *before* the key is unwrapped, so even an access that crashes
half-way is on record (SPEC non-negotiable: every decrypt is audited).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from retentiond.core.model import State
from retentiond.crypto.envelope import open_stream
from retentiond.errors import (
    IntegrityError,
    KeyUnavailableError,
    NotFoundError,
    RefusedError,
    StorageError,
    UsageError,
)
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retrieved:
    object_id: str
    out: Path
    size: int
    plaintext_sha256: str


def retrieve(
    app: App, object_id: str, *, out: Path, actor: str, reason: str, now: datetime,
    action: str = "decrypt", details: Mapping[str, Any] | None = None,
) -> Retrieved:
    """Decrypt ``object_id`` to ``out`` (mode 0600, written atomically). ``action`` and
    ``details`` go to the audit entry (``subject export`` writes ``export`` entries)."""
    if not actor.strip() or not reason.strip():
        raise UsageError("get: --actor and --reason must not be empty")
    rec = app.catalog.get(object_id)
    if rec.state not in (State.ACTIVE, State.QUARANTINED):
        detail = f" (proof #{rec.proof_index})" if rec.proof_index is not None else ""
        raise NotFoundError(f"recording {object_id} is {rec.state.value}{detail}: nothing to read")
    if rec.objection:
        # not retained: never decrypted again, even while a hold or min_retention keeps it
        raise RefusedError(f"recording {object_id}: the caller objected; it is not retained "
                           "and is never decrypted")
    if rec.erasure_at is not None and not app.catalog.is_held(object_id):
        # kept only until the next pass deletes it (a legal hold keeps it readable,
        # audited, for the proceedings it serves)
        raise RefusedError(f"recording {object_id}: the subject asked for erasure; it cannot "
                           "be decrypted (it is deleted as soon as allowed)")
    if out.exists():
        raise UsageError(f"{out}: already exists; choose another --out")
    wrapped = app.catalog.wrapped_key(object_id)
    app.audit.append(action=action, actor=actor, reason=reason, now=now,
                     object_id=object_id, details={"purpose": rec.purpose, **(details or {})})
    if wrapped is None:
        raise KeyUnavailableError(f"recording {object_id}: its data key is gone")
    data_key = app.keys.unwrap(wrapped, object_id=object_id)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise StorageError(f"{out}: cannot write: {e.strerror}") from None
    ok = False
    try:
        with os.fdopen(fd, "wb") as fh:
            with app.vault.open_read(rec.location) as src:
                result = open_stream(src, fh, data_key=data_key, object_id=object_id,
                                     purpose=rec.purpose)
            fh.flush()
            os.fsync(fh.fileno())
        if result.plaintext_sha256 != rec.plaintext_sha256:
            raise IntegrityError(f"recording {object_id}: plaintext hash differs from catalog")
        os.replace(tmp, out)
        ok = True
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)
    logger.info("decrypted %s for %s", object_id, actor,
                extra={"event": "access.decrypt", "object_id": object_id})
    return Retrieved(object_id, out, result.plaintext_size, result.plaintext_sha256)
