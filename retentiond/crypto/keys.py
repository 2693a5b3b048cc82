"""File key provider: key-encryption keys (KEKs) and HMAC keys kept in a key folder.

Folder layout (the folder is mode 0700; every file is mode 0600 or stricter and holds one
line of ASCII text, a trailing newline allowed; at most 4096 bytes)::

    kek-20261123-1a2b3c4d.key   retentiond-kek-v1 kek-20261123-1a2b3c4d <base64 of 32 bytes>
    kek.current                 kek-20261123-1a2b3c4d
    pseudonym.key               retentiond-hmac-v1 pseudonym <base64 of 32 bytes>
    sampling.key                retentiond-hmac-v1 sampling <base64 of 32 bytes>

A KEK file is named after its id (``kek-<YYYYMMDD UTC>-<8 hex random>``) and repeats the id
inside, so a renamed file is refused. Old KEKs stay after ``rotate`` so that data keys
wrapped by them still unwrap; ``retentiond keys rotate`` (service/keyrotation.py)
re-wraps them, never touching the data, and with ``--retire`` then removes the old KEK
files no data key needs any more (``retire_kek``). A provider notices a rotation made by
another process at its next ``wrap`` (``kek.current`` changed on disk): it never wraps
under a KEK that is no longer current.

Wrapped data key (``WrappedKey.blob``, 61 bytes)::

    0x01 (version) || nonce (12, random) || AES-256-GCM(KEK, nonce, AD, data key) (32 + 16)
    AD = lp(b"retentiond/wrap") || uint8(1) || lp(kek id) || lp(object id)
    lp(x) = uint32 big-endian len(x) || x; strings UTF-8

Random 96-bit nonces: rotate a KEK before it wraps 2**32 data keys (NIST SP 800-38D).
No key material ever reaches repr(), str(), an exception or a log line.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import logging
import os
import re
import secrets
import stat
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from retentiond.errors import ConfigError, IntegrityError, KeyUnavailableError
from retentiond.faults import crashpoint
from retentiond.ports import WrappedKey

__all__ = [
    "PSEUDONYM_PREFIX",
    "FileKeyProvider",
    "create_key_files",
    "discard_retiring",
    "kek_file_ids",
    "normalise_identifier",
    "retire_kek",
    "rotate",
]

logger = logging.getLogger(__name__)

KEY_SIZE: Final = 32
WRAP_VERSION: Final = 1
WRAP_NONCE_SIZE: Final = 12
WRAP_TAG_SIZE: Final = 16
WRAPPED_SIZE: Final = 1 + WRAP_NONCE_SIZE + KEY_SIZE + WRAP_TAG_SIZE  # 61
MAX_KEY_FILE_SIZE: Final = 4096
MAX_OBJECT_ID_SIZE: Final = 1024  # bytes of UTF-8
PSEUDONYM_PREFIX: Final = "hmac-sha256:"

CURRENT_FILE: Final = "kek.current"
PSEUDONYM_FILE: Final = "pseudonym.key"
SAMPLING_FILE: Final = "sampling.key"
_KEK_FORMAT: Final = "retentiond-kek-v1"
_HMAC_FORMAT: Final = "retentiond-hmac-v1"
_RETIRING: Final = ".retiring"  # suffix of a KEK file being destroyed (hidden name)
_WRAP_DOMAIN: Final = b"retentiond/wrap"
# No dots or slashes: a KEK id is also a file name inside the key folder.
_KEK_ID: Final = re.compile(r"kek-[A-Za-z0-9][A-Za-z0-9_-]{0,59}", re.ASCII)
_PHONE_LIKE: Final = re.compile(r"\+?[0-9\s.()/-]*[0-9][0-9\s.()/-]*", re.ASCII)
_PHONE_SEPARATORS: Final = re.compile(r"[\s.()/-]", re.ASCII)


@dataclass(frozen=True)
class _Kek:
    kek_id: str
    aead: AESGCM = field(repr=False, compare=False)


@dataclass(frozen=True)
class _KeySet:
    current_kek_id: str
    keks: Mapping[str, _Kek] = field(repr=False)
    pseudonym_key: bytes = field(repr=False)
    sampling_key: bytes = field(repr=False)


class FileKeyProvider:
    """``KeyProvider`` over a key folder made by ``create_key_files``.

    Loading refuses (ConfigError naming the file, never its content) a folder that is
    group- or world-writable, and key files that are missing, malformed, not regular
    files, or readable or writable by group or others.
    """

    def __init__(self, dir: Path) -> None:
        self._dir = Path(dir)
        self._lock = threading.Lock()
        self._current_seen = _current_signature(self._dir)
        self._keys = _load(self._dir)

    def __repr__(self) -> str:
        keys = self._keys
        return (
            f"FileKeyProvider(dir={str(self._dir)!r}, current_kek_id={keys.current_kek_id!r}, "
            f"kek_ids={tuple(sorted(keys.keks))!r})"
        )

    __str__ = __repr__

    @property
    def dir(self) -> Path:
        return self._dir

    def current_kek_id(self) -> str:
        """The KEK new data keys are wrapped under (as on disk now: see ``_fresh``)."""
        return self._fresh().current_kek_id

    def kek_ids(self) -> tuple[str, ...]:
        """Ids of the KEKs loaded so far, sorted (the folder re-read if it changed)."""
        return tuple(sorted(self._fresh().keks))

    def reload(self) -> None:
        """Re-read the folder (after ``rotate`` by another process); all or nothing."""
        seen = _current_signature(self._dir)
        keys = _load(self._dir)
        with self._lock:
            self._keys, self._current_seen = keys, seen

    def _fresh(self) -> _KeySet:
        """The key set, re-read first if ``kek.current`` or the folder changed on disk since
        they were read (two ``stat``): a rotation by another process is seen by the next
        ``wrap``, and a retired KEK leaves this process's memory there too. The
        rotation's ``--retire`` relies on it (with the catalog's refusal of a retiring
        KEK for the few wraps already under way): no new data key is wrapped under a KEK
        about to be destroyed. A folder that no longer loads stops wrapping (fail closed)."""
        if _current_signature(self._dir) != self._current_seen:
            try:
                self.reload()
            except ConfigError as e:
                raise KeyUnavailableError(
                    f"key folder changed and no longer loads: {e.message}") from None
        return self._keys

    def wrap(self, data_key: bytes, *, object_id: str) -> WrappedKey:
        """Wrap a 32-byte data key with the current KEK, bound to ``object_id``."""
        if len(data_key) != KEY_SIZE:
            raise ValueError(f"data key must be {KEY_SIZE} bytes")
        keys = self._fresh()
        kek = keys.keks[keys.current_kek_id]
        nonce = os.urandom(WRAP_NONCE_SIZE)
        sealed = kek.aead.encrypt(nonce, data_key, _wrap_ad(kek.kek_id, object_id))
        return WrappedKey(kek_id=kek.kek_id, blob=bytes([WRAP_VERSION]) + nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, *, object_id: str) -> bytes:
        """The data key; KeyUnavailableError (unknown KEK) or IntegrityError (tampered,
        wrong KEK, other object id)."""
        kek = self._kek(wrapped.kek_id)
        blob = wrapped.blob
        if len(blob) != WRAPPED_SIZE or blob[0] != WRAP_VERSION:
            what = f"{len(blob)} bytes, expected {WRAPPED_SIZE}" if len(blob) != WRAPPED_SIZE \
                else f"version {blob[0]}, expected {WRAP_VERSION}"
            raise IntegrityError(f"wrapped key for object {object_id!r} is malformed ({what})")
        nonce, sealed = blob[1:1 + WRAP_NONCE_SIZE], blob[1 + WRAP_NONCE_SIZE:]
        try:
            return kek.aead.decrypt(nonce, sealed, _wrap_ad(kek.kek_id, object_id))
        except InvalidTag:
            raise IntegrityError(
                f"wrapped key for object {object_id!r} does not authenticate under "
                f"{kek.kek_id}: tampered, wrong key, or wrapped for another object"
            ) from None

    def pseudonym(self, identifier: str) -> str:
        """``hmac-sha256:<64 hex>`` of ``normalise_identifier(identifier)``."""
        message = normalise_identifier(identifier).encode("utf-8")
        return PSEUDONYM_PREFIX + hmac.new(self._keys.pseudonym_key, message, "sha256").hexdigest()

    def sample_score(self, call_id: str) -> float:
        """Deterministic score in [0, 1): the first 8 bytes of HMAC-SHA256(sampling key,
        call id as UTF-8, not normalised) as a big-endian integer x, returned as
        (x >> 11) / 2**53, i.e. x / 2**64 truncated to float precision so it never
        rounds up to 1.0."""
        if not call_id:
            raise ValueError("empty call id")
        mac = hmac.digest(self._keys.sampling_key, call_id.encode("utf-8"), "sha256")
        return (int.from_bytes(mac[:8], "big") >> 11) / 2**53

    def _kek(self, kek_id: str) -> _Kek:
        """A loaded KEK, or load ``<kek_id>.key`` if another process added it since."""
        kek = self._keys.keks.get(kek_id)
        if kek is not None:
            return kek
        shown = kek_id[:80]
        if not _KEK_ID.fullmatch(kek_id):
            raise KeyUnavailableError(f"key-encryption key id {shown!r} is not valid")
        path = self._dir / f"{kek_id}.key"
        if not os.path.lexists(path):
            raise KeyUnavailableError(
                f"key-encryption key {kek_id} is not available: {path} does not exist"
            )
        try:
            kek = _load_kek(path)
        except ConfigError as e:
            raise KeyUnavailableError(e.message) from None
        with self._lock:
            keys = self._keys
            self._keys = _KeySet(
                current_kek_id=keys.current_kek_id, keks={**keys.keks, kek_id: kek},
                pseudonym_key=keys.pseudonym_key, sampling_key=keys.sampling_key,
            )
        return kek


def normalise_identifier(identifier: str) -> str:
    """The form of a caller identifier that is pseudonymised.

    NFKC, strip; if phone-like (an optional leading ``+`` then digits, whitespace,
    ``.``, ``-``, ``/``, ``(``, ``)`` with at least one digit) drop those separators;
    casefold. ``+33 1 23-45.67.89`` and ``+33123456789`` match; ``+33 1...``,
    ``0033 1...`` and ``01...`` do not (no country-aware E.164 rewriting).
    Raises ValueError when nothing is left.
    """
    text = unicodedata.normalize("NFKC", identifier).strip()
    if _PHONE_LIKE.fullmatch(text):
        text = _PHONE_SEPARATORS.sub("", text)
    text = text.casefold()
    if not text:
        raise ValueError("empty identifier")
    return text


def create_key_files(dir: Path, *, now: datetime) -> list[Path]:
    """Create the key folder (0700) and every missing key file (0600); never overwrite.

    ``now`` (aware) dates the KEK id. Returns the files created (empty when all exist).
    """
    dir = Path(dir)
    _require_aware(now)
    if not os.path.lexists(dir):
        dir.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(dir, 0o700)
        os.chmod(dir, 0o700)  # umask may have removed owner bits
        _fsync_dir(dir.parent)
    _check_dir(dir)
    created: list[Path] = []
    if not os.path.lexists(dir / CURRENT_FILE):
        kek_id, kek_path = _create_kek(dir, now)
        created.append(kek_path)
        if _write_new(dir / CURRENT_FILE, f"{kek_id}\n".encode("ascii")):
            created.append(dir / CURRENT_FILE)
    for name, purpose in ((PSEUDONYM_FILE, "pseudonym"), (SAMPLING_FILE, "sampling")):
        line = f"{_HMAC_FORMAT} {purpose} {_b64(secrets.token_bytes(KEY_SIZE))}\n"
        if _write_new(dir / name, line.encode("ascii")):
            created.append(dir / name)
    for path in created:
        logger.info("created key file %s", path, extra={"event": "key_file_created"})
    return created


def rotate(dir: Path, *, now: datetime) -> str:
    """Create a new KEK and make it current (atomic replace of ``kek.current``).

    Old KEKs are kept. Returns the new KEK id. Refuses a folder that does not load.
    """
    dir = Path(dir)
    _require_aware(now)
    FileKeyProvider(dir)  # validate everything before changing anything
    kek_id, _ = _create_kek(dir, now)
    _replace(dir / CURRENT_FILE, f"{kek_id}\n".encode("ascii"))
    logger.info("key-encryption key rotated to %s", kek_id, extra={"event": "kek_rotated"})
    return kek_id


def retire_kek(dir: Path, kek_id: str) -> bool:
    """Destroy the KEK file ``kek_id`` (never the current one). False if it did not exist.

    It is first renamed to a hidden name (``.<id>.retiring``, which no provider loads) and
    the folder synced, then its content is overwritten with zeros and synced, then it is
    removed and the folder synced. A crash at any point leaves the intact file under its
    own name, or a hidden leftover that ``discard_retiring`` (called by every rotation)
    zeroes and removes; never a zeroed file a provider would refuse to load. The overwrite
    is best effort: a journaling or copy-on-write file system, or the device itself, may
    keep older copies of the blocks (docs/operations.md "Rotating keys"). The caller
    checks that no data key is wrapped under it any more."""
    dir = Path(dir)
    if not _KEK_ID.fullmatch(kek_id):
        raise ValueError(f"not a key-encryption key id: {kek_id[:80]!r}")
    current = _read_key_file(dir / CURRENT_FILE)
    if current == kek_id:
        raise ValueError(f"{kek_id} is the current key-encryption key")
    hidden = dir / f".{kek_id}{_RETIRING}"
    try:
        os.rename(dir / f"{kek_id}.key", hidden)
    except FileNotFoundError:
        return False
    _fsync_dir(dir)
    crashpoint("keys.retire_hidden")
    _zero_and_remove(hidden)
    logger.info("key-encryption key %s retired", kek_id, extra={"event": "kek_retired"})
    return True


def kek_file_ids(dir: Path) -> list[str]:
    """Ids of the KEK files in the key folder (``<id>.key``), sorted; their content is
    not read (a provider loads and checks them)."""
    return sorted(p.name.removesuffix(".key") for p in Path(dir).glob("kek-*.key"))


def discard_retiring(dir: Path) -> int:
    """Finish the retirements a crash interrupted (see ``retire_kek``); returns how many."""
    left = sorted(Path(dir).glob(f".kek-*{_RETIRING}"))
    for path in left:
        _zero_and_remove(path)
    return len(left)


def _zero_and_remove(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.pwrite(fd, bytes(os.fstat(fd).st_size), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(path)
    _fsync_dir(path.parent)


# -- internals ---------------------------------------------------------------------------


def _current_signature(dir: Path) -> tuple[int, ...] | None:
    """What identifies this version of the folder's KEKs: ``kek.current`` (``rotate``
    replaces the file) and the folder itself (a KEK file added or retired changes it)."""
    try:
        st = os.stat(dir / CURRENT_FILE)
        folder = os.stat(dir)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, folder.st_ino,
            folder.st_mtime_ns)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _lp(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _wrap_ad(kek_id: str, object_id: str) -> bytes:
    oid = object_id.encode("utf-8")
    if not 1 <= len(oid) <= MAX_OBJECT_ID_SIZE:
        raise ValueError(f"object_id must be 1..{MAX_OBJECT_ID_SIZE} bytes of UTF-8")
    return b"".join((
        _lp(_WRAP_DOMAIN), bytes([WRAP_VERSION]), _lp(kek_id.encode("ascii")), _lp(oid),
    ))


def _create_kek(dir: Path, now: datetime) -> tuple[str, Path]:
    day = now.astimezone(UTC).strftime("%Y%m%d")
    while True:  # a clash needs two 32-bit random ids equal on the same day
        kek_id = f"kek-{day}-{secrets.token_hex(4)}"
        path = dir / f"{kek_id}.key"
        line = f"{_KEK_FORMAT} {kek_id} {_b64(secrets.token_bytes(KEY_SIZE))}\n"
        if _write_new(path, line.encode("ascii")):
            return kek_id, path


def _fsync_dir(dir: Path) -> None:
    fd = os.open(dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, content: bytes) -> None:
    """Write a new file (O_EXCL, 0600) and fsync it; remove it if writing fails."""
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
    )
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _write_new(path: Path, content: bytes) -> bool:
    """Durably create ``path`` holding ``content``, mode 0600, only if it is absent.

    Written to a temporary name, then hard-linked into place (link never replaces), so a
    crash never leaves a half-written key under the real name. False if it existed.
    """
    if os.path.lexists(path):
        return False
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    _write_file(tmp, content)
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        try:  # no hard links on this file system: exclusive create under the real name
            _write_file(path, content)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _replace(path: Path, content: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    _write_file(tmp, content)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _check_dir(dir: Path) -> None:
    try:
        st = os.stat(dir)
    except FileNotFoundError:
        raise ConfigError(f"key folder {dir} does not exist (run retentiond init)") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"key folder {dir} is not a directory")
    if st.st_mode & 0o022:
        mode = stat.S_IMODE(st.st_mode)
        raise ConfigError(
            f"key folder {dir} is writable by group or others (mode {mode:04o}); "
            f"run: chmod 700 {dir}"
        )


def _read_key_file(path: Path) -> str:
    """The text of a key file, after checking it is a small private regular file."""
    try:
        # O_NONBLOCK: a FIFO planted under a key name must not hang the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{path}: key file missing (run retentiond init)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot open key file ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise ConfigError(
                f"{path}: key file mode {mode:04o} gives group or others access; it must "
                f"be 0600 or stricter (run: chmod 600 {path})"
            )
        if st.st_size > MAX_KEY_FILE_SIZE:
            raise ConfigError(f"{path}: malformed key file (larger than {MAX_KEY_FILE_SIZE} B)")
        raw = os.read(fd, MAX_KEY_FILE_SIZE + 1)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: malformed key file (not ASCII text)") from None
    if text.endswith("\n"):
        text = text[:-1]
    if not text or "\n" in text or "\r" in text:
        raise ConfigError(f"{path}: malformed key file (expected exactly one line)")
    return text


def _parse_key_line(path: Path, *, fmt: str, name: str) -> bytes:
    expected = f"expected '{fmt} {name} <base64 of {KEY_SIZE} bytes>'"
    fields = _read_key_file(path).split(" ")
    if len(fields) != 3 or fields[0] != fmt or fields[1] != name:
        raise ConfigError(f"{path}: malformed key file ({expected})")
    try:
        raw = base64.b64decode(fields[2], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{path}: malformed key file (bad base64; {expected})") from None
    if len(raw) != KEY_SIZE:
        raise ConfigError(f"{path}: malformed key file (key is not {KEY_SIZE} bytes)")
    return raw


def _load_kek(path: Path) -> _Kek:
    kek_id = path.name.removesuffix(".key")
    if not _KEK_ID.fullmatch(kek_id):
        raise ConfigError(f"{path}: not a valid key-encryption key file name")
    return _Kek(kek_id=kek_id, aead=AESGCM(_parse_key_line(path, fmt=_KEK_FORMAT, name=kek_id)))


def _load(dir: Path) -> _KeySet:
    _check_dir(dir)
    current_path = dir / CURRENT_FILE
    current = _read_key_file(current_path)
    if not _KEK_ID.fullmatch(current):
        raise ConfigError(f"{current_path}: malformed (expected one key-encryption key id)")
    keks = {}
    for kek_id in kek_file_ids(dir):
        path = dir / f"{kek_id}.key"
        try:
            kek = _load_kek(path)
        except ConfigError:
            if kek_id != current and not os.path.lexists(path):
                continue  # retired (keys rotate --retire) since the listing
            raise
        keks[kek.kek_id] = kek
    if current not in keks:
        raise ConfigError(
            f"{current_path} names {current} but {dir / (current + '.key')} is missing"
        )
    return _KeySet(
        current_kek_id=current,
        keks=keks,
        pseudonym_key=_parse_key_line(dir / PSEUDONYM_FILE, fmt=_HMAC_FORMAT, name="pseudonym"),
        sampling_key=_parse_key_line(dir / SAMPLING_FILE, fmt=_HMAC_FORMAT, name="sampling"),
    )
