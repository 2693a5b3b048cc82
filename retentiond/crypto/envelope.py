"""Sealed-object format: a recording encrypted in AES-256-GCM segments (STREAM).

The construction is the nonce-based online AE "STREAM" of Hoang, Reyhanitabar, Rogaway and
Vizár (CRYPTO 2015), the same shape as Tink's streaming AEAD: every segment is an
independent AES-256-GCM message whose nonce carries the segment's position and whether it
is the last one, so flipping, truncating, extending, reordering or duplicating segments
all fail authentication. Segments verify one by one, so memory stays bounded (a few
buffers of one segment) whatever the size of the recording.

Byte format, version 1 (all integers big-endian)::

    header, 20 bytes
      offset  size  field
      0       8     magic  b"RTDSEAL\\x00"
      8       1     format version = 0x01
      9       4     segment size S: plaintext bytes per segment, 4096 .. 16777216
      13      7     nonce prefix P: random, fresh for every sealed object

    segments, from offset 20, i = 0 .. n-1 (n >= 1)
      AES-256-GCM(data key, nonce_i, AD, plaintext[i*S : (i+1)*S]) = ciphertext || tag(16)
      every segment but the last holds exactly S plaintext bytes (S + 16 on disk);
      the last holds 0 .. S bytes (16 .. S + 16 on disk); an empty input is one empty
      last segment, an input of k*S bytes (k >= 1) is k full segments.

    nonce_i (12 bytes) = P (7) || uint32(i) (4) || final flag (1: 0x01 last, else 0x00)

    AD = lp(domain) || uint8(version) || lp(header) || lp(object_id) || lp(purpose)
      lp(x) = uint32(len(x)) || x; strings are UTF-8; domain is b"retentiond/stream"
      for recordings (seal_stream) and b"retentiond/blob" for small blobs (seal_bytes),
      so a blob can never be opened as a recording or the other way round.

    total size = 20 + plaintext_size + 16 * max(1, ceil(plaintext_size / S))

Limits: at most 2**32 segments per object (16 TiB at S = 4 KiB); object_id and purpose
1..1024 UTF-8 bytes. A data key must be fresh per object (``new_data_key``); the 56-bit
random nonce prefix keeps a nonce collision below 2**-25 even if one key seals 2**16
streams, but the design does not rely on it.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from retentiond.errors import IntegrityError

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "KEY_SIZE",
    "MAGIC",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "OpenResult",
    "SealResult",
    "SupportsWrite",
    "ciphertext_size",
    "new_data_key",
    "open_bytes",
    "open_stream",
    "seal_bytes",
    "seal_stream",
    "verify_stream",
]

MAGIC: Final = b"RTDSEAL\x00"
FORMAT_VERSION: Final = 1
KEY_SIZE: Final = 32  # AES-256
TAG_SIZE: Final = 16
NONCE_PREFIX_SIZE: Final = 7
HEADER_SIZE: Final = len(MAGIC) + 1 + 4 + NONCE_PREFIX_SIZE  # 20
MIN_SEGMENT_SIZE: Final = 4 * 1024
MAX_SEGMENT_SIZE: Final = 16 * 1024 * 1024
DEFAULT_SEGMENT_SIZE: Final = 256 * 1024
MAX_SEGMENTS: Final = 2**32
MAX_BINDING_SIZE: Final = 1024  # bytes of UTF-8 for object_id, purpose, label
MAX_BLOB_SIZE: Final = 16 * 1024 * 1024  # seal_bytes holds everything in memory

_STREAM_DOMAIN: Final = b"retentiond/stream"
_BLOB_DOMAIN: Final = b"retentiond/blob"
_FINAL: Final = b"\x01"
_NOT_FINAL: Final = b"\x00"
# cryptography >= 47 has the allocation-free encrypt_into/decrypt_into; older ones do not.
_USE_INTO: bool = hasattr(AESGCM, "encrypt_into")
# Sealing hashes in two helper threads when this process may run on more than one CPU:
# hashlib releases the GIL on buffers over 2 KiB while AESGCM holds it, so the two SHA-256
# (about 1.5 GB/s each on one core, the bulk of the work) run beside reading, encrypting
# and writing. At most this many segments (plaintext + ciphertext buffers, 5 x 512 KiB at
# the default size) are in flight; on one CPU, two, hashed inline.
_HASH_SLOTS: Final = 5
# ... but only past the first 4 MiB: on smaller inputs starting and waking threads costs
# more than it saves (measured on a 1 MiB ingest: seal 2.3 ms inline, 3.8 ms threaded).
_PARALLEL_AFTER = 4 * 1024 * 1024
# Segment buffers are reused from one seal or check to the next: a fresh bytearray of
# 256 KiB is zero-filled memory the kernel maps and faults in page by page, and unmaps
# when it is freed; at 1 MiB per recording that churn took about a tenth of an ingest's
# CPU (perf, 2026-11-23). At most this many idle bytes are kept (16 concurrent seals of
# 1 MiB recordings, or 12 big ones hashing in parallel).
_POOL_BYTES: Final = 16 * 1024 * 1024


class SupportsWrite(Protocol):
    """A byte sink: a file, ``io.BytesIO``, an ``ObjectWriter``... ``write`` must consume
    or copy ``data`` before returning: the buffer behind it is reused for the next segment."""

    def write(self, data: memoryview, /) -> int | None: ...


@dataclass(frozen=True)
class SealResult:
    """Sizes and SHA-256 (hex) of what went in and of what was written."""

    plaintext_size: int
    plaintext_sha256: str
    ciphertext_size: int
    ciphertext_sha256: str


@dataclass(frozen=True)
class OpenResult:
    """Size and SHA-256 (hex) of the verified plaintext written to ``dst``."""

    plaintext_size: int
    plaintext_sha256: str


def new_data_key() -> bytes:
    """A fresh random AES-256 data key (32 bytes) for one object."""
    return os.urandom(KEY_SIZE)


def ciphertext_size(plaintext_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Exact size of the sealed object for ``plaintext_size`` bytes of input."""
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise ValueError("plaintext_size must be >= 0")
    segments = max(1, -(-plaintext_size // segment_size))
    return HEADER_SIZE + plaintext_size + TAG_SIZE * segments


def seal_stream(
    src: BinaryIO, dst: SupportsWrite, *, data_key: bytes, object_id: str, purpose: str,
    segment_size: int = DEFAULT_SEGMENT_SIZE, _nonce_prefix: bytes | None = None,
) -> SealResult:
    """Encrypt ``src`` to ``dst`` in one pass, bound to ``object_id`` and ``purpose``.

    Memory: at most ten buffers of ``segment_size`` (2.5 MiB at the default), whatever the
    input size. ``_nonce_prefix`` exists for known-answer tests only; never pass it otherwise.
    """
    return _seal(
        src, dst, domain=_STREAM_DOMAIN, data_key=data_key, object_id=object_id,
        purpose=purpose, segment_size=segment_size, nonce_prefix=_nonce_prefix,
    )


def open_stream(
    src: BinaryIO, dst: SupportsWrite, *, data_key: bytes, object_id: str, purpose: str,
) -> OpenResult:
    """Decrypt and verify ``src`` to ``dst``; raise IntegrityError if anything is wrong.

    ``dst`` receives each segment's plaintext as soon as that segment verifies, so on an
    IntegrityError it already holds a verified but incomplete prefix: write to a temporary
    location and publish it only after this returns, discard it on any error.
    """
    return _open(
        src, dst, domain=_STREAM_DOMAIN, data_key=data_key, object_id=object_id,
        purpose=purpose,
    ).result()


def verify_stream(src: BinaryIO, *, data_key: bytes, object_id: str, purpose: str) -> int:
    """Check that ``src`` is, byte for byte, a recording sealed under ``data_key`` for
    ``object_id`` and ``purpose``: every segment's AES-GCM tag (a 128-bit MAC over that
    segment, its position, whether it is the last, the header and the bindings) must
    verify. Returns the number of sealed bytes read; raises IntegrityError otherwise.

    The read-back check of a stored copy: it catches any change, truncation or extension
    of what ``seal_stream`` wrote (a random fault passes with probability about 2**-128)
    and proves the copy opens, at the cost of AES-GCM decryption (about 2-3 GB/s on one
    core here, twice SHA-256's speed); the plaintext is decrypted into one reused buffer
    and dropped, never hashed or written. Memory: three buffers of one segment.
    """
    return _open(
        src, None, domain=_STREAM_DOMAIN, data_key=data_key, object_id=object_id,
        purpose=purpose,
    ).sealed_size


def seal_bytes(data: bytes, *, data_key: bytes, object_id: str, label: str) -> bytes:
    """Seal a small blob (<= 16 MiB, e.g. free-text notes) under an object's data key.

    ``label`` (e.g. ``"notes"``) plays the role of the purpose; the blob domain in the
    associated data keeps blobs and recordings from being swapped, even under one key.
    """
    if len(data) > MAX_BLOB_SIZE:
        raise ValueError(f"seal_bytes takes at most {MAX_BLOB_SIZE} bytes")
    out = io.BytesIO()
    # Small blobs use small segments: opening allocates three buffers of one segment.
    segment_size = MIN_SEGMENT_SIZE if len(data) <= MIN_SEGMENT_SIZE else DEFAULT_SEGMENT_SIZE
    _seal(
        io.BytesIO(data), out, domain=_BLOB_DOMAIN, data_key=data_key, object_id=object_id,
        purpose=label, segment_size=segment_size, nonce_prefix=None,
    )
    return out.getvalue()


def open_bytes(sealed: bytes, *, data_key: bytes, object_id: str, label: str) -> bytes:
    """Open a blob made by ``seal_bytes``. Raises IntegrityError."""
    out = io.BytesIO()
    _open(
        io.BytesIO(sealed), out, domain=_BLOB_DOMAIN, data_key=data_key,
        object_id=object_id, purpose=label,
    )
    return out.getvalue()


# -- internals ---------------------------------------------------------------------------


def _check_segment_size(segment_size: int) -> None:
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError(
            f"segment_size must be {MIN_SEGMENT_SIZE}..{MAX_SEGMENT_SIZE}, got {segment_size}"
        )


def _aead(data_key: bytes) -> AESGCM:
    if len(data_key) != KEY_SIZE:
        raise ValueError(f"data key must be {KEY_SIZE} bytes")
    return AESGCM(data_key)


def _binding(name: str, value: str) -> bytes:
    raw = value.encode("utf-8")
    if not 1 <= len(raw) <= MAX_BINDING_SIZE:
        raise ValueError(f"{name} must be 1..{MAX_BINDING_SIZE} bytes of UTF-8")
    return raw


def _lp(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _associated_data(domain: bytes, header: bytes, object_id: str, purpose: str) -> bytes:
    return b"".join((
        _lp(domain), FORMAT_VERSION.to_bytes(1, "big"), _lp(header),
        _lp(_binding("object_id", object_id)), _lp(_binding("purpose", purpose)),
    ))


def _header(segment_size: int, nonce_prefix: bytes) -> bytes:
    return MAGIC + bytes([FORMAT_VERSION]) + segment_size.to_bytes(4, "big") + nonce_prefix


def _filler(src: BinaryIO) -> Callable[[memoryview], int]:
    """A function filling a buffer from ``src`` completely, or up to end of input."""
    readinto = getattr(src, "readinto", None)
    if callable(readinto):

        def fill(view: memoryview) -> int:
            filled, size = 0, len(view)
            while filled < size:
                got: int | None = readinto(view[filled:])
                if got is None:
                    raise ValueError("source is non-blocking and has no data ready")
                if got == 0:
                    break
                filled += got
            return filled

        return fill

    def fill_by_read(view: memoryview) -> int:
        filled, size = 0, len(view)
        while filled < size:
            chunk = src.read(size - filled)
            if not chunk:
                break
            view[filled:filled + len(chunk)] = chunk
            filled += len(chunk)
        return filled

    return fill_by_read


def _write_all(dst: SupportsWrite, view: memoryview) -> None:
    while view:
        written = dst.write(view)
        if written is None or written >= len(view):
            return
        if written <= 0:
            raise OSError("destination accepted no bytes")
        view = view[written:]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _BufferPool:
    """Idle segment buffers by size, at most ``limit`` bytes of them, shared by threads.
    A buffer is given back only once nothing reads or writes it any more."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._idle: dict[int, list[bytearray]] = {}
        self._bytes = 0

    def get(self, size: int) -> memoryview:
        with self._lock:
            idle = self._idle.get(size)
            if idle:
                self._bytes -= size
                return memoryview(idle.pop())
        return memoryview(bytearray(size))

    def put(self, *views: memoryview, plaintext: tuple[memoryview, ...] = ()) -> None:
        """Keep ``views`` and ``plaintext`` for reuse (within the limit); ``plaintext``
        buffers are zeroed first, so no recording lingers in an idle buffer."""
        for view in plaintext:
            if isinstance(view.obj, bytearray):
                ctypes.memset((ctypes.c_char * len(view.obj)).from_buffer(view.obj), 0,
                              len(view.obj))
        with self._lock:
            for view in (*views, *plaintext):
                buf = view.obj
                if isinstance(buf, bytearray) and self._bytes + len(buf) <= self._limit:
                    self._idle.setdefault(len(buf), []).append(buf)
                    self._bytes += len(buf)


_POOL = _BufferPool(_POOL_BYTES)


class _Slot:
    """One segment's plaintext and ciphertext buffers, reused from segment to segment."""

    __slots__ = ("ct", "n_ct", "n_pt", "pt")

    def __init__(self, segment_size: int) -> None:
        self.pt = _POOL.get(segment_size)
        self.ct = _POOL.get(segment_size + TAG_SIZE)
        self.n_pt = 0
        self.n_ct = 0


class _SealHasher:
    """SHA-256 of the plaintext and of the ciphertext, segment by segment, in order.

    ``take`` hands out a free slot, ``give`` hashes a filled one and recycles it: inline,
    or after ``go_parallel`` in two helper threads in a chain (plaintext hasher, then
    ciphertext hasher, then back to the free list), so both digests run beside the
    caller's reading, encrypting and writing. The caller may keep reading a slot it gave
    (to write its ciphertext) until it calls ``take`` again: only the caller takes.
    """

    def __init__(self, segment_size: int) -> None:
        self.plaintext = hashlib.sha256()
        self.ciphertext = hashlib.sha256()
        self._segment_size = segment_size
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._pt_todo: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self._ct_todo: queue.SimpleQueue[_Slot | None] = queue.SimpleQueue()
        self._slots: list[_Slot] = []  # every slot made, given back to _POOL by close()
        self._limit = 2  # current + read-ahead
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None

    def take(self) -> _Slot:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            if len(self._slots) < self._limit:
                self._slots.append(_Slot(self._segment_size))
                return self._slots[-1]
        return self._free.get()

    def give(self, slot: _Slot) -> None:
        if self._threads:
            self._pt_todo.put(slot)
        else:
            self.plaintext.update(slot.pt[:slot.n_pt])
            self.ciphertext.update(slot.ct[:slot.n_ct])
            self._free.put(slot)

    def go_parallel(self) -> None:
        if not self._threads:
            self._limit = _HASH_SLOTS
            self._threads = [
                threading.Thread(target=self._run, args=(self._pt_todo, self._ct_todo, True),
                                 name="retentiond-seal-sha256-pt", daemon=True),
                threading.Thread(target=self._run, args=(self._ct_todo, self._free, False),
                                 name="retentiond-seal-sha256-ct", daemon=True),
            ]
            for t in self._threads:
                t.start()

    def finish(self) -> tuple[str, str]:
        """Wait for every given segment; (plaintext, ciphertext) SHA-256 in hex."""
        self.close()
        if self._error is not None:
            raise self._error
        return self.plaintext.hexdigest(), self.ciphertext.hexdigest()

    def close(self) -> None:
        """Stop the helper threads, if any, and give the buffers back (idempotent; every
        path of ``_seal`` calls it, after its last use of a slot)."""
        threads, self._threads = self._threads, []
        if threads:
            self._pt_todo.put(None)  # travels down the chain after every given slot
            for t in threads:
                t.join()
        slots, self._slots = self._slots, []
        _POOL.put(*(slot.ct for slot in slots), plaintext=tuple(slot.pt for slot in slots))

    def _run(self, todo: queue.SimpleQueue[_Slot | None], done: queue.SimpleQueue[Any],
             plaintext: bool) -> None:
        h = self.plaintext if plaintext else self.ciphertext
        while (slot := todo.get()) is not None:
            if self._error is None:
                try:
                    h.update(slot.pt[:slot.n_pt] if plaintext else slot.ct[:slot.n_ct])
                except BaseException as e:  # noqa: BLE001 (re-raised by finish())
                    self._error = e
            done.put(slot)
        if plaintext:
            done.put(None)


def _seal(
    src: BinaryIO, dst: SupportsWrite, *, domain: bytes, data_key: bytes, object_id: str,
    purpose: str, segment_size: int, nonce_prefix: bytes | None,
) -> SealResult:
    _check_segment_size(segment_size)
    aead = _aead(data_key)
    if nonce_prefix is None:
        nonce_prefix = os.urandom(NONCE_PREFIX_SIZE)
    elif len(nonce_prefix) != NONCE_PREFIX_SIZE:
        raise ValueError(f"nonce prefix must be {NONCE_PREFIX_SIZE} bytes")
    header = _header(segment_size, nonce_prefix)
    ad = _associated_data(domain, header, object_id, purpose)
    fill = _filler(src)
    parallel = _cpus() > 1
    hasher = _SealHasher(segment_size)
    try:
        _write_all(dst, memoryview(header))
        hasher.ciphertext.update(header)
        total_in, total_out = 0, len(header)

        cur = hasher.take()
        cur.n_pt = fill(cur.pt)
        counter = 0
        while True:
            # Read one segment ahead: a segment is the last one when nothing follows it.
            nxt: _Slot | None = None
            if cur.n_pt == segment_size:
                if parallel and total_in >= _PARALLEL_AFTER:
                    hasher.go_parallel()  # a big input: worth the helper threads
                nxt = hasher.take()
                nxt.n_pt = fill(nxt.pt)
            final = nxt is None or nxt.n_pt == 0
            plain = cur.pt[:cur.n_pt]
            nonce = nonce_prefix + counter.to_bytes(4, "big") + (_FINAL if final else _NOT_FINAL)
            cur.n_ct = cur.n_pt + TAG_SIZE
            sealed = cur.ct[:cur.n_ct]
            if _USE_INTO:
                aead.encrypt_into(nonce, plain, ad, sealed)
            else:
                sealed[:] = aead.encrypt(nonce, plain, ad)
            hasher.give(cur)  # hashed while we write it; recycled only by our next take()
            _write_all(dst, sealed)
            total_in += cur.n_pt
            total_out += cur.n_ct
            if final or nxt is None:  # (nxt is never None when not final)
                break
            counter += 1
            if counter >= MAX_SEGMENTS:
                raise ValueError(f"input exceeds {MAX_SEGMENTS} segments of {segment_size} bytes")
            cur = nxt
        plaintext_sha256, ciphertext_sha256 = hasher.finish()
    finally:
        hasher.close()
    return SealResult(
        plaintext_size=total_in, plaintext_sha256=plaintext_sha256,
        ciphertext_size=total_out, ciphertext_sha256=ciphertext_sha256,
    )


def _parse_header(header: bytes) -> tuple[int, bytes]:
    """(segment size, nonce prefix) of a header; IntegrityError if it is not ours."""
    if len(header) < HEADER_SIZE:
        raise IntegrityError("sealed object truncated: incomplete header")
    if header[:len(MAGIC)] != MAGIC:
        raise IntegrityError("not a retentiond sealed object (bad magic)")
    version = header[len(MAGIC)]
    if version != FORMAT_VERSION:
        raise IntegrityError(f"unsupported sealed-object format version {version}")
    segment_size = int.from_bytes(header[len(MAGIC) + 1:len(MAGIC) + 5], "big")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise IntegrityError(f"sealed object header has invalid segment size {segment_size}")
    return segment_size, header[len(MAGIC) + 5:HEADER_SIZE]


@dataclass(frozen=True)
class _Opened:
    plaintext_size: int
    sealed_size: int
    plaintext_sha256: str  # "" when only verifying

    def result(self) -> OpenResult:
        return OpenResult(plaintext_size=self.plaintext_size,
                          plaintext_sha256=self.plaintext_sha256)


def _open(
    src: BinaryIO, dst: SupportsWrite | None, *, domain: bytes, data_key: bytes,
    object_id: str, purpose: str,
) -> _Opened:
    """Authenticate and decrypt ``src`` segment by segment; each verified plaintext goes to
    ``dst`` and into a SHA-256, or, when ``dst`` is None (verification only), nowhere."""
    aead = _aead(data_key)
    fill = _filler(src)
    head = memoryview(bytearray(HEADER_SIZE))
    header = bytes(head[:fill(head)])
    segment_size, nonce_prefix = _parse_header(header)
    ad = _associated_data(domain, header, object_id, purpose)
    pt_hash = hashlib.sha256() if dst is not None else None
    full = segment_size + TAG_SIZE
    cur, nxt, out = _POOL.get(full), _POOL.get(full), _POOL.get(segment_size)
    try:
        return _open_segments(
            fill, dst, aead=aead, ad=ad, nonce_prefix=nonce_prefix, pt_hash=pt_hash,
            sealed=len(header), cur=cur, nxt=nxt, out=out)
    finally:
        _POOL.put(cur, nxt, plaintext=(out,))


def _open_segments(
    fill: Callable[[memoryview], int], dst: SupportsWrite | None, *, aead: AESGCM, ad: bytes,
    nonce_prefix: bytes, pt_hash: Any, sealed: int, cur: memoryview, nxt: memoryview,
    out: memoryview,
) -> _Opened:
    full = len(cur)
    total = 0
    n_cur = fill(cur)
    counter = 0
    while True:
        n_nxt = fill(nxt) if n_cur == full else 0
        final = n_nxt == 0
        if n_cur < TAG_SIZE:
            raise IntegrityError(
                f"sealed object truncated at segment {counter} ({n_cur} bytes, "
                f"at least {TAG_SIZE} needed)"
            )
        nonce = nonce_prefix + counter.to_bytes(4, "big") + (_FINAL if final else _NOT_FINAL)
        try:
            if _USE_INTO:
                plain = out[:n_cur - TAG_SIZE]
                aead.decrypt_into(nonce, cur[:n_cur], ad, plain)
            else:
                plain = memoryview(aead.decrypt(nonce, cur[:n_cur], ad))
        except InvalidTag:
            raise IntegrityError(
                f"sealed object does not authenticate at segment {counter}: tampered, "
                "truncated, extended or reordered, wrong key, or another object or purpose"
            ) from None
        if dst is not None and pt_hash is not None:
            pt_hash.update(plain)
            _write_all(dst, plain)
        total += len(plain)
        sealed += n_cur
        if final:
            break
        counter += 1
        if counter >= MAX_SEGMENTS:
            raise IntegrityError(f"sealed object has more than {MAX_SEGMENTS} segments")
        cur, nxt, n_cur = nxt, cur, n_nxt
    return _Opened(plaintext_size=total, sealed_size=sealed,
                   plaintext_sha256=pt_hash.hexdigest() if pt_hash is not None else "")
