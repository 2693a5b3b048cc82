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
from retentiond.errors import ObjectLockedError, StorageError
from retentiond.ports import DeleteResult, ObjectStore
from tests.s3server import S3Server


def _write(store: ObjectStore, key: str, data: bytes, **kw: Any) -> str | None:
    with store.writer(key, **kw) as w:
        w.write(data)
    return w.result.version_id


@pytest.fixture(params=["local", "s3", "s3-versioned"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "vault")
    server: S3Server = request.getfixturevalue("moto_s3")
    client = server.client()
    bucket = server.bucket(versioned=request.param == "s3-versioned", client=client)
    return S3ObjectStore(bucket, "v", client=client)


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
    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, client=client)
    store = S3ObjectStore(bucket, "v", client=client)
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


def test_a_locked_recording_is_refused_and_the_others_go(moto_s3: S3Server) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(versioned=True, object_lock=True, client=client)
    store = S3ObjectStore(bucket, "v", client=client)
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


def test_server_down_fails_every_key_without_raising(moto_s3: S3Server) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(client=client)
    dead = S3ObjectStore(bucket, "v", client=S3Server(
        endpoint="http://127.0.0.1:9", process=moto_s3.process, log=moto_s3.log).client(
            max_attempts=1, connect_timeout=0.5))
    results = dead.delete_many(["v1/aa/a.rtd", "v1/bb/b.rtd"])
    assert all(isinstance(r, StorageError) and "cannot reach" in str(r)
               for r in results.values())
