"""The interfaces the service needs. Adapters implement them; each port has one contract
test suite (``tests/contract``) that every adapter must pass.

Adapters translate third-party exceptions into ``retentiond.errors`` types
(``raise TransientStorageError(...) from e``) and hold no retention logic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable

from retentiond.errors import NotWrittenDownError, StorageError


@dataclass(frozen=True)
class ObjectInfo:
    """What a store says about one stored object (latest version)."""

    key: str
    size: int
    modified: datetime
    version_id: str | None = None


@dataclass(frozen=True)
class PutResult:
    """Outcome of a completed write: the bytes are durable and visible under ``key``.
    ``etag``: the ETag the store must report if it holds exactly the bytes written,
    computed by the writer from those bytes (S3: MD5-based), or None; ``stored_etag``: the
    ETag the store answered to the write, if any."""

    key: str
    size: int
    version_id: str | None = None
    etag: str | None = None
    stored_etag: str | None = None


@dataclass(frozen=True)
class DeleteResult:
    """Outcome of deleting every version of one key.

    ``version_ids`` lists every version (and delete marker) removed; ``evidence`` is a short
    machine-readable statement of what the store answered afterwards (e.g.
    ``"stat: ENOENT"`` or ``"list_object_versions: 0 versions"``). No secrets, no personal data.
    """

    key: str
    version_ids: tuple[str, ...]
    evidence: str


# key -> version ids about to be deleted (``ObjectStore.delete_many``)
BeforeDelete = Callable[[Mapping[str, tuple[str, ...]]], None]


def not_written_down(e: Exception) -> NotWrittenDownError:
    """What ``delete_many`` answers, for each key, when ``before_delete`` raised ``e``."""
    if isinstance(e, NotWrittenDownError):
        return e
    return NotWrittenDownError(f"versions to delete not written down first, nothing "
                               f"deleted: {e}")


class ObjectWriter(Protocol):
    """A write in progress. Bytes become visible only when the context manager exits cleanly;
    on an exception the partial write is discarded. ``write`` must consume or copy ``data``
    before returning: callers reuse their buffers (the sealer writes from one reused
    segment buffer)."""

    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...

    @property
    def result(self) -> PutResult:
        """Available after a clean exit of the context manager."""
        ...


@runtime_checkable
class ObjectStore(Protocol):
    """A place holding objects by key: the vault (ciphertext) or a quarantine area."""

    @property
    def url(self) -> str: ...

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None, retain_until: datetime | None = None,
        size_hint: int | None = None,
    ) -> AbstractContextManager[ObjectWriter]:
        """Atomic streamed write of ``key`` (constant memory). ``retain_until``: a store
        with a write lock (S3 Object Lock) refuses deletion before then; others ignore it
        (the catalog's floor is enforced by retentiond itself either way). ``size_hint``:
        the size expected, to size buffers (a wrong hint costs a copy, never data)."""
        ...

    def written_intact(self, put: PutResult) -> bool | None:
        """Does the store itself vouch that the durable object is exactly what was
        written (S3: the server's ETag for that version equals ``put.etag``)? True,
        False, or None when it cannot tell: then the caller reads the object back."""
        ...

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream the latest version. Raises ObjectNotFoundError."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Raises ObjectNotFoundError."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every key under ``prefix`` (latest versions only), in key order."""
        ...

    def delete_many(self, keys: Sequence[str], *, population: int | None = None,
                    known: Mapping[str, str | None] | None = None,
                    before_delete: BeforeDelete | None = None,
                    ) -> dict[str, DeleteResult | StorageError]:
        """``delete_all_versions`` of each key, as few requests as the store allows
        (``population``: about how many objects the store holds, a hint for choosing
        between listings). ``known``: key -> the version id its writer got back (None
        when the store gave none): a versioned store may delete that version first and
        list once afterwards, instead of listing before and after; whatever else the
        confirming listing shows is deleted too and named in ``version_ids``. Keys not in
        ``known`` are listed first. Never raises for one key: each gets its result or its
        error. ``before_delete``, if given, is called with key -> the versions (and
        markers; "null" for the null version) about to be deleted, before each request
        that deletes them, so the caller can write them down first (a later pass that
        finishes a failed or interrupted deletion finds only what is left, and its proof
        must name these too); if it raises, those keys fail with a NotWrittenDownError
        (``not_written_down``) and nothing of theirs is deleted."""
        ...

    def mirror_legal_hold(self, key: str, *, version_id: str | None, on: bool) -> bool:
        """Mirror a retentiond hold on the store's own legal hold (S3 Object Lock), so
        nobody deletes the object behind retentiond's back either. Returns False when the
        store has no such thing (retentiond's hold is in force regardless)."""
        ...

    def discard_incomplete_writes(self) -> int:
        """Remove what writes interrupted by a crash left behind (temporary files,
        multipart uploads: ciphertext only). Only when no write is under way anywhere.
        Returns how many were removed."""
        ...

    def delete_all_versions(self, key: str) -> DeleteResult:
        """Delete every version and delete marker of ``key`` and confirm it is gone.
        Idempotent: deleting an absent key succeeds with no version ids.
        Raises StorageError (ObjectLockedError when a lock refuses) if anything remains."""
        ...


@runtime_checkable
class ProofStore(Protocol):
    """Where the deletion-proof log's files live (a folder or a bucket prefix).

    Paths are relative, ``/``-separated, e.g. ``checkpoint``, ``tile/0/x001/234``,
    ``tile/entries/000.p/5``.
    """

    @property
    def location(self) -> str: ...

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""
        ...

    def write_once(self, path: str, data: bytes) -> None:
        """Create an immutable file durably. Succeeds if it already holds exactly ``data``;
        raises ProofError if it holds anything else (the log never rewrites history)."""
        ...

    def replace(self, path: str, data: bytes) -> None:
        """Durably and atomically create or replace a mutable file (checkpoint, partials)."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Every path under ``prefix``, sorted."""
        ...


@dataclass(frozen=True)
class WrappedKey:
    """A data key wrapped by the key-encryption key ``kek_id``. Safe to store; never logged."""

    kek_id: str
    blob: bytes = field(repr=False)


@runtime_checkable
class KeyProvider(Protocol):
    """Holds the key-encryption keys and the pseudonymisation key."""

    def current_kek_id(self) -> str: ...

    def wrap(self, data_key: bytes, *, object_id: str) -> WrappedKey:
        """Wrap ``data_key`` for ``object_id`` with the current KEK (bound to the id)."""
        ...

    def unwrap(self, wrapped: WrappedKey, *, object_id: str) -> bytes:
        """Raises KeyUnavailableError (unknown KEK) or IntegrityError (wrong key, tampered
        blob, other object id)."""
        ...

    def pseudonym(self, identifier: str) -> str:
        """Keyed HMAC pseudonym of a caller identifier (stable for one key set)."""
        ...

    def sample_score(self, call_id: str) -> float:
        """Keyed, deterministic score in [0, 1) of a call id, for the sampling cap."""
        ...
