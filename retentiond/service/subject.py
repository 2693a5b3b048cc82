"""Subject rights: access (GDPR Art. 15) and erasure or objection (Art. 17, Art. 21).

A subject is looked up by the keyed pseudonym of the caller identifier (the one ingest
stores), so the clear identifier is needed to ask and is never stored, logged or audited:
audit entries carry the pseudonym.

- ``export_subject``: every live recording of the subject decrypted into a new folder
  (0700, files 0600), streamed through ``access.retrieve`` (audited, action ``export``,
  one entry per recording, before its key is unwrapped), one ``<id>.json`` metadata file
  each with the decrypted notes, and ``manifest.json`` (SHA-256 and size of every file).
- ``erase_subject``: the request is audited (action ``erase``, one entry per recording),
  flagged on the recordings with a salted commitment ``SHA-256(salt || subject)``, and
  the subject's recordings are deleted now through the normal sweep (same decisions, same
  deletion order, same proofs), limited to those ids. What a hold or a minimum retention
  (a legal obligation) keeps is listed with the reason and the date it can go; the flag
  stays on it, so it goes as soon as allowed, with the same commitment in its proof.

Limits: a recording that arrives after an erasure request is not covered by it (only
holds are standing orders); a recording already deleted is no longer linked to its
subject (its catalog row keeps no subject reference), so neither command lists it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from retentiond.core.canonical import rfc3339
from retentiond.core.decide import Action, Decision, decide
from retentiond.core.model import Recording, State
from retentiond.core.policy import Policy
from retentiond.crypto.envelope import open_bytes
from retentiond.errors import (
    IntegrityError,
    NotFoundError,
    ProofError,
    RefusedError,
    StorageError,
    UsageError,
)
from retentiond.service.access import retrieve
from retentiond.service.holds import subject_pseudonym
from retentiond.service.ingest import NOTES_LABEL
from retentiond.service.sweep import Sweeper, SweepItem
from retentiond.service.wiring import App

logger = logging.getLogger(__name__)

SALT_BYTES = 32
COMMITMENT_CONSTRUCTION = "SHA-256(salt || UTF-8 bytes of the identifier as given), hex"
EXPORT_FORMAT = "retentiond-subject-export/1"
MANIFEST = "manifest.json"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_ERASABLE = (State.ACTIVE, State.QUARANTINED)
_OF_SUBJECT = (State.ACTIVE, State.QUARANTINED, State.DELETING)

# -- pure parts ---------------------------------------------------------------------------


def erasure_commitment(salt: bytes, subject: str) -> str:
    """``SHA-256(salt || subject.encode("utf-8"))`` in lower-case hex: the value a deletion
    record's ``subject_commitment`` carries. ``subject`` is the identifier exactly as
    given to ``subject erase`` (no normalisation), so the person can recompute it from
    the receipt's salt with any SHA-256 tool."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"salt must be {SALT_BYTES} bytes")
    if not subject:
        raise ValueError("empty subject identifier")
    return hashlib.sha256(salt + subject.encode("utf-8")).hexdigest()


def media_suffix(source: str | None) -> str:
    """The file extension of the exported recording: the original one when it is a plain
    short extension (``.wav``), else ``.bin``. Only the extension is taken from the
    original name, which may hold a phone number."""
    if source:
        suffix = PurePosixPath(source.rstrip("/")).suffix
        if _SUFFIX.fullmatch(suffix):
            return suffix.lower()
    return ".bin"


@dataclass(frozen=True)
class ExportedFile:
    """One file of an export: name inside the folder, SHA-256 (hex) and size in bytes."""

    name: str
    sha256: str
    size: int
    recording: str
    kind: str  # "recording" or "metadata"


@dataclass(frozen=True)
class NotExported:
    """A recording of the subject that is not in the export, and why."""

    id: str
    state: str
    why: str


