"""Local folders: the embedded vault (an ``ObjectStore``) and the drop-folder inbox.

The local vault keeps no tags or metadata of its own: its index is the catalog (SPEC
section 2). Writes go to ``.tmp/`` in the same file system, are fsynced, then renamed into
place and the folder fsynced (and any folder created for it, in its parent), so a crash
never leaves a half-written object under its final name, nor loses a finished one.
"""

from __future__ import annotations

import builtins
import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import secrets
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from retentiond.errors import (
    ObjectNotFoundError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from retentiond.ports import BeforeDelete, DeleteResult, ObjectInfo, PutResult, not_written_down

TMP_DIR = ".tmp"
RETRYABLE_ERRNOS = {errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.EIO}
# Write-behind: every 8 MiB the writer asks Linux to start writing out what it has just
# written (sync_file_range(SYNC_FILE_RANGE_WRITE): asynchronous, no wait), so the device
# works while the sealer computes, and asks a helper thread to fdatasync the file so far:
# only a flush makes a disk with a write cache (a virtio disk on a host's page cache)
# store what it was given, and here that took about as long as the copy itself (a final
# fsync waited 270-400 ms for 256 MiB already written back; flushed every 8 MiB while
# writing, 0-30 ms). Hints only: durability still comes from fsync(file), rename,
# fsync(folder), and a file under 8 MiB gets none of it.
_WRITE_BEHIND = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def storage_error(e: OSError, what: str) -> StorageError:
    """Turn an OSError into our error tree (no traceback for the operator)."""
    if e.errno == errno.ENOENT:
        return ObjectNotFoundError(f"{what}: not found")
    cls = TransientStorageError if e.errno in RETRYABLE_ERRNOS else PermanentStorageError
    return cls(f"{what}: {e.strerror or e}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _start_writeback() -> Callable[[int, int, int], object] | None:
    """``f(fd, offset, nbytes)`` starting asynchronous writeback of a range, or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int

    def start(fd: int, offset: int, nbytes: int) -> object:
        return fn(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # failing is harmless: fsync follows

    return start


class _Flusher:
    """``fdatasync(fd)`` in a helper thread, on request, one at a time: requests made while
    one runs are merged into the next. The first error stops it and is kept for ``stop``
    to raise (a failed fdatasync may not be reported again to a later fsync of the same
    open file). ``stop`` must return before ``fd`` is closed."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._wanted = False
        self._stopping = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                         name="retentiond-vault-flush")
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            self._wanted = True
            self._cond.notify()

    def stop(self) -> None:
        """Wait for the flush under way (if any), end the thread, raise its error."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._wanted or self._stopping):
                    self._cond.wait()
                if self._stopping:
                    return
                self._wanted = False
            try:
                os.fdatasync(self._fd)
            except OSError as e:
                self.error = e
                return


class _FileWriter:
    """Unbuffered writes to the temporary file (no copy into a Python buffer)."""

    def __init__(self, fh: BinaryIO, key: str) -> None:
        self._fh = fh
        self._key = key
        self._size = 0
        self._written_back = 0
        self._writeback = _start_writeback() if _WRITE_BEHIND else None
        self._flusher: _Flusher | None = None
        self._result: PutResult | None = None

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:  # a raw file may write less than asked: write it all before returning
            n = self._fh.write(view)
            if not n:
                raise OSError(errno.EIO, "write accepted no bytes")
            view = view[n:]
        self._size += total
        if _WRITE_BEHIND and self._size - self._written_back >= _WRITE_BEHIND:
            if self._writeback is not None:
                self._writeback(self._fh.fileno(), self._written_back,
                                self._size - self._written_back)
            self._written_back = self._size
            if self._flusher is None:
                self._flusher = _Flusher(self._fh.fileno())
            elif self._flusher.error is not None:
                self._stop_flusher()  # raises it now, not after writing everything
            self._flusher.request()
        return total

    def _stop_flusher(self) -> None:
        """End the helper flush (idempotent); raise its error, if any."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.stop()

    @property
    def result(self) -> PutResult:
        if self._result is None:
            raise StorageError(f"{self._key}: write not completed")
        return self._result


class LocalObjectStore:
    """An object store on a local folder (the embedded vault)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            (root / TMP_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise storage_error(e, str(root)) from None

    @property
    def url(self) -> str:
        return self.root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not key or key.startswith("/") or ".." in parts or parts[0] == TMP_DIR:
            raise PermanentStorageError(f"{key!r}: not a valid object key")
        return self.root.joinpath(*parts)

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None, retain_until: datetime | None = None,
        size_hint: int | None = None,
    ) -> AbstractContextManager[_FileWriter]:
        """Tags, metadata and retention live in the catalog (the local store's index);
        a folder has no write lock, retentiond enforces ``retain_until`` itself. Writes
        go straight to the file: ``size_hint`` is not needed."""
        return self._writer(key)

    def written_intact(self, put: PutResult) -> bool | None:
        """A folder cannot vouch for its content: the caller reads it back."""
        return None

    @contextmanager
    def _writer(self, key: str) -> Iterator[_FileWriter]:
        final = self._path(key)
        tmp = self.root / TMP_DIR / f"{secrets.token_hex(8)}.part"
        try:
            fh = open(tmp, "xb", buffering=0)  # noqa: SIM115 (closed below on every path)
        except OSError as e:
            raise storage_error(e, f"{self.url}: {key}") from None
        w = _FileWriter(fh, key)
        try:
            yield w
            w._stop_flusher()
            os.fsync(fh.fileno())
            fh.close()
            self._make_folders(final.parent)
            os.replace(tmp, final)
            fsync_dir(final.parent)
            w._result = PutResult(key=key, size=w._size)
        except OSError as e:
            raise storage_error(e, f"{self.url}: {key}") from None
        finally:
            with contextlib.suppress(OSError):  # failing already: the first error stands
                w._stop_flusher()  # before the descriptor it flushes is closed
            if not fh.closed:
                fh.close()
            tmp.unlink(missing_ok=True)

    def _make_folders(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents below the root, each one durable in
        its parent (a new ``v1/ab/`` is only as durable as its entry in ``v1/``)."""
        missing: list[Path] = []
        while folder not in (self.root, folder.parent) and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for new in reversed(missing):
            with contextlib.suppress(FileExistsError):  # a concurrent writer made it:
                new.mkdir()  # fsync its parent all the same
            fsync_dir(new.parent)

    @contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        try:
            fh = open(self._path(key), "rb")  # noqa: SIM115
        except OSError as e:
            raise storage_error(e, f"{self.url}: {key}") from None
        with fh:
            yield fh

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        return self._open(key)

    def head(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except OSError as e:
            raise storage_error(e, f"{self.url}: {key}") from None
        return ObjectInfo(key=key, size=st.st_size,
                          modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = Path(dirpath).relative_to(self.root)
            if rel_dir.parts[:1] == (TMP_DIR,):
                dirnames[:] = []
                continue
            dirnames[:] = [d for d in dirnames if not (rel_dir == Path() and d == TMP_DIR)]
            for name in filenames:
                key = (rel_dir / name).as_posix()
                if key.startswith(prefix):
                    try:
                        found.append(self.head(key))
                    except ObjectNotFoundError:
                        continue
        yield from sorted(found, key=lambda o: o.key)

    def stale_temporaries(self) -> builtins.list[Path]:
        """Leftovers of writes interrupted by a crash (ciphertext only, never plaintext)."""
        return sorted((self.root / TMP_DIR).glob("*.part"))

    def delete_many(self, keys: Sequence[str], *, population: int | None = None,
                    known: Mapping[str, str | None] | None = None,
                    before_delete: BeforeDelete | None = None,
                    ) -> dict[str, DeleteResult | StorageError]:
        """``delete_all_versions`` of each key. A folder keeps one version of a key, so
        ``known`` and ``population`` change nothing; the keys of one folder are unlinked,
        then the folder is fsynced once for all of them (not once per key).
        ``before_delete`` hears of every present key's "null" version first."""
        out: dict[str, DeleteResult | StorageError] = {}
        folders: dict[Path, builtins.list[tuple[str, Path]]] = {}
        for key in keys:
            try:
                path = self._path(key)
            except StorageError as e:
                out[key] = e
                continue
            folders.setdefault(path.parent, []).append((key, path))
        if before_delete is not None:
            present = {key: ("null",) for items in folders.values() for key, path in items
                       if os.path.lexists(path)}
            try:
                before_delete(present)
            except Exception as e:  # noqa: BLE001 - not written down: not deleted either
                return out | dict.fromkeys(
                    (key for items in folders.values() for key, _ in items),
                    not_written_down(e))
        for folder, items in folders.items():
            removed: dict[str, tuple[str, ...]] = {}
            for key, path in items:
                try:
                    removed[key] = self._unlink(key, path)
                except StorageError as e:
                    out[key] = e
            try:
                self._sync_folder(folder, what=f"{self.url}: {items[0][0]}")
            except StorageError as e:
                out |= dict.fromkeys(removed, e)
                continue
            for key, path in items:
                if key in removed:
                    out[key] = self._confirm_gone(key, path, removed[key])
        return out

    def mirror_legal_hold(self, key: str, *, version_id: str | None, on: bool) -> bool:
        """A folder has no legal hold of its own: the catalog's hold is the only one."""
        return False

    def discard_incomplete_writes(self) -> int:
        stale = self.stale_temporaries()
        for tmp in stale:
            tmp.unlink(missing_ok=True)
        return len(stale)

    def delete_all_versions(self, key: str) -> DeleteResult:
        path = self._path(key)
        removed = self._unlink(key, path)
        self._sync_folder(path.parent, what=f"{self.url}: {key}")
        result = self._confirm_gone(key, path, removed)
        if isinstance(result, StorageError):
            raise result
        return result

    def _unlink(self, key: str, path: Path) -> tuple[str, ...]:
        """Unlink ``path``: ("null",) if it was there, () if it was not."""
        try:
            path.unlink()
        except FileNotFoundError:
            return ()
        except OSError as e:
            raise storage_error(e, f"{self.url}: {key}") from None
        return ("null",)

    def _sync_folder(self, folder: Path, *, what: str) -> None:
        try:
            fsync_dir(folder)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise storage_error(e, what) from None

    def _confirm_gone(self, key: str, path: Path, removed: tuple[str, ...]
                      ) -> DeleteResult | StorageError:
        if path.exists():
            return PermanentStorageError(f"{self.url}: {key}: still present after unlink")
        return DeleteResult(key=key, version_ids=removed, evidence="stat: ENOENT")


# -- inbox ---------------------------------------------------------------------------------

SIDECAR_SUFFIX = ".json"
_IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".swp")


@dataclass(frozen=True)
class InboxFile:
    """A candidate recording in a drop folder."""

    root: Path
    path: Path
    relpath: str
    size: int
    mtime: datetime
    sidecar: Path | None
    sidecar_mtime: datetime | None

    @property
    def source(self) -> str:
        return str(self.path)


def is_candidate(name: str) -> bool:
    """Files retentiond looks at: not hidden, not in-progress uploads, not sidecars."""
    return not (
        name.startswith((".", "~"))
        or name.endswith(_IGNORED_SUFFIXES)
        or name.endswith(SIDECAR_SUFFIX)
    )


def inbox_file(root: Path, path: Path) -> InboxFile | None:
    """Stat one candidate; None if it vanished or is not a regular file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if not path.is_file() or path.is_symlink():
        return None
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    try:
        sc_mtime: datetime | None = datetime.fromtimestamp(sidecar.stat().st_mtime, UTC)
    except FileNotFoundError:
        sc_mtime = None
    return InboxFile(
        root=root, path=path, relpath=path.relative_to(root).as_posix(), size=st.st_size,
        mtime=datetime.fromtimestamp(st.st_mtime, UTC),
        sidecar=sidecar if sc_mtime is not None else None, sidecar_mtime=sc_mtime,
    )


def scan_inbox(root: Path) -> list[InboxFile]:
    """Every candidate recording under ``root`` (recursively), oldest first."""
    found: list[InboxFile] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if is_candidate(name):
                f = inbox_file(root, Path(dirpath) / name)
                if f is not None:
                    found.append(f)
    return sorted(found, key=lambda f: (f.mtime, f.relpath))


def orphan_sidecars(root: Path) -> dict[str, float]:
    """Inbox-relative paths of sidecars whose recording is absent (symlinked folders are
    not entered), sorted, each with its ``st_ctime``: when it came into the inbox (a
    create, a rename or a link sets it, and no copy tool can set it back), or its inode
    last changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        names = set(filenames)
        for name in filenames:
            if name.endswith(SIDECAR_SUFFIX) and name[: -len(SIDECAR_SUFFIX)] not in names:
                path = Path(dirpath) / name
                try:
                    changed = os.stat(path, follow_symlinks=False).st_ctime
                except OSError:  # gone since the listing
                    continue
                out[path.relative_to(root).as_posix()] = changed
    return dict(sorted(out.items()))


# -- safe access to inbox files ------------------------------------------------------------

MAX_DEPTH = 32


@dataclass(frozen=True)
class Identity:
    """Which file a name pointed at when it was opened."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def open_dir_beneath(root: Path, reldir: str) -> int:
    """Open folder ``reldir`` under ``root`` without following any symlink below ``root``
    (an inbox writer cannot redirect retentiond outside the inbox). Returns a dir fd."""
    parts = PurePosixPath(reldir).parts if reldir not in ("", ".") else ()
    if len(parts) > MAX_DEPTH or any(p in ("..", "/") for p in parts):
        raise PermanentStorageError(f"{reldir!r}: not a path inside the inbox")
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def open_regular(name: str, *, dir_fd: int) -> tuple[int, os.stat_result]:
    """Open ``name`` in ``dir_fd`` for reading: no symlink, no FIFO/device (O_NONBLOCK so
    a FIFO cannot hang the daemon), regular files only. Raises OSError / StorageError."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise PermanentStorageError(f"{name}: not a regular file")
    os.set_blocking(fd, True)
    return fd, st


def read_small(name: str, *, dir_fd: int, limit: int) -> tuple[bytes, Identity] | None:
    """Read at most ``limit + 1`` bytes of a small regular file; None if absent."""
    try:
        fd, st = open_regular(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit + 1), Identity.of(st)


def unlink_if_same(name: str, identity: Identity, *, dir_fd: int) -> bool:
    """Unlink ``name`` only if it is still the very file that was read (same inode, size and
    mtime); True if removed. The folder is fsynced."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if Identity.of(st) != identity:
        return False
    os.unlink(name, dir_fd=dir_fd)
    os.fsync(dir_fd)
    return True


# -- is another program still writing an inbox file? -----------------------------------------

# A read lease is broken when another program opens the file for writing, and Linux tells
# the lease holder with a signal: SIGIO unless F_SETSIG says otherwise, and SIGIO's default
# action ends the process. SIGURG's default action is to ignore it; retentiond uses it for
# nothing else (nor does Python), so a lease break can never stop the daemon.
LEASE_BREAK_SIGNAL = signal.SIGURG
_NO_LEASE_SUPPORT = {errno.EINVAL, errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP}
# file systems where a lease says nothing about writers on other machines, and where the
# client may refuse one with EAGAIN although no program writes (NFSv4 without a
# delegation, SMB without an oplock): statfs f_type magic numbers (<linux/magic.h>)
_NETWORK_FILE_SYSTEMS = {
    0x6969: "NFS", 0xFE534D42: "SMB", 0xFF534D42: "CIFS", 0x517B: "SMB",
    0x65735546: "FUSE", 0x00C36400: "CephFS", 0x01021997: "9P", 0x5346414F: "AFS",
    0x6B414653: "AFS", 0x01161970: "GFS2", 0x7461636F: "OCFS2", 0x0BD00BD0: "Lustre",
}
_STATFS_SIZE = 120  # struct statfs on 64-bit Linux; f_type is its first field (a long)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def network_file_system(fd: int) -> str | None:
    """The name of the network (or FUSE) file system ``fd`` is on, else None."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc().fstatfs(fd, buf) != 0:
        return None
    f_type = ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF
    return _NETWORK_FILE_SYSTEMS.get(f_type)


def _lease_refusal(e: OSError) -> str:
    if e.errno in (errno.EACCES, errno.EPERM):
        return ("retentiond does not own the file and lacks the CAP_LEASE capability "
                "(see docs/operations.md, \"Files still being written\")")
    if e.errno in _NO_LEASE_SUPPORT:
        return "the inbox's file system does not support leases (or fs.leases-enable is 0)"
    return os.strerror(e.errno or 0)


class ReadLease:
    """A Linux read lease (``fcntl F_SETLEASE``) on an inbox file retentiond has open for
    reading: the kernel refuses it while any program has the file open for writing, and
    breaks it when one opens the file for writing later (that program's ``open`` then waits
    until the lease is released, at most ``/proc/sys/fs/lease-break-time``, 45 s by
    default). So a recorder that pauses longer than ``ingest.settle_seconds`` with the file
    still open is seen as writing, and one that opens it again during the ingest is seen
    too: the plaintext stays in the inbox and is tried again later.

    Leases need the file's owner or ``CAP_LEASE`` and a local file system (on NFS, SMB or
    FUSE a lease cannot see writers on other machines, and a client may refuse one with
    EAGAIN when no program writes); where they cannot be taken, ``unavailable`` says why
    and only the settle time applies (``intact`` is then always true: nothing more can be
    told)."""

    __slots__ = ("fd", "unavailable", "writer")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.writer = False  # another program had the file open for writing
        self.unavailable: str | None = None
        remote = network_file_system(fd)
        if remote is not None:
            self.unavailable = (f"the inbox is on {remote}, where a lease cannot see "
                                "programs writing from other machines")
            return
        try:
            fcntl.fcntl(fd, fcntl.F_SETSIG, LEASE_BREAK_SIGNAL)
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                self.writer = True
            else:
                self.unavailable = _lease_refusal(e)

    @property
    def held(self) -> bool:
        return not self.writer and self.unavailable is None

    def intact(self) -> bool:
        """No program has opened the file for writing since the lease was taken. Without a
        lease: false if a writer had it open, else true (the settle time is all there is)."""
        if not self.held:
            return not self.writer
        try:
            return fcntl.fcntl(self.fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK
        except OSError:
            return False

    def release(self) -> None:
        """Let a waiting writer go now (closing the file releases the lease too)."""
        if self.held:
            with contextlib.suppress(OSError):
                fcntl.fcntl(self.fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
