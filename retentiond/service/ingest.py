"""Ingest: from a plaintext file in an inbox to a verified, encrypted, catalogued recording.

Order (each step durable before the next), so that a crash (kill -9) at any point leaves
no recording without its key, no key without its recording, and the plaintext in place
until the encrypted copy is verified:

1. catalog row ``ingesting`` + wrapped data key, in one transaction;
2. ciphertext streamed to the vault (temp file + fsync + rename);
3. vault copy verified (size; every byte read back authenticates as what was sealed);
4. catalog row -> ``active``/``quarantined`` with ``inbox_pending`` set;
5. plaintext and sidecar unlinked, folder fsynced; ``inbox_pending`` cleared (the
   unlinked plaintext is closed, which frees its blocks, in a helper thread).

``recover()`` finishes whatever a crash interrupted: rows still ``ingesting`` are rolled
back (their plaintext is still in the inbox and will be ingested again), rows with
``inbox_pending`` get their plaintext removed if it is the very file that was stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import io
import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, cast

from retentiond.adapters.localfs import (
    SIDECAR_SUFFIX,
    Identity,
    ReadLease,
    open_dir_beneath,
    open_regular,
    orphan_sidecars,
    read_small,
    unlink_if_same,
)
from retentiond.adapters.s3_inbox import Pinned, S3Inbox
from retentiond.concurrency import Progress
from retentiond.core.classify import Classification, Overrides, classify
from retentiond.core.decide import due_date
from retentiond.core.model import QUARANTINE, Recording, State, case_pseudonym_input
from retentiond.core.noteslint import lint_note
from retentiond.core.policy import Policy
from retentiond.core.sidecar import (
    MAX_SIDECAR_BYTES,
    Sidecar,
    parse_sidecar,
    sidecar_from_metadata,
)
from retentiond.crypto.envelope import (
    ciphertext_size,
    new_data_key,
    seal_bytes,
    seal_stream,
    verify_stream,
)
from retentiond.errors import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_WARNINGS,
    BusyError,
    InputError,
    IntegrityError,
    ObjectNotFoundError,
    RetentiondError,
    StorageError,
)
from retentiond.faults import crashpoint
from retentiond.ports import PutResult
from retentiond.service.holds import mirror_hold
from retentiond.service.wiring import App, is_s3

logger = logging.getLogger(__name__)

NOTES_LABEL = "notes"


def notes_findings(notes: str | None, *, object_id: str) -> list[tuple[str, str]]:
    """The notes lint's (category, rule id) pairs for one recording's notes, logged by
    recording id and category only: never the text (CNIL, context/004_d3ec3d87acc4f880.txt:
    comments hold no sensitive data nor insulting or subjective judgments)."""
    if not notes:
        return []
    found = sorted({(f.category, f.rule) for f in lint_note(notes)})
    if found:
        # the categories (health, offences...) stay out of logs, which live longer and are
        # read by more people than the report: the id and a count are enough to act on
        logger.info("notes of %s: %d notes-lint finding(s); see 'retentiond audit report'",
                    object_id, len(found),
                    extra={"event": "ingest.notes_findings", "object_id": object_id})
    return found
NO_OVERRIDES = Overrides()
_HASH_CHUNK = 1024 * 1024
BIG_OBJECT = 8 * 1024 * 1024  # a bucket recording above this is "big" (multipart upload)
BIG_AT_ONCE = 1
# a sidecar with no live recording (never arrived, or already deleted) is reported after
# this long (at least; 10 x ingest.sidecar_wait_seconds if longer): it may name the caller
ORPHAN_SIDECAR_SECONDS = 3600.0
# S3 (SigV4) refuses a request signed more than 15 minutes off the server's clock: an
# object's LastModified is never further than this from our clock
SIGV4_MAX_SKEW = 900.0


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one file. ``outcome``: stored, quarantined, duplicate, busy,
    changed (still being written: retried later), failed."""

    source: str
    outcome: str
    object_id: str | None = None
    purpose: str | None = None
    message: str = ""
    exit_code: int = EXIT_WARNINGS  # what `retentiond ingest` exits with for this file


@dataclass(frozen=True)
class Source:
    """The recording being ingested, wherever it came from (a drop folder or a bucket):
    what classification needs, and how to check and remove the plaintext afterwards."""

    source: str  # catalog ``source``: a path or an s3:// URL
    relpath: str  # relative to the inbox root, for the policy's classification rules
    mtime: datetime
    size: int | None  # expected plaintext size, checked after reading
    unchanged: Callable[[], bool]  # is it still exactly what was read?
    remove: Callable[[str], None]  # remove the plaintext (and its sidecar) once stored as
    # the recording whose id it is given


def vault_labels(rec: Recording, *, policy: Policy) -> tuple[dict[str, str], dict[str, str]]:
    """(object tags, object metadata) the vault copy carries (SPEC section 1, "tags"):
    purpose, legal basis, policy name and SHA-256, delete-after. No personal data: these
    are visible to anyone who may list the bucket."""
    due, _, _ = due_date(rec, policy=policy)
    tags = {"retentiond-purpose": rec.purpose, "retentiond-legal-basis": rec.legal_basis or "none",
            "retentiond-policy": rec.policy_name,
            "retentiond-delete-after": due.isoformat() if due is not None else "unknown"}
    metadata = {"retentiond-object-id": rec.id, "retentiond-format": "rtd1",
                "retentiond-policy-sha256": rec.policy_sha256}
    return tags, metadata


def vault_key(object_id: str) -> str:
    """Opaque vault key: no file name, no date, no caller data."""
    return f"v1/{object_id[:2]}/{object_id}.rtd"