def not_exportable_because(rec: Recording) -> str | None:
    """Why a recording of the subject is left out of an export (None: it is exported).
    A recording being deleted may have lost its key; one whose caller objected is not
    retained (SPEC section 6) and is never decrypted again, even while a hold keeps it."""
    if rec.state is State.DELETING:
        return "being deleted (its deletion is under way and its key may already be destroyed)"
    if rec.state not in _ERASABLE:
        return f"{rec.state.value}: nothing to read"
    if rec.objection:
        return ("the caller objected to the recording: it is not retained and is never "
                "decrypted again; it is deleted as soon as no legal hold keeps it")
    return None


@dataclass(frozen=True)
class ExportResult:
    out: Path
    exported_at: datetime
    files: tuple[ExportedFile, ...]
    recordings: tuple[str, ...]
    not_exportable: tuple[NotExported, ...]
    unreadable: tuple[NotExported, ...]
    manifest_sha256: str


def export_metadata(
    rec: Recording, decision: Decision, *, held: bool, file: ExportedFile,
    notes: str | None,
) -> dict[str, Any]:
    """What the subject receives about one recording (GDPR Art. 15(1): purpose, legal
    basis, recipients (controller, processor), storage period; CNIL: the free-text notes
    about the call). Left out: ``source`` (the original file name and internal location:
    recorders put the dialled and calling numbers in it, possibly a third party's, and it
    describes internal systems), the subject and case pseudonyms and key ids."""
    return {
        "id": rec.id,
        "file": file.name,
        "sha256": file.sha256,
        "size": file.size,
        "state": rec.state.value,
        "purpose": rec.purpose,
        "declared_purpose": rec.declared_purpose,
        "legal_basis": rec.legal_basis,
        "recorded_at": rfc3339(rec.recorded_at),
        "delete_after": rfc3339(decision.due) if decision.due is not None else None,
        "retention": "; ".join(decision.reasons),
        "legal_hold": held,
        "call_id": rec.call_id,
        "agent": rec.agent,
        "media": rec.media,
        "controller": rec.controller,
        "processor": rec.processor,
        "objection": rec.objection,
        "erasure_requested_at": rfc3339(rec.erasure_at) if rec.erasure_at else None,
        "notes": notes,
        "policy": {"name": rec.policy_name, "sha256": rec.policy_sha256},
    }


def export_manifest(
    *, exported_at: datetime, policy: Policy, files: Sequence[ExportedFile],
    not_exportable: Sequence[NotExported], unreadable: Sequence[NotExported],
) -> dict[str, Any]:
    """The export's ``manifest.json``: every file with its SHA-256 and size, the policy in
    force, the time, and the subject's recordings that could not be exported."""
    return {
        "format": EXPORT_FORMAT,
        "exported_at": rfc3339(exported_at),
        "policy": {"name": policy.name, "sha256": policy.sha256},
        "recordings": sorted({f.recording for f in files}),
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size,
                   "recording": f.recording, "kind": f.kind}
                  for f in sorted(files, key=lambda f: f.name)],
        "not_exportable": [{"id": n.id, "state": n.state, "why": n.why}
                           for n in not_exportable],
        "unreadable": [{"id": n.id, "state": n.state, "why": n.why} for n in unreadable],
        "note": "Recordings already deleted are no longer linked to this person and are "
                "not listed; their deletion proofs are in the deletion-proof log.",
    }


@dataclass(frozen=True)
class ErasedRecording:
    """A recording of the subject that is gone. ``proof_index`` is None while its
    deletion record waits for the proof log (appended at the next pass)."""

    id: str
    purpose: str
    reason: str
    proof_index: int | None
    request: str = ""  # the request whose commitment its proof carries (an earlier one?)


@dataclass(frozen=True)
class KeptRecording:
    """A recording of the subject that stays for now, why, and when it can go.

    ``stays_because``: ``legal-hold`` (until the hold is released, and not before
    ``until`` when that is set), ``minimum-retention`` (a legal obligation, e.g. banking
    evidence: until ``until``), ``unknown-purpose`` (its purpose is missing from the
    policy: kept until the policy says what to do), ``blocked-by-lock`` (the store's
    Object Lock refused: retried every pass), ``deletion-failed`` (retried every pass),
    ``deletion-pending`` (due, but this pass did not get to it: the next pass deletes it)."""

    id: str
    purpose: str
    stays_because: str
    until: datetime | None
    held: bool
    why: str
    request: str = ""  # the request whose commitment its proof will carry


