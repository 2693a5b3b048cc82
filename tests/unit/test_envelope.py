"""Sealed-object format: round trips, a known answer, and tampering twins that must fail."""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from retentiond.crypto import envelope
from retentiond.crypto.envelope import (
    DEFAULT_SEGMENT_SIZE,
    HEADER_SIZE,
    TAG_SIZE,
    ciphertext_size,
    new_data_key,
    open_bytes,
    open_stream,
    seal_bytes,
    seal_stream,
    verify_stream,
)
from retentiond.errors import IntegrityError

S = 4096  # smallest segment size: keeps multi-segment cases small
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
OID = "rec-0001"
PURPOSE = "quality"


# -- helpers -------------------------------------------------------------------------------


def _seal(
    data: bytes, *, key: bytes = KEY, object_id: str = OID, purpose: str = PURPOSE,
    segment_size: int = S,
) -> bytes:
    out = io.BytesIO()
    result = seal_stream(
        io.BytesIO(data), out, data_key=key, object_id=object_id, purpose=purpose,
        segment_size=segment_size,
    )
    sealed = out.getvalue()
    assert result.ciphertext_size == len(sealed)
    assert result.ciphertext_sha256 == hashlib.sha256(sealed).hexdigest()
    assert result.plaintext_size == len(data)
    assert result.plaintext_sha256 == hashlib.sha256(data).hexdigest()
    return sealed


def _open(
    sealed: bytes, *, key: bytes = KEY, object_id: str = OID, purpose: str = PURPOSE,
) -> bytes:
    out = io.BytesIO()
    result = open_stream(
        io.BytesIO(sealed), out, data_key=key, object_id=object_id, purpose=purpose,
    )
    plain = out.getvalue()
    assert result.plaintext_size == len(plain)
    assert result.plaintext_sha256 == hashlib.sha256(plain).hexdigest()
    return plain


def _assert_clean_error(err: IntegrityError, *keys: bytes) -> None:
    """One line, no key material (hex or base64), no chained low-level exception."""
    message = str(err)
    assert message and "\n" not in message
    for key in keys:
        assert key.hex() not in message.lower()
        assert base64.b64encode(key).decode() not in message
    assert err.__cause__ is None


def _segments(sealed: bytes, segment_size: int = S) -> list[bytes]:
    body = sealed[HEADER_SIZE:]
    step = segment_size + TAG_SIZE
    return [body[i:i + step] for i in range(0, len(body), step)]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _lp(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def _independent_seal(
    plaintext: bytes, *, key: bytes, prefix: bytes, segment_size: int, object_id: str,
    purpose: str, domain: bytes = b"retentiond/stream",
) -> bytes:
    """The format rebuilt from its documentation with the AESGCM primitive alone."""
    header = b"RTDSEAL\x00" + b"\x01" + segment_size.to_bytes(4, "big") + prefix
    ad = (
        _lp(domain) + b"\x01" + _lp(header) + _lp(object_id.encode())
        + _lp(purpose.encode())
    )
    chunks = [plaintext[i:i + segment_size] for i in range(0, len(plaintext), segment_size)]
    chunks = chunks or [b""]
    aead = AESGCM(key)
    out = [header]
    for i, chunk in enumerate(chunks):
        final = b"\x01" if i == len(chunks) - 1 else b"\x00"
        out.append(aead.encrypt(prefix + i.to_bytes(4, "big") + final, chunk, ad))
    return b"".join(out)


# 3 full segments + a 100-byte final one: 4 segments.
PLAIN = bytes((i * 7 + 3) % 256 for i in range(3 * S + 100))
SEALED = _seal(PLAIN)
SEG_LEN = S + TAG_SIZE
SEG_AT = [HEADER_SIZE + i * SEG_LEN for i in range(4)]  # start offsets
# An input of exactly 2 segments: the last full segment carries the final flag.
EXACT = bytes(range(256)) * (2 * S // 256)
SEALED_EXACT = _seal(EXACT)
SEALED_EMPTY = _seal(b"")


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(0, id="empty"),
        pytest.param(1, id="one-byte"),
        pytest.param(S - 1, id="segment-minus-1"),
        pytest.param(S, id="exactly-one-segment"),
        pytest.param(S + 1, id="segment-plus-1"),
        pytest.param(2 * S, id="exactly-two-segments"),
        pytest.param(3 * S, id="exactly-three-segments"),
        pytest.param(3 * S + 100, id="three-and-a-bit"),
    ],
)
def test_round_trip_sizes(size: int) -> None:
    data = bytes((i * 31) % 256 for i in range(size))
    sealed = _seal(data)
    assert len(sealed) == ciphertext_size(size, S)
    assert len(_segments(sealed)) == max(1, -(-size // S))
    assert _open(sealed) == data


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=3 * 8192 + 10),
    segment_size=st.sampled_from([4096, 4097, 8192]),
    object_id=st.text(min_size=1, max_size=40),
    purpose=st.text(min_size=1, max_size=40),
)
def test_round_trip_property(data: bytes, segment_size: int, object_id: str, purpose: str) -> None:
    sealed = _seal(data, object_id=object_id, purpose=purpose, segment_size=segment_size)
    assert len(sealed) == ciphertext_size(len(data), segment_size)
    assert _open(sealed, object_id=object_id, purpose=purpose) == data


