"""Removing a stored plaintext from an unversioned bucket inbox, on a live moto_server:
exactly the object read, never a newer one under the same key; one request where the
server honours If-Match on DeleteObject, a HEAD first where it does not."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from retentiond.adapters.s3_inbox import Pinned, S3Inbox
from tests.s3server import S3Server

T0 = datetime(2026, 11, 23, tzinfo=UTC)


def _counting(client: Any) -> Counter[str]:
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.s3",
                                lambda model, **_: calls.update([model.name]))
    return calls


def _ignoring_if_match(client: Any) -> None:
    """Make the client behave as against a server that ignores If-Match on DELETE (Ceph
    RGW 16): the header never leaves the client."""
    def strip(request: Any, **_: Any) -> None:
        if request.method == "DELETE":
            request.headers.pop("If-Match", None)
    client.meta.events.register("before-send.s3", strip)


def _put(client: Any, bucket: str, key: str, body: bytes) -> None:
    client.put_object(Bucket=bucket, Key="in/" + key, Body=body)


def _read(inbox: S3Inbox, key: str) -> Pinned:
    with inbox.open(key) as (fh, pinned):
        fh.read()
    return pinned


def _keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.mark.parametrize("honours", [True, False], ids=["if-match", "ignores-if-match"])
def test_removes_exactly_what_was_read(moto_s3: S3Server, honours: bool) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(client=client)
    if not honours:
        _ignoring_if_match(client)
    inbox = S3Inbox(bucket, "in/", client=client)
    calls = _counting(client)
    for name in ("a.wav", "b.wav", "c.wav"):
        _put(client, bucket, name, name.encode())

    first = _read(inbox, "a.wav")
    calls.clear()
    assert inbox.remove(first) is True
    assert inbox._if_match is honours
    # the first removal finds out: HEAD, then a DeleteObject with an ETag no object has
    # (refused where If-Match is honoured, then the real one; honoured by deleting
    # otherwise, the HEAD having just shown the object unchanged)
    assert calls == Counter(HeadObject=1, DeleteObject=2 if honours else 1)

    second = _read(inbox, "b.wav")
    calls.clear()
    assert inbox.remove(second) is True
    assert calls == (Counter(DeleteObject=1) if honours
                     else Counter(HeadObject=1, DeleteObject=1))
    assert _keys(client, bucket) == ["in/c.wav"]

    # replaced after it was read: the new object is left for its own ingest
    stale = _read(inbox, "c.wav")
    _put(client, bucket, "c.wav", b"a newer recording")
    assert inbox.remove(stale) is False
    assert _keys(client, bucket) == ["in/c.wav"]
    assert _read(inbox, "c.wav").size == len(b"a newer recording")


def test_already_gone_counts_as_removed(moto_s3: S3Server) -> None:
    client = moto_s3.client()
    bucket = moto_s3.bucket(client=client)
    inbox = S3Inbox(bucket, "in/", client=client)
    _put(client, bucket, "a.wav", b"a")
    _put(client, bucket, "b.wav", b"b")
    assert inbox.remove(_read(inbox, "a.wav")) is True  # learns the server's kind
    pinned = _read(inbox, "b.wav")
    client.delete_object(Bucket=bucket, Key="in/b.wav")
    assert inbox.remove(pinned) is True


class _Answers412:
    """A client whose DeleteObject answers 412 with no code in the body (some proxies)."""

    def __init__(self) -> None:
        self.deletes: list[dict[str, Any]] = []

    def head_object(self, **kw: Any) -> dict[str, Any]:
        return {"ETag": '"e1"', "ContentLength": 1, "LastModified": T0, "Metadata": {}}

    def delete_object(self, **kw: Any) -> dict[str, Any]:
        self.deletes.append(kw)
        if kw.get("IfMatch") != '"e1"':
            raise ClientError({"Error": {"Code": "", "Message": ""},
                               "ResponseMetadata": {"HTTPStatusCode": 412}}, "DeleteObject")
        return {}


def test_a_412_without_its_code_is_a_failed_precondition() -> None:
    client = _Answers412()
    inbox = S3Inbox("rec", "in/", client=client)
    pinned = Pinned(key="a.wav", etag='"e1"', version_id=None, size=1, modified=T0,
                    metadata={})
    assert inbox.remove(pinned) is True and inbox._if_match is True
    assert [d.get("IfMatch") for d in client.deletes] == [S3Inbox._PROBE_ETAG, '"e1"']
    changed = Pinned(key="a.wav", etag='"e0"', version_id=None, size=1, modified=T0,
                     metadata={})
    assert inbox.remove(changed) is False  # replaced since it was read: left in place
