"""One contract for every ``ProofStore`` adapter: the local folder, the memory fake and a
bucket prefix on moto and on Ceph RGW."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from retentiond.adapters.localfs_proofs import FileProofStore
from retentiond.adapters.memory_proofs import MemoryProofStore
from retentiond.adapters.s3_proofs import S3ProofStore
from retentiond.errors import ProofError, StorageError
from retentiond.ports import ProofStore

Factory = Callable[[Path], ProofStore]
STORES = [
    pytest.param(lambda p: FileProofStore(p / "proofs"), id="file"),
    pytest.param(lambda p: MemoryProofStore(), id="memory"),
    pytest.param("s3", id="s3-moto"),
    pytest.param("s3-versioned", id="s3-versioned-moto"),
    pytest.param("s3-rgw", id="s3-rgw", marks=pytest.mark.rgw),
]


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ProofStore:
    if isinstance(request.param, str):
        server = request.getfixturevalue("ceph_rgw" if request.param == "s3-rgw"
                                         else "moto_s3")
        client = server.client()
        bucket = server.bucket(versioned=request.param == "s3-versioned", client=client)
        return S3ProofStore(bucket, "log/p", client=client)
    factory: Factory = request.param
    return factory(tmp_path)


def test_is_a_proof_store(store: ProofStore) -> None:
    assert isinstance(store, ProofStore)
    assert isinstance(store.location, str)
    assert store.location


def test_read_missing_is_none(store: ProofStore) -> None:
    assert store.read("checkpoint") is None
    assert store.read("tile/0/000") is None


def test_write_once_then_read(store: ProofStore) -> None:
    store.write_once("tile/0/000", b"\x00\xff" * 16)
    assert store.read("tile/0/000") == b"\x00\xff" * 16


def test_write_once_is_idempotent_for_the_same_bytes(store: ProofStore) -> None:
    store.write_once("tile/entries/000", b"abc")
    store.write_once("tile/entries/000", b"abc")
    assert store.read("tile/entries/000") == b"abc"


def test_write_once_refuses_different_bytes(store: ProofStore) -> None:
    store.write_once("tile/entries/000", b"abc")
    with pytest.raises(ProofError, match="tile/entries/000"):
        store.write_once("tile/entries/000", b"abd")
    with pytest.raises(ProofError):
        store.write_once("tile/entries/000", b"")
    assert store.read("tile/entries/000") == b"abc"


def test_replace_creates_and_overwrites(store: ProofStore) -> None:
    store.replace("checkpoint", b"one\n")
    assert store.read("checkpoint") == b"one\n"
    store.replace("checkpoint", b"two\n")
    assert store.read("checkpoint") == b"two\n"
    store.replace("checkpoint", b"")
    assert store.read("checkpoint") == b""


def test_empty_file(store: ProofStore) -> None:
    store.write_once("tile/0/000.p/1", b"")
    assert store.read("tile/0/000.p/1") == b""


def test_list_is_sorted_and_filtered_by_prefix(store: ProofStore) -> None:
    paths = ["tile/0/001", "tile/0/000.p/5", "tile/0/000", "checkpoint", "tile/0/000.p/12",
             "tile/entries/x001/000.p/7", "tile/1/000.p/1"]
    for p in paths:
        store.replace(p, p.encode())
    assert store.list() == sorted(paths)
    assert store.list("") == sorted(paths)
    assert store.list("tile/0/") == sorted(p for p in paths if p.startswith("tile/0/"))
    assert store.list("tile/0/000.p/") == ["tile/0/000.p/12", "tile/0/000.p/5"]
    assert store.list("tile/0/00") == sorted(p for p in paths if p.startswith("tile/0/00"))
    assert store.list("tile/entries/") == ["tile/entries/x001/000.p/7"]
    assert store.list("tile/9/") == []
    assert store.list("nothing/here/") == []


def test_list_of_an_empty_store(store: ProofStore) -> None:
    assert store.list() == []
    assert store.list("tile/") == []


@pytest.mark.parametrize("path", [
    pytest.param("", id="empty"),
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("../outside", id="dotdot"),
    pytest.param("tile/../../outside", id="inner-dotdot"),
    pytest.param("tile//000", id="empty-part"),
    pytest.param("tile/./000", id="dot-part"),
    pytest.param(".checkpoint.tmp-1", id="hidden"),
    pytest.param("tile/", id="trailing-slash"),
    pytest.param("tile\\000", id="backslash"),
])
@pytest.mark.parametrize("op", ["read", "write_once", "replace"])
def test_bad_paths_are_refused(store: ProofStore, path: str, op: str) -> None:
    with pytest.raises(ProofError, match="invalid path"):
        if op == "read":
            store.read(path)
        elif op == "write_once":
            store.write_once(path, b"x")
        else:
            store.replace(path, b"x")
    assert store.list() == []


def test_stores_are_independent(tmp_path: Path) -> None:
    a, b = MemoryProofStore(), MemoryProofStore()
    a.replace("checkpoint", b"a")
    assert b.read("checkpoint") is None
    assert a.location != b.location


# -- the local folder specifically -------------------------------------------------------


def test_file_store_location_is_a_file_url(tmp_path: Path) -> None:
    store = FileProofStore(tmp_path / "proofs")
    assert store.location == (tmp_path / "proofs").resolve().as_uri()
    assert store.location.startswith("file:///")


def test_file_store_layout_and_no_temp_files_left(tmp_path: Path) -> None:
    store = FileProofStore(tmp_path / "p")
    store.write_once("tile/0/x001/234", b"a")
    store.replace("tile/0/x001/234.p/5", b"b")
    store.replace("checkpoint", b"c")
    store.replace("checkpoint", b"d")
    files = sorted(str(p.relative_to(tmp_path / "p")) for p in (tmp_path / "p").rglob("*")
                   if p.is_file())
    assert files == ["checkpoint", "tile/0/x001/234", "tile/0/x001/234.p/5"]
    assert (tmp_path / "p/tile/0/x001/234").read_bytes() == b"a"


def test_file_store_ignores_leftover_temp_files(tmp_path: Path) -> None:
    store = FileProofStore(tmp_path / "p")
    store.replace("tile/0/000.p/1", b"x")
    (tmp_path / "p/tile/0/.000.tmp-deadbeef").write_bytes(b"torn")
    (tmp_path / "p/.checkpoint.tmp-0").write_bytes(b"torn")
    assert store.list() == ["tile/0/000.p/1"]
    store.write_once("tile/0/000", b"y")
    assert store.read("tile/0/000") == b"y"


def test_file_store_write_once_survives_a_new_instance(tmp_path: Path) -> None:
    FileProofStore(tmp_path / "p").write_once("tile/entries/000", b"abc")
    again = FileProofStore(tmp_path / "p")
    again.write_once("tile/entries/000", b"abc")
    with pytest.raises(ProofError, match="never rewrites history"):
        again.write_once("tile/entries/000", b"xyz")


def test_file_store_does_not_follow_paths_outside(tmp_path: Path) -> None:
    store = FileProofStore(tmp_path / "p")
    with pytest.raises(ProofError):
        store.replace("../escape", b"x")
    assert not (tmp_path / "escape").exists()


def test_file_store_reports_storage_errors(tmp_path: Path) -> None:
    store = FileProofStore(tmp_path / "p")
    store.replace("tile", b"a file where a folder should be")
    with pytest.raises(StorageError, match="tile/0/000"):
        store.replace("tile/0/000", b"x")
    with pytest.raises(StorageError, match="tile/0/001"):
        store.write_once("tile/0/001", b"x")


# -- the bucket prefix specifically -------------------------------------------------------


@pytest.mark.parametrize("server", ["moto_s3", pytest.param("ceph_rgw", marks=pytest.mark.rgw)])
def test_s3_store_write_once_is_conditional_on_the_server(
        request: pytest.FixtureRequest, server: str) -> None:
    """Two writers racing: the server itself refuses the second different tile."""
    srv = request.getfixturevalue(server)
    client = srv.client()
    bucket = srv.bucket(client=client)
    store = S3ProofStore(bucket, "log", client=client)
    store.write_once("tile/0/000", b"first")
    client.put_object(Bucket=bucket, Key="log/tile/0/001", Body=b"raced")
    real_read, calls = store.read, []

    def first_read_misses(path: str) -> bytes | None:  # the other writer wins in between
        calls.append(path)
        return None if len(calls) == 1 else real_read(path)

    store.read = first_read_misses  # type: ignore[method-assign]
    with pytest.raises(ProofError, match="never rewrites history"):
        store.write_once("tile/0/001", b"mine")
    assert calls == ["tile/0/001", "tile/0/001"]  # put refused by the server, then compared
    assert client.get_object(Bucket=bucket, Key="log/tile/0/001")["Body"].read() == b"raced"
    assert store.location == f"s3://{bucket}/log/"


def test_s3_store_missing_bucket_is_a_storage_error(moto_s3) -> None:  # type: ignore[no-untyped-def]
    store = S3ProofStore("no-such-bucket-here", "log", client=moto_s3.client())
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        store.replace("checkpoint", b"x")
    with pytest.raises(StorageError, match="no-such-bucket-here"):
        store.list()