def test_default_segment_size_round_trip() -> None:
    data = bytes(range(256)) * (DEFAULT_SEGMENT_SIZE // 256) + b"tail"
    out = io.BytesIO()
    seal_stream(io.BytesIO(data), out, data_key=KEY, object_id=OID, purpose=PURPOSE)
    sealed = out.getvalue()
    assert sealed[9:13] == DEFAULT_SEGMENT_SIZE.to_bytes(4, "big")
    assert len(sealed) == ciphertext_size(len(data))
    assert _open(sealed) == data


def test_two_seals_of_the_same_input_differ() -> None:
    assert _seal(PLAIN) != _seal(PLAIN)  # fresh random nonce prefix


def test_new_data_key_is_random_32_bytes() -> None:
    keys = {new_data_key() for _ in range(16)}
    assert len(keys) == 16
    assert all(len(k) == 32 for k in keys)


class _Trickle(io.RawIOBase):
    """A source that returns at most 1000 bytes per read, like a pipe or socket."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(cast(bytearray, buffer))
        n = min(len(view), len(self._data), 1000)
        view[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


class _ReadOnly:
    """A source with ``read`` but no ``readinto``."""

    def __init__(self, data: bytes) -> None:
        self._src = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._src.read(min(n, 777))


class _PartialSink:
    """A sink that accepts at most 1000 bytes per write, like a raw file."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: memoryview) -> int:
        n = min(len(data), 1000)
        self.chunks.append(bytes(data[:n]))
        return n


@pytest.mark.parametrize(
    "make_source",
    [
        pytest.param(_Trickle, id="short-readinto"),
        pytest.param(_ReadOnly, id="read-without-readinto"),
    ],
)
def test_short_reads_and_partial_writes(make_source: Callable[[bytes], object]) -> None:
    sink = _PartialSink()
    seal_stream(
        cast(BinaryIO, make_source(PLAIN)), sink, data_key=KEY, object_id=OID,
        purpose=PURPOSE, segment_size=S,
    )
    sealed = b"".join(sink.chunks)
    back = _PartialSink()
    open_stream(
        cast(BinaryIO, make_source(sealed)), back, data_key=KEY, object_id=OID,
        purpose=PURPOSE,
    )
    assert b"".join(back.chunks) == PLAIN


def test_fallback_without_encrypt_into_is_compatible(monkeypatch: pytest.MonkeyPatch) -> None:
    """cryptography < 47 has no encrypt_into: the allocating path gives the same bytes."""
    sealed_with_into = SEALED
    monkeypatch.setattr(envelope, "_USE_INTO", False)
    assert _open(sealed_with_into) == PLAIN
    assert _open(_seal(EXACT)) == EXACT
    with pytest.raises(IntegrityError):
        _open(_flip(SEALED, SEG_AT[1] + 5))
    with pytest.raises(IntegrityError):
        _open(SEALED[:SEG_AT[3]])


class _FailingSource(io.RawIOBase):
    """Yields ``good`` bytes, then fails like a disk read error."""

    def __init__(self, good: int) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(cast(bytearray, buffer))
        if self._left <= 0:
            raise OSError("disk read error")
        n = min(len(view), self._left)
        view[:n] = bytes(n)
        self._left -= n
        return n


class _FailingSink:
    """Accepts ``good`` bytes, then fails like a full disk."""

    def __init__(self, good: int) -> None:
        self._left = good

    def write(self, data: memoryview) -> int:
        if self._left <= 0:
            raise OSError("disk full")
        self._left -= len(data)
        return len(data)


@pytest.mark.parametrize(
    "cpus", [pytest.param(1, id="hashing-inline"), pytest.param(4, id="hashing-thread")]
)
@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"x", id="one-byte"),
        pytest.param(bytes(i % 253 for i in range(S)), id="one-full-segment"),
        pytest.param(bytes(i % 253 for i in range(24 * S)), id="many-exact"),
        pytest.param(bytes(i % 253 for i in range(24 * S + 7)), id="many-partial-final"),
    ],
)
def test_hashing_inline_or_in_a_thread_gives_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, cpus: int, plaintext: bytes,
) -> None:
    monkeypatch.setattr(envelope, "_cpus", lambda: cpus)
    monkeypatch.setattr(envelope, "_PARALLEL_AFTER", 0)  # threads from the first segment
    sealed, result = _kat_seal(plaintext)
    expected = _independent_seal(
        plaintext, key=KEY, prefix=KAT_PREFIX, segment_size=S, object_id=OID,
        purpose=PURPOSE,
    )
    assert sealed == expected
    assert result.ciphertext_sha256 == hashlib.sha256(expected).hexdigest()
    assert result.ciphertext_size == len(expected)
    assert result.plaintext_sha256 == hashlib.sha256(plaintext).hexdigest()
    assert result.plaintext_size == len(plaintext)


