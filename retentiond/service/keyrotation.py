"""``retentiond keys rotate``: a new key-encryption key (KEK), every data key re-wrapped
under it, never the data.

A recording is crypto-shredded by destroying its wrapped data key in the catalog. A
backup of the catalog taken earlier still holds that wrapped key, though, and together
with the KEK that wrapped it (the key folder, or its backup) it opens the recording
again after its retention ended. Re-wrapping alone does not change that; ``--retire``
does: once every data key is re-wrapped, the old KEK files no data key needs any more
are destroyed, and catalog backups older than the rotation no longer open anything.
Rotating (and retiring) regularly therefore bounds how long a deleted recording can
survive in backups: retention "limited to the strict minimum" (context/002, GDPR
recital 39), and the security and confidentiality a processor must guarantee
(context/001). docs/operations.md "Rotating keys" is the operator's side.

Order, and why a crash (kill -9) at any point loses nothing:

1. a new KEK file is written, then made current (``kek.current`` replaced atomically);
   every process's next ``wrap`` uses it (``FileKeyProvider`` re-reads a changed
   ``kek.current``);
2. ``--retire``: the old KEKs are marked retiring in the catalog, which from then on
   refuses a data key wrapped under them (an ingest that wrapped just before it saw the
   new KEK fails and is retried, its plaintext left in the inbox);
3. each data key not under the new KEK is unwrapped and wrapped again, 1,000 per catalog
   transaction, replaced only if the row is unchanged (a key the sweep destroyed meanwhile
   stays destroyed); one that does not unwrap (tampered row, missing KEK file) is left
   as it is and reported;
4. ``--retire``: each old KEK that no data key uses any more is destroyed
   (``retire_kek``), then recorded as retired; a KEK still in use is kept and reported.

Until step 4 every KEK file is still there, so every data key unwraps, whichever step a
crash interrupted; running the command again finishes the work (under another new KEK).
A KEK file is destroyed under a hidden name (``retire_kek``): a crash there leaves no
damaged key file in the folder, and the next rotation finishes destroying it.

The access audit log gets an entry before any data key is unwrapped (``stage:
started``), and one with the outcome (``finished``, or ``interrupted`` with the error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from retentiond.crypto.keys import FileKeyProvider, discard_retiring, retire_kek, rotate
from retentiond.errors import ConfigError, IntegrityError, RetentiondError, StorageError
from retentiond.faults import crashpoint
from retentiond.ports import WrappedKey
from retentiond.service.wiring import App

__all__ = ["COPY_MARKER", "RotationResult", "rotate_keys"]

logger = logging.getLogger(__name__)

REWRAP_PAGE = 1000  # data keys per catalog transaction
# written by the Helm chart's init container into its in-memory copy of the keys Secret
COPY_MARKER = "COPY-OF-SECRET"
FAILURES_LISTED = 20  # the first failures are named; all are counted


@dataclass
class RotationResult:
    kek_id: str  # the new current KEK
    previous: str
    rewrapped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (object id, why)
    retired: list[str] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)  # old KEK -> data keys still under it

    def as_json(self) -> dict[str, object]:
        return {
            "kek_id": self.kek_id, "previous": self.previous, "rewrapped": self.rewrapped,
            "failed": self.failed,
            "failures": [{"id": i, "error": why} for i, why in self.failures],
            "retired": self.retired, "kept": self.kept,
        }


def rotate_keys(app: App, *, actor: str, reason: str, retire: bool,
                now: datetime) -> RotationResult:
    """Rotate the KEK of ``app``'s key folder (see the module's docstring). Raises
    BusyError when another rotation runs, ConfigError when the key folder does not load
    or the provider is not ``file``; failures to re-wrap single keys are in the result."""
    settings = app.settings
    if settings.keys_provider != "file":
        raise ConfigError(f"keys.provider: {settings.keys_provider!r} cannot be rotated here")
    keys_dir = settings.keys_dir
    if (keys_dir / COPY_MARKER).exists():
        raise ConfigError(
            f"{keys_dir} is a copy of the keys Secret made when the pod started "
            f"({COPY_MARKER}): a key made here would be lost at the next restart, and "
            "every recording re-wrapped under it with it. See docs/operations.md "
            "\"Rotating keys\" for Kubernetes")
    with app.exclusive("keys", wait=False):
        previous = FileKeyProvider(keys_dir).current_kek_id()  # validates the whole folder
        app.audit.append(action="keys-rotate", actor=actor, reason=reason, now=now,
                         details={"stage": "started", "previous": previous,
                                  "retire": retire})
        result = RotationResult(kek_id="", previous=previous)
        try:
            _rotate(app, result, retire=retire, now=now)
        except BaseException as e:  # Ctrl-C too: the new KEK may be in force already
            why = e.message if isinstance(e, RetentiondError) else type(e).__name__
            try:  # whatever stopped it, the audit log says so
                _audit(app, result, actor=actor, reason=reason, retire=retire, error=why)
            except RetentiondError as audit_error:
                logger.error("cannot audit the interrupted key rotation: %s", audit_error,
                             extra={"event": "keys.audit_failed"})
            raise
        _audit(app, result, actor=actor, reason=reason, retire=retire)
    logger.info("key-encryption key rotated to %s: %d data key(s) re-wrapped, %d failed, "
                "%d old key(s) retired", result.kek_id, result.rewrapped, result.failed,
                len(result.retired), extra={"event": "keys.rotated"})
    return result


def _rotate(app: App, result: RotationResult, *, retire: bool, now: datetime) -> None:
    """Steps 1-4 of the module's docstring, filling ``result`` as they go."""
    keys_dir = app.settings.keys_dir
    try:
        discard_retiring(keys_dir)  # a retirement a crash interrupted
        result.kek_id = rotate(keys_dir, now=now)
    except OSError as e:
        raise StorageError(f"{keys_dir}: cannot change the key folder: {e.strerror}") from None
    crashpoint("keys.after_new_kek")
    provider = FileKeyProvider(keys_dir)
    old = [k for k in provider.kek_ids() if k != result.kek_id]
    if retire:
        app.catalog.mark_keks_retiring(old, now=app.clock.now())
    _rewrap_all(app, provider, result)
    usage = app.catalog.kek_usage()
    for kek in old:
        if not retire or usage.get(kek):
            result.kept[kek] = usage.get(kek, 0)
            continue
        try:
            retire_kek(keys_dir, kek)
        except OSError as e:
            raise StorageError(f"{keys_dir}: cannot destroy {kek}.key: {e.strerror}") from None
        except ValueError as e:  # kek.current changed behind the lock
            raise ConfigError(f"{keys_dir}: changed during the rotation: {e}") from None
        crashpoint("keys.after_retire_file")
        app.catalog.mark_kek_retired(kek, now=app.clock.now())
        result.retired.append(kek)