def _reader(fh: BinaryIO) -> Callable[[memoryview], int]:
    """``fh.readinto``, or the same built on ``fh.read`` for a stream without it."""
    readinto = getattr(fh, "readinto", None)
    if callable(readinto):

        def read_into(view: memoryview) -> int:
            n: int | None = readinto(view)
            if n is None:
                raise ValueError("stream is non-blocking and has no data ready")
            return n

        return read_into

    def read_by_copy(view: memoryview) -> int:
        chunk = fh.read(len(view))
        view[:len(chunk)] = chunk
        return len(chunk)

    return read_by_copy


def _sha256_stream(fh: BinaryIO) -> tuple[int, str]:
    """(size, SHA-256 hex) of everything ``fh`` yields, read in one reused 1 MiB buffer
    (recovery's check that a leftover plaintext is the very content that was stored)."""
    read = _reader(fh)
    h = hashlib.sha256()
    total = 0
    buf = memoryview(bytearray(_HASH_CHUNK))
    while n := read(buf):
        h.update(buf[:n])
        total += n
    return total, h.hexdigest()


class _BackgroundCloser:
    """Closes the unlinked plaintext of a stored recording in a helper thread.

    The last close of an unlinked file is when the file system frees its blocks: measured
    here (ext4 mounted with ``discard``, virtio disk) 170-220 ms per 256 MiB, of which
    about 25 ms is CPU and the rest waiting for the disk; the next ingest uses that time.
    Only files already unlinked are handed over, so nothing is reachable by name any
    longer; the open descriptor (and its ``flock``) lives on for those milliseconds. At
    most ``limit`` closes are in flight: a further ``close`` waits for a slot.
    """

    def __init__(self, limit: int = 2) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._idle = threading.Condition()
        self._pending = 0
        self._queue: queue.SimpleQueue[BinaryIO] = queue.SimpleQueue()
        self._threads = 0
        self._limit = limit

    def close(self, fh: BinaryIO) -> None:
        self._slots.acquire()
        with self._idle:
            self._pending += 1
            self._queue.put(fh)
            if self._threads >= self._limit:
                return
            self._threads += 1  # lasting helpers, started when needed, gone when idle
        try:
            threading.Thread(target=self._run, daemon=True,
                             name="retentiond-close-plaintext").start()
        except RuntimeError:  # no thread to be had: close here
            with self._idle:
                self._threads -= 1
            self._run(linger=0.0)

    def _run(self, linger: float = 2.0) -> None:
        while True:
            try:
                fh = self._queue.get(timeout=linger) if linger else self._queue.get_nowait()
            except queue.Empty:
                with self._idle:  # ``close`` queues under this lock: nothing is missed
                    if self._queue.empty():
                        if linger:
                            self._threads -= 1
                        return
                continue
            self._close(fh)

    def _close(self, fh: BinaryIO) -> None:
        try:
            fh.close()
        except OSError as e:  # the data is stored and the name gone: only report it
            logger.warning("closing an ingested plaintext failed: %s", e,
                           extra={"event": "ingest.close_failed"})
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self._slots.release()

    def wait(self) -> None:
        """Return once every close handed over so far has finished."""
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0)


class _WriterAppeared(Exception):
    """Another program opened the inbox file for writing while it was being sealed."""


LEASE_CHECK_BYTES = 8 * 1024 * 1024  # how much is read between two looks at the lease


class _WatchedSource:
    """A recording's source as the sealer reads it. Every LEASE_CHECK_BYTES: tells the
    daemon's progress (systemd's watchdog) that the ingest moves, however long the
    recording takes (a 20 GiB video from a slow bucket); and, for an inbox file read
    under a lease, looks at it (one ``fcntl``): a broken lease (a program opened the file
    for writing) stops the ingest there rather than after sealing the rest, so that
    program waits less."""

    def __init__(self, fh: io.BufferedIOBase, progress: Progress,
                 lease: ReadLease | None) -> None:
        self._fh = fh
        self._progress = progress
        self._lease = lease if lease is not None and lease.held else None
        self._since = 0

    def _count(self, n: int) -> None:
        self._since += n
        if self._since >= LEASE_CHECK_BYTES:
            self._since = 0
            self._progress.beat()
            if self._lease is not None and not self._lease.intact():
                raise _WriterAppeared

    def readinto(self, buffer: memoryview) -> int:
        inner = getattr(self._fh, "readinto", None)
        if inner is None:  # a source with read() only
            data = self._fh.read(len(buffer))
            buffer[:len(data)] = data
            n = len(data)
        else:
            n = inner(buffer) or 0
        self._count(n)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._count(len(data))
        return data


def read_sidecar(name: str, *, dir_fd: int) -> tuple[Sidecar | None, str | None, Identity | None]:
    """Read and parse ``name``'s sidecar in ``dir_fd`` safely (no symlink, no FIFO, size
    bounded). Returns (sidecar, error message, identity of the file read)."""
    try:
        got = read_small(name + SIDECAR_SUFFIX, dir_fd=dir_fd, limit=MAX_SIDECAR_BYTES)
    except (OSError, StorageError) as e:
        return None, f"sidecar: cannot read: {getattr(e, 'strerror', None) or e}", None
    if got is None:
        return None, None, None
    data, identity = got
    try:
        # the sidecar's own name may carry the caller's number: errors say "sidecar"
        return parse_sidecar(data, filename="sidecar"), None, identity
    except InputError as e:
        return None, str(e), identity