@pytest.mark.parametrize(
    "cpus", [pytest.param(1, id="hashing-inline"), pytest.param(4, id="hashing-thread")]
)
@pytest.mark.parametrize(
    ("src", "dst", "message"),
    [
        pytest.param(lambda: _FailingSource(10 * S + 5), io.BytesIO, "read error",
                     id="source-fails"),
        pytest.param(lambda: io.BytesIO(bytes(20 * S)), lambda: _FailingSink(7 * S),
                     "disk full", id="sink-fails"),
    ],
)
def test_a_failing_source_or_sink_propagates_and_stops_the_helper_thread(
    monkeypatch: pytest.MonkeyPatch, cpus: int, src: Callable[[], object],
    dst: Callable[[], object], message: str,
) -> None:
    monkeypatch.setattr(envelope, "_cpus", lambda: cpus)
    monkeypatch.setattr(envelope, "_PARALLEL_AFTER", 0)  # threads from the first segment
    before = threading.active_count()
    with pytest.raises(OSError, match=message):
        seal_stream(cast(BinaryIO, src()), cast(envelope.SupportsWrite, dst()), data_key=KEY,
                    object_id=OID, purpose=PURPOSE, segment_size=S)
    assert threading.active_count() == before


# -- known answer --------------------------------------------------------------------------

KAT_PREFIX = bytes.fromhex("a0a1a2a3a4a5a6")
KAT_PLAIN = bytes(i % 251 for i in range(2 * S + 100))
# SHA-256 of the sealed KAT_PLAIN (KEY, KAT_PREFIX, S, "rec-0001", "quality"); pins format v1.
KAT_SHA256 = "ad692222580d64a39573af3c494e4b8dfeb7612d2d28655e3c26e8e4f390fe75"


def _kat_seal(plaintext: bytes) -> tuple[bytes, envelope.SealResult]:
    out = io.BytesIO()
    result = seal_stream(
        io.BytesIO(plaintext), out, data_key=KEY, object_id=OID, purpose=PURPOSE,
        segment_size=S, _nonce_prefix=KAT_PREFIX,
    )
    return out.getvalue(), result


