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

In a versioned bucket, every replaced checkpoint stays as a noncurrent version: that is
harmless (checkpoints are public, signed and consistent with each other), and a lifecycle
rule may expire noncurrent versions.
"""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from retentiond.adapters.s3 import BucketPrefix
from retentiond.core.tiles import check_store_path
from retentiond.errors import ObjectNotFoundError, ProofError

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
            try:
                self._put(path, data, IfNoneMatch="*")
                return
            except ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
                if code not in _ALREADY_THERE and status not in _ALREADY_THERE:
                    raise self._error(e, path) from e
            except BotoCoreError as e:
                raise self._error(e, path) from e
            old = self.read(path)  # another writer created it between our read and put
        if old != data:
            raise ProofError(f"{self.location}{path}: already holds different data; the "
                             "proof log never rewrites history")

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