class Ingestor:
    """Ingests files through the one path shared by the watcher and ``retentiond ingest``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._reported_late: set[str] = set()
        self._guard = threading.Lock()
        self._discarded_at: float | None = None
        self._in_progress: set[str] = set()
        # sidecars seen without their recording (file path or object URL) -> when this
        # process first saw them so (monotonic): see ``_seen_alone``
        self._alone_since: dict[str, float] = {}
        # sidecars with no recording, present or live: where -> first seen (monotonic)
        self._unmatched: dict[str, float] = {}
        self._unmatched_reported: set[str] = set()
        self._closer = _BackgroundCloser()
        self._no_lease_reported: set[str] = set()
        self._reopened_reported: set[str] = set()
        self._big = threading.BoundedSemaphore(BIG_AT_ONCE)
        self._bucket_vault = is_s3(app.settings.vault)

    @contextlib.contextmanager
    def _big_one(self, size: int | None) -> Iterator[None]:
        """At most ``BIG_AT_ONCE`` recordings larger than ``BIG_OBJECT`` at a time into a
        bucket vault, whatever ``ingest.workers`` says: a multipart upload holds
        three part buffers (24 MiB at the default part size), so memory stays bounded
        when large recordings arrive together (measured: 121 MiB peak for 12 x 1 MiB and
        4 x 64 MiB on 4 workers, 172 MiB with two large at once); small ones keep every
        worker busy. Large ones are bound by the CPU (AES-GCM, SHA-256, MD5) anyway: two
        at once were no faster on 2 cores (bench/README.md)."""
        if not self._bucket_vault or size is None or size <= BIG_OBJECT:
            yield
            return
        with self._big:
            yield

    def drain(self) -> None:
        """Wait until the plaintexts of the ingests finished so far are closed (the file
        system has freed their blocks); the ingests themselves do not wait for it."""
        self._closer.wait()

    # -- crash recovery ---------------------------------------------------------------

    def recover(self) -> int:
        """Finish or undo ingests a crash interrupted. Returns how many were repaired.

        Runs only when no ingest is under way in any process (exclusive ``ingest`` lock,
        which every ingest holds shared): an ``ingesting`` row is then certainly orphaned.
        """
        try:
            with self.app.exclusive("ingest", wait=False):
                return self._recover()
        except BusyError:
            logger.debug("an ingest is under way elsewhere; recovery postponed",
                         extra={"event": "ingest.recover_postponed"})
            return 0

    def _recover(self) -> int:
        app = self.app
        repaired = 0
        for rec in app.catalog.query(states=[State.INGESTING]):
            try:
                app.vault.delete_all_versions(rec.location)
            except StorageError as e:
                app.metrics.errors.labels(stage="vault").inc()
                logger.warning("cannot undo interrupted ingest %s: %s", rec.id, e,
                               extra={"event": "ingest.recover_failed", "object_id": rec.id})
                continue
            app.catalog.rollback_ingest(rec.id)
            repaired += 1
            logger.info("rolled back interrupted ingest %s", rec.id,
                        extra={"event": "ingest.rolled_back", "object_id": rec.id})
        for rec in app.catalog.query(inbox_pending=True):
            self._remove_stored_plaintext(rec)
            repaired += 1
        mono = app.clock.monotonic()
        if self._discarded_at is not None and \
                mono - self._discarded_at < app.settings.reconcile_interval_seconds:
            return repaired  # a listing request on S3: at start-up, then now and then
        try:
            app.vault.discard_incomplete_writes()
            self._discarded_at = mono
        except StorageError as e:
            app.metrics.errors.labels(stage="vault").inc()
            logger.warning("cannot discard interrupted vault writes: %s", e,
                           extra={"event": "ingest.recover_failed"})
        return repaired

    def _report_reopened(self, object_id: str) -> None:
        """Recovery found a stored recording's plaintext open for writing (said once)."""
        with self._guard:
            if object_id in self._reopened_reported:
                return
            self._reopened_reported.add(object_id)
        logger.warning("the plaintext of stored recording %s is open for writing by another "
                       "program; left in place and removed once it is closed, if unchanged",
                       object_id, extra={"event": "ingest.source_reopened",
                                         "object_id": object_id})

    def _remove_stored_plaintext(self, rec: Recording) -> None:
        """After a crash between catalog commit and unlink: remove the plaintext if it is
        the very content that was stored, and its sidecar with it."""
        if not rec.source:  # deleted meanwhile: its source was wiped with its personal data
            logger.warning("recording %s was deleted before its plaintext's removal was "
                           "confirmed; check its inbox for a leftover", rec.id,
                           extra={"event": "ingest.source_unknown", "object_id": rec.id})
            self.app.catalog.clear_inbox_pending(rec.id)
            return
        if is_s3(rec.source):
            self._remove_stored_object(rec)
            return
        src = Path(rec.source)
        try:
            dfd = os.open(src.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            self.app.catalog.clear_inbox_pending(rec.id)
            return
        fh: BinaryIO | None = None
        try:
            identity, digest, lease = None, None, None
            try:
                fd, st = open_regular(src.name, dir_fd=dfd)
                fh = os.fdopen(fd, "rb", buffering=0)
                identity = Identity.of(st)
                lease = ReadLease(fd)  # as at ingest: never unlink a file being written
                if lease.writer:
                    self._report_reopened(rec.id)
                    return
                digest = _sha256_stream(fh)[1]
            except (OSError, StorageError):
                pass
            if digest is not None and digest != rec.plaintext_sha256:
                logger.warning("a different file now has the name of stored recording %s; "
                               "left for ingest as a new file", rec.id,
                               extra={"event": "ingest.source_changed", "object_id": rec.id})
            elif lease is not None and not lease.intact():
                self._report_reopened(rec.id)
                return
            else:
                if identity is not None:
                    unlink_if_same(src.name, identity, dir_fd=dfd)
                sidecar = read_small(src.name + SIDECAR_SUFFIX, dir_fd=dfd,
                                     limit=MAX_SIDECAR_BYTES)
                if sidecar is not None:  # it held caller data: it goes with its recording
                    unlink_if_same(src.name + SIDECAR_SUFFIX, sidecar[1], dir_fd=dfd)
        finally:
            if fh is not None:
                fh.close()  # releases the lease
            os.close(dfd)
        self.app.catalog.clear_inbox_pending(rec.id)

    def _remove_stored_object(self, rec: Recording) -> None:
        """``_remove_stored_plaintext`` for a bucket inbox. A storage error leaves the row
        pending: the next recovery tries again."""
        inbox = self.app.s3_inbox_of(rec.source)
        if inbox is None:  # the inbox left the configuration: nothing we may touch
            logger.warning("stored recording %s came from a bucket inbox no longer "
                           "configured; its plaintext was not removed", rec.id,
                           extra={"event": "ingest.source_unknown", "object_id": rec.id})
            self.app.catalog.clear_inbox_pending(rec.id)
            return
        key = inbox.key_of(rec.source) or ""
        try:
            with inbox.open(key) as (fh, pinned):
                digest = _sha256_stream(fh)[1]
            if digest != rec.plaintext_sha256:
                logger.warning("a different object now has the key of stored recording %s; "
                               "left for ingest as a new recording", rec.id,
                               extra={"event": "ingest.source_changed", "object_id": rec.id})
            else:
                inbox.remove(pinned)
                sidecar = inbox.current(key + SIDECAR_SUFFIX)
                if sidecar is not None:
                    inbox.remove(sidecar)
        except ObjectNotFoundError:
            pass
        except StorageError as e:
            self.app.metrics.errors.labels(stage="ingest").inc()
            logger.warning("cannot finish removing the plaintext of %s: %s (retried)", rec.id,
                           e, extra={"event": "ingest.recover_failed", "object_id": rec.id})
            return
        self.app.catalog.clear_inbox_pending(rec.id)

    # -- the ingest path --------------------------------------------------------------

    def ingest(
        self, root: Path, relpath: str, *, overrides: Overrides = NO_OVERRIDES,
        now: datetime,
    ) -> IngestOutcome:
        """Ingest ``root/relpath``. Nothing below ``root`` is followed if it is a symlink.
        Expected failures come back as an outcome, never raised."""
        app = self.app
        started = app.clock.monotonic()
        path = root / relpath
        source = str(path)
        reldir, _, name = relpath.rpartition("/")
        dfd = fd = -1
        try:
            dfd = open_dir_beneath(root, reldir)
            fd, before = open_regular(name, dir_fd=dfd)
        except FileNotFoundError:
            if dfd >= 0:
                os.close(dfd)
            return IngestOutcome(source, "gone", message=f"{path}: no such file")
        except (OSError, StorageError) as e:
            if dfd >= 0:
                os.close(dfd)
            why = "a symbolic link (refused)" if isinstance(e, OSError) and \
                e.errno == errno.ELOOP else getattr(e, "strerror", None) or str(e)
            why = why.removeprefix(f"{name}: ")  # the path below names it already
            app.metrics.errors.labels(stage="ingest").inc()
            return IngestOutcome(source, "failed", message=f"{path}: {why}",
                                 exit_code=EXIT_BAD_INPUT)
        fh = os.fdopen(fd, "rb")
        unlinked = False
        lease: ReadLease | None = None
        try:
            with app.exclusive("ingest", shared=True):
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return IngestOutcome(source, "busy",
                                         message=f"{path}: being ingested elsewhere")
                if not self._same_file(name, dfd, Identity.of(os.fstat(fh.fileno()))):
                    return IngestOutcome(source, "gone", message=f"{path}: already taken")
                if before.st_nlink > 1:
                    logger.warning(
                        "inbox file has %d hard links: only this name is removed after "
                        "ingest; the plaintext stays reachable through the others",
                        before.st_nlink, extra={"event": "ingest.hard_links"},
                    )
                try:
                    with self._big_one(before.st_size):
                        # taken once it is this file's turn: a writer opening it meanwhile
                        # would otherwise wait (up to 45 s) for an ingest not started yet
                        lease = ReadLease(fh.fileno())
                        if lease.writer:
                            return IngestOutcome(source, "changed", message=f"{path}: still "
                                                 "open for writing by another program; left "
                                                 "in place until it is closed")
                        if lease.unavailable is not None:
                            self._report_no_lease(lease.unavailable)
                        outcome = self._ingest_open(
                            fh, lease, path=path, dir_fd=dfd, name=name, relpath=relpath,
                            before=before, overrides=overrides, now=now,
                        )
                except _WriterAppeared:  # undone by _ingest_stream: nothing was kept
                    return IngestOutcome(source, "changed", message=f"{path}: opened for "
                                         "writing by another program while being ingested; "
                                         "left in place")
                except RetentiondError as e:
                    app.metrics.errors.labels(stage="ingest").inc()
                    app.metrics.ingested.labels(purpose="unknown", outcome="failed").inc()
                    logger.error("ingest failed: %s", e, extra={"event": "ingest.failed"})
                    return IngestOutcome(source, "failed", message=str(e),
                                         exit_code=e.exit_code)
                unlinked = outcome.outcome in ("stored", "quarantined")
        finally:
            if lease is not None:
                lease.release()  # a writer waiting in open() goes on now
            if unlinked:  # its last close frees its blocks: off the ingest's path
                self._closer.close(fh)
            else:
                fh.close()
            os.close(dfd)
        if outcome.outcome in ("stored", "quarantined"):
            app.metrics.ingest_duration.observe(app.clock.monotonic() - started)
        return outcome

    def ingest_object(
        self, inbox: S3Inbox, key: str, *, overrides: Overrides = NO_OVERRIDES, now: datetime,
        sidecar_listed: bool | None = None, listed_size: int | None = None,
    ) -> IngestOutcome:
        """Ingest the object ``key`` of a bucket inbox: the same path as a file, with the
        sidecar from ``KEY.json`` (else ``x-amz-meta-retentiond-*`` metadata), identity
        pinned by ETag and version id, and removal of exactly the version read.
        ``sidecar_listed=False`` (the listing just showed no ``KEY.json``) saves asking
        for it; a sidecar uploaded after that listing is then a late sidecar.
        ``listed_size`` (the listing's size) lets a big recording wait for its turn before
        its GET starts (``_big_one``)."""
        app = self.app
        started = app.clock.monotonic()
        source = inbox.url_of(key)
        with self._guard:
            if source in self._in_progress:
                return IngestOutcome(source, "busy", message=f"{source}: being ingested")
            self._in_progress.add(source)
        try:
            with app.exclusive("ingest", shared=True), self._big_one(listed_size), \
                    inbox.open(key) as (fh, pinned):
                sidecar, error, sidecar_pin = self._object_sidecar(
                    inbox, pinned, look=sidecar_listed is not False)

                def remove(_: str) -> None:
                    if not inbox.remove(pinned):
                        logger.warning("a stored recording was replaced in its bucket inbox "
                                       "meanwhile; the new object is left for its own ingest",
                                       extra={"event": "ingest.source_changed"})
                    if sidecar_pin is not None and not inbox.remove(sidecar_pin):
                        logger.warning("the sidecar of a stored recording changed after it "
                                       "was read; left in the inbox",
                                       extra={"event": "ingest.sidecar_changed"})

                # A GET returns one whole version: what was read is complete and
                # consistent even if the key is overwritten meanwhile (``remove`` then
                # leaves the new version for its own ingest), so no check is needed here.
                src = Source(source=source, relpath=key, mtime=pinned.modified,
                             size=pinned.size, unchanged=lambda: True, remove=remove)
                outcome = self._ingest_stream(fh, src, sidecar=sidecar, sidecar_error=error,
                                              overrides=overrides, now=now)
        except ObjectNotFoundError:
            return IngestOutcome(source, "gone", message=f"{source}: no such object")
        except RetentiondError as e:
            app.metrics.errors.labels(stage="ingest").inc()
            app.metrics.ingested.labels(purpose="unknown", outcome="failed").inc()
            # the log names the inbox, not the object: recorders put callers' numbers in keys
            logger.error("ingest failed: %s", str(e).replace(source, f"an object of "
                                                             f"{inbox.url_of('')}"),
                         extra={"event": "ingest.failed"})
            return IngestOutcome(source, "failed", message=str(e), exit_code=e.exit_code)
        finally:
            with self._guard:
                self._in_progress.discard(source)
        if outcome.outcome in ("stored", "quarantined"):
            app.metrics.ingest_duration.observe(app.clock.monotonic() - started)
        return outcome

    @staticmethod
    def _object_sidecar(
        inbox: S3Inbox, pinned: Pinned, *, look: bool = True,
    ) -> tuple[Sidecar | None, str | None, Pinned | None]:
        """(sidecar, error, pinned sidecar object) of a bucket recording; ``look=False``:
        no ``KEY.json`` to look for, only the metadata."""
        try:
            got = inbox.read_small(pinned.key + SIDECAR_SUFFIX, limit=MAX_SIDECAR_BYTES) \
                if look else None
        except InputError as e:
            return None, f"sidecar: {e}", None
        if got is not None:
            data, sidecar_pin = got
            try:
                return parse_sidecar(data, filename="sidecar"), None, sidecar_pin
            except InputError as e:
                return None, str(e), sidecar_pin
        try:
            return sidecar_from_metadata(pinned.metadata), None, None
        except InputError as e:
            return None, str(e), None

    @staticmethod
    def _same_file(name: str, dir_fd: int, identity: Identity) -> bool:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return Identity.of(st) == identity

    def _report_no_lease(self, why: str) -> None:
        """Say once per reason that writers cannot be seen (``ReadLease.unavailable``)."""
        with self._guard:
            if why in self._no_lease_reported:
                return
            self._no_lease_reported.add(why)
        logger.warning(
            "cannot tell whether a program still writes the inbox's files (%s): a file is "
            "taken as complete once unchanged for ingest.settle_seconds (%g s)", why,
            self.app.settings.settle_seconds, extra={"event": "ingest.no_lease"})

    def _ingest_open(
        self, fh: BinaryIO, lease: ReadLease, *, path: Path, dir_fd: int, name: str, relpath: str,
        before: os.stat_result, overrides: Overrides, now: datetime,
    ) -> IngestOutcome:
        sidecar, sidecar_error, sidecar_id = read_sidecar(name, dir_fd=dir_fd)

        def remove(object_id: str) -> None:
            if not lease.intact():  # a writer came between the last check and now
                logger.warning(
                    "a program opened a recording for writing just as it was stored: the "
                    "stored copy is what was read; the file and its sidecar stay in the "
                    "inbox and are ingested again once complete (a second recording)",
                    extra={"event": "ingest.source_reopened", "object_id": object_id})
                return
            removed = unlink_if_same(name, Identity.of(before), dir_fd=dir_fd)
            if removed and not lease.intact():
                # opened in the microseconds between the check above and the unlink: that
                # program now writes to a file no name leads to; never silent
                self.app.metrics.errors.labels(stage="ingest").inc()
                logger.error(
                    "a program opened a recording for writing as its plaintext was being "
                    "removed: the stored copy is what was read, and what that program "
                    "writes now is lost; check the recorder", extra={
                        "event": "ingest.source_lost", "object_id": object_id})
            if sidecar_id is not None and not unlink_if_same(name + SIDECAR_SUFFIX, sidecar_id,
                                                             dir_fd=dir_fd):
                logger.warning("the sidecar of a stored recording changed after it was read; "
                               "left in the inbox", extra={"event": "ingest.sidecar_changed"})

        src = Source(source=str(path), relpath=relpath,
                     mtime=datetime.fromtimestamp(before.st_mtime, UTC), size=before.st_size,
                     unchanged=lambda: lease.intact() and
                     self._same_file(name, dir_fd, Identity.of(before)),
                     remove=remove)
        return self._ingest_stream(fh, src, lease=lease, sidecar=sidecar,
                                   sidecar_error=sidecar_error,
                                   overrides=overrides, now=now)

    def _ingest_stream(
        self, fh: BinaryIO, src: Source, *, sidecar: Sidecar | None,
        sidecar_error: str | None, overrides: Overrides, now: datetime,
        lease: ReadLease | None = None,
    ) -> IngestOutcome:
        """The common path: classify, encrypt into the vault, verify, catalog, remove.
        ``lease``: the inbox file's read lease, looked at while it is read."""
        app = self.app
        policy = app.policy
        path = src.source
        if sidecar_error is not None:
            logger.warning("%s", sidecar_error, extra={"event": "ingest.bad_sidecar"})
        cls = classify(
            policy=policy, relpath=src.relpath, mtime=src.mtime, now=now,
            sidecar=sidecar, sidecar_error=sidecar_error, overrides=overrides,
        )
        object_id = secrets.token_hex(16)
        data_key = new_data_key()
        wrapped = app.keys.wrap(data_key, object_id=object_id)
        notes_sealed = (
            seal_bytes(cls.notes.encode("utf-8"), data_key=data_key, object_id=object_id,
                       label=NOTES_LABEL)
            if cls.notes else None
        )
        rec = self._new_record(cls, object_id=object_id, source=src.source, now=now,
                               kek_id=wrapped.kek_id)
        findings = notes_findings(cls.notes, object_id=object_id)
        app.catalog.insert_ingesting(rec, wrapped=wrapped, notes_sealed=notes_sealed,
                                     notes_findings=findings)
        crashpoint("ingest.after_catalog_insert")
        tags, metadata = vault_labels(rec, policy=policy)
        lock_until = rec.retain_until if rec.retain_until is not None and \
            rec.retain_until > now else None
        try:
            with app.vault.writer(rec.location, metadata=metadata, tags=tags,
                                  retain_until=lock_until,
                                  size_hint=None if src.size is None
                                  else ciphertext_size(src.size)) as w:
                sealed = seal_stream(
                    cast(BinaryIO, _WatchedSource(cast(io.BufferedIOBase, fh), app.progress,
                                                  lease)), w,
                    data_key=data_key, object_id=object_id, purpose=cls.purpose,
                )
                crashpoint("ingest.before_vault_commit")
            put = w.result
            crashpoint("ingest.after_vault_write")
            self._verify_vault_copy(put, sealed.ciphertext_size, data_key=data_key,
                                    object_id=object_id, purpose=cls.purpose)
            if not src.unchanged() or (
                src.size is not None and sealed.plaintext_size != src.size
            ):
                self._undo(rec)
                return IngestOutcome(path, "changed",
                                     message=f"{path}: changed while being ingested; "
                                     "retried later")
            score_input = cls.call_id if cls.call_id else f"sha256:{sealed.plaintext_sha256}"
            stored = dataclasses.replace(rec, sample_score=app.keys.sample_score(score_input))
            due, _, _ = due_date(stored, policy=policy)
            state = State.QUARANTINED if cls.quarantined else State.ACTIVE
            objected = app.catalog.mark_stored(
                object_id, state=state, size=sealed.plaintext_size,
                ciphertext_size=sealed.ciphertext_size,
                plaintext_sha256=sealed.plaintext_sha256,
                ciphertext_sha256=sealed.ciphertext_sha256, version_id=put.version_id,
                delete_after=due, sample_score=stored.sample_score,
                tally=not cls.quarantined,
            )
        except BaseException:
            self._undo(rec)
            raise
        crashpoint("ingest.after_mark_stored")
        src.remove(object_id)
        crashpoint("ingest.after_unlink")
        app.catalog.clear_inbox_pending(object_id)
        if (rec.subject_ref or rec.case_ref) and app.catalog.is_held(object_id):
            # a standing hold on its caller or case: the store's legal hold too (a failure
            # is a warning; retentiond's own hold keeps it either way)
            mirror_hold(app, object_id, on=True)
        if objected:  # the caller's standing objection (``subject erase --objection``)
            logger.warning("%s: its caller objected to being recorded (standing objection): "
                           "deleted as soon as allowed", object_id,
                           extra={"event": "ingest.standing_objection", "object_id": object_id})
        outcome = "quarantined" if cls.quarantined else "stored"
        label = QUARANTINE if cls.quarantined else cls.purpose
        app.metrics.ingested.labels(purpose=label, outcome=outcome).inc()
        app.metrics.ingest_bytes.inc(sealed.plaintext_size)
        for category in sorted({c for c, _ in findings}):
            app.metrics.notes_findings.labels(category=category).inc()
        # logs name the object id, never the inbox file name (it may hold a phone number)
        if cls.quarantined:
            logger.warning("quarantined %s: %s", object_id, cls.quarantine_reason,
                           extra={"event": "ingest.quarantined", "object_id": object_id})
        else:
            logger.info("stored %s (%s)", object_id, cls.purpose,
                        extra={"event": "ingest.stored", "object_id": object_id})
        return IngestOutcome(path, outcome, object_id, label,
                             cls.quarantine_reason or "",
                             exit_code=EXIT_WARNINGS if cls.quarantined else EXIT_OK)

    def preview(self, root: Path, relpath: str, *, now: datetime) -> Recording:
        """The record ``root/relpath`` would get if ingested now (``policy explain``): the
        same sidecar reading, classification and record building as ingest."""
        reldir, _, name = relpath.rpartition("/")
        dfd = open_dir_beneath(root, reldir)
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            sidecar, error, _ = read_sidecar(name, dir_fd=dfd)
        finally:
            os.close(dfd)
        cls = classify(policy=self.app.policy, relpath=relpath,
                       mtime=datetime.fromtimestamp(st.st_mtime, UTC), now=now,
                       sidecar=sidecar, sidecar_error=error)
        rec = self._new_record(cls, object_id="(not ingested)", source=str(root / relpath),
                               now=now, kek_id="")
        return dataclasses.replace(
            rec, state=State.QUARANTINED if cls.quarantined else State.ACTIVE)

    def apply_late_sidecars(self, root: Path, *, now: datetime) -> int:
        """Sidecars that arrive after their recording was ingested. An objection in one is
        applied (the recording is then deleted by the next sweep, with reason
        ``objection``) and the sidecar removed; any other late sidecar is reported once
        and left in place. Returns how many objections were applied."""
        applied = 0
        mono = self.app.clock.monotonic()
        orphans = orphan_sidecars(root)
        unmatched: dict[str, float] = {}  # where -> first seen
        seen = self._seen_alone(str(root) + os.sep, [str(root / r) for r in orphans],
                                mono=mono)
        for relpath, landed in orphans.items():
            path = str(root / relpath)
            first = self._first_seen(seen[path], landed, mono=mono, now=now)  # the report's
            # a sidecar dropped before its recording is not late: wait as long as a
            # recording waits for its sidecar before deciding it belongs to an old one.
            # This process's own clock decides, never the file's ctime: a file server's
            # clock behind ours would make a new sidecar look old, and its objection
            # would land on an old recording of the same name
            if mono - seen[path] < self.app.settings.sidecar_wait_seconds:
                unmatched[path] = first
                continue
            reldir, _, name = relpath[: -len(SIDECAR_SUFFIX)].rpartition("/")
            source = str(root / relpath[: -len(SIDECAR_SUFFIX)])
            recs = self.app.catalog.query(source=source,
                                          states=[State.ACTIVE, State.QUARANTINED])
            if not recs:  # waiting for its recording
                unmatched[path] = first
                continue
            rec = recs[-1]
            try:
                dfd = open_dir_beneath(root, reldir)
            except (OSError, StorageError):
                continue
            try:
                sidecar, error, identity = read_sidecar(name, dir_fd=dfd)
                if identity is not None and self._late_sidecar(
                        rec, sidecar, error, now=now,
                        remove=functools.partial(unlink_if_same, name + SIDECAR_SUFFIX,
                                                 identity, dir_fd=dfd)):
                    applied += 1
            finally:
                os.close(dfd)
        self._track_unmatched(str(root) + os.sep, unmatched, mono=mono)
        return applied

    def apply_late_object_sidecars(self, inbox: S3Inbox, sidecars: Mapping[str, datetime],
                                   *, now: datetime) -> int:
        """``apply_late_sidecars`` for a bucket inbox: ``sidecars`` are the ``KEY.json``
        objects listed without their recording, with their LastModified. As in a folder,
        one is late only once this process has seen it alone for
        ``ingest.sidecar_wait_seconds``: uploaded before a new recording of the same name,
        it belongs to that one, not to an old recording of that name still live. Or once
        its LastModified is older than that wait plus SIGV4_MAX_SKEW: no clock S3 accepts
        requests from is that far off ours, and a short-lived process (``run --once``
        from cron) then applies it too."""
        applied = 0
        unmatched: dict[str, float] = {}  # where -> first seen
        mono = self.app.clock.monotonic()
        seen = self._seen_alone(inbox.url_of(""), [inbox.url_of(k) for k in sidecars],
                                mono=mono)
        for skey, modified in sidecars.items():
            where = inbox.url_of(skey)
            landed = self._first_seen(seen[where], modified.timestamp(), mono=mono, now=now)
            wait = self.app.settings.sidecar_wait_seconds
            if mono - seen[where] < wait and \
                    (now - modified).total_seconds() < wait + SIGV4_MAX_SKEW:
                unmatched[where] = landed  # its recording may be on its way
                continue
            source = inbox.url_of(skey[: -len(SIDECAR_SUFFIX)])
            recs = self.app.catalog.query(source=source,
                                          states=[State.ACTIVE, State.QUARANTINED])
            if not recs:  # waiting for its recording
                unmatched[where] = landed
                continue
            try:
                got = inbox.read_small(skey, limit=MAX_SIDECAR_BYTES)
            except (InputError, StorageError) as e:  # never the key: it may hold a number
                why = str(e).replace(inbox.url_of(skey), "the sidecar object")
                self._late_sidecar(recs[-1], None, f"sidecar: {why}", now=now,
                                   remove=lambda: False)
                continue
            if got is None:
                continue
            data, pinned = got
            try:
                sidecar, error = parse_sidecar(data, filename="sidecar"), None
            except InputError as e:
                sidecar, error = None, str(e)
            if self._late_sidecar(recs[-1], sidecar, error, now=now,
                                  remove=functools.partial(inbox.remove, pinned)):
                applied += 1
        self._track_unmatched(inbox.url_of(""), unmatched, mono=mono)
        return applied

    def _seen_alone(self, scope: str, wheres: list[str], *, mono: float) -> dict[str, float]:
        """When this process first saw each sidecar of one inbox (``wheres``, all starting
        with ``scope``) without its recording; those of the inbox no longer listed are
        forgotten, those of other inboxes kept."""
        seen = {w: self._alone_since.get(w, mono) for w in wheres}
        self._alone_since = seen | {
            k: v for k, v in self._alone_since.items() if not k.startswith(scope)}
        return seen

    @staticmethod
    def _first_seen(seen: float, landed: float, *, mono: float, now: datetime) -> float:
        """When a sidecar was first seen, for the orphan report only, on this process's
        monotonic clock: when this process first saw it, or earlier if the store says it
        has been there longer (``landed``: its file's ctime or its object's LastModified,
        seconds since the epoch), so a restart or ``run --once`` does not start its age
        again. A store time ahead of this process's clock counts as now; one behind it
        makes a report come early, never a decision about the recording."""
        return min(seen, mono - max(0.0, now.timestamp() - landed))

    def _track_unmatched(self, scope: str, unmatched: Mapping[str, float], *,
                         mono: float) -> None:
        """Sidecars of one inbox (paths or URLs starting with ``scope``, with when each
        was first seen, see ``_first_seen``) whose recording is neither there nor live
        in the catalog (never arrived, or ingested and since deleted). One left for
        ORPHAN_SIDECAR_SECONDS is reported once (``ingest.orphan_sidecar``) and counted
        in ``retentiond_inbox_orphan_sidecars`` until it goes: a sidecar may name the
        caller and carry notes in clear, so it must not linger unnoticed in an inbox
        ("garantir que la durée de conservation des données soit limitée au strict
        minimum", context/002_4fefc22a382397cf.txt). retentiond leaves it in place: the
        recording may still come, and what to do with it is the operator's call."""
        seen = {k: v for k, v in self._unmatched.items() if not k.startswith(scope)}
        seen.update(unmatched)
        self._unmatched = seen
        self._unmatched_reported &= set(seen)
        grace = max(ORPHAN_SIDECAR_SECONDS, 10 * self.app.settings.sidecar_wait_seconds)
        stale = {w for w in unmatched if mono - seen[w] >= grace}
        new = stale - self._unmatched_reported
        if new:
            self._unmatched_reported |= new
            # the inbox only, never the file's name: recorders put callers' numbers there
            logger.warning("inbox %s: %d sidecar(s) left over %d min with no live recording "
                           "(never arrived, or already deleted; %d in all); they may name "
                           "the caller: drop their recordings or remove them (the *.json "
                           "files whose recording is absent)", scope.rstrip("/" + os.sep)
                           or scope, len(new),
                           grace // 60, len(stale),
                           extra={"event": "ingest.orphan_sidecar"})
        self.app.metrics.orphan_sidecars.set(
            sum(1 for first in seen.values() if mono - first >= grace))

    def _late_sidecar(self, rec: Recording, sidecar: Sidecar | None, error: str | None, *,
                      now: datetime, remove: Callable[[], object]) -> bool:
        """Apply an objection found in a late sidecar (then ``remove`` it); report any
        other late sidecar once. Returns whether an objection was applied."""
        if sidecar is not None and sidecar.objection:
            self.app.catalog.set_objection(rec.id)
            self.app.audit.append(action="objection", actor="sidecar",
                                  reason="late sidecar with objection: true",
                                  now=now, object_id=rec.id)
            remove()
            logger.warning("late sidecar: objection applied to %s", rec.id,
                           extra={"event": "ingest.late_objection", "object_id": rec.id})
            return True
        if rec.id not in self._reported_late:
            self._reported_late.add(rec.id)
            self.app.metrics.errors.labels(stage="ingest").inc()
            logger.warning("a sidecar arrived after recording %s was ingested; not "
                           "applied (only an objection is)%s", rec.id,
                           f": {error}" if error else "",
                           extra={"event": "ingest.late_sidecar", "object_id": rec.id})
        return False

    def _new_record(
        self, cls: Classification, *, object_id: str, source: str, now: datetime, kek_id: str
    ) -> Recording:
        keys, policy = self.app.keys, self.app.policy
        # who the recording is kept for, and who processes it (config ``controllers``)
        controller, processor = self.app.settings.controller_for(source)
        return Recording(
            id=object_id, state=State.INGESTING, purpose=cls.purpose,
            legal_basis=cls.legal_basis, media=cls.media, recorded_at=cls.recorded_at,
            ingested_at=now, policy_name=policy.name, policy_sha256=policy.sha256,
            location=vault_key(object_id), source=source, call_id=cls.call_id,
            subject_ref=keys.pseudonym(cls.subject) if cls.subject else None,
            agent=cls.agent, objection=cls.objection,
            quarantine_reason=cls.quarantine_reason, declared_purpose=cls.declared_purpose,
            kek_id=kek_id, retain_until=cls.retain_until,
            case_ref=keys.pseudonym(case_pseudonym_input(cls.case_id)) if cls.case_id
            else None,
            controller=controller, processor=processor,
        )

    def _verify_vault_copy(self, put: PutResult, size: int, *, data_key: bytes,
                           object_id: str, purpose: str) -> None:
        """Check the stored copy after its write is durable, before the plaintext may go.

        A folder: every stored byte is read back and must authenticate as what was sealed
        (each segment's AES-GCM tag, position and end, header and bindings; a corrupted,
        truncated or extended copy fails), and the size must be the one written. This is
        about twice as fast as hashing it again with SHA-256, and it also proves the copy
        opens with the key in the catalog. The SHA-256 digests of the record are computed
        while sealing, over exactly the bytes written. S3: the server's checksum vouches.
        """
        key = put.key
        vouched = self.app.vault.written_intact(put)
        if vouched is False:
            raise IntegrityError(f"vault {key}: the store's checksum after write differs from "
                                 "the bytes sent")
        if vouched:  # S3: the server's MD5-based ETag matches every byte we sent
            return
        info = self.app.vault.head(key)
        if info.size != size:
            raise IntegrityError(f"vault {key}: size {info.size} after write, expected {size}")
        with self.app.vault.open_read(key) as fh:
            try:
                read_size = verify_stream(fh, data_key=data_key, object_id=object_id,
                                          purpose=purpose)
            except IntegrityError as e:
                raise IntegrityError(f"vault {key}: the copy read back after write is not "
                                     f"what was sealed: {e}") from None
        if read_size != size:
            raise IntegrityError(
                f"vault {key}: read back {read_size} bytes after write, expected {size}")

    def _undo(self, rec: Recording) -> None:
        try:
            self.app.vault.delete_all_versions(rec.location)
        except ObjectNotFoundError:
            pass
        except StorageError as e:
            logger.warning("cannot remove partial vault object %s: %s (recovery retries)",
                           rec.id, e, extra={"event": "ingest.undo_failed", "object_id": rec.id})
            return
        self.app.catalog.rollback_ingest(rec.id)