def test_known_answer_pinned() -> None:
    sealed, result = _kat_seal(KAT_PLAIN)
    assert result.ciphertext_sha256 == KAT_SHA256
    assert hashlib.sha256(sealed).hexdigest() == KAT_SHA256
    assert sealed[:HEADER_SIZE].hex() == "5254445345414c00" "01" "00001000" "a0a1a2a3a4a5a6"


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"x", id="one-byte"),
        pytest.param(KAT_PLAIN[:2 * S], id="exact-multiple"),
        pytest.param(KAT_PLAIN, id="partial-final"),
    ],
)
def test_known_answer_matches_independent_aesgcm(plaintext: bytes) -> None:
    sealed, result = _kat_seal(plaintext)
    expected = _independent_seal(
        plaintext, key=KEY, prefix=KAT_PREFIX, segment_size=S, object_id=OID,
        purpose=PURPOSE,
    )
    assert result.ciphertext_sha256 == hashlib.sha256(expected).hexdigest()
    assert sealed == expected


def test_known_answer_blob_domain() -> None:
    """seal_bytes uses the same layout with the blob domain in the associated data."""
    sealed = seal_bytes(b"caller asked for a callback", data_key=KEY, object_id=OID,
                        label="notes")
    assert sealed[9:13] == S.to_bytes(4, "big")  # short blobs use the smallest segments
    expected = _independent_seal(
        b"caller asked for a callback", key=KEY, prefix=sealed[13:HEADER_SIZE],
        segment_size=S, object_id=OID, purpose="notes", domain=b"retentiond/blob",
    )
    assert sealed == expected


# -- tampering twins -----------------------------------------------------------------------


def _swap(data: bytes, i: int, j: int) -> bytes:
    segs = _segments(data)
    segs[i], segs[j] = segs[j], segs[i]
    return data[:HEADER_SIZE] + b"".join(segs)


def _duplicate(data: bytes, i: int) -> bytes:
    segs = _segments(data)
    segs.insert(i + 1, segs[i])
    return data[:HEADER_SIZE] + b"".join(segs)


def _drop(data: bytes, i: int) -> bytes:
    segs = _segments(data)
    del segs[i]
    return data[:HEADER_SIZE] + b"".join(segs)


TAMPERED: list[object] = [
    # header
    pytest.param(_flip(SEALED, 0), id="flip-magic"),
    pytest.param(_flip(SEALED, 8), id="flip-version"),
    pytest.param(_flip(SEALED, 11), id="flip-segment-size-in-range"),
    pytest.param(_flip(SEALED, 9), id="flip-segment-size-out-of-range"),
    pytest.param(_flip(SEALED, 13), id="flip-nonce-prefix-first"),
    pytest.param(_flip(SEALED, 19), id="flip-nonce-prefix-last"),
    # every segment: first ciphertext byte, a middle byte, the last tag byte
    *(
        pytest.param(_flip(SEALED, at), id=f"flip-segment-{i}-{where}")
        for i, start in enumerate(SEG_AT)
        for where, at in (
            ("first", start),
            ("middle", start + 50),
            ("tag", (SEG_AT[i + 1] if i + 1 < len(SEG_AT) else len(SEALED)) - 1),
        )
    ),
    # truncation
    pytest.param(b"", id="truncate-to-nothing"),
    pytest.param(SEALED[:10], id="truncate-mid-header"),
    pytest.param(SEALED[:HEADER_SIZE], id="truncate-after-header"),
    pytest.param(SEALED[:HEADER_SIZE + 15], id="truncate-shorter-than-tag"),
    pytest.param(SEALED[:SEG_AT[0] + 2000], id="truncate-mid-segment-0"),
    pytest.param(SEALED[:SEG_AT[1]], id="truncate-at-boundary-1"),
    pytest.param(SEALED[:SEG_AT[2]], id="truncate-at-boundary-2"),
    pytest.param(SEALED[:SEG_AT[3]], id="drop-final-segment"),
    pytest.param(SEALED[:SEG_AT[3] + 50], id="truncate-mid-final-segment"),
    pytest.param(SEALED[:-1], id="truncate-last-byte"),
    pytest.param(_drop(SEALED, 1), id="drop-middle-segment"),
    pytest.param(SEALED_EXACT[:HEADER_SIZE + SEG_LEN], id="exact-drop-final-full-segment"),
    pytest.param(SEALED_EXACT[:-1], id="exact-truncate-last-byte"),
    pytest.param(SEALED_EMPTY[:HEADER_SIZE], id="empty-drop-only-segment"),
    # extension
    pytest.param(SEALED + b"\x00", id="append-one-byte"),
    pytest.param(SEALED + bytes(16), id="append-tag-sized"),
    pytest.param(SEALED + _segments(SEALED)[0], id="append-copy-of-segment-0"),
    pytest.param(SEALED_EXACT + b"\x00", id="exact-append-one-byte"),
    pytest.param(SEALED_EXACT + _segments(SEALED_EXACT)[0], id="exact-append-segment"),
    pytest.param(SEALED_EMPTY + SEALED_EMPTY[HEADER_SIZE:], id="empty-append-segment"),
    # reordering
    pytest.param(_swap(SEALED, 0, 1), id="swap-segments-0-1"),
    pytest.param(_swap(SEALED, 2, 3), id="swap-last-two-segments"),
    pytest.param(_swap(SEALED_EXACT, 0, 1), id="exact-swap-segments"),
    pytest.param(_duplicate(SEALED, 1), id="duplicate-segment-1"),
    pytest.param(_duplicate(SEALED, 0), id="duplicate-segment-0"),
    # splice: header of one sealing, segments of another (same key)
    pytest.param(_seal(PLAIN)[:HEADER_SIZE] + SEALED[HEADER_SIZE:], id="splice-other-header"),
    pytest.param(
        SEALED[:SEG_AT[1]] + _seal(PLAIN)[SEG_AT[1]:], id="splice-segments-of-other-seal",
    ),
]


