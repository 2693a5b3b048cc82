"""``ProofLog.append`` without needless reads and with its tiles written together: the
right edge kept in memory (used only while the checkpoint is the one this object wrote),
tiles written concurrently and the checkpoint strictly after all of them, and on S3 the
existence of new files found by listing. The bytes written never change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from retentiond.adapters.memory_proofs import MemoryProofStore
from retentiond.adapters.s3_proofs import S3ProofStore
from retentiond.core import tiles
from retentiond.errors import ProofError, TransientStorageError
from retentiond.ports import ProofStore
from retentiond.service.prooflog import CHECKPOINT_PATH, INTENT_PATH, ListingProofStore
from tests.cephrgw import ceph_rgw
from tests.integration.test_prooflog import new_log, rec, ref_root, snapshot, verify
from tests.s3server import S3Server, moto_s3

__all__ = ["ceph_rgw", "moto_s3"]


class Recorder:
    """A ProofStore that records every call (thread-safe), with optional slow or failing
    writes."""

    def __init__(self, inner: ProofStore, *, delay: float = 0.0,
                 fail: Callable[[str], bool] | None = None) -> None:
        self.inner = inner
        self.delay = delay
        self.fail = fail
        self.lock = threading.Lock()
        self.reads: list[str] = []
        self.writes: list[tuple[str, float, float]] = []  # path, start, end

    @property
    def location(self) -> str:
        return self.inner.location

    def read(self, path: str) -> bytes | None:
        with self.lock:
            self.reads.append(path)
        return self.inner.read(path)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def _write(self, path: str, do: Callable[[], None]) -> None:
        start = time.monotonic()
        if path.startswith("tile/"):
            time.sleep(self.delay)
            if self.fail is not None and self.fail(path):
                raise TransientStorageError(f"{path}: connection reset")
        do()
        with self.lock:
            self.writes.append((path, start, time.monotonic()))

    def write_once(self, path: str, data: bytes) -> None:
        self._write(path, lambda: self.inner.write_once(path, data))

    def replace(self, path: str, data: bytes) -> None:
        self._write(path, lambda: self.inner.replace(path, data))


def _edge_paths(size: int) -> set[str]:
    """The right-edge files a log of ``size`` is checked against before an append."""
    out = {t.path for t in tiles.tiles_for_size(size) if t.is_partial}
    if size % tiles.TILE_WIDTH:
        out.add(tiles.TileId(tiles.ENTRIES, size // 256, size % 256).path)
    return out


def test_the_next_append_reads_no_right_edge_tile() -> None:
    store = Recorder(MemoryProofStore())
    log = new_log(store)
    log.append([rec(i) for i in range(300)])
    store.reads.clear()
    log.append([rec(300 + i) for i in range(10)])
    edge = _edge_paths(300)
    assert len(edge) == 3 and not edge & set(store.reads)
    assert store.reads.count(CHECKPOINT_PATH) == 1  # read once, compared with the cache
    # a new object (another process, a restart) checks the edge against the checkpoint
    store.reads.clear()
    new_log(store).append([rec(310)])
    assert _edge_paths(310) <= set(store.reads)
    assert verify(store.inner).size == 311


def test_cached_appends_write_the_same_bytes() -> None:
    batches = [100, 200, 310, 1, 255]
    one, fresh = MemoryProofStore(), MemoryProofStore()
    log, done = new_log(one), 0
    for n in batches:
        batch = [rec(done + i) for i in range(n)]
        log.append(batch)
        new_log(fresh).append(batch)
        done += n
    assert snapshot(one) == snapshot(fresh)  # Ed25519 signatures are deterministic
    assert verify(one).root == ref_root([rec(i) for i in range(done)])


def test_another_writer_in_between_is_seen() -> None:
    store = Recorder(MemoryProofStore())
    a, b = new_log(store), new_log(store)
    first, second, third = ([rec(i, tag=t) for i in range(n)]
                            for t, n in (("a", 300), ("b", 20), ("c", 5)))
    a.append(first)
    b.append(second)  # a's cached edge is for size 300: no longer the checkpoint
    store.reads.clear()
    assert a.append(third) == list(range(320, 325))
    assert _edge_paths(320) <= set(store.reads)
    result = verify(store.inner)
    assert result.size == 325 and result.root == ref_root(first + second + third)
    assert list(a.entries()) == first + second + third


def test_a_failed_append_forgets_the_edge_and_is_retried() -> None:
    failures = [1]

    def once(path: str) -> bool:
        if path.startswith("tile/0/") and failures:
            failures.pop()
            return True
        return False

    store = Recorder(MemoryProofStore())
    log = new_log(store)
    log.append([rec(i) for i in range(100)])
    store.fail = once
    before = store.inner.read(CHECKPOINT_PATH)
    batch = [rec(100 + i) for i in range(200)]
    with pytest.raises(TransientStorageError, match="connection reset"):
        log.append(batch)
    assert store.inner.read(CHECKPOINT_PATH) == before  # nothing published
    assert verify(store.inner).size == 100  # leftovers of the failed append are explained
    store.reads.clear()
    assert log.append(batch) == list(range(100, 300))
    assert _edge_paths(100) <= set(store.reads)  # the edge was read again
    result = verify(store.inner)
    assert (result.size, result.uncommitted) == (300, ())
    assert result.root == ref_root([rec(i) for i in range(300)])


def test_tiles_are_written_together_and_the_checkpoint_after_them() -> None:
    store = Recorder(MemoryProofStore(), delay=0.05)
    new_log(store).append([rec(i) for i in range(1100)])  # 5 bundles, 5 tiles, level 1
    tile_writes = [w for w in store.writes if w[0].startswith("tile/")]
    assert len(tile_writes) == 11
    others = [w for w in store.writes if not w[0].startswith("tile/")]
    assert [w[0] for w in others] == [INTENT_PATH, CHECKPOINT_PATH, INTENT_PATH]
    intent, checkpoint, done = others
    assert intent[2] <= min(start for _, start, _ in tile_writes)
    assert checkpoint[1] >= max(end for _, _, end in tile_writes)
    assert done[1] >= checkpoint[2]
    # concurrently: far less than 11 x 50 ms one after the other
    assert max(end for _, _, end in tile_writes) - intent[2] < 11 * 0.05 * 0.6
    assert verify(store.inner).size == 1100


def test_a_failing_tile_stops_the_append_before_the_checkpoint() -> None:
    store = Recorder(MemoryProofStore(), fail=lambda p: p.startswith("tile/entries/002"))
    log = new_log(store)
    with pytest.raises(TransientStorageError):
        log.append([rec(i) for i in range(700)])
    assert CHECKPOINT_PATH not in [w[0] for w in store.writes]
    assert store.inner.read(CHECKPOINT_PATH) is None
    store.fail = None
    log.append([rec(i) for i in range(700)])
    assert verify(store.inner).root == ref_root([rec(i) for i in range(700)])


# -- S3: existence by listing, writes without a read first -----------------------------------


@pytest.fixture(params=[pytest.param("moto_s3", id="moto"),
                        pytest.param("ceph_rgw", id="rgw", marks=pytest.mark.rgw)])
def s3store(request: pytest.FixtureRequest) -> tuple[S3ProofStore, Any]:
    server: S3Server = request.getfixturevalue(request.param)
    client = server.client()
    bucket = server.bucket(client=client)
    return S3ProofStore(bucket, "log", client=client), client


def test_s3_existing_finds_exactly_the_present_files(s3store: tuple[S3ProofStore, Any]
                                                     ) -> None:
    store, _ = s3store
    assert isinstance(store, ListingProofStore)
    present = ["tile/0/004", "tile/0/004.p/7", "tile/entries/x001/002", "tile/1/000.p/3"]
    for p in present:
        store.replace(p, b"x")
    store.replace("tile/0/005", b"y")  # a neighbour that is not asked about
    asked = ["tile/0/004", "tile/0/004.p/7", "tile/0/006", "tile/0/003.p/9",
             "tile/entries/x001/002", "tile/entries/x001/003", "tile/1/000.p/3",
             "tile/2/000.p/1"]
    assert store.existing(asked) == set(present)
    assert store.existing([]) == set()
    with pytest.raises(ProofError):
        store.existing(["../escape"])


def test_s3_write_new_still_never_rewrites(moto_s3: S3Server) -> None:
    """On a server honouring If-None-Match (AWS, MinIO, moto; not Ceph RGW 16.2, where
    the caller's check under the proof-log lock is all there is, as for write_once)."""
    client = moto_s3.client()
    store = S3ProofStore(moto_s3.bucket(client=client), "log", client=client)
    store.write_new("tile/0/000", b"abc")
    store.write_new("tile/0/000", b"abc")  # the same bytes: fine (moto honours If-None-Match)
    with pytest.raises(ProofError, match="tile/0/000"):
        store.write_new("tile/0/000", b"abd")
    assert store.read("tile/0/000") == b"abc"


def test_s3_append_requests(s3store: tuple[S3ProofStore, Any]) -> None:
    """An append on S3: no GET per new file (one listing per tile level instead), no GET
    before each new tile, and the same files and bytes as on any other store."""
    store, client = s3store
    names: list[tuple[str, str]] = []
    client.meta.events.register(
        "before-parameter-build.s3.*",
        lambda model, params, **_: names.append((model.name, params.get("Key", ""))))
    log, mem = new_log(store), MemoryProofStore()
    ref = new_log(mem)
    log.append([rec(i) for i in range(600)])
    ref.append([rec(i) for i in range(600)])
    names.clear()
    log.append([rec(600 + i) for i in range(300)])
    ref.append([rec(600 + i) for i in range(300)])
    gets = [k for op, k in names if op == "GetObject"]
    assert sorted(gets) == ["log/checkpoint", "log/intent"]  # edge cached, tiles listed
    assert sum(op == "ListObjectsV2" for op, _ in names) == 3  # entries, level 0, level 1
    puts = [k for op, k in names if op == "PutObject"]
    assert len(puts) == 3 + 5  # intent, checkpoint, intent; 2 bundles, 2 + 1 tiles
    assert puts[-2:] == ["log/checkpoint", "log/intent"]
    assert snapshot(store) == snapshot(mem)
    assert verify(store).size == 900
