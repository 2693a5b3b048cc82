"""SQLite catalog: recordings, wrapped data keys and legal holds.

Wrapped data keys live in their own table, apart from the ciphertext (which is in the
vault), so destroying the row destroys the recording (crypto-shredding). ``secure_delete``
makes SQLite overwrite deleted content with zeros.

The catalog runs in WAL mode (``synchronous=FULL``: each commit appends to ``-wal`` and
fsyncs it once, where a rollback journal costs four fsyncs and a file created and
deleted). A page's older images stay in the ``-wal`` file until it is reset, so every
write that erases something (a data key, personal data, an erasure request's salt)
ends with a *scrub*: a TRUNCATE checkpoint copies the zeroed pages into the database
file and truncates ``-wal`` to nothing, which leaves no image of the erased content in
either file, as the deleted rollback journal did before. A scrub that cannot finish (a
reader in another process keeps an old snapshot) is done by a later one; the sweep
appends deletion proofs only after a scrub it forces succeeded (``service/sweep.py``),
whichever process erased the keys. A new process tries one when it opens the catalog.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from retentiond.core.model import Recording, State
from retentiond.errors import ConfigError, KeyUnavailableError, NotFoundError, StorageError
from retentiond.ports import WrappedKey

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 3: standing_objections, deletion_progress (older versions ignore them)
# legal bases a standing objection applies to: Art. 21(1) covers processing based on
# Art. 6(1)(e) public task and (f) legitimate interests; for consent, the objection is a
# withdrawal (Art. 7(3)) with the same effect on later recordings. Not to a contract, a
# legal obligation or vital interests: those recordings stay under the policy.
OBJECTABLE_BASES = ("consent", "legitimate-interests", "public-task")
BUSY_TIMEOUT_MS = 30_000
# a group transaction (see SQLiteCatalog._tx) takes at most this many writes, and stays
# open at most this long for more: bounds the wait of its first writer
GROUP_MAX_WRITES = 64
GROUP_MAX_SECONDS = 0.05
# a scrub (TRUNCATE checkpoint) waits for readers in other processes to let go of their
# snapshot, holding the catalog meanwhile: briefly after an erasing write (the proof gate
# catches up), longer before deletion proofs are appended (sweep), not at all at opening
SCRUB_QUICK_MS = 200
SCRUB_WAIT_MS = 5_000
SCRUB_RETRY_SECONDS = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    purpose TEXT NOT NULL,
    legal_basis TEXT,
    media TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    policy_sha256 TEXT NOT NULL,
    location TEXT NOT NULL,
    source TEXT,
    call_id TEXT,
    subject_ref TEXT,
    agent TEXT,
    objection INTEGER NOT NULL DEFAULT 0,
    sample_score REAL,
    quarantine_reason TEXT,
    declared_purpose TEXT,
    size INTEGER NOT NULL DEFAULT 0,
    ciphertext_size INTEGER NOT NULL DEFAULT 0,
    plaintext_sha256 TEXT NOT NULL DEFAULT '',
    ciphertext_sha256 TEXT NOT NULL DEFAULT '',
    version_id TEXT,
    kek_id TEXT NOT NULL DEFAULT '',
    inbox_pending INTEGER NOT NULL DEFAULT 0,
    delete_after TEXT,
    delete_reason TEXT,
    due_at TEXT,
    deleted_at TEXT,
    proof_index INTEGER,
    retain_until TEXT,
    proof_record BLOB,
    notes_sealed BLOB,
    case_ref TEXT,
    controller TEXT,
    processor TEXT,
    erasure_at TEXT,
    erasure_commitment TEXT,
    erasure_request TEXT
);
CREATE INDEX IF NOT EXISTS recordings_state ON recordings(state);
CREATE INDEX IF NOT EXISTS recordings_subject ON recordings(subject_ref);
CREATE INDEX IF NOT EXISTS recordings_source ON recordings(source);
CREATE TABLE IF NOT EXISTS data_keys (
    object_id TEXT PRIMARY KEY,
    kek_id TEXT NOT NULL,
    wrapped BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS store_findings (
    location TEXT PRIMARY KEY,
    object_id TEXT,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
"""

# schema 2 (and 3: standing objections, deletion progress; the same script, every table
# created if missing): holds by recording, subject or case; notes findings; sampling tally; erasure
# requests; case, controller and processor of each recording
_SCHEMA_2 = """
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL CHECK (scope IN ('object', 'subject', 'case')),
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL,
    released_at TEXT,
    released_by TEXT,
    release_reason TEXT
);
CREATE INDEX IF NOT EXISTS holds_target ON holds(scope, target);
CREATE INDEX IF NOT EXISTS recordings_case ON recordings(case_ref);
CREATE TABLE IF NOT EXISTS notes_findings (
    object_id TEXT NOT NULL,
    category TEXT NOT NULL,
    rule TEXT NOT NULL,
    PRIMARY KEY (object_id, category, rule)
);
CREATE TABLE IF NOT EXISTS sampling_tally (
    month TEXT NOT NULL,
    purpose TEXT NOT NULL,
    agent TEXT NOT NULL,
    ingested INTEGER NOT NULL DEFAULT 0,
    over_cap INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, purpose, agent)
);
CREATE INDEX IF NOT EXISTS recordings_erasure ON recordings(erasure_request)
    WHERE erasure_request IS NOT NULL;
CREATE INDEX IF NOT EXISTS recordings_live_order ON recordings(recorded_at, id)
    WHERE state <> 'deleted';
CREATE TABLE IF NOT EXISTS erasure_requests (
    id TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    requested_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retired_keks (
    kek_id TEXT PRIMARY KEY,
    since TEXT NOT NULL,
    retired_at TEXT
);
CREATE TABLE IF NOT EXISTS standing_objections (
    subject_ref TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    commitment TEXT NOT NULL,
    since TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deletion_progress (
    object_id TEXT PRIMARY KEY,
    version_ids TEXT NOT NULL
);
"""

_COLUMNS_ADDED_IN_2 = ("case_ref", "controller", "processor", "erasure_at",
                      "erasure_commitment", "erasure_request")