@pytest.mark.parametrize("tampered", TAMPERED)
def test_tampered_object_is_refused(tampered: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        _open(tampered)
    _assert_clean_error(info.value, KEY)


@pytest.mark.parametrize(
    ("kwargs"),
    [
        pytest.param({"key": OTHER_KEY}, id="wrong-data-key"),
        pytest.param({"object_id": "rec-0002"}, id="other-object-id"),
        pytest.param({"purpose": "training"}, id="other-purpose"),
        pytest.param({"object_id": OID + "q", "purpose": "uality"}, id="shifted-fields"),
        pytest.param({"object_id": "rec-000", "purpose": "1quality"}, id="shifted-boundary"),
    ],
)
def test_other_binding_is_refused(kwargs: dict[str, Any]) -> None:
    for sealed in (SEALED, SEALED_EXACT, SEALED_EMPTY):
        with pytest.raises(IntegrityError, match="segment 0") as info:
            _open(sealed, **kwargs)
        _assert_clean_error(info.value, KEY, OTHER_KEY)


def test_untampered_twins_open() -> None:
    """The originals of every tampering case do open."""
    assert _open(SEALED) == PLAIN
    assert _open(SEALED_EXACT) == EXACT
    assert _open(SEALED_EMPTY) == b""


@settings(max_examples=80, deadline=None)
@given(at=st.integers(min_value=0, max_value=len(SEALED) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_refused(at: int, bit: int) -> None:
    tampered = SEALED[:at] + bytes([SEALED[at] ^ (1 << bit)]) + SEALED[at + 1:]
    with pytest.raises(IntegrityError):
        _open(tampered)


@settings(max_examples=80, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(SEALED) - 1))
def test_any_truncation_is_refused(cut: int) -> None:
    with pytest.raises(IntegrityError):
        _open(SEALED[:cut])


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param(b"NOTSEAL\x00\x01\x00\x00\x10\x00" + bytes(7), "bad magic", id="magic"),
        pytest.param(b"RTDSEAL\x00\x02\x00\x00\x10\x00" + bytes(7), "version 2", id="version"),
        pytest.param(
            b"RTDSEAL\x00\x01\x00\x00\x00\x10" + bytes(7), "segment size 16", id="tiny-seg",
        ),
        pytest.param(
            b"RTDSEAL\x00\x01\x01\x00\x00\x01" + bytes(7), "segment size", id="huge-seg",
        ),
    ],
)
def test_bad_header_is_refused_before_any_allocation(header: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        _open(header + SEALED[HEADER_SIZE:])


def test_only_verified_segments_reach_dst() -> None:
    """On failure dst holds exactly the segments that verified before it: callers must
    write to a temporary location and discard it on error."""
    out = io.BytesIO()
    tampered = _flip(SEALED, SEG_AT[2] + 10)
    with pytest.raises(IntegrityError, match="segment 2"):
        open_stream(io.BytesIO(tampered), out, data_key=KEY, object_id=OID, purpose=PURPOSE)
    assert out.getvalue() == PLAIN[:2 * S]


# -- read-back verification (verify_stream) -----------------------------------------------


def _verify(
    sealed: bytes, *, key: bytes = KEY, object_id: str = OID, purpose: str = PURPOSE,
) -> int:
    return verify_stream(io.BytesIO(sealed), data_key=key, object_id=object_id,
                         purpose=purpose)


def test_verify_accepts_what_was_sealed_and_counts_every_byte() -> None:
    for sealed in (SEALED, SEALED_EXACT, SEALED_EMPTY):
        assert _verify(sealed) == len(sealed)
    big = _seal(bytes(range(256)) * 4096, segment_size=DEFAULT_SEGMENT_SIZE)
    assert _verify(big) == len(big)


@pytest.mark.parametrize("tampered", TAMPERED)
def test_verify_refuses_every_tampered_twin(tampered: bytes) -> None:
    with pytest.raises(IntegrityError) as info:
        _verify(tampered)
    _assert_clean_error(info.value, KEY)


@pytest.mark.parametrize(
    ("kwargs"),
    [
        pytest.param({"key": OTHER_KEY}, id="wrong-data-key"),
        pytest.param({"object_id": "rec-0002"}, id="other-object-id"),
        pytest.param({"purpose": "training"}, id="other-purpose"),
    ],
)
def test_verify_refuses_another_binding(kwargs: dict[str, Any]) -> None:
    for sealed in (SEALED, SEALED_EXACT, SEALED_EMPTY):
        with pytest.raises(IntegrityError, match="segment 0"):
            _verify(sealed, **kwargs)


def test_verify_refuses_a_blob() -> None:
    blob = seal_bytes(PLAIN, data_key=KEY, object_id=OID, label=PURPOSE)
    with pytest.raises(IntegrityError):
        _verify(blob)


@settings(max_examples=80, deadline=None)
@given(at=st.integers(min_value=0, max_value=len(SEALED) - 1), bit=st.integers(0, 7))
def test_verify_refuses_any_bit_flip(at: int, bit: int) -> None:
    tampered = SEALED[:at] + bytes([SEALED[at] ^ (1 << bit)]) + SEALED[at + 1:]
    with pytest.raises(IntegrityError):
        _verify(tampered)


# -- small blobs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"rappeler le client lundi", id="short-note"),
        pytest.param(bytes(range(256)) * 1200, id="multi-segment-300KiB"),
    ],
)
def test_blob_round_trip(data: bytes) -> None:
    sealed = seal_bytes(data, data_key=KEY, object_id=OID, label="notes")
    assert open_bytes(sealed, data_key=KEY, object_id=OID, label="notes") == data


