"""The deletion-proof log end to end over real stores: appends in batches across tile
boundaries, proofs, offline verification, tampering of every kind, and crashes."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retentiond.adapters.localfs_proofs import FileProofStore
from retentiond.adapters.memory_proofs import MemoryProofStore
from retentiond.core import merkle, tiles
from retentiond.core.canonical import canonical_json
from retentiond.crypto.signing import (
    NoteSigner,
    NoteVerifier,
    generate_signing_key,
    open_note,
    sign_note,
)
from retentiond.errors import ConfigError, NotFoundError, ProofError
from retentiond.ports import ProofStore
from retentiond.service.prooflog import (
    Checkpoint,
    InclusionProof,
    ProofLog,
    VerifiedLog,
    verify_log,
)

ORIGIN = "retentiond.test/deletions"
SKEY, VKEY = generate_signing_key(ORIGIN)
SIGNER = NoteSigner.from_text(SKEY)
VERIFIER = NoteVerifier.from_text(VKEY)
OTHER_SIGNER = NoteSigner.from_text(generate_signing_key(ORIGIN)[0])  # same name, other key


def rec(i: int, tag: str = "a") -> bytes:
    """A small deletion record (canonical JSON)."""
    return canonical_json({"type": "deletion", "object_id": f"{tag}{i:06d}"})


def ref_root(entries: list[bytes]) -> bytes:
    return merkle.root_from_hashes([merkle.leaf_hash(e) for e in entries])


def new_log(store: ProofStore, *, signer: NoteSigner | None = SIGNER) -> ProofLog:
    return ProofLog(store, origin=ORIGIN, verifier=VERIFIER, signer=signer)


def verify(store: ProofStore, **kw: bytes | None) -> VerifiedLog:
    return verify_log(store, verifier=VERIFIER, origin=ORIGIN, **kw)


def snapshot(store: ProofStore) -> dict[str, bytes | None]:
    return {p: store.read(p) for p in store.list()}


def copy_store(src: ProofStore) -> MemoryProofStore:
    dst = MemoryProofStore()
    for p in src.list():
        data = src.read(p)
        assert data is not None
        dst.replace(p, data)
    return dst


STORES = [
    pytest.param(lambda p: FileProofStore(p / "proofs"), id="file"),
    pytest.param(lambda p: MemoryProofStore(), id="memory"),
]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ProofStore:
    factory: Callable[[Path], ProofStore] = request.param
    return factory(tmp_path)


BATCHES = [100, 200, 310]  # sizes 100, 300, 610: full and stale partial tiles, levels 0-1


@pytest.fixture
def built(store: ProofStore) -> tuple[ProofStore, list[bytes], list[bytes]]:
    """A log of 610 entries appended in 3 batches; returns (store, entries, notes)."""
    log = new_log(store)
    entries: list[bytes] = []
    notes: list[bytes] = []
    for n in BATCHES:
        batch = [rec(len(entries) + i) for i in range(n)]
        log.append(batch)
        entries += batch
        notes.append(log.checkpoint_note())
    return store, entries, notes


# -- reading and writing -----------------------------------------------------------------


def test_empty_log(store: ProofStore) -> None:
    log = new_log(store)
    assert log.checkpoint() == Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT)
    assert log.size() == 0
    assert list(log.entries()) == []
    assert log.find(rec(0)) is None
    assert log.append([]) == []
    with pytest.raises(ProofError, match="checkpoint: missing"):
        verify(store)
    with pytest.raises(NotFoundError):
        log.inclusion_proof(0)
    assert log.initialize().size == 0
    note = log.checkpoint_note()
    assert open_note(note, VERIFIER) == f"{ORIGIN}\n0\n{base64.b64encode(merkle.EMPTY_ROOT).decode()}\n".encode()
    log.initialize()
    assert log.checkpoint_note() == note
    assert verify(store) == VerifiedLog(0, merkle.EMPTY_ROOT, note, 0)


def test_checkpoint_text_format() -> None:
    cp = Checkpoint(ORIGIN, 610, bytes(range(32)))
    text = cp.text()
    assert text == (f"{ORIGIN}\n610\n" + base64.b64encode(bytes(range(32))).decode() + "\n").encode()
    assert Checkpoint.parse(text, origin=ORIGIN) == cp
    assert Checkpoint.parse(text + b"extension line\n", origin=ORIGIN) == cp


@pytest.mark.parametrize(("text", "message"), [
    pytest.param(b"other/origin\n1\n" + base64.b64encode(bytes(32)) + b"\n", "origin",
                 id="origin"),
    pytest.param(f"{ORIGIN}\n01\n".encode() + base64.b64encode(bytes(32)) + b"\n", "size",
                 id="leading-zero"),
    pytest.param(f"{ORIGIN}\n-1\n".encode() + base64.b64encode(bytes(32)) + b"\n", "size",
                 id="negative"),
    pytest.param(f"{ORIGIN}\n1\n".encode() + base64.b64encode(bytes(31)) + b"\n", "root",
                 id="short-root"),
    pytest.param(f"{ORIGIN}\n1\n".encode() + base64.b64encode(bytes(32)), "newline",
                 id="no-final-newline"),
    pytest.param(f"{ORIGIN}\n1\n".encode(), "lines", id="no-root"),
    pytest.param(f"{ORIGIN}\n1\n".encode() + base64.b64encode(bytes(32)) + b"\n\n", "extension",
                 id="empty-extension"),
])
def test_checkpoint_parse_rejects(text: bytes, message: str) -> None:
    with pytest.raises(ProofError, match=message):
        Checkpoint.parse(text, origin=ORIGIN)


def test_append_in_batches_across_256(store: ProofStore) -> None:
    log = new_log(store)
    entries: list[bytes] = []
    for n in [1, 2, 3, 249, 1, 255, 2, 257, 300]:  # sizes 1 .. 1070, every 256 edge
        batch = [rec(len(entries) + i) for i in range(n)]
        assert log.append(batch) == list(range(len(entries), len(entries) + n))
        entries += batch
        cp = log.checkpoint()
        assert (cp.size, cp.root) == (len(entries), ref_root(entries))
        result = verify(store)
        assert (result.size, result.root, result.entries, result.uncommitted) == (
            len(entries), cp.root, len(entries), ())
        for i in {0, len(entries) // 2, len(entries) - 1, 255, 256} & set(range(len(entries))):
            log.inclusion_proof(i).verify()
    assert list(log.entries()) == entries
    assert list(log.entries(250, 260)) == entries[250:260]
    assert log.entry(1069) == entries[1069]
    root = ref_root(entries)
    for i, e in enumerate(entries):
        p = log.inclusion_proof(i)
        assert p.leaf_hash == merkle.leaf_hash(e)
        merkle.verify_inclusion(index=i, size=len(entries), leaf=merkle.leaf_hash(e),
                                proof=p.hashes, root=root)


def test_append_across_65536() -> None:
    store = MemoryProofStore()
    log = new_log(store)
    entries: list[bytes] = []
    hashes: list[bytes] = []
    for n in [65530, 5, 1, 2, 300]:  # sizes 65530, 65535, 65536, 65538, 65838
        batch = [rec(len(entries) + i) for i in range(n)]
        log.append(batch)
        entries += batch
        hashes += [merkle.leaf_hash(e) for e in batch]
        assert log.checkpoint().root == merkle.root_from_hashes(hashes)
        for i in {0, 255, 256, 65535, len(entries) - 1} & set(range(len(entries))):
            log.inclusion_proof(i).verify()
        if len(entries) == 65536:
            assert "tile/2/000.p/1" in store.list("tile/2/")
            assert verify(store).size == 65536
    assert verify(store).entries == 65838
    assert log.find(entries[65600], start=65000) == 65600


def test_consistency_between_any_two_sizes(store: ProofStore) -> None:
    log = new_log(store)
    entries: list[bytes] = []
    roots = {0: merkle.EMPTY_ROOT}
    notes: dict[int, bytes] = {}
    sizes = [1, 2, 3, 7, 8, 255, 256, 257, 511, 512, 513, 700]
    for size in sizes:
        batch = [rec(i) for i in range(len(entries), size)]
        log.append(batch)
        entries += batch
        roots[size] = ref_root(entries)
        notes[size] = log.checkpoint_note()
    for new in [0, *sizes]:
        for old in [0, *sizes]:
            if old > new:
                continue
            assert log.tree_hash(old) == roots[old]
            merkle.verify_consistency(old_size=old, new_size=new, old_root=roots[old],
                                      new_root=roots[new],
                                      proof=log.consistency_proof(old, new))
    for size, note in notes.items():
        assert verify(store, last_checkpoint=note).size == 700, size
    with pytest.raises(NotFoundError):
        log.consistency_proof(5, 701)


def test_inclusion_proof_json(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, entries, _ = built
    proof = new_log(store).inclusion_proof(300)
    doc = proof.to_json()
    assert doc["index"] == 300
    assert doc["tree_size"] == 610
    assert doc["leaf_hash"] == base64.b64encode(merkle.leaf_hash(entries[300])).decode()
    hashes = doc["hashes"]
    assert isinstance(hashes, list)
    assert [base64.b64decode(h) for h in hashes] == list(proof.hashes)
    note = doc["checkpoint"]
    assert isinstance(note, str)
    cp = Checkpoint.parse(open_note(note.encode(), VERIFIER), origin=ORIGIN)
    assert base64.b64encode(cp.root).decode() == doc["root"]
    bad = InclusionProof(300, 610, proof.root, merkle.leaf_hash(entries[301]), proof.hashes,
                         proof.checkpoint)
    with pytest.raises(ProofError):
        bad.verify()


def test_find(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, entries, _ = built
    log = new_log(store)
    assert log.find(entries[5]) == 5
    assert log.find(entries[5], start=5) == 5
    assert log.find(entries[5], start=6) is None
    assert log.find(entries[609], start=300) == 609
    assert log.find(rec(5, tag="z")) is None
    assert log.find(entries[0], start=10_000) is None


def test_append_validates_entries_and_writes_nothing(
    built: tuple[ProofStore, list[bytes], list[bytes]],
) -> None:
    store, _, _ = built
    before = snapshot(store)
    log = new_log(store)
    for bad, message in [
        (b'{"type": "deletion"}', "new entry 1 of 2: not canonical"),
        (b'{"type":"other"}', '"type" is not "deletion"'),
        (b"[1]", "not a JSON object"),
        (b'{"type":"deletion","x":1.5}', "floats"),
        (b"\xff", "not valid UTF-8 JSON"),
        (canonical_json({"type": "deletion", "pad": "x" * 70_000}), "the limit is 65535"),
    ]:
        with pytest.raises(ProofError, match=message):
            log.append([rec(999), bad])
    assert snapshot(store) == before


def test_read_only_and_mismatched_keys(store: ProofStore) -> None:
    with pytest.raises(ProofError, match="read-only"):
        new_log(store, signer=None).append([rec(0)])
    with pytest.raises(ConfigError, match="does not match"):
        new_log(store, signer=OTHER_SIGNER)


def test_right_edge_corruption_refuses_append(
    built: tuple[ProofStore, list[bytes], list[bytes]],
) -> None:
    store, _, _ = built
    data = store.read("tile/0/002.p/98")
    assert data is not None
    store.replace("tile/0/002.p/98", data[:-1] + bytes([data[-1] ^ 1]))
    before = snapshot(store)
    with pytest.raises(ProofError, match="refusing to append"):
        new_log(store).append([rec(1000)])
    assert snapshot(store) == before


# -- tampering ---------------------------------------------------------------------------


def _fails(store: ProofStore, **kw: bytes | None) -> str:
    with pytest.raises(ProofError) as info:
        verify(store, **kw)
    message = str(info.value)
    assert message
    assert "\n" not in message
    return message


def test_flip_a_byte_in_every_file(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, _, _ = built
    files = store.list()
    assert "intent" in files
    assert "tile/0/000.p/100" in files  # a stale partial
    checked = 0
    for path in files:
        data = store.read(path)
        assert data
        for pos in sorted({0, len(data) // 2, len(data) - 1}):
            store.replace(path, data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :])
            _fails(store)
            checked += 1
        store.replace(path, data)
    assert checked >= 3 * len(files) - 2
    assert verify(store).size == 610


def _delete(store: ProofStore, path: str) -> None:
    if isinstance(store, FileProofStore):
        (store.root / path).unlink()
    else:
        assert isinstance(store, MemoryProofStore)
        store.delete(path)


def test_deleting_a_needed_file_fails(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, _, _ = built
    needed = {"checkpoint"} | {t.path for t in tiles.tiles_for_size(610)} \
        | {t.path for t in tiles.bundles_for_size(610)}
    for path in store.list():
        data = store.read(path)
        assert data is not None
        _delete(store, path)
        if path in needed:
            message = _fails(store)
            assert path in message
            assert "missing" in message
        else:  # stale partials and the intent are optional
            assert path == "intent" or ".p/" in path
            verify(store)
        store.replace(path, data)


@pytest.mark.parametrize(("path", "data", "message"), [
    pytest.param("notes.txt", b"hi", "unexpected file", id="stray-file"),
    pytest.param("tile/0/000.bak", b"x", "unexpected file", id="backup-file"),
    pytest.param("tile/0/0000", b"x" * 32, "unexpected file", id="non-canonical-name"),
    pytest.param("tile/entries/999", b"", "beyond the checkpoint", id="bundle-beyond"),
    pytest.param("tile/3/000.p/1", bytes(32), "beyond the checkpoint", id="level-beyond"),
    pytest.param("tile/0/002.p/99", bytes(99 * 32), "beyond the checkpoint", id="wider-partial"),
    pytest.param("tile/0/003", bytes(256 * 32), "beyond the checkpoint", id="full-beyond"),
    pytest.param("tile/0/000.p/7", bytes(7 * 32), "stale partial tile", id="bad-stale-tile"),
    pytest.param("tile/entries/001.p/3", b"\x00\x00" * 3, "stale partial bundle",
                 id="bad-stale-bundle"),
])
def test_extra_files_fail(
    built: tuple[ProofStore, list[bytes], list[bytes]], path: str, data: bytes, message: str,
) -> None:
    store, _, _ = built
    store.replace(path, data)
    assert message in _fails(store)


def test_a_correct_stale_partial_is_accepted(
    built: tuple[ProofStore, list[bytes], list[bytes]],
) -> None:
    store, entries, _ = built
    full = store.read("tile/0/001")
    assert full is not None
    store.replace("tile/0/001.p/7", full[: 7 * 32])
    store.replace("tile/entries/001.p/7", tiles.encode_bundle(entries[256:263]))
    verify(store)


def _rewrite_bundle(store: ProofStore, path: str, change: Callable[[list[bytes]], None]) -> None:
    data = store.read(path)
    assert data is not None
    entries = tiles.decode_bundle(data)
    change(entries)
    store.replace(path, tiles.encode_bundle(entries))


def _swap(i: int, j: int) -> Callable[[list[bytes]], None]:
    def change(entries: list[bytes]) -> None:
        entries[i], entries[j] = entries[j], entries[i]
    return change


@pytest.mark.parametrize(("path", "change", "message"), [
    pytest.param("tile/entries/000", _swap(3, 4), "entry 3", id="swap-in-bundle"),
    pytest.param("tile/entries/002.p/98", _swap(0, 97), "entry 512", id="swap-in-partial"),
    pytest.param("tile/entries/000", lambda e: e.pop(10), "255 entries, expected 256",
                 id="remove"),
    pytest.param("tile/entries/001", lambda e: e.append(rec(5000)), "unexpected bytes",
                 id="add"),
    pytest.param("tile/entries/002.p/98", lambda e: e.__setitem__(5, rec(5000)), "entry 517",
                 id="replace-with-valid-record"),
    pytest.param("tile/entries/000", lambda e: e.__setitem__(7, b'{"type": "deletion"}'),
                 "entry 7: not canonical", id="not-canonical"),
    pytest.param("tile/entries/000", lambda e: e.__setitem__(7, b'{"type":"audit"}'),
                 'entry 7: "type" is not "deletion"', id="wrong-type"),
])
def test_changed_entries_fail(
    built: tuple[ProofStore, list[bytes], list[bytes]], path: str,
    change: Callable[[list[bytes]], None], message: str,
) -> None:
    store, _, _ = built
    _rewrite_bundle(store, path, change)
    assert message in _fails(store)


def test_swap_across_bundles_fails(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, entries, _ = built
    _rewrite_bundle(store, "tile/entries/000", lambda e: e.__setitem__(0, entries[300]))
    _rewrite_bundle(store, "tile/entries/001", lambda e: e.__setitem__(44, entries[0]))
    assert "entry 0" in _fails(store)


@pytest.mark.parametrize("path", ["tile/entries/001", "tile/entries/002.p/98"])
def test_truncated_bundle_fails(
    built: tuple[ProofStore, list[bytes], list[bytes]], path: str,
) -> None:
    store, _, _ = built
    data = store.read(path)
    assert data is not None
    store.replace(path, data[:-1])
    message = _fails(store)
    assert path in message
    assert "truncated" in message


def test_consistently_rewritten_tiles_fail_on_the_signed_root(
    built: tuple[ProofStore, list[bytes], list[bytes]],
) -> None:
    store, entries, _ = built
    forged = MemoryProofStore()
    log = ProofLog(forged, origin=ORIGIN, verifier=OTHER_SIGNER.verifier(), signer=OTHER_SIGNER)
    altered = [*entries[:42], rec(42, tag="forged"), *entries[43:]]
    done = 0
    for n in BATCHES:
        log.append(altered[done : done + n])
        done += n
    for path in forged.list("tile/"):
        data = forged.read(path)
        assert data is not None
        store.replace(path, data)
    assert "root does not match" in _fails(store)


def test_checkpoint_signed_by_another_key_fails(
    built: tuple[ProofStore, list[bytes], list[bytes]],
) -> None:
    store, _, _ = built
    note = store.read("checkpoint")
    assert note is not None
    text = open_note(note, VERIFIER)
    store.replace("checkpoint", sign_note(text, OTHER_SIGNER))
    assert "not signed by a known key" in _fails(store)
    other_name = NoteSigner.from_text(generate_signing_key("someone.else/log")[0])
    store.replace("checkpoint", sign_note(text, other_name))
    assert "not signed by a known key" in _fails(store)


@pytest.mark.parametrize(("old", "new"), [
    pytest.param(b"\n610\n", b"\n609\n", id="size"),
    pytest.param(b"\n610\n", b"\n611\n", id="size-up"),
])
def test_altered_checkpoint_fails(
    built: tuple[ProofStore, list[bytes], list[bytes]], old: bytes, new: bytes,
) -> None:
    store, _, _ = built
    note = store.read("checkpoint")
    assert note is not None
    store.replace("checkpoint", note.replace(old, new))
    assert "invalid signature" in _fails(store)


def test_altered_root_fails(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, _, _ = built
    note = store.read("checkpoint")
    assert note is not None
    lines = note.split(b"\n")
    lines[2] = base64.b64encode(bytes(32))
    store.replace("checkpoint", b"\n".join(lines))
    assert "invalid signature" in _fails(store)


def test_wrong_origin_fails(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, _, _ = built
    with pytest.raises(ProofError, match="origin"):
        verify_log(store, verifier=VERIFIER, origin="someone.else/log")
    assert verify_log(store, verifier=VERIFIER).size == 610  # origin read from the note


def test_older_checkpoint_is_caught(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, _, notes = built
    newest = notes[-1]
    store.replace("checkpoint", notes[1])  # back to size 300
    assert "shrank from 610 to 300" in _fails(store, last_checkpoint=newest)
    assert "rolled back" in _fails(store)  # the intent remembers 610
    before = snapshot(store)
    with pytest.raises(ProofError, match="rolled back"):
        new_log(store).append([rec(9000)])
    assert snapshot(store) == before
    # Someone who also removes the intent and the newer files is caught by last_checkpoint.
    for path in store.list():
        t = None if path in ("checkpoint", "intent") else tiles.parse_tile_path(path)
        if path == "intent" or (t is not None and not tiles.is_covered(t, 300)):
            _delete(store, path)
    verify(store)
    assert "shrank" in _fails(store, last_checkpoint=newest)


def test_rewriting_history_after_a_rollback_fails_closed(
    built: tuple[ProofStore, list[bytes], list[bytes]],
) -> None:
    store, _, notes = built
    store.replace("checkpoint", notes[1])  # size 300, and no intent to explain the rest
    _delete(store, "intent")
    before = snapshot(store)
    with pytest.raises(ProofError, match="refusing to rewrite history"):
        new_log(store).append([rec(i, tag="other") for i in range(310)])
    assert snapshot(store) == before


def test_fork_is_caught(built: tuple[ProofStore, list[bytes], list[bytes]]) -> None:
    store, entries, notes = built
    fork = MemoryProofStore()
    log = new_log(fork)
    log.append(entries[:100])
    log.append([rec(i, tag="fork") for i in range(100, 700)])
    assert verify(fork, last_checkpoint=notes[0]).size == 700  # shared first 100 entries
    for note in notes[1:]:
        assert "forked" in _fails(fork, last_checkpoint=note)
    same_size = MemoryProofStore()
    log = new_log(same_size)
    log.append([*entries[:609], rec(609, tag="fork")])
    assert "forked" in _fails(same_size, last_checkpoint=notes[-1])
    assert verify(store, last_checkpoint=notes[0]).size == 610


def test_last_checkpoint_must_be_signed(
    built: tuple[ProofStore, list[bytes], list[bytes]],
) -> None:
    store, _, notes = built
    forged = sign_note(open_note(notes[0], VERIFIER), OTHER_SIGNER)
    assert "last verified checkpoint" in _fails(store, last_checkpoint=forged)


# -- crashes -----------------------------------------------------------------------------


class Crash(Exception):
    pass


class CrashingStore:
    """A ProofStore that dies on its ``crash_at``-th write (0-based), before or after
    performing it: a power cut at any point of an append."""

    def __init__(self, inner: ProofStore, *, crash_at: int, after: bool) -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.after = after
        self.writes = 0
        self._lock = threading.Lock()  # an append writes its tiles from several threads

    @property
    def location(self) -> str:
        return self.inner.location

    def read(self, path: str) -> bytes | None:
        return self.inner.read(path)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def _write(self, do: Callable[[], None]) -> None:
        with self._lock:
            n = self.writes
            self.writes += 1
        if n == self.crash_at and not self.after:
            raise Crash(n)
        do()
        if n == self.crash_at:
            raise Crash(n)

    def write_once(self, path: str, data: bytes) -> None:
        self._write(lambda: self.inner.write_once(path, data))

    def replace(self, path: str, data: bytes) -> None:
        self._write(lambda: self.inner.replace(path, data))


BASE = [rec(i) for i in range(250)]
BATCH = [rec(250 + i) for i in range(10)]  # crosses 256: full bundle, full tile, level 1


def _base_store() -> MemoryProofStore:
    store = MemoryProofStore()
    new_log(store).append(BASE)
    return store


def _writes_of_one_append() -> int:
    counter = CrashingStore(_base_store(), crash_at=-1, after=False)
    new_log(counter).append(BATCH)
    return counter.writes


def _crash_points() -> Iterator[object]:
    for k in range(_writes_of_one_append()):
        for after in (False, True):
            yield pytest.param(k, after, id=f"write{k}-{'after' if after else 'before'}")


@pytest.mark.parametrize(("crash_at", "after"), list(_crash_points()))
def test_crash_then_retry_same_records(crash_at: int, after: bool) -> None:
    inner = _base_store()
    with pytest.raises(Crash):
        new_log(CrashingStore(inner, crash_at=crash_at, after=after)).append(BATCH)
    state = verify(inner)  # the previous (or, if it got written, the new) checkpoint holds
    assert state.size in (250, 260)
    log = new_log(inner)
    missing = [r for r in BATCH if log.find(r, start=250) is None]
    assert missing in ([], BATCH)
    log.append(missing)
    result = verify(inner)
    assert (result.size, result.uncommitted) == (260, ())
    assert list(log.entries()) == BASE + BATCH
    assert log.checkpoint().root == ref_root(BASE + BATCH)


@pytest.mark.parametrize("retry", [
    pytest.param(10, id="same-count"), pytest.param(3, id="fewer"),
    pytest.param(40, id="more"),
])
@pytest.mark.parametrize("crash_at", [1, 2, 4, 5])
def test_crash_then_retry_other_records(crash_at: int, retry: int) -> None:
    inner = _base_store()
    with pytest.raises(Crash):
        new_log(CrashingStore(inner, crash_at=crash_at, after=True)).append(BATCH)
    other = [rec(250 + i, tag="b") for i in range(retry)]
    log = new_log(inner)
    log.append(other)
    result = verify(inner)
    assert result.size == 250 + retry
    assert list(log.entries()) == BASE + other
    if retry >= len(BATCH):
        assert result.uncommitted == ()
    # Growing past what the crashed append left behind cleans every leftover.
    more = [rec(i, tag="c") for i in range(20)]
    log.append(more)
    result = verify(inner)
    assert (result.size, result.uncommitted) == (270 + retry, ())
    assert log.checkpoint().root == ref_root(BASE + other + more)


def test_leftovers_are_reported_until_overwritten() -> None:
    inner = _base_store()
    with pytest.raises(Crash):
        new_log(CrashingStore(inner, crash_at=5, after=True)).append(BATCH)
    before = verify(inner)
    assert before.size == 250
    assert "tile/entries/000" in before.uncommitted
    assert "tile/0/000" in before.uncommitted


def test_crash_on_a_file_store(tmp_path: Path) -> None:
    inner = FileProofStore(tmp_path / "proofs")
    new_log(inner).append(BASE)
    with pytest.raises(Crash):
        new_log(CrashingStore(inner, crash_at=3, after=False)).append(BATCH)
    log = new_log(inner)
    log.append([r for r in BATCH if log.find(r, start=250) is None])
    assert verify(inner).size == 260
    assert not [p for p in (tmp_path / "proofs").rglob(".*")]
