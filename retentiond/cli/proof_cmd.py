"""``proof verify`` and ``proof show``."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from retentiond.adapters.localfs_proofs import FileProofStore
from retentiond.cli.common import Subparsers, app_from, print_json, settings_from
from retentiond.crypto.signing import NoteVerifier
from retentiond.errors import NotFoundError, StorageError, UsageError
from retentiond.ports import ProofStore
from retentiond.service.prooflog import ProofLog, verify_log
from retentiond.service.wiring import VERIFIER_KEY_FILE, load_verifier, open_proof_store
from retentiond.settings import CONFIG_ENV, check_s3_url

WITNESS_FILE = "proof-verified.checkpoint"


def register(sub: Subparsers) -> None:
    p = sub.add_parser("proof", help="deletion-proof log")
    psub = p.add_subparsers(dest="proof_command", metavar="SUBCOMMAND", required=True)
    v = psub.add_parser(
        "verify", help="verify the whole log offline",
        description="Check the checkpoint signature, every entry, every tile, and "
        "consistency with the last checkpoint this verifier saw (kept in --witness).",
    )
    v.add_argument("--log", metavar="LOCATION", help="log folder (default: the config's proofs)")
    v.add_argument("--vkey", metavar="FILE", type=Path,
                   help="verifier key file (default: the config's keys/proof-log.vkey)")
    w = v.add_mutually_exclusive_group()
    w.add_argument("--witness", metavar="FILE", type=Path,
                   help="where the last verified checkpoint is kept (default: the config's "
                   "state/proof-verified.checkpoint; with --log, one file per log origin "
                   "under $XDG_STATE_HOME/retentiond/witnesses, else "
                   "~/.local/state/retentiond/witnesses)")
    w.add_argument("--no-witness", action="store_true",
                   help="do not compare with, nor keep, a previously verified checkpoint "
                   "(to verify an older archived copy of a log)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)
    s = psub.add_parser("show", help="a deletion record with its inclusion proof")
    s.add_argument("id", metavar="ID", help="recording id (as printed by ls)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)


def _local_path(location: str) -> Path:
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    if "://" in location:
        raise UsageError(f"--log {location}: a folder, a file:// or an s3:// URL")
    return Path(location)


def _write_witness(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (a temporary file of this process: two
    verifications at once never mix their writes)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise StorageError(f"{path}: cannot record the verified checkpoint: "
                           f"{e.strerror or e}") from None


def witness_home() -> Path | None:
    """The folder of an auditor's witnesses (XDG Base Directory: state data); None when
    there is no home to put it in."""
    state = os.environ.get("XDG_STATE_HOME") or ""
    if Path(state).is_absolute():
        return Path(state) / "retentiond" / "witnesses"
    try:
        return Path.home() / ".local" / "state" / "retentiond" / "witnesses"
    except RuntimeError:  # no HOME and no password-database entry
        return None


def default_witness(verifier: NoteVerifier) -> Path | None:
    """One checkpoint per log (origin and key): every copy of one log (the live folder,
    a bucket, an archive) must be consistent with what this verifier saw of any of them;
    a log re-created with a new key of the same name starts afresh."""
    home = witness_home()
    if home is None:
        return None
    return home / f"{quote(verifier.name, safe='')}+{verifier.key_id.hex()}.checkpoint"


def cmd_verify(args: argparse.Namespace) -> int:
    settings = None
    if args.log is None or args.vkey is None:
        settings = settings_from(args)
    location = args.log or settings.proofs  # type: ignore[union-attr]
    if location.startswith("s3://"):
        if settings is None and (args.config or os.environ.get(CONFIG_ENV)):
            settings = settings_from(args)  # its s3.* settings reach the bucket
        log_dir: str | Path = check_s3_url(location, "--log")
        store: ProofStore = open_proof_store(str(log_dir), settings)
        if not store.list("checkpoint"):
            raise NotFoundError(f"{log_dir}: no proof log here (no checkpoint)")
    else:
        log_dir = _local_path(location)
        if not log_dir.is_dir():
            raise NotFoundError(f"{log_dir}: no proof log here")
        store = FileProofStore(log_dir)
    vkey = args.vkey or settings.keys_dir / VERIFIER_KEY_FILE  # type: ignore[union-attr]
    verifier = load_verifier(vkey)
    witness: Path | None = args.witness
    # failing to keep it is an error, except for an auditor's per-user default
    chosen = witness is not None
    if witness is None and not args.no_witness:
        if settings is not None and args.log is None:
            witness, chosen = settings.state_dir / WITNESS_FILE, True
        else:
            witness = default_witness(verifier)
            if witness is None:
                print("warning: no home folder for the witness (set XDG_STATE_HOME or use "
                      "--witness FILE): a rollback cannot be detected", file=sys.stderr)
    try:
        last = witness.read_bytes() if witness is not None and witness.exists() else None
    except OSError as e:
        raise StorageError(f"{witness}: cannot read the last verified checkpoint: "
                           f"{e.strerror}") from None
    result = verify_log(store, verifier=verifier, origin=verifier.name,
                        last_checkpoint=last)
    kept = witness
    if witness is not None:
        try:
            _write_witness(witness, result.checkpoint)
        except StorageError as e:
            if chosen:
                raise
            kept = None  # the log verified; say that the next run cannot compare
            print(f"warning: {e}; the next verification cannot detect a rollback",
                  file=sys.stderr)
    root = base64.b64encode(result.root).decode()
    if args.json:
        print_json({"ok": True, "log": str(log_dir), "origin": verifier.name,
                    "size": result.size, "root": root,
                    "consistent_with_previous": last is not None,
                    "witness": None if kept is None else str(kept),
                    "uncommitted": list(result.uncommitted)})
    else:
        entries = "1 entry" if result.size == 1 else f"{result.size} entries"
        print(f"ok: {log_dir}: {entries}, root {root}, signed by {verifier.name}")
        if last is not None:
            print(f"consistent with the last verified checkpoint (kept in {witness})")
        elif witness is None:
            why = "--no-witness" if args.no_witness else "no witness file"
            print(f"not compared with an earlier checkpoint ({why}): a rollback to an "
                  "older copy of the log is not detected")
        else:
            print("first verification of this log here: nothing to compare with yet"
                  + (f"; its checkpoint is kept in {kept} for the next one" if kept else ""))
        if result.uncommitted:
            print(f"note: {len(result.uncommitted)} file(s) beyond the checkpoint from an "
                  "interrupted append (declared by the signed intent); the next append "
                  "replaces them")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    app = app_from(args, need_signer=False)
    log: ProofLog = app.proof_log
    index: int | None = None
    try:
        rec = app.catalog.get(args.id)
        index = rec.proof_index
        if index is None:
            raise NotFoundError(f"recording {args.id} is {rec.state.value}: no deletion proof yet")
    except NotFoundError:
        if index is not None:
            raise
        for i, entry in enumerate(log.entries(0, log.size())):
            if json.loads(entry).get("object_id") == args.id:
                index = i
                break
        if index is None:
            raise NotFoundError(f"no deletion record for {args.id!r} in the proof log") from None
    record: dict[str, Any] = json.loads(log.entry(index))
    proof = log.inclusion_proof(index)
    if args.json:
        print_json({"index": index, "record": record, "inclusion_proof": proof.to_json()})
        return 0
    print(f"deletion record #{index}")
    for key in sorted(record):
        print(f"  {key}: {json.dumps(record[key], ensure_ascii=False)}")
    p = proof.to_json()
    print(f"inclusion proof against checkpoint of size {p['tree_size']}:")
    for key in sorted(p):
        if key != "checkpoint":
            print(f"  {key}: {json.dumps(p[key])}")
    print("checkpoint:")
    print(proof.checkpoint.decode("utf-8").rstrip("\n"))
    return 0
