"""The proof log on a local folder (a ``ProofStore``).

Every write goes to a temporary file in the target's folder (``.<name>.tmp-<random>``,
never listed), is fsynced, then linked (``write_once``: create-if-absent) or renamed
(``replace``) into place, and the folder is fsynced; new folders are fsynced into their
parent. A crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from retentiond.adapters.localfs import RETRYABLE_ERRNOS, fsync_dir
from retentiond.core.tiles import check_store_path
from retentiond.errors import (
    PermanentStorageError,
    ProofError,
    StorageError,
    TransientStorageError,
)

_NO_HARDLINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def _storage_error(e: OSError, what: str) -> StorageError:
    cls = TransientStorageError if e.errno in RETRYABLE_ERRNOS else PermanentStorageError
    return cls(f"{what}: {e.strerror or e}")


class FileProofStore:
    """A ``ProofStore`` on the folder ``root`` (created on the first write)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self._location = self.root.as_uri()

    @property
    def location(self) -> str:
        return self._location

    def _path(self, path: str) -> Path:
        return self.root.joinpath(*check_store_path(path).split("/"))

    def read(self, path: str) -> bytes | None:
        target = self._path(path)
        try:
            return target.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as e:
            raise _storage_error(e, f"{self.location}/{path}") from None

    def write_once(self, path: str, data: bytes) -> None:
        target = self._path(path)
        where = f"{self.location}/{path}"
        try:
            old = self.read(path)
            if old is None:
                tmp = self._write_temp(target, data)
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    old = target.read_bytes()
                except OSError as e:
                    if e.errno not in _NO_HARDLINKS:
                        raise
                    os.replace(tmp, target)  # no hard links here: checked absent above
                finally:
                    tmp.unlink(missing_ok=True)
            if old is not None and old != data:
                raise ProofError(
                    f"{where}: already holds different data; the proof log never rewrites "
                    "history"
                )
            if old is not None:  # same bytes, maybe left by a crashed run: make it durable
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fsync_dir(target.parent)
        except OSError as e:
            raise _storage_error(e, where) from None

    def replace(self, path: str, data: bytes) -> None:
        target = self._path(path)
        try:
            tmp = self._write_temp(target, data)
            try:
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            fsync_dir(target.parent)
        except OSError as e:
            raise _storage_error(e, f"{self.location}/{path}") from None

    def list(self, prefix: str = "") -> list[str]:
        if prefix:
            head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
            if head:
                check_store_path(head)
        else:
            head = ""
        base = self.root.joinpath(*head.split("/")) if head else self.root
        out: list[str] = []
        try:
            for dirpath, dirnames, filenames in os.walk(base, onerror=_raise):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith("."):
                        continue  # temporary files
                    p = name if rel == "." else f"{rel}/{name}"
                    if p.startswith(prefix):
                        out.append(p)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            raise _storage_error(e, f"{self.location}/{prefix}") from None
        return sorted(out)

    def _ensure_dir(self, folder: Path) -> None:
        """Create ``folder`` and its missing parents, fsyncing each new one into its parent."""
        missing: list[Path] = []
        p = folder
        while not p.is_dir():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            fsync_dir(d.parent)

    def _write_temp(self, target: Path, data: bytes) -> Path:
        self._ensure_dir(target.parent)
        tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return tmp


def _raise(e: OSError) -> None:
    raise e