@dataclass(frozen=True)
class ErasureReceipt:
    """What the DPO hands to the person: the request id, the salt and the commitment
    (None when the subject had no recording), what went and what stays."""

    request_id: str
    requested_at: datetime
    objection: bool
    salt_hex: str | None
    commitment: str | None
    deleted: tuple[ErasedRecording, ...]
    kept: tuple[KeptRecording, ...]
    proof_error: str | None = None

    @property
    def reason(self) -> str:
        """The reason the deletion records carry."""
        return "objection" if self.objection else "erasure-request"

    @property
    def complete(self) -> bool:
        """Everything deleted and proven."""
        return not self.kept and self.proof_error is None and all(
            d.proof_index is not None for d in self.deleted)


def kept_entry(rec: Recording, decision: Decision, *, held: bool,
               outcome: SweepItem | None, now: datetime) -> KeptRecording:
    """Why ``rec`` is still there after the erasure pass, and when it can go (pure)."""
    why = "; ".join(decision.reasons)
    due = decision.due
    if outcome is not None and outcome.outcome in ("failed", "blocked-by-lock"):
        because = "blocked-by-lock" if outcome.outcome == "blocked-by-lock" \
            else "deletion-failed"
        return KeptRecording(rec.id, rec.purpose, because, None, held,
                             f"{why}; {outcome.error}" if outcome.error else why)
    if decision.rule in ("legal-hold", "legal-hold-overdue") or (
            outcome is not None and outcome.outcome == "held-overdue"):
        return KeptRecording(rec.id, rec.purpose, "legal-hold",
                             due if due is not None and due > now else None, True, why)
    if decision.rule == "unknown-purpose":
        return KeptRecording(rec.id, rec.purpose, "unknown-purpose", None, False, why)
    if decision.action is Action.KEEP and due is not None and due > now:
        return KeptRecording(rec.id, rec.purpose, "minimum-retention", due, False, why)
    # due now but not deleted by this pass (a hold placed meanwhile, a stop request...)
    return KeptRecording(rec.id, rec.purpose, "deletion-pending", due, held, why)


# -- export -------------------------------------------------------------------------------


def _prepare_out(out: Path) -> None:
    """A new folder (0700), or an existing empty one made 0700; never a non-empty one."""
    if out.is_symlink():
        raise UsageError(f"--out {out}: is a symbolic link; give a new folder")
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out}: exists and is not a folder; give a new folder")
        if any(out.iterdir()):
            raise UsageError(f"--out {out}: folder is not empty; give a new or empty folder")
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(out, 0o700)
    except OSError as e:
        raise StorageError(f"--out {out}: cannot create: {e.strerror}") from None