def _rewrap_all(app: App, provider: FileKeyProvider, result: RotationResult) -> None:
    """Re-wrap every data key not under ``result.kek_id``, a page at a time."""
    new = result.kek_id
    after = 0
    while True:
        page, after = app.catalog.wrapped_keys_page(not_under=new, after=after,
                                                    limit=REWRAP_PAGE)
        if not page:
            break
        items: list[tuple[str, WrappedKey, WrappedKey]] = []
        for object_id, old in page:
            try:
                data_key = provider.unwrap(old, object_id=object_id)
            except IntegrityError as e:  # tampered row, or its KEK file is gone
                result.failed += 1
                if len(result.failures) < FAILURES_LISTED:
                    result.failures.append((object_id, e.message))
                logger.error("cannot re-wrap the data key of %s: %s", object_id, e,
                             extra={"event": "keys.rewrap_failed", "object_id": object_id})
                continue
            wrapped = provider.wrap(data_key, object_id=object_id)
            if wrapped.kek_id != new:
                raise ConfigError(f"the key folder {app.settings.keys_dir} changed during "
                                  f"the rotation (current key is now {wrapped.kek_id})")
            items.append((object_id, old, wrapped))
        result.rewrapped += app.catalog.rewrap_keys(items)
        crashpoint("keys.after_rewrap_page")


def _audit(app: App, result: RotationResult, *, actor: str, reason: str, retire: bool,
           error: str | None = None) -> None:
    """The outcome, at the time it is known (the start has its own entry)."""
    details: dict[str, object] = {
        "stage": "finished" if error is None else "interrupted",
        "kek_id": result.kek_id or None, "previous": result.previous, "retire": retire,
        "rewrapped": result.rewrapped, "failed": result.failed, "retired": result.retired,
        "kept": result.kept,
    }
    if error is not None:
        details["error"] = error
    app.audit.append(action="keys-rotate", actor=actor, reason=reason, now=app.clock.now(),
                     details=details)
