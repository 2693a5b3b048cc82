"""An in-memory ``ProofStore`` for tests and dry runs. Same contract as the file store
(``tests/contract/test_proofstore_contract.py``); nothing survives the process."""

from __future__ import annotations

import itertools
import threading

from retentiond.core.tiles import check_store_path
from retentiond.errors import ProofError

_ids = itertools.count(1)


class MemoryProofStore:
    """A dict of path -> bytes behind the ``ProofStore`` protocol."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._location = f"memory://proofs-{next(_ids)}"

    @property
    def location(self) -> str:
        return self._location

    def read(self, path: str) -> bytes | None:
        check_store_path(path)
        with self._lock:
            return self._files.get(path)

    def write_once(self, path: str, data: bytes) -> None:
        check_store_path(path)
        with self._lock:
            old = self._files.get(path)
            if old is None:
                self._files[path] = bytes(data)
            elif old != data:
                raise ProofError(
                    f"{self._location}/{path}: already holds different data; "
                    "the proof log never rewrites history"
                )

    def replace(self, path: str, data: bytes) -> None:
        check_store_path(path)
        with self._lock:
            self._files[path] = bytes(data)

    def list(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(p for p in self._files if p.startswith(prefix))

    def delete(self, path: str) -> None:
        """Remove a file (tests only: the proof log itself never deletes)."""
        with self._lock:
            self._files.pop(path, None)