def _write_new(path: Path, data: bytes) -> str:
    """Write a new file (0600, never over an existing one) durably; returns its SHA-256."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as e:
        raise StorageError(f"{path}: cannot write: {e.strerror}") from None
    return hashlib.sha256(data).hexdigest()


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _open_notes(app: App, rec: Recording) -> str | None:
    """The recording's decrypted notes (its export is already audited)."""
    sealed = app.catalog.notes_sealed(rec.id)
    if sealed is None:
        return None
    wrapped = app.catalog.wrapped_key(rec.id)
    if wrapped is None:
        raise IntegrityError(f"recording {rec.id}: its data key is gone")
    data_key = app.keys.unwrap(wrapped, object_id=rec.id)
    return open_bytes(sealed, data_key=data_key, object_id=rec.id,
                      label=NOTES_LABEL).decode("utf-8")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_subject(app: App, subject: str, *, out: Path, actor: str, reason: str,
                   now: datetime) -> ExportResult:
    """Export every live recording of ``subject`` into the new folder ``out``.

    Each recording is streamed through ``access.retrieve`` (audit entry ``export`` with
    the subject's pseudonym first, then the key is unwrapped); a recording that does not
    authenticate is listed as unreadable in the manifest and the export goes on. With no
    recording, one ``export`` entry without object id records the request."""
    if not actor.strip() or not reason.strip():
        raise UsageError("subject export: --actor and --reason must not be empty")
    pseudonym = subject_pseudonym(app, subject)
    _prepare_out(out)
    recs = app.catalog.query(subject_ref=pseudonym, states=list(_OF_SUBJECT))
    held_ids = app.catalog.held_ids()
    files: list[ExportedFile] = []
    exported: list[str] = []
    not_exportable = [NotExported(r.id, r.state.value, why) for r in recs
                      if (why := not_exportable_because(r)) is not None]
    unreadable: list[NotExported] = []
    exportable = [r for r in recs if not_exportable_because(r) is None]
    if not exportable:
        app.audit.append(action="export", actor=actor, reason=reason, now=now,
                         details={"subject": pseudonym, "recordings": 0})
    for rec in exportable:
        name = f"{rec.id}{media_suffix(rec.source)}"
        try:
            got = retrieve(app, rec.id, out=out / name, actor=actor, reason=reason, now=now,
                           action="export", details={"subject": pseudonym})
            notes = _open_notes(app, rec)
        except RefusedError as e:  # the access rules changed under us: say so, go on
            not_exportable.append(NotExported(rec.id, rec.state.value, e.message))
            continue
        except IntegrityError as e:
            (out / name).unlink(missing_ok=True)
            unreadable.append(NotExported(rec.id, rec.state.value, e.message))
            logger.error("export of %s failed: %s", rec.id, e.message,
                         extra={"event": "subject.export_unreadable", "object_id": rec.id})
            continue
        media = ExportedFile(name, got.plaintext_sha256, got.size, rec.id, "recording")
        held = rec.id in held_ids
        decision = decide(rec, policy=app.policy, held=held, now=now)
        meta = _json_bytes(export_metadata(rec, decision, held=held, file=media, notes=notes))
        meta_name = f"{rec.id}.json"
        files += [media, ExportedFile(meta_name, _write_new(out / meta_name, meta), len(meta),
                                      rec.id, "metadata")]
        exported.append(rec.id)
    manifest = _json_bytes(export_manifest(exported_at=now, policy=app.policy, files=files,
                                           not_exportable=not_exportable,
                                           unreadable=unreadable))
    digest = _write_new(out / MANIFEST, manifest)
    _fsync_dir(out)
    logger.info("subject export: %d recordings, %d not exportable, %d unreadable",
                len(exported), len(not_exportable), len(unreadable),
                extra={"event": "subject.exported"})
    return ExportResult(out=out, exported_at=now, files=tuple(files),
                        recordings=tuple(exported), not_exportable=tuple(not_exportable),
                        unreadable=tuple(unreadable), manifest_sha256=digest)


# -- erasure ------------------------------------------------------------------------------


def withdraw_objection(app: App, subject: str, *, reason: str, actor: str,
                       now: datetime) -> str:
    """End ``subject``'s standing objection (the person withdraws it): later recordings
    are kept under the policy. Audited first. Returns the objection's request id; raises
    NotFoundError when there is none, or when another one replaced it meanwhile.
    Recordings already objected to still go."""
    if not actor.strip() or not reason.strip():
        raise UsageError("subject withdraw-objection: --actor and --reason must not be empty")
    pseudonym = subject_pseudonym(app, subject)
    request_id = app.catalog.standing_objection(pseudonym)
    if request_id is None:
        raise NotFoundError("no standing objection for this subject")
    app.audit.append(action="objection-withdrawn", actor=actor, reason=reason, now=now,
                     details={"subject": pseudonym, "request": request_id})
    if not app.catalog.remove_standing_objection(pseudonym, request_id):
        raise NotFoundError(f"standing objection {request_id} was replaced or withdrawn "
                            "meanwhile; nothing changed (run the command again)")
    return request_id


