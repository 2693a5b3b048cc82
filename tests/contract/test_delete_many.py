"""``ObjectStore.delete_many``: many recordings deleted with few requests, each key with
its own result (the sweep's batched deletion), on a folder and on a live S3 server."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from retentiond.adapters.localfs import LocalObjectStore
from retentiond.adapters.s3 import EVIDENCE_GONE, S3ObjectStore
from retentiond.errors import (
    NotWrittenDownError,
    ObjectLockedError,
    StorageError,
    TransientStorageError,
)
from retentiond.ports import DeleteResult, ObjectStore
from tests.s3server import S3Server


def _write(store: ObjectStore, key: str, data: bytes, **kw: Any) -> str | None:
    with store.writer(key, **kw) as w:
        w.write(data)
    return w.result.version_id

def _versioned(server: S3Server) -> tuple[Any, str, S3ObjectStore]:
    """(client, bucket, store under ``v/``) on a new versioned bucket."""
    client = server.client()
    bucket = server.bucket(versioned=True, client=client)
    return client, bucket, S3ObjectStore(bucket, "v", client=client)



@pytest.fixture(params=["local", "s3", "s3-versioned", "s3-one-by-one"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "vault")
    server: S3Server = request.getfixturevalue("moto_s3")
    client = server.client()
    bucket = server.bucket(versioned=request.param != "s3", client=client)
    return S3ObjectStore(bucket, "v", client=client,
                         batch_delete=request.param != "s3-one-by-one")


@pytest.mark.parametrize("population", [None, 3, 10_000])
def test_every_key_gets_its_result(store: ObjectStore, population: int | None) -> None:
    keys = [f"v1/{i:02x}/rec{i}.rtd" for i in range(5)]
    for i, key in enumerate(keys[:4]):
        _write(store, key, bytes([i]) * 10)
    _write(store, "v1/00/rec0.rtd.keep", b"a neighbour sharing the prefix")
    results = store.delete_many(keys, population=population)
    assert set(results) == set(keys)
    for key in keys:
        r = results[key]
        assert isinstance(r, DeleteResult), r
        assert r.key == key
        assert len(r.version_ids) == (1 if key != keys[4] else 0)  # the 5th never existed
        with pytest.raises(StorageError):
            store.head(key)
    assert [o.key for o in store.list()] == ["v1/00/rec0.rtd.keep"]


def test_an_invalid_key_fails_alone(store: ObjectStore) -> None:
    _write(store, "v1/aa/ok.rtd", b"x")
    results = store.delete_many(["v1/aa/ok.rtd", "../escape"])
    assert isinstance(results["v1/aa/ok.rtd"], DeleteResult)
    assert isinstance(results["../escape"], StorageError)


@pytest.mark.parametrize("population", [None, 10_000])
def test_versions_and_markers_of_many_keys_in_few_requests(
        moto_s3: S3Server, population: int | None) -> None:
    client, bucket, store = _versioned(moto_s3)
    keys = [f"v1/{i:02x}/r{i}.rtd" for i in range(30)]
    for key in keys:
        _write(store, key, b"one")
        _write(store, key, b"two")
        client.delete_object(Bucket=bucket, Key=f"v/{key}")  # a delete marker on top
    calls: list[str] = []
    client.meta.events.register("before-call.s3.*",
                                lambda model, **_: calls.append(model.name))
    results = store.delete_many(keys, population=population)
    assert all(isinstance(r, DeleteResult) and len(r.version_ids) == 3
               and r.evidence == EVIDENCE_GONE for r in results.values())
    assert calls.count("DeleteObjects") == 1  # 90 versions of 30 keys in one request
    lists = calls.count("ListObjectVersions")
    assert lists == (60 if population is None else 2)  # per key, or one listing each way
    left = client.list_object_versions(Bucket=bucket, Prefix="v/")
    assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []


@pytest.mark.parametrize("batch_delete", [True, False])
def test_a_locked_recording_is_refused_and_the_others_go(
        moto_s3: S3Server, batch_delete: bool) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, object_lock=True, client=client)
    store = S3ObjectStore(bucket, "v", client=client, batch_delete=batch_delete)
    until = datetime.now(UTC) + timedelta(days=1)
    _write(store, "v1/aa/locked.rtd", b"evidence", retain_until=until)
    _write(store, "v1/bb/free.rtd", b"quality")
    data = b"other"
    client.put_object(Bucket=bucket, Key="v/v1/cc/held.rtd", Body=data,
                      ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(),
                      ObjectLockLegalHoldStatus="ON")
    results = store.delete_many(["v1/aa/locked.rtd", "v1/bb/free.rtd", "v1/cc/held.rtd"])
    assert isinstance(results["v1/bb/free.rtd"], DeleteResult)
    for key, what in (("v1/aa/locked.rtd", "GOVERNANCE until"),
                      ("v1/cc/held.rtd", "legal hold")):
        err = results[key]
        assert isinstance(err, ObjectLockedError), err
        assert "blocked by Object Lock" in str(err) and what in str(err)
    assert [o.key for o in store.list()] == ["v1/aa/locked.rtd", "v1/cc/held.rtd"]


@pytest.mark.parametrize("batch_delete", [True, False])
def test_server_down_fails_every_key_without_raising(
        moto_s3: S3Server, batch_delete: bool) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(client=client)
    dead = S3ObjectStore(bucket, "v", client=S3Server(
        endpoint="http://127.0.0.1:9", process=moto_s3.process, log=moto_s3.log).client(
            max_attempts=1, connect_timeout=0.5), batch_delete=batch_delete)
    results = dead.delete_many(["v1/aa/a.rtd", "v1/bb/b.rtd"], known={"v1/aa/a.rtd": None})
    assert all(isinstance(r, StorageError) and "cannot reach" in str(r)
               for r in results.values())


# -- known versions first, one confirming listing -------------------------------------------


class _Calls:
    """The S3 operations a client sends, with their parameters."""

    def __init__(self, client: Any) -> None:
        self.ops: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build.s3.*", self._seen)

    def _seen(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.ops.append((model.name, dict(params)))

    def names(self) -> list[str]:
        return [name for name, _ in self.ops]


@pytest.mark.parametrize("population", [None, 10_000])
def test_known_versions_are_deleted_then_one_listing_confirms(
        moto_s3: S3Server, population: int | None) -> None:
    client, bucket, store = _versioned(moto_s3)
    keys = [f"v1/{i:02x}/k{i}.rtd" for i in range(12)]
    known = {key: _write(store, key, b"sealed") for key in keys}
    calls = _Calls(client)
    results = store.delete_many(keys, population=population, known=known)
    for key in keys:
        r = results[key]
        assert isinstance(r, DeleteResult), r
        assert r.version_ids == (known[key],) and r.evidence == EVIDENCE_GONE
    # no listing before: DeleteObjects of the known versions, then the confirmation
    assert calls.names() == ["DeleteObjects"] + ["ListObjectVersions"] * (
        len(keys) if population is None else 1)
    (_, params), = [op for op in calls.ops if op[0] == "DeleteObjects"]
    assert params["Delete"]["Objects"] == [{"Key": f"v/{k}", "VersionId": known[k]}
                                           for k in keys]
    left = client.list_object_versions(Bucket=bucket, Prefix="v/")
    assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []


@pytest.mark.parametrize("population", [None, 1])  # per-key listings, or of the prefix
def test_versions_made_behind_our_back_are_found_and_deleted_too(
        moto_s3: S3Server, population: int | None) -> None:
    client, bucket, store = _versioned(moto_s3)
    key, plain = "v1/aa/tampered.rtd", "v1/bb/plain.rtd"
    known = {key: _write(store, key, b"sealed"), plain: _write(store, plain, b"sealed")}
    # out of band: a newer version, then a delete marker on top (the known one is oldest)
    extra = client.put_object(Bucket=bucket, Key=f"v/{key}", Body=b"other",
                              ContentMD5=base64.b64encode(
                                  hashlib.md5(b"other").digest()).decode())["VersionId"]
    marker = client.delete_object(Bucket=bucket, Key=f"v/{key}")["VersionId"]
    calls = _Calls(client)
    results = store.delete_many([key, plain], population=population, known=known)
    r = results[key]
    assert isinstance(r, DeleteResult), r
    assert r.version_ids[0] == known[key]  # the known version first, then what was found
    assert sorted(r.version_ids) == sorted([known[key], extra, marker])
    assert results[plain] == DeleteResult(key=plain, version_ids=(known[plain],),
                                          evidence=EVIDENCE_GONE)
    per_round = 2 if population is None else 1
    assert calls.names() == ["DeleteObjects", *["ListObjectVersions"] * per_round,
                             "DeleteObjects", "ListObjectVersions"]  # round 2: 1 key
    # the second round deletes only what the listing still showed, of that key only
    second = calls.ops[1 + per_round][1]["Delete"]["Objects"]
    assert sorted(o["VersionId"] for o in second) == sorted([extra, marker])
    assert {o["Key"] for o in second} == {f"v/{key}"}
    assert client.list_object_versions(Bucket=bucket, Prefix="v/").get("Versions", []) == []


def test_unversioned_bucket_known_none_deletes_the_null_version(moto_s3: S3Server) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(client=client)
    store = S3ObjectStore(bucket, "v", client=client)
    keys = ["v1/aa/a.rtd", "v1/bb/b.rtd"]
    for key in keys:
        assert _write(store, key, b"sealed") is None  # the port's "no version"
    calls = _Calls(client)
    results = store.delete_many(keys, known=dict.fromkeys(keys))
    assert all(isinstance(r, DeleteResult) and r.version_ids == ("null",)
               for r in results.values())
    (_, params), = [op for op in calls.ops if op[0] == "DeleteObjects"]
    assert params["Delete"]["Objects"] == [{"Key": f"v/{k}", "VersionId": "null"}
                                           for k in keys]
    assert list(store.list()) == []


def test_bucket_versioned_after_the_write_leaves_no_delete_marker(moto_s3: S3Server) -> None:
    """Written unversioned (the catalog knows no version), versioning enabled since: the
    "null" version is deleted as such, not hidden under a new delete marker."""
    client = moto_s3.client()
    bucket = moto_s3.bucket(client=client)
    store = S3ObjectStore(bucket, "v", client=client)
    key = "v1/aa/a.rtd"
    assert _write(store, key, b"sealed") is None
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    calls = _Calls(client)
    result = store.delete_many([key], known={key: None})[key]
    assert isinstance(result, DeleteResult) and result.version_ids == ("null",)
    assert [op for op, _ in calls.ops].count("DeleteObjects") == 1  # one round
    left = client.list_object_versions(Bucket=bucket)
    assert not left.get("Versions") and not left.get("DeleteMarkers")


def test_known_and_unknown_keys_together(moto_s3: S3Server) -> None:
    """Keys without a known version (ingest recovery, the reconciler, a resumed deletion)
    are listed first; a key listed empty needs no second listing."""
    client, _, store = _versioned(moto_s3)
    known_key, unknown_key, absent = "v1/aa/k.rtd", "v1/bb/u.rtd", "v1/cc/never.rtd"
    vid = _write(store, known_key, b"x")
    uvid = _write(store, unknown_key, b"y")
    calls = _Calls(client)
    results = store.delete_many([known_key, unknown_key, absent], known={known_key: vid})
    assert results[known_key].version_ids == (vid,)  # type: ignore[union-attr]
    assert results[unknown_key].version_ids == (uvid,)  # type: ignore[union-attr]
    assert results[absent].version_ids == ()  # type: ignore[union-attr]
    names = calls.names()
    assert names.count("DeleteObjects") == 1
    # listed first: the two unknown keys; confirmed after: the two with versions deleted
    assert names.count("ListObjectVersions") == 4


class _Proxy:
    """A boto3 client standing in for the real one, with chosen calls replaced."""

    def __init__(self, inner: Any, **replaced: Any) -> None:
        self._inner = inner
        self._replaced = replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced.get(name) or getattr(self._inner, name)


def test_a_failed_confirming_listing_fails_the_keys_and_the_retry_succeeds(
        moto_s3: S3Server) -> None:
    from botocore.exceptions import ClientError

    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, client=client)
    keys = ["v1/aa/a.rtd", "v1/bb/b.rtd"]
    known = {key: _write(S3ObjectStore(bucket, "v", client=client), key, b"z")
             for key in keys}

    def broken_paginator(name: str) -> Any:
        if name == "list_object_versions":
            raise ClientError({"Error": {"Code": "ServiceUnavailable", "Message": "down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}},
                              "ListObjectVersions")
        return client.get_paginator(name)

    flaky = S3ObjectStore(bucket, "v", client=_Proxy(client, get_paginator=broken_paginator))
    results = flaky.delete_many(keys, known=known)
    assert all(isinstance(r, TransientStorageError) for r in results.values()), results
    # DeleteObjects did run; never trusted alone: the keys are reported failed. The next
    # pass (listing first: a resumed deletion knows no version) finds them gone.
    retry = S3ObjectStore(bucket, "v", client=client).delete_many(keys)
    assert all(isinstance(r, DeleteResult) and r.version_ids == () for r in retry.values())


def test_versions_that_stay_listed_fail_after_the_last_round(moto_s3: S3Server) -> None:
    from retentiond.adapters.s3 import MAX_DELETE_ROUNDS

    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, client=client)
    key = "v1/aa/stuck.rtd"
    vid = _write(S3ObjectStore(bucket, "v", client=client), key, b"z")
    sent: list[Any] = []

    def deletes_nothing(**kwargs: Any) -> dict[str, Any]:  # says yes, does nothing
        sent.append(kwargs)
        return {"Deleted": [], "Errors": []}

    store = S3ObjectStore(bucket, "v", client=_Proxy(client, delete_objects=deletes_nothing))
    err = store.delete_many([key], known={key: vid})[key]
    assert isinstance(err, StorageError) and not isinstance(err, ObjectLockedError)
    assert "still listed after DeleteObjects reported success" in str(err)
    assert f"({MAX_DELETE_ROUNDS} rounds)" in str(err)
    assert len(sent) == MAX_DELETE_ROUNDS
    assert [o.key for o in S3ObjectStore(bucket, "v", client=client).list()] == [key]


def test_a_locked_known_version_is_refused_as_locked(moto_s3: S3Server) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, object_lock=True, client=client)
    store = S3ObjectStore(bucket, "v", client=client)
    until = datetime.now(UTC) + timedelta(days=1)
    locked = _write(store, "v1/aa/locked.rtd", b"evidence", retain_until=until)
    free = _write(store, "v1/bb/free.rtd", b"quality")
    calls = _Calls(client)
    results = store.delete_many(["v1/aa/locked.rtd", "v1/bb/free.rtd"], known={
        "v1/aa/locked.rtd": locked, "v1/bb/free.rtd": free})
    assert results["v1/bb/free.rtd"] == DeleteResult(
        key="v1/bb/free.rtd", version_ids=(free,), evidence=EVIDENCE_GONE)
    err = results["v1/aa/locked.rtd"]
    assert isinstance(err, ObjectLockedError) and "GOVERNANCE until" in str(err)
    assert calls.names().count("DeleteObjects") == 1  # a refusal is not retried in a pass


def test_many_delete_requests_are_sent_concurrently_and_all_confirmed(
        moto_s3: S3Server) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, client=client)
    store = S3ObjectStore(bucket, "v", client=client, delete_batch=3)
    keys = [f"v1/{i:02x}/c{i}.rtd" for i in range(10)]
    known = {key: _write(store, key, b"c") for key in keys}
    calls = _Calls(client)
    results = store.delete_many(keys, population=10_000, known=known)
    assert all(isinstance(r, DeleteResult) and r.version_ids == (known[k],)
               for k, r in results.items())
    assert calls.names().count("DeleteObjects") == 4  # 3 + 3 + 3 + 1 versions
    assert calls.names()[-1] == "ListObjectVersions"  # after every DeleteObjects
    assert list(store.list()) == []


def test_with_batching_off_each_version_goes_by_its_own_delete_object(
        moto_s3: S3Server) -> None:
    """``s3.batch_delete: false`` (Ceph RGW with removal notifications): the same result,
    every version and marker deleted and confirmed, with DeleteObject requests only."""
    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, client=client)
    store = S3ObjectStore(bucket, "v", client=client, batch_delete=False)
    keys = [f"v1/{i:02x}/r{i}.rtd" for i in range(3)]
    written = {}
    for key in keys:
        written[key] = [_write(store, key, b"one"), _write(store, key, b"two")]
        marker = client.delete_object(Bucket=bucket, Key=f"v/{key}")["VersionId"]
        written[key].append(marker)
    calls = _Calls(client)
    results = store.delete_many(keys, known={keys[0]: written[keys[0]][0]})
    for key in keys:
        r = results[key]
        assert isinstance(r, DeleteResult) and r.evidence == EVIDENCE_GONE, r
        assert sorted(r.version_ids) == sorted(written[key])
    names = calls.names()
    assert "DeleteObjects" not in names and names.count("DeleteObject") == 9
    left = client.list_object_versions(Bucket=bucket)
    assert left.get("Versions", []) == [] and left.get("DeleteMarkers", []) == []


def test_versions_are_announced_before_they_are_deleted(store: ObjectStore) -> None:
    """``before_delete`` hears of every version while it is still there (the sweep writes
    them down first), and of nothing that was not there."""
    key, absent = "v1/aa/w.rtd", "v1/bb/absent.rtd"
    vid = _write(store, key, b"x")
    heard: list[dict[str, tuple[str, ...]]] = []

    def before(versions: Any) -> None:
        for k in versions:
            store.head(k)  # not deleted yet
        heard.append(dict(versions))

    results = store.delete_many([key, absent], known={key: vid}, before_delete=before)
    done = results[key]
    assert isinstance(done, DeleteResult) and done.version_ids == (vid or "null",)
    assert results[absent] == DeleteResult(key=absent, version_ids=(),
                                           evidence=results[absent].evidence)  # type: ignore[union-attr]
    assert heard == [{key: done.version_ids}]


@pytest.mark.parametrize("error", [StorageError("catalog: database is locked"),
                                   ValueError("database is locked (a corrupt row)")])
def test_versions_that_cannot_be_written_down_are_not_deleted(
        store: ObjectStore, error: Exception) -> None:
    """Every key then fails (the present and the absent alike), with an error that is
    not the store's, and nothing is deleted."""
    key, absent = "v1/aa/kept.rtd", "v1/bb/absent.rtd"
    vid = _write(store, key, b"x")

    def refuse(versions: Any) -> None:
        raise error

    results = store.delete_many([key, absent], known={key: vid, absent: None},
                                before_delete=refuse)
    assert set(results) == {key, absent}
    for err in results.values():
        assert isinstance(err, NotWrittenDownError) and "database is locked" in str(err)
        assert "nothing deleted" in str(err)
    assert store.head(key).key == key  # still there