_RECORDING_COLUMNS = (
    "id", "state", "purpose", "legal_basis", "media", "recorded_at", "ingested_at",
    "policy_name", "policy_sha256", "location", "source", "call_id", "subject_ref", "agent",
    "objection", "sample_score", "quarantine_reason", "declared_purpose", "size",
    "ciphertext_size", "plaintext_sha256", "ciphertext_sha256", "version_id", "kek_id",
    "inbox_pending", "delete_after", "delete_reason", "due_at", "deleted_at", "proof_index",
    "retain_until", *_COLUMNS_ADDED_IN_2,
)
_TIME_COLUMNS = {"recorded_at", "ingested_at", "delete_after", "due_at", "deleted_at",
                 "retain_until", "erasure_at"}
# personal data wiped from a row once its recording is deleted (the tombstone keeps only
# what the deletion record holds)
_PERSONAL_COLUMNS = ("source", "call_id", "subject_ref", "agent", "notes_sealed",
                     "declared_purpose", "quarantine_reason", "case_ref",
                     "erasure_commitment", "erasure_request")
# a hold is in force on a recording (the row ``recordings``) by its id, subject or case
_HELD = (
    "EXISTS (SELECT 1 FROM holds h WHERE h.released_at IS NULL AND ("
    "(h.scope='object' AND h.target=recordings.id) OR "
    "(h.scope='subject' AND h.target=recordings.subject_ref) OR "
    "(h.scope='case' AND h.target=recordings.case_ref)))"
)


SAMPLING_TALLY_MONTHS = 12  # the tally names agents: kept for 12 months of ingests, then dropped


def _count_sampling(db: sqlite3.Connection, object_id: str, *, ingested: int, over_cap: int,
                    only_reason: str | None = None) -> int:
    """Add to the sampling tally of the recording's purpose, agent and ingest month (UTC),
    and drop the months older than SAMPLING_TALLY_MONTHS before it; returns how many
    rows (they name agents) that dropped."""
    where = "id=?" + (" AND delete_reason=?" if only_reason else "")
    params: list[Any] = [ingested, over_cap, object_id]
    if only_reason:
        params.append(only_reason)
    db.execute(
        "INSERT INTO sampling_tally(month, purpose, agent, ingested, over_cap) "  # noqa: S608
        "SELECT substr(ingested_at, 1, 7), purpose, COALESCE(agent, ''), ?, ? "
        f"FROM recordings WHERE {where} ON CONFLICT(month, purpose, agent) DO UPDATE "
        "SET ingested=ingested+excluded.ingested, over_cap=over_cap+excluded.over_cap",
        params)
    return db.execute(
        "DELETE FROM sampling_tally WHERE month < strftime('%Y-%m', (SELECT ingested_at "
        "FROM recordings WHERE id=?), ?)",
        (object_id, f"-{SAMPLING_TALLY_MONTHS} months")).rowcount


def _prune_sampling(db: sqlite3.Connection, object_ids: Sequence[str]) -> None:
    """The clean-up ``_count_sampling`` does for each of ``object_ids``, in one statement:
    drop the months older than SAMPLING_TALLY_MONTHS before the latest of their ingests."""
    if object_ids:
        db.execute(
            "DELETE FROM sampling_tally WHERE month < (SELECT MAX(strftime('%Y-%m', "
            "ingested_at, ?)) FROM recordings WHERE id IN (SELECT value FROM json_each(?)))",
            (f"-{SAMPLING_TALLY_MONTHS} months", json.dumps(list(object_ids))))


def _drop_unused_salts(db: sqlite3.Connection) -> None:
    """An erasure request's salt goes with the last of its subject's recordings (or at
    once when it applied to none). A standing objection keeps no salt: beside its
    commitment, a salt would let a copy of the catalog recover the caller's number by
    trying every number (SPEC section 5: the salt goes with the subject's data)."""
    db.execute("DELETE FROM erasure_requests WHERE NOT EXISTS (SELECT 1 FROM recordings "
               "WHERE erasure_request=erasure_requests.id)")


class _Group:
    """An open SQLite transaction shared by concurrent writers (group commit)."""

    __slots__ = ("done", "error", "members", "opened")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.members = 0
        self.done = threading.Event()
        self.error: StorageError | None = None


_TIME_INDEXES = tuple(i for i, c in enumerate(_RECORDING_COLUMNS) if c in _TIME_COLUMNS)
_STATE, _OBJECTION, _INBOX_PENDING = (_RECORDING_COLUMNS.index(c)
                                      for c in ("state", "objection", "inbox_pending"))


def _recording_of(row: tuple[Any, ...]) -> Recording:
    """A row of ``_RECORDING_COLUMNS`` (in that order) as a Recording; by position, which
    costs about 40 % less CPU per row than by column name (the sweep's plan reads every
    live recording each pass)."""
    values = list(row)
    for i in _TIME_INDEXES:
        if values[i] is not None:
            values[i] = datetime.fromisoformat(values[i])
    values[_STATE] = State(values[_STATE])
    values[_OBJECTION] = bool(values[_OBJECTION])
    values[_INBOX_PENDING] = bool(values[_INBOX_PENDING])
    return Recording(**dict(zip(_RECORDING_COLUMNS, values, strict=True)))


def _ts(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).isoformat()