def erase_subject(app: App, subject: str, *, reason: str, actor: str, now: datetime,
                  objection: bool = False, salt: bytes | None = None) -> ErasureReceipt:
    """Erase (or, with ``objection``, object to) every recording of ``subject`` now.

    Order: audit (one ``erase`` entry per recording, with the pseudonym and request id)
    -> flag the live recordings with the request's salt and commitment -> one sweep pass
    limited to the subject's recordings -> the receipt from the catalog's state. A proof
    log that cannot be written does not lose the receipt: it comes back with
    ``proof_error`` set (the records are appended by the next pass)."""
    if not actor.strip() or not reason.strip():
        raise UsageError("subject erase: --actor and --reason must not be empty")
    pseudonym = subject_pseudonym(app, subject)
    request_id = secrets.token_hex(16)
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    commitment = erasure_commitment(salt, subject)
    if objection:  # Art. 21: no further processing, so later recordings of this caller
        # are not kept either: each is flagged when stored, with this commitment. Before
        # the query below, so a recording stored meanwhile is either found or flagged.
        app.audit.append(action="objection-standing", actor=actor, reason=reason, now=now,
                         details={"subject": pseudonym, "request": request_id})
        app.catalog.add_standing_objection(pseudonym, request_id=request_id,
                                           commitment=commitment, now=now)
    recs = app.catalog.query(subject_ref=pseudonym, states=list(_OF_SUBJECT))
    if not recs:
        app.audit.append(action="erase", actor=actor, reason=reason, now=now,
                         details={"subject": pseudonym, "request": request_id,
                                  "objection": objection, "recordings": 0})
        logger.info("erasure request %s: no recording of this subject", request_id,
                    extra={"event": "subject.erase_nothing"})
        if objection:  # the standing objection still needs its receipt
            return ErasureReceipt(request_id, now, objection, salt.hex(), commitment, (), ())
        return ErasureReceipt(request_id, now, objection, None, None, (), ())
    for rec in recs:
        app.audit.append(action="erase", actor=actor, reason=reason, now=now,
                         object_id=rec.id,
                         details={"subject": pseudonym, "request": request_id,
                                  "objection": objection})
    app.catalog.request_erasure([r.id for r in recs if r.state in _ERASABLE],
                                request_id=request_id, salt=salt, commitment=commitment,
                                now=now, objection=objection)
    ids = [r.id for r in recs]
    # which request's commitment each proof carries: an earlier one's, where it stands
    # (read now: a deletion wipes it from the row)
    covered = {i: app.catalog.get(i).erasure_request or request_id for i in ids}
    sweeper = Sweeper(app)
    outcomes: dict[str, SweepItem] = {}
    proof_error: str | None = None
    try:
        report = sweeper.sweep(now=now, only=ids)
        outcomes = {i.id: i for i in report.items}
    except ProofError as e:
        proof_error = e.message
    deleted: list[ErasedRecording] = []
    kept: list[KeptRecording] = []
    remaining: list[str] = []
    # key destroyed, deletion record waiting for the proof log (after a ProofError)
    unproven = {oid for oid, _ in app.catalog.pending_proofs()}
    for object_id in ids:
        rec = app.catalog.get(object_id)
        if rec.state is State.DELETED or object_id in unproven:
            deleted.append(ErasedRecording(rec.id, rec.purpose, rec.delete_reason or "",
                                           rec.proof_index, covered[rec.id]))
        else:
            remaining.append(object_id)
    held_ids = app.catalog.held_ids()
    for item in sweeper.plan(at=now, only=remaining):
        rec = item.recording
        kept.append(dataclasses.replace(
            kept_entry(rec, item.decision, held=rec.id in held_ids,
                       outcome=outcomes.get(rec.id), now=now), request=covered[rec.id]))
    receipt = ErasureReceipt(request_id, now, objection, salt.hex(), commitment,
                             tuple(deleted), tuple(kept), proof_error)
    logger.info("erasure request %s: %d deleted, %d kept", request_id, len(deleted),
                len(kept), extra={"event": "subject.erased"})
    return receipt
