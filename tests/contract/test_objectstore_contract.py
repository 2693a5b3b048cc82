"""One contract for every ``ObjectStore`` adapter: the local folder, and S3 with an
unversioned and a versioned bucket on two live servers, ``moto_server`` and a single-node
Ceph RADOS Gateway 16.2 (``tests/cephrgw.py``, marker ``rgw``). Then S3-only tests against
both servers: tags and metadata, Object Lock, a missing bucket, a server that answers 503
or answers too slowly; a server that is down; and, on moto only, a constant-memory
256 MiB upload (it measures the client; RGW's memstore would hold the 256 MiB in RAM).
Where the two servers differ, each one's behaviour is asserted explicitly, here or in
``test_rgw_specifics.py``.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from retentiond.adapters.localfs import LocalObjectStore
from retentiond.adapters.s3 import (
    EVIDENCE_GONE,
    MIN_PART_SIZE,
    LockState,
    S3ObjectStore,
    make_s3_client,
    parse_s3_url,
)
from retentiond.errors import (
    ConfigError,
    ObjectLockedError,
    ObjectNotFoundError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from retentiond.ports import ObjectStore
from tests.cephrgw import RgwServer
from tests.s3server import FaultProxy, S3Server, dummy_aws_env, free_port

PART = MIN_PART_SIZE  # 5 MiB: the smallest part S3 (and moto) accept
CHUNK = 64 * 1024  # what the sealer hands to write(), from one reused buffer
FAR = datetime(2099, 1, 1, tzinfo=UTC)


@dataclass
class Live:
    """A live S3 server and one client for it (shared by the session)."""

    name: str  # "moto" or "rgw"
    server: S3Server | RgwServer
    client: Any

    def bucket(self, *, versioned: bool = False, object_lock: bool = False) -> str:
        return self.server.bucket(versioned=versioned, object_lock=object_lock,
                                  client=self.client)

    def store(self, kind: str = "s3", **options: Any) -> Harness:
        """A store on a new bucket of this server (``kind`` "s3" or "s3-versioned")."""
        bucket = self.bucket(versioned=kind == "s3-versioned")
        options.setdefault("part_size", PART)
        s3 = S3ObjectStore(bucket, "vault", client=self.client, **options)
        return Harness(kind, s3, s3, server=self.name)


@dataclass
class Harness:
    kind: str  # "local", "s3", "s3-versioned" or "s3-object-lock"
    store: ObjectStore
    s3: S3ObjectStore | None = None
    server: str = ""  # "moto" or "rgw" for S3

    @property
    def client(self) -> Any:
        assert self.s3 is not None
        return self.s3.client

    def full(self, key: str) -> str:
        assert self.s3 is not None
        return self.s3.prefix + key

    def versions(self, key: str) -> tuple[list[str], list[str]]:
        """Raw ListObjectVersions of exactly ``key``: (versions, delete markers)."""
        assert self.s3 is not None
        r = self.client.list_object_versions(Bucket=self.s3.bucket, Prefix=self.full(key))
        return ([v["VersionId"] for v in r.get("Versions", []) if v["Key"] == self.full(key)],
                [m["VersionId"] for m in r.get("DeleteMarkers", [])
                 if m["Key"] == self.full(key)])

    def etag(self, key: str) -> str:
        assert self.s3 is not None
        return str(self.client.head_object(Bucket=self.s3.bucket, Key=self.full(key))["ETag"])


@pytest.fixture(scope="session")
def moto_live(moto_s3: S3Server) -> Live:
    return Live("moto", moto_s3, moto_s3.client())


@pytest.fixture(scope="session")
def rgw_live(ceph_rgw: RgwServer) -> Live:
    return Live("rgw", ceph_rgw, ceph_rgw.client())


SERVERS = [pytest.param("moto", id="moto"),
           pytest.param("rgw", id="rgw", marks=pytest.mark.rgw)]


def _live(request: pytest.FixtureRequest, name: str) -> Live:
    live: Live = request.getfixturevalue(f"{name}_live")
    return live


@pytest.fixture(params=SERVERS)
def live(request: pytest.FixtureRequest) -> Live:
    """Each live S3 server in turn."""
    return _live(request, request.param)


@pytest.fixture(scope="session")
def s3_client(moto_s3: S3Server) -> Any:
    """A client for tests that make no request (or only to moto)."""
    return moto_s3.client()


def _store_params(*kinds: str) -> list[Any]:
    return [pytest.param((kind, server), id=f"{kind}-{server}",
                         marks=[pytest.mark.rgw] if server == "rgw" else [])
            for kind in kinds for server in ("moto", "rgw")]


@pytest.fixture(params=[pytest.param(("local", ""), id="local"),
                        *_store_params("s3", "s3-versioned")])
def h(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    kind, server = request.param
    if kind == "local":
        return Harness("local", LocalObjectStore(tmp_path / "vault"))
    return _live(request, server).store(kind)


@pytest.fixture(params=_store_params("s3", "s3-versioned"))
def s3h(request: pytest.FixtureRequest) -> Harness:
    kind, server = request.param
    return _live(request, server).store(kind)


@pytest.fixture
def vh(live: Live) -> Harness:
    return live.store("s3-versioned")


def payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    block = hashlib.sha256(f"{seed}".encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def put(store: ObjectStore, key: str, data: bytes, **kw: Any) -> str | None:
    """Write ``data`` the way the sealer does: 64 KiB chunks from one reused buffer."""
    buf = bytearray(CHUNK)
    with store.writer(key, **kw) as w:
        for off in range(0, len(data), CHUNK):
            n = len(data[off:off + CHUNK])
            buf[:n] = data[off:off + n]
            assert w.write(memoryview(buf)[:n]) == n
    assert w.result.key == key
    assert w.result.size == len(data)
    return w.result.version_id


def get(store: ObjectStore, key: str) -> bytes:
    """Read back with readinto into one reused buffer."""
    out = bytearray()
    buf = bytearray(100_000)
    with store.open_read(key) as fh:
        readinto = fh.readinto  # type: ignore[attr-defined]  # typing.BinaryIO lacks it
        while n := readinto(buf):
            out += buf[:n]
    return bytes(out)


# -- the contract ----------------------------------------------------------------------------


def test_is_an_object_store(h: Harness) -> None:
    assert isinstance(h.store, ObjectStore)
    if h.s3 is not None:
        assert h.store.url == f"s3://{h.s3.bucket}/vault"
    else:
        assert h.store.url.startswith("file:///")


@pytest.mark.parametrize("size", [
    pytest.param(0, id="0B"),
    pytest.param(1, id="1B"),
    pytest.param(100_000, id="100kB"),
    pytest.param(PART, id="one-full-part"),
    pytest.param(2 * PART + 1, id="3-parts"),
])
def test_round_trip(h: Harness, size: int) -> None:
    data = payload(size, seed=size)
    vid = put(h.store, "2026/11/rec.sealed", data)
    assert get(h.store, "2026/11/rec.sealed") == data
    info = h.store.head("2026/11/rec.sealed")
    assert info.key == "2026/11/rec.sealed"
    assert info.size == size
    assert info.modified.tzinfo is not None
    assert info.modified.utcoffset() is not None
    assert info.version_id == vid
    if h.kind == "s3-versioned":
        assert vid
    else:
        assert vid is None
    if h.s3 is not None:  # one PutObject up to one part, multipart beyond
        assert h.etag("2026/11/rec.sealed").endswith("-3\"") == (size > PART)


@pytest.mark.parametrize(("size", "hint"), [
    pytest.param(100_000, 100_000, id="exact"),
    pytest.param(100_000, 60_000, id="hint-too-small"),
    pytest.param(100_000, 900_000, id="hint-too-large"),
    pytest.param(2 * PART + 1, 100_000, id="small-hint-multipart"),
    pytest.param(PART + 1, 10 * PART, id="hint-above-a-part"),
    pytest.param(10, 0, id="zero-hint"),
])
def test_a_size_hint_never_changes_what_is_stored(h: Harness, size: int, hint: int) -> None:
    data = payload(size, seed=hint)
    put(h.store, "hinted", data, size_hint=hint)
    assert get(h.store, "hinted") == data
    assert h.store.head("hinted").size == size
    if h.s3 is not None:  # one PutObject up to one part, multipart beyond, hint or not
        assert h.etag("hinted").endswith("-3\"") == (size > 2 * PART)


def test_a_small_object_with_its_size_hint_takes_no_part_buffer(s3h: Harness) -> None:
    """A part buffer (8 MiB by default) is zero-filled when made: a 1 MiB recording
    announced as such gets a buffer of its size instead, and none goes to the pool."""
    store = cast(S3ObjectStore, s3h.store)
    pool = store._buffers
    taken: list[int] = []
    real_take = pool.take
    pool.take = lambda: taken.append(1) or real_take()  # type: ignore[method-assign]
    try:
        put(store, "small", payload(100_000), size_hint=100_000)
        put(store, "grown", payload(100_000), size_hint=50_000)
    finally:
        del pool.take  # type: ignore[method-assign]
    assert len(taken) == 1  # only the write whose hint was too small grew into a part
    assert all(len(b) == pool.size for b in pool._idle)


def test_open_read_is_a_binary_file(h: Harness) -> None:
    put(h.store, "a", b"0123456789")
    with h.store.open_read("a") as fh:
        assert fh.read(3) == b"012"
        assert fh.read() == b"3456789"
        assert fh.read() == b""


def test_write_copies_the_callers_buffer(h: Harness) -> None:
    buf = bytearray(b"A" * 1000)
    with h.store.writer("k") as w:
        w.write(buf)
        buf[:] = b"B" * 1000
        w.write(buf)
        buf[:] = b"C" * 1000
        w.write(memoryview(buf)[:10])
        buf[:] = b"D" * 1000
    assert get(h.store, "k") == b"A" * 1000 + b"B" * 1000 + b"C" * 10


def test_overwrite_replaces_the_content(h: Harness) -> None:
    put(h.store, "k", b"first")
    put(h.store, "k", b"second")
    assert get(h.store, "k") == b"second"
    assert h.store.head("k").size == 6


@pytest.mark.parametrize("size", [pytest.param(10, id="small"),
                                  pytest.param(2 * PART + 7, id="multipart")])
def test_exception_in_writer_leaves_nothing_visible(h: Harness, size: int) -> None:
    put(h.store, "old", b"kept")
    for key in ("new", "old"):
        with pytest.raises(RuntimeError, match="boom"), h.store.writer(key) as w:
            w.write(payload(size))
            raise RuntimeError("boom")
        with pytest.raises(StorageError):
            _ = w.result
    with pytest.raises(ObjectNotFoundError):
        h.store.head("new")
    assert get(h.store, "old") == b"kept"
    assert [o.key for o in h.store.list()] == ["old"]
    if h.s3 is not None:
        uploads = h.client.list_multipart_uploads(Bucket=h.s3.bucket).get("Uploads", [])
        assert uploads == []
    else:
        assert isinstance(h.store, LocalObjectStore)
        assert h.store.stale_temporaries() == []


def test_result_is_not_available_before_completion(h: Harness) -> None:
    with h.store.writer("k") as w:
        w.write(b"x")
        with pytest.raises(StorageError, match="not completed"):
            _ = w.result
    assert w.result.size == 1


def test_list_is_in_key_order_and_filtered_by_prefix(h: Harness) -> None:
    keys = ["b", "a/2", "a/1", "a0", "c/d/e", "a/10"]
    for i, k in enumerate(keys):
        put(h.store, k, b"x" * i)
    listed = list(h.store.list())
    assert [o.key for o in listed] == sorted(keys)
    assert {o.key: o.size for o in listed} == {k: i for i, k in enumerate(keys)}
    assert all(o.modified.utcoffset() is not None for o in listed)
    assert [o.key for o in h.store.list("a/")] == ["a/1", "a/10", "a/2"]
    assert [o.key for o in h.store.list("a")] == ["a/1", "a/10", "a/2", "a0"]
    assert list(h.store.list("zzz")) == []


def test_missing_objects_are_not_found(h: Harness) -> None:
    with pytest.raises(ObjectNotFoundError, match="nope"):
        h.store.head("nope")
    with pytest.raises(ObjectNotFoundError, match="nope"), h.store.open_read("nope"):
        pass
    assert ObjectNotFoundError("x").exit_code == 3


@pytest.mark.parametrize("key", ["", "/abs", "a/../b"])
def test_invalid_keys_are_refused(h: Harness, key: str) -> None:
    with pytest.raises(PermanentStorageError), h.store.writer(key) as w:
        w.write(b"x")
    with pytest.raises(PermanentStorageError):
        h.store.head(key)


def test_delete_all_versions_is_idempotent(h: Harness) -> None:
    vid = put(h.store, "rec", b"secret")
    first = h.store.delete_all_versions("rec")
    assert first.key == "rec"
    assert first.version_ids == (vid or "null",)
    assert first.evidence == ("stat: ENOENT" if h.s3 is None else EVIDENCE_GONE)
    with pytest.raises(ObjectNotFoundError):
        h.store.head("rec")
    assert list(h.store.list()) == []
    again = h.store.delete_all_versions("rec")
    assert again.version_ids == ()
    assert again.evidence == first.evidence
    if h.s3 is not None:
        assert h.versions("rec") == ([], [])


def test_delete_of_a_key_never_written_succeeds(h: Harness) -> None:
    assert h.store.delete_all_versions("never/written").version_ids == ()


def test_delete_leaves_keys_sharing_the_prefix(h: Harness) -> None:
    for k in ("rec", "rec2", "rec.json", "re"):
        put(h.store, k, k.encode())
    h.store.delete_all_versions("rec")
    assert [o.key for o in h.store.list()] == ["re", "rec.json", "rec2"]
    assert get(h.store, "rec2") == b"rec2"


# -- S3: versions, delete markers, batching ------------------------------------------------


def test_every_version_and_delete_marker_goes(vh: Harness) -> None:
    assert vh.s3 is not None
    ids = [put(vh.store, "rec", f"v{i}".encode()) for i in range(3)]
    marker = vh.client.delete_object(Bucket=vh.s3.bucket, Key=vh.full("rec"))["VersionId"]
    ids.append(put(vh.store, "rec", b"v3"))
    marker2 = vh.client.delete_object(Bucket=vh.s3.bucket, Key=vh.full("rec"))["VersionId"]
    put(vh.store, "rec2", b"neighbour")
    put(vh.store, "rec/x", b"neighbour")
    assert len(vh.versions("rec")[0]) == 4
    assert len(vh.versions("rec")[1]) == 2
    with pytest.raises(ObjectNotFoundError):  # latest is a delete marker
        vh.store.head("rec")

    result = vh.store.delete_all_versions("rec")

    assert sorted(result.version_ids) == sorted([*ids, marker, marker2])
    assert len(set(result.version_ids)) == 6
    assert result.evidence == "list_object_versions: 0 versions, 0 delete markers"
    assert vh.versions("rec") == ([], [])
    assert len(vh.versions("rec2")[0]) == 1
    assert get(vh.store, "rec/x") == b"neighbour"
    assert vh.store.delete_all_versions("rec").version_ids == ()


def test_delete_batches_are_bounded(live: Live) -> None:
    vh = live.store("s3-versioned", delete_batch=2)
    ids = [str(put(vh.store, "rec", f"v{i}".encode())) for i in range(5)]
    assert sorted(vh.store.delete_all_versions("rec").version_ids) == sorted(ids)
    assert vh.versions("rec") == ([], [])


def test_bucket_versioning(s3h: Harness) -> None:
    assert s3h.s3 is not None
    want = "Enabled" if s3h.kind == "s3-versioned" else "Unversioned"
    assert s3h.s3.bucket_versioning() == want


# -- S3: tags and metadata -----------------------------------------------------------------

META = {"purpose": "quality", "legal-basis": "legitimate-interests",
        "policy": "cnil-default", "policy-sha256": "ab" * 32,
        "delete-after": "2026-12-23T09:00:00Z"}
TAGS = {"purpose": "quality", "delete-after": "2026-12-23T09:00:00Z",
        "policy": "cnil default/v1", "hold": "none"}


@pytest.mark.parametrize("size", [pytest.param(10, id="put"),
                                  pytest.param(PART + 1, id="multipart")])
def test_tags_and_metadata_round_trip(s3h: Harness, size: int) -> None:
    assert s3h.s3 is not None
    vid = put(s3h.store, "rec", payload(size), metadata=META, tags=TAGS)
    assert s3h.s3.metadata("rec") == META
    assert s3h.s3.get_tags("rec") == TAGS
    if vid is not None:
        assert s3h.s3.get_tags("rec", version_id=vid) == TAGS


def test_put_tags_targets_one_version(s3h: Harness) -> None:
    assert s3h.s3 is not None
    old = put(s3h.store, "rec", b"1", tags={"state": "old"})
    new = put(s3h.store, "rec", b"2", tags={"state": "new"})
    s3h.s3.put_tags("rec", {"state": "held", "hold": "case-42"})
    assert s3h.s3.get_tags("rec") == {"state": "held", "hold": "case-42"}
    if s3h.kind == "s3-versioned":
        assert old and new
        assert s3h.s3.get_tags("rec", version_id=old) == {"state": "old"}
        s3h.s3.put_tags("rec", {}, version_id=old)
        assert s3h.s3.get_tags("rec", version_id=old) == {}
        assert s3h.s3.get_tags("rec", version_id=new) == {"state": "held", "hold": "case-42"}


@pytest.mark.parametrize(("metadata", "tags", "match"), [
    pytest.param({"Purpose": "x"}, None, "metadata key", id="uppercase-metadata-key"),
    pytest.param({"purpose": "qualité"}, None, "printable ASCII", id="non-ascii-metadata"),
    pytest.param({"big": "x" * 3000}, None, "2048", id="metadata-over-2KiB"),
    pytest.param(None, {f"t{i}": "v" for i in range(11)}, "11 tags", id="11-tags"),
    pytest.param(None, {"k": "v" * 257}, "value 0-256", id="long-tag-value"),
    pytest.param(None, {"k": "a&b"}, "only letters", id="tag-charset"),
])
def test_bad_tags_and_metadata_are_refused_before_any_request(
        s3h: Harness, metadata: dict[str, str] | None, tags: dict[str, str] | None,
        match: str) -> None:
    with pytest.raises(PermanentStorageError, match=match):
        s3h.store.writer("rec", metadata=metadata, tags=tags)
    assert list(s3h.store.list()) == []


# -- S3: Object Lock -----------------------------------------------------------------------


@pytest.fixture
def locked(live: Live) -> Harness:
    bucket = live.bucket(object_lock=True)
    store = S3ObjectStore(bucket, "vault", client=live.client, part_size=PART)
    return Harness("s3-object-lock", store, store, server=live.name)


@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
def test_retention_blocks_deletion_and_is_reported(locked: Harness, mode: str) -> None:
    s3 = locked.s3
    assert s3 is not None
    assert s3.bucket_versioning() == "Enabled"
    v1 = put(s3, "rec", b"locked")
    assert v1 is not None
    s3.set_retention("rec", version_id=v1, until=FAR, mode=mode)  # type: ignore[arg-type]
    v2 = str(put(s3, "rec", b"free"))
    state = s3.lock_state("rec", version_id=v1)
    assert (state.mode, state.retain_until, state.legal_hold) == (mode, FAR, False)

    with pytest.raises(ObjectLockedError) as err:
        s3.delete_all_versions("rec")

    msg = str(err.value)
    assert f"s3://{s3.bucket}/vault/rec" in msg
    assert v1 in msg
    assert mode in msg
    assert "1 of 2 versions remain" in msg
    assert "\n" not in msg
    assert locked.versions("rec") == ([v1], [])  # the locked version is still tracked...
    assert v2 not in msg  # ...and the unlocked one went
    assert s3.version_locks("rec") == {v1: LockState(mode=mode, retain_until=FAR,
                                                     legal_hold=False)}
    assert err.value.exit_code == 5


def test_legal_hold_blocks_deletion_until_released(locked: Harness) -> None:
    s3 = locked.s3
    assert s3 is not None
    vid = put(s3, "rec", b"held")
    s3.set_legal_hold("rec", version_id=None, on=True)  # latest version looked up
    assert s3.lock_state("rec").legal_hold
    with pytest.raises(ObjectLockedError, match=f"rec.*{vid}: legal hold"):
        s3.delete_all_versions("rec")
    assert locked.versions("rec") == ([vid], [])

    s3.set_legal_hold("rec", version_id=vid, on=False)
    result = s3.delete_all_versions("rec")
    assert result.version_ids == (vid,)
    assert locked.versions("rec") == ([], [])


@pytest.mark.parametrize("size", [pytest.param(10, id="put"),
                                  pytest.param(PART + 1, id="multipart")])
def test_default_retention_bucket_accepts_our_uploads(locked: Harness, size: int) -> None:
    """AWS refuses uploads without Content-MD5 (or an SDK checksum) in such buckets: we send
    it. The servers differ: moto 5.2.1 applies the default retention to PutObject only
    (AWS and RGW: to multipart uploads too), and RGW 16.2 accepts uploads without
    Content-MD5 (moto refuses them like AWS)."""
    s3 = locked.s3
    assert s3 is not None
    s3.client.put_object_lock_configuration(Bucket=s3.bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    data = payload(size)
    vid = put(s3, "rec", data)
    assert get(s3, "rec") == data
    if locked.server == "moto" and size > PART:
        assert s3.lock_state("rec", version_id=vid) == LockState(None, None, False)
        return
    assert s3.lock_state("rec", version_id=vid).mode == "GOVERNANCE"
    with pytest.raises(ObjectLockedError, match="GOVERNANCE until"):
        s3.delete_all_versions("rec")
    bare = S3ObjectStore(s3.bucket, "vault", client=s3.client, content_md5=False)
    if locked.server == "moto":
        with pytest.raises(PermanentStorageError, match="MissingUploadObjectWithObjectLock"):
            put(bare, "other", data)
    else:
        other = put(bare, "other", data)
        assert s3.lock_state("other", version_id=other).mode == "GOVERNANCE"


@pytest.mark.parametrize("size", [pytest.param(10, id="put"),
                                  pytest.param(PART + 1, id="multipart")])
def test_writer_tags_and_retention_hold_for_every_upload(locked: Harness, size: int) -> None:
    """RGW 16.2 drops tags and Object Lock headers sent with CreateMultipartUpload
    (``test_multipart_upload_drops_tags_and_lock_on_rgw``): the writer sets them again on
    the completed version, so a multipart object is as tagged and locked as a small one."""
    s3 = locked.s3
    assert s3 is not None
    vid = put(s3, "rec", payload(size), tags=TAGS, retain_until=FAR)
    assert s3.get_tags("rec", version_id=vid) == TAGS
    assert s3.lock_state("rec", version_id=vid) == LockState("GOVERNANCE", FAR, False)
    with pytest.raises(ObjectLockedError, match=f"{vid}: GOVERNANCE until 2099"):
        s3.delete_all_versions("rec")


def test_retention_needs_an_aware_datetime(locked: Harness) -> None:
    assert locked.s3 is not None
    put(locked.s3, "rec", b"x")
    with pytest.raises(ValueError, match="naive"):
        locked.s3.set_retention("rec", version_id=None, until=datetime(2099, 1, 1),
                                mode="COMPLIANCE")


def test_retention_on_a_bucket_without_object_lock_is_refused(s3h: Harness) -> None:
    assert s3h.s3 is not None
    put(s3h.store, "rec", b"x")
    with pytest.raises(PermanentStorageError, match="rec"):
        s3h.s3.set_retention("rec", version_id=None, until=FAR, mode="COMPLIANCE")


# -- S3: failures of the server ------------------------------------------------------------


def test_missing_bucket_is_a_permanent_error(live: Live) -> None:
    store = S3ObjectStore("rt-no-such-bucket", "vault", client=live.client, part_size=PART)
    calls: dict[str, Callable[[], object]] = {
        "check": store.check,
        "head": lambda: store.head("rec"),
        "list": lambda: list(store.list()),
        "open_read": lambda: store.open_read("rec").__enter__(),
        "put": lambda: put(store, "rec", b"x"),
        "multipart": lambda: put(store, "rec", payload(PART + 1)),
        "delete": lambda: store.delete_all_versions("rec"),
    }
    for name, call in calls.items():
        with pytest.raises(PermanentStorageError) as err:
            call()
        assert not isinstance(err.value, ObjectNotFoundError), name
        assert "s3://rt-no-such-bucket" in str(err.value), name
        assert "does not exist" in str(err.value), name
        assert live.server.endpoint in str(err.value), name


def test_server_down_is_a_transient_error() -> None:
    port = free_port()  # nothing listens there
    with dummy_aws_env():
        client = make_s3_client(endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1",
                                addressing_style="path", max_attempts=2,
                                connect_timeout=0.5, read_timeout=0.5)
    store = S3ObjectStore("vault", "p", client=client, part_size=PART)
    for call in (lambda: store.head("rec"), lambda: list(store.list()),
                 lambda: put(store, "rec", b"x"), lambda: store.delete_all_versions("rec")):
        with pytest.raises(TransientStorageError) as err:
            call()
        msg = str(err.value)
        assert msg.startswith("s3://vault/p/")
        assert f"127.0.0.1:{port}" in msg
        assert "testing" not in msg  # the (dummy) credentials never appear


@pytest.fixture
def proxy(live: Live) -> Iterator[FaultProxy]:
    p = FaultProxy(live.server.endpoint)
    yield p
    p.close()


def test_503_is_retried_then_succeeds(proxy: FaultProxy, live: Live) -> None:
    bucket = live.bucket()
    with S3ObjectStore(bucket, client=live.client).writer("rec") as w:
        w.write(b"payload")
    store = S3ObjectStore(bucket, client=live.server.client(endpoint_url=proxy.endpoint,
                                                        max_attempts=3))
    proxy.fail_next = 2
    proxy.requests = 0
    assert store.head("rec").size == 7
    assert proxy.requests == 3  # two 503 SlowDown answers, then the real one
    proxy.fail_next = 1  # each retry sleeps a random 0-2^n s: keep the test short
    assert get(store, "rec") == b"payload"
    assert proxy.requests == 5


def test_503_beyond_the_attempts_is_a_transient_error(proxy: FaultProxy, live: Live) -> None:
    bucket = live.bucket()
    store = S3ObjectStore(bucket, client=live.server.client(endpoint_url=proxy.endpoint,
                                                        max_attempts=2))
    proxy.fail_next = 100
    with pytest.raises(TransientStorageError, match=r"SlowDown \(HTTP 503\)"):
        list(store.list())
    with pytest.raises(TransientStorageError, match="HTTP 503"):
        store.delete_all_versions("rec")
    proxy.status = 500
    with pytest.raises(TransientStorageError, match="HTTP 500"):
        put(store, "rec", b"x")
    assert proxy.requests == 6


def test_failed_part_aborts_the_upload(proxy: FaultProxy, live: Live) -> None:
    bucket = live.bucket()
    store = S3ObjectStore(bucket, client=live.server.client(endpoint_url=proxy.endpoint),
                          part_size=PART)
    proxy.fail_match, proxy.status = "partNumber=2", 500
    with pytest.raises(TransientStorageError, match="HTTP 500"), store.writer("rec") as w:
        w.write(payload(3 * PART))  # part 2 fails in a worker thread: seen on completion
    assert live.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ObjectNotFoundError):
        store.head("rec")


def test_a_writer_that_failed_cannot_complete(proxy: FaultProxy, live: Live) -> None:
    """Swallowing a part failure inside the block does not produce a short object."""
    bucket = live.bucket()
    store = S3ObjectStore(bucket, client=live.server.client(endpoint_url=proxy.endpoint),
                          part_size=PART, max_inflight_parts=1)
    proxy.fail_match, proxy.status = "partNumber=2", 500
    data = payload(PART)
    with pytest.raises(StorageError, match="earlier request"), store.writer("rec") as w:
        for _ in range(3):
            w.write(data)
        with pytest.raises(TransientStorageError):
            w.write(b"x")  # submitting part 3 waits for part 2, which failed
        with pytest.raises(StorageError, match="earlier request"):
            w.write(b"y")
    assert live.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ObjectNotFoundError):
        store.head("rec")


@pytest.mark.parametrize("versioned", [pytest.param(False, id="unversioned"),
                                       pytest.param(True, id="versioned")])
def test_multipart_object_whose_tags_cannot_be_set_is_removed(
        proxy: FaultProxy, live: Live, versioned: bool) -> None:
    """Tags are set again after CompleteMultipartUpload (RGW drops them at creation); if
    that fails, the new object must not stay visible without them."""
    bucket = live.bucket(versioned=versioned)
    store = S3ObjectStore(bucket, client=live.server.client(endpoint_url=proxy.endpoint),
                          part_size=PART)
    proxy.fail_match, proxy.status = "tagging", 500
    with pytest.raises(TransientStorageError, match="HTTP 500"), \
            store.writer("rec", tags=TAGS) as w:
        w.write(payload(PART + 1))
    r = live.client.list_object_versions(Bucket=bucket)
    assert (r.get("Versions", []), r.get("DeleteMarkers", [])) == ([], [])
    assert live.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_slow_server_is_a_transient_error(proxy: FaultProxy, live: Live) -> None:
    bucket = live.bucket()
    store = S3ObjectStore(bucket, client=live.server.client(endpoint_url=proxy.endpoint,
                                                        max_attempts=1, read_timeout=0.3))
    proxy.delay = 1.0
    with pytest.raises(TransientStorageError, match="ReadTimeoutError"):
        store.head("rec")


# -- S3: memory ----------------------------------------------------------------------------


@pytest.mark.slow
def test_256_mib_upload_holds_a_few_parts_not_the_object(moto_s3: S3Server,
                                                          s3_client: Any) -> None:
    """tracemalloc peak while streaming 256 MiB: the part buffers (3 x 5 MiB), not 256."""
    store = S3ObjectStore(moto_s3.bucket(client=s3_client), client=s3_client,
                          part_size=PART, max_inflight_parts=2)
    total = 256 * 1024 * 1024
    block = bytearray(os.urandom(1024 * 1024))
    parts: list[bytes] = []
    part_md5 = hashlib.md5(usedforsecurity=False)
    in_part = 0
    tracemalloc.start()
    try:
        with store.writer("big.sealed") as w:
            for i in range(total // len(block)):
                block[:8] = i.to_bytes(8, "big")  # reused buffer, new content each time
                view = memoryview(block)
                w.write(view)
                while view:  # the multipart ETag we expect, part by part
                    n = min(len(view), PART - in_part)
                    part_md5.update(view[:n])
                    in_part += n
                    view = view[n:]
                    if in_part == PART:
                        parts.append(part_md5.digest())
                        part_md5, in_part = hashlib.md5(usedforsecurity=False), 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if in_part:
        parts.append(part_md5.digest())
    want = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest() + f"-{len(parts)}"
    assert w.result.size == total
    assert store.head("big.sealed").size == total
    assert store.client.head_object(Bucket=store.bucket, Key="big.sealed")["ETag"] \
        == f'"{want}"'
    assert peak < 3 * PART + 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    store.delete_all_versions("big.sealed")


# -- configuration -------------------------------------------------------------------------


def test_parse_s3_url() -> None:
    assert parse_s3_url("s3://vault") == ("vault", "")
    assert parse_s3_url("s3://vault/a/b/") == ("vault", "a/b/")
    with pytest.raises(ConfigError):
        parse_s3_url("s3:///x")
    with pytest.raises(ConfigError):
        parse_s3_url("/tmp/x")


def test_store_url_and_prefix(s3_client: Any) -> None:
    assert S3ObjectStore.from_url("s3://vault", client=s3_client).url == "s3://vault"
    store = S3ObjectStore.from_url("s3://vault/a/b/", client=s3_client)
    assert (store.url, store.prefix) == ("s3://vault/a/b", "a/b/")


@pytest.mark.parametrize("options", [
    pytest.param({"part_size": PART - 1}, id="part-below-5MiB"),
    pytest.param({"max_inflight_parts": 0}, id="no-inflight"),
    pytest.param({"delete_batch": 1001}, id="batch-over-1000"),
])
def test_store_options_are_checked(s3_client: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        S3ObjectStore("vault", client=s3_client, **options)


@pytest.mark.parametrize("options", [
    pytest.param({"addressing_style": "sideways"}, id="addressing-style"),
    pytest.param({"retry_mode": "legacy"}, id="retry-mode"),
    pytest.param({"max_attempts": 0}, id="attempts"),
    pytest.param({"profile": "rt-no-such-profile"}, id="profile"),
])
def test_client_options_are_checked(options: dict[str, Any]) -> None:
    with dummy_aws_env(), pytest.raises(ConfigError):
        make_s3_client(**options)