class SQLiteCatalog:
    """The catalog on one SQLite file. Safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            self._db.execute("PRAGMA secure_delete=ON")
            # persistent: the first opening after an upgrade converts the file (it waits
            # for other connections to let go, like any write); later ones find WAL
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except ConfigError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as e:
            raise StorageError(f"{path}: cannot open catalog: {e}") from None
        self._lock = threading.RLock()  # owns the connection; taken through _locked
        self._waiters_lock = threading.Lock()
        self._waiters = 0  # threads waiting for _lock: a reason to keep a group open
        self._group: _Group | None = None  # the open group transaction, if any
        self._depth = 0  # nesting of _tx in the thread that holds _lock
        # -wal may hold images of erased content: unknown at opening (a process may have
        # died before its scrub); tried at once without waiting, else by the next scrub
        self._dirty = True
        self._erased = False  # dirty because of an erasing write of this process
        self._closed = False
        self._full_wait_failed_at: float | None = None  # monotonic: a reader stuck then
        self.scrub(wait_ms=0, quiet=True)

    def _migrate(self) -> None:
        """Bring a new or older catalog to SCHEMA_VERSION, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            try:
                version = SCHEMA_VERSION if row is None else int(row[0])
            except ValueError:
                raise ConfigError(f"{self.path}: catalog schema version {row[0]!r} is not a "
                                  "number: this file was not written by retentiond") from None
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path}: catalog schema version {version}, this retentiond knows "
                    f"up to {SCHEMA_VERSION} (a newer retentiond wrote it)"
                )
            if row is not None and version == 1:
                for column in _COLUMNS_ADDED_IN_2:
                    db.execute(f"ALTER TABLE recordings ADD COLUMN {column} TEXT")
                db.execute("ALTER TABLE holds RENAME TO holds_v1")
            for statement in _SCHEMA_2.split(";"):
                if statement.strip():
                    db.execute(statement)
            if row is not None and version == 1:
                db.execute(
                    "INSERT INTO holds(id, scope, target, reason, actor, created_at, "
                    "released_at, released_by, release_reason) SELECT id, 'object', "
                    "object_id, reason, actor, created_at, released_at, released_by, "
                    "release_reason FROM holds_v1")
                db.execute("DROP TABLE holds_v1")
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def close(self) -> None:
        """Close (once; again does nothing), after a last scrub if an erasing write of
        this process is not scrubbed yet: every CLI command closes its catalog before it
        exits (``subject erase`` whose scrub met a reader waits for it here, up to
        SCRUB_WAIT_MS; briefly if a full wait just failed: the same reader is likely
        still there). Dirty only since opening (nothing erased here): one quiet try."""
        with self._locked():
            if self._closed:
                return
            erased = self._erased
            failed_at = self._full_wait_failed_at
        recent = failed_at is not None and time.monotonic() - failed_at < SCRUB_WAIT_MS / 1000
        wait_ms = (SCRUB_QUICK_MS if recent else SCRUB_WAIT_MS) if erased else 0
        self.scrub(wait_ms=wait_ms, quiet=not erased)
        with self._locked():
            self._closed = True
            self._db.close()

    @property
    def dirty(self) -> bool:
        """An erasing write of this process may still have images in the -wal file."""
        with self._locked():
            return self._dirty

    def scrub(self, *, force: bool = False, wait_ms: int | None = None,
              quiet: bool = False) -> bool:
        """Leave no image of erased content in the ``-wal`` file: a TRUNCATE checkpoint,
        if an erasing write of this process committed since the last one, or always with
        ``force`` (another process may have erased and died before its own scrub; the
        sweep forces one before appending proofs). Waits up to ``wait_ms`` (default
        SCRUB_WAIT_MS forced, SCRUB_QUICK_MS otherwise) for readers in other processes
        to leave their old snapshot. False when it could not finish; the next call tries
        again (the daemon tries at each turn of its loop). Never raises for that; logs a
        warning unless ``quiet`` (at opening, a snapshot held elsewhere is routine)."""
        if wait_ms is None:
            wait_ms = SCRUB_WAIT_MS if force else SCRUB_QUICK_MS
        deadline = time.monotonic() + wait_ms / 1000
        error: sqlite3.Error | None = None
        while True:
            # one try at a time, never waiting inside SQLite with the connection held:
            # the ingest workers' writes go on between tries
            with self._locked():
                if self._closed:
                    return not self._dirty
                if not (self._dirty or force):
                    return True
                try:
                    self._db.execute("PRAGMA busy_timeout=0")
                    try:
                        row = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                    finally:
                        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                except sqlite3.OperationalError as e:
                    # SQLITE_BUSY/LOCKED (a checkpoint or writer elsewhere holds a lock the
                    # TRUNCATE needs) or a transient I/O error: tried again until the deadline
                    row, error = None, e
                except sqlite3.Error as e:
                    logger.warning("catalog %s: cannot truncate its -wal file: %s (retried)",
                                   self.path, e, extra={"event": "catalog.scrub_failed"})
                    return False
                # (0, -1, -1) outside WAL mode: a rollback journal leaves nothing behind
                if row is not None and row[0] == 0:
                    self._dirty = self._erased = False
                    return True
            if time.monotonic() >= deadline:
                if wait_ms >= SCRUB_WAIT_MS:
                    self._full_wait_failed_at = time.monotonic()
                logger.log(logging.DEBUG if quiet else logging.WARNING,
                           "catalog %s: another process still reads an old snapshot%s; "
                           "the -wal file is truncated later", self.path,
                           f" ({error})" if error is not None else "",
                           extra={"event": "catalog.scrub_busy"})
                return False
            time.sleep(SCRUB_RETRY_SECONDS)

    @contextmanager
    def _locked(self, *, join: bool = False) -> Iterator[None]:
        """Hold the connection. Anyone but a writer joining it (``join``) first commits
        an open group transaction, so reads only ever see committed data."""
        with self._waiters_lock:
            self._waiters += 1
        try:
            self._lock.acquire()
        finally:
            with self._waiters_lock:
                self._waiters -= 1
        try:
            if self._group is not None and self._depth == 0 and not join:
                self._commit_group()
            yield
        finally:
            self._lock.release()

    @contextmanager
    def _tx(self, *, erases: bool = False) -> Iterator[sqlite3.Connection]:
        """One atomic write, durable when the block returns.

        Group commit: writes from concurrent threads (ingest workers) share one SQLite
        transaction, each in its own savepoint, so a failing write undoes only itself.
        A writer that sees others waiting for the connection leaves the transaction open
        for them and waits, outside the lock, until it is committed; the last one (no
        one waiting, or the group is full or old) commits for all. Every caller still
        returns only after the COMMIT that makes its write durable (``synchronous=FULL``),
        or with the error that rolled it back. A lone writer commits at once, as before.

        ``erases``: the write erases keys or personal data; once committed, the caller
        tries to scrub the ``-wal`` file (``scrub``) before it returns; a scrub that
        cannot finish now is done by a later one (the sweep's proof gate forces it).
        """
        failure: BaseException | None = None
        with self._locked(join=True):
            if erases:  # before the write: whatever becomes of it, -wal may hold images
                self._dirty = self._erased = True
            if self._depth:  # nested in this thread's own write: part of it
                yield self._db
                return
            try:
                group = self._join_group()
            except sqlite3.Error as e:
                raise StorageError(f"{self.path}: catalog busy or unavailable: {e}") from None
            self._depth = 1
            try:
                self._db.execute("SAVEPOINT write")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK TO write")
                        self._db.execute("RELEASE write")
                    raise
                self._db.execute("RELEASE write")
            except sqlite3.Error as e:
                failure = StorageError(f"{self.path}: catalog write failed: {e}")
            except BaseException as e:  # noqa: BLE001 (re-raised below, after the group)
                failure = e
            finally:
                self._depth = 0
            group.members += 1
            if not self._db.in_transaction:  # SQLite rolled the whole group back (I/O...)
                self._group = None
                group.error = failure if isinstance(failure, StorageError) else \
                    StorageError(f"{self.path}: catalog write failed: transaction rolled back")
                group.done.set()
            elif not self._keep_open(group):
                self._commit_group()
        if failure is not None:
            raise failure
        group.done.wait()
        if group.error is not None:
            raise group.error
        if erases:
            self.scrub()

    def _join_group(self) -> _Group:
        if self._group is None:
            self._db.execute("BEGIN IMMEDIATE")
            self._group = _Group(time.monotonic())
        return self._group

    def _keep_open(self, group: _Group) -> bool:
        """Leave the group open for a thread already waiting, within bounds."""
        with self._waiters_lock:
            waiting = self._waiters > 0
        return waiting and group.members < GROUP_MAX_WRITES and \
            time.monotonic() - group.opened < GROUP_MAX_SECONDS

    def _commit_group(self) -> None:
        group, self._group = self._group, None
        assert group is not None
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            group.error = StorageError(f"{self.path}: catalog write failed: {e}")
        finally:
            group.done.set()

    def _rollback(self) -> None:
        if self._db.in_transaction:  # SQLite may already have rolled back (disk full...)
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._locked():
            try:
                cur = self._db.execute(sql, params)
                cur.row_factory = sqlite3.Row
                return cur.fetchall()
            except sqlite3.DatabaseError as e:
                raise StorageError(f"{self.path}: catalog query failed: {e}") from None

    # -- ingest -----------------------------------------------------------------------

    def insert_ingesting(
        self, rec: Recording, *, wrapped: WrappedKey, notes_sealed: bytes | None,
        notes_findings: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Record a recording about to be written, with its wrapped key and the notes lint's
        findings as (category, rule id), never the text (one transaction)."""
        values = {c: getattr(rec, c) for c in _RECORDING_COLUMNS}
        values["state"] = State.INGESTING.value
        for c in _TIME_COLUMNS:
            values[c] = _ts(values[c])
        values["objection"] = int(rec.objection)
        values["inbox_pending"] = int(rec.inbox_pending)
        cols = (*_RECORDING_COLUMNS, "notes_sealed")
        params = [values[c] for c in _RECORDING_COLUMNS] + [notes_sealed]
        with self._tx() as db:
            db.execute(
                f"INSERT INTO recordings({', '.join(cols)}) "
                f"VALUES({', '.join('?' for _ in cols)})",
                params,
            )
            cur = db.execute(
                "INSERT INTO data_keys(object_id, kek_id, wrapped) SELECT ?, ?, ? "
                "WHERE NOT EXISTS (SELECT 1 FROM retired_keks WHERE kek_id=?)",
                (rec.id, wrapped.kek_id, wrapped.blob, wrapped.kek_id),
            )
            if cur.rowcount != 1:  # wrapped before this process saw ``keys rotate --retire``
                raise KeyUnavailableError(
                    f"key-encryption key {wrapped.kek_id} is being retired (keys rotate "
                    "--retire): the recording is left in the inbox for the next try")
            db.executemany(
                "INSERT OR IGNORE INTO notes_findings(object_id, category, rule) "
                "VALUES(?, ?, ?)", [(rec.id, c, r) for c, r in notes_findings])

    def mark_stored(
        self, object_id: str, *, state: State, size: int, ciphertext_size: int,
        plaintext_sha256: str, ciphertext_sha256: str, version_id: str | None,
        delete_after: datetime | None, sample_score: float | None,
        tally: bool = False,
    ) -> bool:
        """The vault copy is verified: the recording is managed; its plaintext may go.
        ``tally``: count it in the sampling tally of its purpose, agent and month (not a
        quarantined one); its deletion for ``sampling-cap`` is counted there too.

        A standing objection of its caller (``add_standing_objection``) applies to it in
        the same transaction, so none recorded before this commit is missed, and one
        recorded after finds it stored (``subject erase``); returns whether one did."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE recordings SET state=?, size=?, ciphertext_size=?, plaintext_sha256=?, "
                "ciphertext_sha256=?, version_id=?, delete_after=?, sample_score=?, "
                "inbox_pending=1 WHERE id=? AND state=?",
                (state.value, size, ciphertext_size, plaintext_sha256, ciphertext_sha256,
                 version_id, _ts(delete_after), sample_score, object_id,
                 State.INGESTING.value),
            )
            if cur.rowcount != 1:
                raise StorageError(f"catalog: recording {object_id} is no longer being ingested")
            objected = db.execute(
                "UPDATE recordings SET objection=1, "
                "erasure_request=(SELECT request_id FROM standing_objections o "
                "WHERE o.subject_ref=recordings.subject_ref), "
                "erasure_commitment=(SELECT commitment FROM standing_objections o "
                "WHERE o.subject_ref=recordings.subject_ref) "
                "WHERE id=? AND subject_ref IN (SELECT subject_ref FROM standing_objections) "
                "AND legal_basis IN (SELECT value FROM json_each(?))",
                (object_id, json.dumps(OBJECTABLE_BASES))).rowcount == 1
            dropped = _count_sampling(db, object_id, ingested=1, over_cap=0) if tally else 0
        if dropped:  # a month of the tally went (once a month): scrub it out of -wal too
            with self._locked():
                self._dirty = self._erased = True
            self.scrub()
        return objected

    def clear_inbox_pending(self, object_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE recordings SET inbox_pending=0 WHERE id=?", (object_id,))

    def rollback_ingest(self, object_id: str) -> None:
        """Forget an unfinished ingest: its row and its key (the plaintext is still in the
        inbox, so nothing is lost)."""
        with self._tx(erases=True) as db:
            cur = db.execute(
                "DELETE FROM recordings WHERE id=? AND state=?",
                (object_id, State.INGESTING.value),
            )
            if cur.rowcount == 1:  # never a key whose recording got stored meanwhile
                db.execute("DELETE FROM data_keys WHERE object_id=?", (object_id,))
                db.execute("DELETE FROM notes_findings WHERE object_id=?", (object_id,))

    # -- queries ----------------------------------------------------------------------

    def get(self, object_id: str) -> Recording:
        rows = self._query(
            f"SELECT {', '.join(_RECORDING_COLUMNS)} FROM recordings WHERE id=?",  # noqa: S608
            (object_id,),
        )
        if not rows:
            raise NotFoundError(f"no recording with id {object_id!r}")
        return _recording_of(tuple(rows[0]))

    def query(
        self, *, states: Sequence[State] | None = None, purpose: str | None = None,
        subject_ref: str | None = None, inbox_pending: bool | None = None,
        source: str | None = None, case_ref: str | None = None,
    ) -> list[Recording]:
        """Recordings matching every given filter, oldest recorded first."""
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(s.value for s in states)
        for column, value in (("purpose", purpose), ("subject_ref", subject_ref),
                              ("source", source), ("case_ref", case_ref)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if inbox_pending is not None:
            where.append("inbox_pending=?")
            params.append(int(inbox_pending))
        sql = f"SELECT {', '.join(_RECORDING_COLUMNS)} FROM recordings"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY recorded_at, id"
        return [_recording_of(tuple(r)) for r in self._query(sql, params)]

    def live_page(self, states: Sequence[State], *, after: tuple[str, str] | None,
                  limit: int) -> tuple[list[Recording], tuple[str, str] | None]:
        """Up to ``limit`` recordings in ``states`` (never ``deleted``), oldest recorded
        first, strictly after the position ``after``; returns them and the position of
        the last one (an opaque cursor: the stored text, never re-formatted), None at
        the end. A walk over every live recording in pages, one index range each,
        holding only a page."""
        if State.DELETED in states:
            raise ValueError("live_page: deleted recordings are not live")
        marks = ", ".join("?" for _ in states)
        # the index keeps the walk in order (never a sort of every live row per page)
        sql = (f"SELECT {', '.join(_RECORDING_COLUMNS)} FROM recordings "  # noqa: S608
               "INDEXED BY recordings_live_order "
               f"WHERE state <> 'deleted' AND state IN ({marks})")
        params: list[Any] = [s.value for s in states]
        if after is not None:
            sql += " AND (recorded_at, id) > (?, ?)"
            params += list(after)
        sql += " ORDER BY recorded_at, id LIMIT ?"
        params.append(limit)
        rows = self._query(sql, params)
        last = (str(rows[-1]["recorded_at"]), str(rows[-1]["id"])) \
            if len(rows) == limit else None
        return [_recording_of(tuple(r)) for r in rows], last

    def wrapped_key(self, object_id: str) -> WrappedKey | None:
        rows = self._query("SELECT kek_id, wrapped FROM data_keys WHERE object_id=?", (object_id,))
        return WrappedKey(kek_id=rows[0][0], blob=bytes(rows[0][1])) if rows else None

    # -- key rotation -----------------------------------------------------------------

    def kek_usage(self) -> dict[str, int]:
        """Key-encryption key id -> how many data keys it wraps now."""
        rows = self._query("SELECT kek_id, COUNT(*) FROM data_keys GROUP BY kek_id")
        return {str(r[0]): int(r[1]) for r in rows}

    def wrapped_keys_page(self, *, not_under: str, after: int = 0,
                          limit: int) -> tuple[list[tuple[str, WrappedKey]], int]:
        """(object id, wrapped key) of up to ``limit`` data keys not wrapped under the KEK
        ``not_under``, and the cursor for the next page (pass it as ``after``). In the
        order rows were written, which is also the recordings' order: the re-wrapping
        that follows rewrites neighbouring rows, a few pages per transaction, instead of
        one page of each table per key."""
        rows = self._query(
            "SELECT rowid, object_id, kek_id, wrapped FROM data_keys WHERE kek_id <> ? "
            "AND rowid > ? ORDER BY rowid LIMIT ?", (not_under, after, limit))
        page = [(str(r[1]), WrappedKey(kek_id=str(r[2]), blob=bytes(r[3]))) for r in rows]
        return page, int(rows[-1][0]) if rows else after

    def rewrap_keys(self, items: Sequence[tuple[str, WrappedKey, WrappedKey]]) -> int:
        """Replace each (object id, old, new) wrapped key in one transaction, only where
        the row still holds ``old`` (a key the sweep destroyed meanwhile stays destroyed);
        the recording's ``kek_id`` follows. Returns how many were replaced."""
        if not items:
            return 0
        swap = "UPDATE data_keys SET kek_id=?, wrapped=? WHERE object_id=? AND kek_id=? " \
            "AND wrapped=?"
        with self._tx() as db:
            done = int(db.executemany(swap, [(new.kek_id, new.blob, oid, old.kek_id, old.blob)
                                             for oid, old, new in items]).rowcount)
            replaced = items if done == len(items) else [  # some destroyed meanwhile
                item for item in items if db.execute(
                    "SELECT 1 FROM data_keys WHERE object_id=? AND wrapped=?",
                    (item[0], item[2].blob)).fetchone()]
            db.executemany("UPDATE recordings SET kek_id=? WHERE id=?",
                           [(new.kek_id, oid) for oid, _, new in replaced])
        return done

    def mark_keks_retiring(self, kek_ids: Sequence[str], *, now: datetime) -> None:
        """From now on no data key wrapped under these KEKs is accepted (``insert_ingesting``
        refuses it): what ``keys rotate --retire`` re-wraps cannot grow behind it."""
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO retired_keks(kek_id, since) VALUES(?, ?)",
                           [(k, _ts(now)) for k in kek_ids])

    def mark_kek_retired(self, kek_id: str, *, now: datetime) -> None:
        with self._tx() as db:
            db.execute("UPDATE retired_keks SET retired_at=? WHERE kek_id=?",
                       (_ts(now), kek_id))

    def retired_keks(self) -> dict[str, datetime | None]:
        """KEK id -> when its file was destroyed (None: marked, file not destroyed yet)."""
        rows = self._query("SELECT kek_id, retired_at FROM retired_keks")
        return {str(r[0]): None if r[1] is None else datetime.fromisoformat(r[1])
                for r in rows}

    def notes_sealed(self, object_id: str) -> bytes | None:
        rows = self._query("SELECT notes_sealed FROM recordings WHERE id=?", (object_id,))
        return bytes(rows[0][0]) if rows and rows[0][0] is not None else None

    def key_ids(self) -> set[str]:
        return {r[0] for r in self._query("SELECT object_id FROM data_keys")}

    def locations(self) -> dict[str, str]:
        """location -> id for every recording whose ciphertext should exist."""
        rows = self._query(
            "SELECT location, id FROM recordings WHERE state != ?", (State.DELETED.value,)
        )
        return {r[0]: r[1] for r in rows}

    def counts(self) -> list[tuple[str, str, int, int]]:
        """(purpose, state, count, bytes) for every live combination."""
        rows = self._query(
            "SELECT purpose, state, COUNT(*), COALESCE(SUM(size), 0) FROM recordings "
            "GROUP BY purpose, state"
        )
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def set_objection(self, object_id: str) -> bool:
        """Record a caller's objection that arrived after ingest; True if it applied."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE recordings SET objection=1 WHERE id=? AND state IN (?, ?)",
                (object_id, State.ACTIVE.value, State.QUARANTINED.value),
            )
            return cur.rowcount == 1

    # -- deletion ---------------------------------------------------------------------

    def start_deletion(self, object_id: str, *, reason: str, due_at: datetime) -> bool:
        """Mark a recording as being deleted, atomically re-checking that no legal hold was
        placed since the decision. False when it is held (or no longer live)."""
        return object_id in self.start_deletions([(object_id, reason, due_at)])

    def destroy_key(self, object_id: str, *, record: bytes, deleted_at: datetime) -> None:
        """Destroy the wrapped data key and the row's personal data; keep the deletion record
        to append to the proof log (one transaction)."""
        self.destroy_keys([(object_id, record, deleted_at)])

    def start_deletions(self, items: Sequence[tuple[str, str, datetime]]) -> set[str]:
        """``start_deletion`` for many (id, reason, due_at) in one transaction; returns the
        ids that started (the others are held or no longer live). One query finds the
        live, unheld rows among the ids, one ``executemany`` marks them (same transaction,
        so the same rows); the ids go as one JSON array, so any batch size fits SQLite's
        limit on bound parameters. A repeated id: its first item applies."""
        if not items:
            return set()
        ids = json.dumps([object_id for object_id, _, _ in items])
        with self._tx() as db:
            started = {r[0] for r in db.execute(
                "SELECT id FROM recordings WHERE id IN (SELECT value FROM json_each(?)) "  # noqa: S608
                f"AND state IN (?, ?) AND NOT {_HELD}",
                (ids, State.ACTIVE.value, State.QUARANTINED.value))}
            first: dict[str, tuple[str, datetime]] = {}
            for object_id, reason, due_at in items:  # a repeated id: its first item applies
                first.setdefault(object_id, (reason, due_at))
            rows = [(State.DELETING.value, reason, _ts(due_at), object_id,
                     State.ACTIVE.value, State.QUARANTINED.value)
                    for object_id, (reason, due_at) in first.items() if object_id in started]
            cur = db.executemany(
                "UPDATE recordings SET state=?, delete_reason=?, due_at=? "
                "WHERE id=? AND state IN (?, ?)", rows)
            if cur.rowcount != len(rows):  # pragma: no cover - same transaction as the query
                raise StorageError("catalog: deletions changed while being started")
        return started

    def destroy_keys(self, items: Sequence[tuple[str, bytes, datetime]]) -> None:
        """``destroy_key`` for many (id, record, deleted_at), all in one transaction (all or
        none: a row not being deleted aborts it), with a few statements per batch. The
        sampling tally counts what the cap really deleted (under the policy in force at
        the time), before the agent is wiped from the row; its clean-up of old months,
        which per row would run once per recording, is one statement per run of rows
        between two ``sampling-cap`` deletions (deleting months < t1, then < t2, is
        deleting months < max(t1, t2)): the same result, tested against per-row
        statements."""
        if not items:
            return
        ids = [object_id for object_id, _, _ in items]
        sets = ", ".join(f"{c}=NULL" for c in _PERSONAL_COLUMNS)
        with self._tx(erases=True) as db:
            capped = {r[0] for r in db.execute(
                "SELECT id FROM recordings WHERE id IN (SELECT value FROM json_each(?)) "
                "AND delete_reason=?", (json.dumps(ids), "sampling-cap"))}
            run: list[str] = []
            for object_id in ids:
                if object_id in capped:
                    _prune_sampling(db, run)
                    run = []
                    _count_sampling(db, object_id, ingested=0, over_cap=1,
                                    only_reason="sampling-cap")
                else:
                    run.append(object_id)
            _prune_sampling(db, run)
            cur = db.executemany(
                f"UPDATE recordings SET {sets}, proof_record=?, deleted_at=? "  # noqa: S608
                "WHERE id=? AND state=?",
                [(record, _ts(deleted_at), object_id, State.DELETING.value)
                 for object_id, record, deleted_at in items])
            if cur.rowcount != len(items):
                rows = db.execute(
                    "SELECT id FROM recordings WHERE id IN (SELECT value FROM json_each(?)) "
                    "AND state=?", (json.dumps(ids), State.DELETING.value)).fetchall()
                deleting = {r[0] for r in rows}
                bad = next((i for i in ids if i not in deleting), ids[0])
                raise StorageError(f"catalog: recording {bad} is not being deleted")
            db.executemany("DELETE FROM data_keys WHERE object_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM notes_findings WHERE object_id=?", [(i,) for i in ids])
            db.executemany("DELETE FROM deletion_progress WHERE object_id=?",
                           [(i,) for i in ids])  # now named in the record
            _drop_unused_salts(db)

    def note_deletion_attempts(self, items: Mapping[str, Sequence[str]]) -> None:
        """Write down, before the store is asked, the versions a deletion is about to
        delete (id -> version ids), after those already written, each once, in one
        transaction. The pass that finishes a failed or interrupted deletion lists only
        what is left; its record names these too (``attempted_versions``), all gone by
        then. Only for recordings being deleted: any other id aborts the whole write."""
        items = {oid: vids for oid, vids in items.items() if vids}
        if not items:
            return
        with self._tx() as db:
            rows = {r[0]: (r[1], r[2]) for r in db.execute(
                "SELECT r.id, r.state, p.version_ids FROM recordings r LEFT JOIN "
                "deletion_progress p ON p.object_id=r.id "
                "WHERE r.id IN (SELECT value FROM json_each(?))", (json.dumps(list(items)),))}
            merged: list[tuple[str, str]] = []
            for object_id, vids in items.items():
                state, before = rows.get(object_id, (None, None))
                if state != State.DELETING.value:
                    raise StorageError(f"catalog: recording {object_id} is not being deleted")
                old = json.loads(before) if before else []
                merged.append((object_id, json.dumps(list(dict.fromkeys([*old, *vids])))))
            db.executemany(
                "INSERT INTO deletion_progress(object_id, version_ids) VALUES(?, ?) "
                "ON CONFLICT(object_id) DO UPDATE SET version_ids=excluded.version_ids",
                merged)

    def attempted_versions(self, ids: Collection[str]) -> dict[str, tuple[str, ...]]:
        """The versions ``note_deletion_attempts`` wrote down for each of ``ids`` that
        has some."""
        if not ids:
            return {}
        rows = self._query(
            "SELECT object_id, version_ids FROM deletion_progress "
            "WHERE object_id IN (SELECT value FROM json_each(?))", (json.dumps(list(ids)),))
        return {r[0]: tuple(json.loads(r[1])) for r in rows}

    def pending_proofs(self) -> list[tuple[str, bytes]]:
        """(id, record) of deletions whose key is destroyed but whose proof is not recorded."""
        rows = self._query(
            "SELECT id, proof_record FROM recordings WHERE state=? AND proof_record IS NOT NULL "
            "AND proof_index IS NULL ORDER BY deleted_at, id",
            (State.DELETING.value,),
        )
        return [(r[0], bytes(r[1])) for r in rows]

    def finish_deletion(self, object_id: str, *, proof_index: int) -> None:
        self.finish_deletions({object_id: proof_index})

    def finish_deletions(self, proven: Mapping[str, int]) -> None:
        """Record the proof index of each deletion (id -> index), in one transaction."""
        with self._tx() as db:
            db.executemany(
                "UPDATE recordings SET state=?, proof_index=?, proof_record=NULL WHERE id=?",
                [(State.DELETED.value, index, oid) for oid, index in proven.items()],
            )

    def max_proof_index(self) -> int | None:
        rows = self._query("SELECT MAX(proof_index) FROM recordings")
        return None if rows[0][0] is None else int(rows[0][0])

    # -- reconciliation ---------------------------------------------------------------

    def replace_findings(self, findings: Sequence[tuple[str, str | None, str, str]], *,
                         now: datetime) -> None:
        """The reconciler's current findings (location, object id, kind, detail): resolved
        ones go, new ones get ``first_seen`` = now, lasting ones keep theirs."""
        with self._tx() as db:
            keep = [f[0] for f in findings]
            db.execute("DELETE FROM store_findings WHERE location NOT IN "  # noqa: S608
                       f"({', '.join('?' for _ in keep)})", keep)
            db.executemany(
                "INSERT INTO store_findings(location, object_id, kind, detail, first_seen, "
                "last_seen) VALUES(?, ?, ?, ?, ?, ?) ON CONFLICT(location) DO UPDATE SET "
                "object_id=excluded.object_id, kind=excluded.kind, detail=excluded.detail, "
                "last_seen=excluded.last_seen",
                [(loc, oid, kind, detail, _ts(now), _ts(now))
                 for loc, oid, kind, detail in findings])

    def findings(self) -> list[tuple[str, str | None, str, str, datetime, datetime]]:
        """(location, object id, kind, detail, first seen, last seen), oldest first."""
        rows = self._query("SELECT location, object_id, kind, detail, first_seen, last_seen "
                           "FROM store_findings ORDER BY first_seen, location")
        return [(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]),
                 datetime.fromisoformat(r[5])) for r in rows]

    # -- holds ------------------------------------------------------------------------

    def add_hold(self, target: str, *, reason: str, actor: str, now: datetime,
                 scope: str = "object") -> int:
        """A hold on one recording (``scope`` object, target its id), on every recording of
        a subject (``subject``, target the pseudonym) or of a case (``case``, target the
        case pseudonym), present and future, until it is released."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO holds(scope, target, reason, actor, created_at) "
                "VALUES(?, ?, ?, ?, ?)",
                (scope, target, reason, actor, _ts(now)),
            )
            return int(cur.lastrowid or 0)

    def remove_holds(self, target: str, *, reason: str, actor: str, now: datetime,
                     scope: str = "object") -> int:
        """Release every active hold of ``scope`` on ``target``; returns how many."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE holds SET released_at=?, released_by=?, release_reason=? "
                "WHERE scope=? AND target=? AND released_at IS NULL",
                (_ts(now), actor, reason, scope, target),
            )
            return cur.rowcount

    def held_ids(self) -> set[str]:
        """Ids of the recordings (not yet deleted) that a hold in force keeps."""
        rows = self._query(
            f"SELECT id FROM recordings WHERE state != ? AND {_HELD}",  # noqa: S608
            (State.DELETED.value,))
        return {r[0] for r in rows}

    def is_held(self, object_id: str) -> bool:
        """Does a hold in force keep this recording (by its id, subject or case)?"""
        return bool(self._query(
            f"SELECT 1 FROM recordings WHERE id=? AND {_HELD}", (object_id,)))  # noqa: S608

    def active_holds(self) -> list[tuple[int, str, str, str, str, datetime]]:
        """(hold id, scope, target, reason, actor, created) of every hold in force."""
        rows = self._query("SELECT id, scope, target, reason, actor, created_at FROM holds "
                           "WHERE released_at IS NULL ORDER BY id")
        return [(int(r[0]), r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5]))
                for r in rows]

    def meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    # -- compliance -------------------------------------------------------------------

    def request_erasure(self, ids: Sequence[str], *, request_id: str, salt: bytes,
                        commitment: str, now: datetime, objection: bool = False) -> set[str]:
        """Record a subject's erasure request (or objection) on the live recordings
        ``ids`` with the request's salt and commitment (one transaction); returns the ids
        it applied to. A recording already under an earlier request keeps that request
        and its commitment (an objection still applies to it)."""
        applied: set[str] = set()
        with self._tx(erases=True) as db:
            db.execute("INSERT OR IGNORE INTO erasure_requests(id, salt, requested_at) "
                       "VALUES(?, ?, ?)", (request_id, salt, _ts(now)))
            for object_id in ids:
                # an earlier request's commitment stands: its receipt was handed over
                # and promised that commitment in the proof (the later receipt says so)
                cur = db.execute(
                    "UPDATE recordings SET erasure_at=COALESCE(erasure_at, ?), "
                    "objection=MAX(objection, ?), "
                    "erasure_commitment=COALESCE(erasure_commitment, ?), "
                    "erasure_request=COALESCE(erasure_request, ?) "
                    "WHERE id=? AND state IN (?, ?)",
                    (_ts(now), int(objection), commitment, request_id, object_id,
                     State.ACTIVE.value, State.QUARANTINED.value))
                if cur.rowcount == 1:
                    applied.add(object_id)
            _drop_unused_salts(db)
        return applied

    def add_standing_objection(self, subject_ref: str, *, request_id: str, commitment: str,
                               now: datetime) -> None:
        """A subject's objection (GDPR Art. 21) that also covers their later recordings
        whose legal basis it applies to (``OBJECTABLE_BASES``): each is flagged as
        objected to, with this request's commitment, when it is stored (``mark_stored``).
        A newer objection of the same subject replaces it. No salt is kept."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO standing_objections(subject_ref, request_id, "
                       "commitment, since) VALUES(?, ?, ?, ?)",
                       (subject_ref, request_id, commitment, _ts(now)))

    def remove_standing_objection(self, subject_ref: str, request_id: str) -> bool:
        """End the standing objection ``request_id`` of a subject (withdrawn); False when
        it is not (or no longer) the one in force. Recordings already flagged stay so."""
        with self._tx() as db:
            return db.execute("DELETE FROM standing_objections WHERE subject_ref=? AND "
                              "request_id=?", (subject_ref, request_id)).rowcount == 1

    def standing_objection(self, subject_ref: str) -> str | None:
        """The request id of the subject's standing objection, None when there is none."""
        rows = self._query("SELECT request_id FROM standing_objections WHERE subject_ref=?",
                           (subject_ref,))
        return str(rows[0][0]) if rows else None

    def standing_objections(self) -> list[tuple[str, str, datetime]]:
        """(subject pseudonym, request id, since) of every standing objection."""
        rows = self._query("SELECT subject_ref, request_id, since FROM standing_objections "
                           "ORDER BY since, subject_ref")
        return [(r[0], r[1], datetime.fromisoformat(r[2])) for r in rows]

    def erasure_salt(self, request_id: str) -> bytes | None:
        rows = self._query("SELECT salt FROM erasure_requests WHERE id=?", (request_id,))
        return bytes(rows[0][0]) if rows else None

    def sampling_tally(self) -> list[tuple[str, str | None, int, int]]:
        """(purpose, agent or None, recordings ingested, of which deleted for
        ``sampling-cap``) over the months the tally keeps (``SAMPLING_TALLY_MONTHS``)."""
        rows = self._query("SELECT purpose, agent, SUM(ingested), SUM(over_cap) "
                           "FROM sampling_tally GROUP BY purpose, agent ORDER BY purpose, agent")
        return [(r[0], r[1] or None, int(r[2]), int(r[3])) for r in rows]

    def sampling_tally_since(self) -> str | None:
        """The first month (YYYY-MM, UTC) the tally still covers, or None when empty."""
        rows = self._query("SELECT MIN(month) FROM sampling_tally")
        return None if rows[0][0] is None else str(rows[0][0])

    def notes_findings(self) -> list[tuple[str, str, str, str]]:
        """(recording id, purpose, category, rule id) of the notes lint's findings on
        recordings not yet deleted."""
        rows = self._query(
            "SELECT f.object_id, r.purpose, f.category, f.rule FROM notes_findings f "
            "JOIN recordings r ON r.id = f.object_id WHERE r.state IN (?, ?, ?) "
            "ORDER BY r.recorded_at, f.object_id, f.category, f.rule",
            (State.ACTIVE.value, State.QUARANTINED.value, State.DELETING.value))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def deletions_by_day(self) -> list[tuple[str, str, str, int]]:
        """(UTC day YYYY-MM-DD, purpose, reason, count) of finished deletions."""
        rows = self._query(
            "SELECT substr(deleted_at, 1, 10), purpose, delete_reason, COUNT(*) "
            "FROM recordings WHERE state=? AND deleted_at IS NOT NULL "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3", (State.DELETED.value,))
        return [(r[0], r[1], r[2] or "", int(r[3])) for r in rows]