NOTE = seal_bytes(b"vip caller", data_key=KEY, object_id=OID, label="notes")


@pytest.mark.parametrize(
    "opener",
    [
        pytest.param(
            lambda: open_bytes(NOTE, data_key=KEY, object_id=OID, label="summary"),
            id="other-label",
        ),
        pytest.param(
            lambda: open_bytes(NOTE, data_key=KEY, object_id="rec-0002", label="notes"),
            id="other-object",
        ),
        pytest.param(
            lambda: open_bytes(NOTE, data_key=OTHER_KEY, object_id=OID, label="notes"),
            id="wrong-key",
        ),
        pytest.param(
            lambda: open_bytes(_flip(NOTE, len(NOTE) - 3), data_key=KEY, object_id=OID,
                               label="notes"),
            id="flipped",
        ),
        pytest.param(
            lambda: open_bytes(NOTE[:-1], data_key=KEY, object_id=OID, label="notes"),
            id="truncated",
        ),
        pytest.param(
            lambda: _open(NOTE, purpose="notes"), id="blob-opened-as-recording",
        ),
        pytest.param(
            lambda: open_bytes(_seal(b"vip caller", purpose="notes"), data_key=KEY,
                               object_id=OID, label="notes"),
            id="recording-opened-as-blob",
        ),
    ],
)
def test_blob_tampering_is_refused(opener: Callable[[], object]) -> None:
    with pytest.raises(IntegrityError) as info:
        opener()
    _assert_clean_error(info.value, KEY, OTHER_KEY)


