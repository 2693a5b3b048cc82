"""One error tree. Every expected failure is a ``RetentiondError`` with an exit code and a
one-line message for the operator; the CLI prints the message, never a traceback.

Exit codes (documented in README, "Exit codes"):

====  =====================================================================
0     ok
1     finished with warnings (e.g. a recording quarantined, a deletion retried later)
2     usage or configuration error (bad flag, bad config file, bad policy)
3     not found (unknown recording id, missing file)
4     bad input (malformed sidecar, unknown purpose, unreadable recording)
5     storage error (store unreachable, I/O failure, write refused)
6     integrity error (corrupt or tampered ciphertext, wrong or missing key)
7     proof-log verification failed (tampered, truncated, forked, bad signature)
8     audit-log verification failed
9     refused (legal hold or minimum retention forbids the action)
10    busy (another retentiond process holds the lock)
====  =====================================================================

Messages never contain secrets (keys, plaintext, caller identifiers).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_BAD_INPUT = 4
EXIT_STORAGE = 5
EXIT_INTEGRITY = 6
EXIT_PROOF = 7
EXIT_AUDIT = 8
EXIT_REFUSED = 9
EXIT_BUSY = 10


class RetentiondError(Exception):
    """Root of every expected failure."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(RetentiondError):
    """The configuration file or a flag is wrong."""

    exit_code = EXIT_USAGE


class PolicyError(ConfigError):
    """A policy file is invalid. The message names file, line and key."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None,
        key: str | None = None,
    ) -> None:
        where = ""
        if file is not None:
            where = file
            if line is not None:
                where += f":{line}"
            where += ": "
        if key is not None:
            where += f"{key}: "
        super().__init__(where + message)
        self.file = file
        self.line = line
        self.key = key


class UsageError(RetentiondError):
    exit_code = EXIT_USAGE


class NotFoundError(RetentiondError):
    """An id, file or object that was asked for does not exist."""

    exit_code = EXIT_NOT_FOUND


class InputError(RetentiondError):
    """A recording or its sidecar cannot be accepted as given (malformed, unknown purpose...)."""

    exit_code = EXIT_BAD_INPUT


class StorageError(RetentiondError):
    """A store (vault, inbox, proof store, catalog) failed."""

    exit_code = EXIT_STORAGE


class NotWrittenDownError(StorageError):
    """``ObjectStore.delete_many``'s ``before_delete`` failed (the catalog could not write
    down the versions about to go): nothing of those keys was deleted. Not the store's
    failure, so not counted as one."""


class ObjectNotFoundError(StorageError):
    """The object is not in the store."""

    exit_code = EXIT_NOT_FOUND


class TransientStorageError(StorageError):
    """Worth retrying: timeouts, 5xx, connection refused."""


class PermanentStorageError(StorageError):
    """Not worth retrying as is: access denied, bucket missing, disk full."""


class ObjectLockedError(PermanentStorageError):
    """The store refused a deletion because of Object Lock / retention / legal hold."""


class IntegrityError(RetentiondError):
    """Ciphertext, key or stored data does not authenticate."""

    exit_code = EXIT_INTEGRITY


class KeyUnavailableError(IntegrityError):
    """A key needed to decrypt is missing, destroyed or unreadable."""


class ProofError(RetentiondError):
    """The deletion-proof log does not verify, or cannot be written."""

    exit_code = EXIT_PROOF


class AuditError(RetentiondError):
    """The access audit log does not verify."""

    exit_code = EXIT_AUDIT


class RefusedError(RetentiondError):
    """A legal hold or a minimum retention forbids what was asked."""

    exit_code = EXIT_REFUSED


class BusyError(RetentiondError):
    """Another process holds the lock."""

    exit_code = EXIT_BUSY
