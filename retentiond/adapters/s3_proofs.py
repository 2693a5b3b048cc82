"""The proof log on a bucket prefix (a ``ProofStore``): ``s3://proofs/log/``.

- ``write_once`` (tiles, entry bundles) is a conditional PutObject (``If-None-Match: *``,
  AWS since 2024, MinIO, moto): the server refuses to overwrite, so history cannot be
  rewritten even by two writers racing. A server that answers ``412 Precondition Failed``
  or ``409 ConditionalRequestConflict`` already has the file: its bytes are compared and
  anything different is a ``ProofError``. A server that ignores the header (Ceph RGW 16.2
  does) still gets a HEAD-before-PUT check, which is enough with retentiond's one-writer
  lock (``state/proof-log.lock``).
- ``replace`` (checkpoint, partial tiles) is a plain PutObject: atomic on S3, the reader
  sees the old or the new object, never a torn one.
- Every PUT carries ``Content-MD5``, so a corrupted upload is refused by the server.
- Beyond the port, for ``ProofLog.append`` (under its lock): ``existing`` finds which of
  the files an append will write exist with one listing per tile level, instead of a GET
  each, and ``write_new`` creates one found absent without ``write_once``'s GET first.

In a versioned bucket, every replaced checkpoint stays as a noncurrent version: that is
harmless (checkpoints are public, signed and consistent with each other), and a lifecycle
rule may expire noncurrent versions.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from retentiond.adapters.s3 import BucketPrefix, answer_of
from retentiond.core.tiles import check_store_path
from retentiond.errors import ObjectNotFoundError, ProofError


def _shared_start(texts: Sequence[str]) -> str:
    """The longest string every one of ``texts`` starts with (character by character:
    a listing prefix, not a folder)."""
    first, last = min(texts), max(texts)
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[:n]


_ALREADY_THERE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class S3ProofStore(BucketPrefix):
    """A ``ProofStore`` on ``s3://bucket/prefix/``."""

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, path: str) -> str:
        return self.prefix + check_store_path(path)

    def read(self, path: str) -> bytes | None:
        key = self._key(path)
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=key)
            with resp["Body"] as body:
                return bytes(body.read())
        except (BotoCoreError, ClientError) as e:
            err = self._error(e, path)
            if isinstance(err, ObjectNotFoundError):
                return None
            raise err from e

    def _put(self, path: str, data: bytes, **extra: Any) -> None:
        md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        self._client.put_object(Bucket=self.bucket, Key=self._key(path),
                                Body=io.BytesIO(data), ContentLength=len(data),
                                ContentMD5=md5, ContentType="application/octet-stream",
                                **extra)

    def write_once(self, path: str, data: bytes) -> None:
        old = self.read(path)
        if old is None:
            self.write_new(path, data)
        elif old != data:
            raise self._rewrite_refused(path)

    def write_new(self, path: str, data: bytes) -> None:
        """``write_once`` of a file the caller has just seen absent (``existing``) while
        holding the proof-log lock: the conditional PUT without the GET before it. A
        server honouring ``If-None-Match`` still refuses to overwrite (the bytes are then
        compared, as in ``write_once``); on one that ignores it, the caller's check under
        the lock is what ``write_once``'s own read would have been."""
        try:
            self._put(path, data, IfNoneMatch="*")
            return
        except ClientError as e:
            code, status = answer_of(e)
            if code not in _ALREADY_THERE and str(status) not in _ALREADY_THERE:
                raise self._error(e, path) from e
        except BotoCoreError as e:
            raise self._error(e, path) from e
        if self.read(path) != data:  # another writer created it since the caller looked
            raise self._rewrite_refused(path)

    def _rewrite_refused(self, path: str) -> ProofError:
        return ProofError(f"{self.location}{path}: already holds different data; the "
                          "proof log never rewrites history")

    def existing(self, paths: Sequence[str]) -> set[str]:
        """Which of ``paths`` exist, from listings instead of a GET each: the paths of one
        tile level (``tile/<L>/``, ``tile/entries/``) are listed under the longest prefix
        they share, until past the last of them. An append's new tiles are neighbours,
        so that is one ListObjectsV2 page per level (at most 1,000 keys: more only when
        its tiles cross a 1,000-index folder)."""
        groups: dict[str, builtins.list[str]] = {}
        for path in paths:
            check_store_path(path)
            groups.setdefault("/".join(path.split("/", 2)[:2]), []).append(path)
        if len(groups) <= 1:
            return set().union(*map(self._existing_among, groups.values()))
        with ThreadPoolExecutor(max_workers=len(groups),
                                thread_name_prefix="s3-proofs-list") as pool:
            return set().union(*pool.map(self._existing_among, groups.values()))

    def _existing_among(self, group: builtins.list[str]) -> set[str]:
        """``existing`` for paths of one tile level: one listing of what they share."""
        wanted, last, cut = set(group), self.prefix + max(group), len(self.prefix)
        found: set[str] = set()
        try:
            # from just before the first wanted path: a shared start such as ``tile/0/``
            # (paths 999 and x001/000) must not list every tile from 000 on
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + _shared_start(group),
                StartAfter=self.prefix + min(group)[:-1])
            for page in pages:
                keys = [o["Key"] for o in page.get("Contents", [])]
                found.update(k[cut:] for k in keys if k[cut:] in wanted)
                if keys and keys[-1] >= last:
                    break
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, group[0]) from e
        return found

    def replace(self, path: str, data: bytes) -> None:
        try:
            self._put(path, data)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, path) from e

    def list(self, prefix: str = "") -> list[str]:
        if prefix and "/" in prefix.rstrip("/"):
            check_store_path(prefix.rsplit("/", 1)[0])
        out: list[str] = []
        cut = len(self.prefix)
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                out += [o["Key"][cut:] for o in page.get("Contents", [])
                        if not o["Key"].endswith("/")]
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, prefix) from e
        return sorted(out)