def test_blob_size_limit() -> None:
    with pytest.raises(ValueError, match="at most"):
        seal_bytes(bytes(envelope.MAX_BLOB_SIZE + 1), data_key=KEY, object_id=OID,
                   label="notes")


# -- argument checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"segment_size": 4095}, "segment_size", id="segment-too-small"),
        pytest.param({"segment_size": 16 * 1024 * 1024 + 1}, "segment_size", id="seg-too-big"),
        pytest.param({"data_key": bytes(16)}, "32 bytes", id="aes-128-key"),
        pytest.param({"object_id": ""}, "object_id", id="empty-object-id"),
        pytest.param({"purpose": ""}, "purpose", id="empty-purpose"),
        pytest.param({"purpose": "p" * 1025}, "purpose", id="purpose-too-long"),
        pytest.param({"_nonce_prefix": bytes(8)}, "nonce prefix", id="bad-prefix"),
    ],
)
def test_seal_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, Any] = {
        "data_key": KEY, "object_id": OID, "purpose": PURPOSE, "segment_size": S,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        seal_stream(io.BytesIO(b"x"), io.BytesIO(), **args)


def test_open_rejects_bad_key_length() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _open(SEALED, key=bytes(31))


@pytest.mark.parametrize(
    ("plaintext_size", "segment_size", "expected"),
    [
        pytest.param(0, S, 20 + 16, id="empty"),
        pytest.param(1, S, 20 + 1 + 16, id="one"),
        pytest.param(S, S, 20 + S + 16, id="one-segment"),
        pytest.param(S + 1, S, 20 + S + 1 + 32, id="two-segments"),
        pytest.param(2**31, 256 * 1024, 20 + 2**31 + 16 * 8192, id="2GiB"),
    ],
)
def test_ciphertext_size(plaintext_size: int, segment_size: int, expected: int) -> None:
    assert ciphertext_size(plaintext_size, segment_size) == expected


# -- memory --------------------------------------------------------------------------------

_PATTERN = memoryview(bytes(range(256)) * 4096)  # 1 MiB


class _Synthetic(io.RawIOBase):
    """``size`` bytes of a repeating pattern, without holding them in memory."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(cast(bytearray, buffer))
        n = min(len(view), self._left, len(_PATTERN))
        view[:n] = _PATTERN[:n]
        self._left -= n
        return n


class _HashSink:
    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: memoryview) -> int:
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def test_streaming_64_mib_keeps_memory_flat(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    sealed_path = tmp_path / "sealed"
    tracemalloc.start()
    try:
        with sealed_path.open("wb") as dst:
            sealed = seal_stream(
                cast(BinaryIO, _Synthetic(size)), dst, data_key=KEY, object_id=OID, purpose=PURPOSE,
            )
        _, seal_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sink = _HashSink()
        with sealed_path.open("rb") as src:
            opened = open_stream(src, sink, data_key=KEY, object_id=OID, purpose=PURPOSE)
        _, open_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sealed.plaintext_size == opened.plaintext_size == size
    assert sealed.plaintext_sha256 == opened.plaintext_sha256 == sink.hash.hexdigest()
    assert sealed.ciphertext_size == sealed_path.stat().st_size == ciphertext_size(size)
    # three segment buffers of 256 KiB plus small change
    assert seal_peak < 3 * 1024 * 1024, seal_peak
    assert open_peak < 3 * 1024 * 1024, open_peak
