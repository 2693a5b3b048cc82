"""A bucket prefix as an inbox: ``s3://recordings/incoming/``.

The recorder (NICE, Genesys, Amazon Connect exports...) writes plaintext recordings here;
retentiond reads each one once, and removes it only after its encrypted copy is verified.

- A recording ``KEY`` may have its sidecar as the object ``KEY.json`` or as
  ``x-amz-meta-retentiond-*`` metadata on the recording itself (SPEC section 3).
- Identity: what was read is pinned by the ETag and version id the GET answered. Before
  the plaintext is removed it is checked to be still that object (HEAD), and removal
  targets that exact version in a versioned bucket (a plain DELETE there would only add
  a delete marker and leave the plaintext in place), or is conditional on the ETag
  (``If-Match``) in an unversioned one, so a recording re-uploaded meanwhile under the
  same key is never removed unread.
- Objects are visible only once complete (S3 writes are atomic), so no settle time is
  needed for the bytes; only the sidecar may still be on its way.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, cast

from botocore.exceptions import BotoCoreError, ClientError

from retentiond.adapters.localfs import SIDECAR_SUFFIX, is_candidate
from retentiond.adapters.s3 import (
    NULL_VERSION,
    READ_BUFFER,
    BucketPrefix,
    StreamBody,
    answer_of,
)
from retentiond.errors import InputError, ObjectNotFoundError

logger = logging.getLogger(__name__)


def _precondition_failed(e: ClientError) -> bool:
    """A 412, whatever code the server (or a proxy) put in its body."""
    code, status = answer_of(e)
    return code in ("PreconditionFailed", "412") or status == 412


@dataclass(frozen=True)
class S3Item:
    """One object as the listing shows it (a candidate recording or its sidecar)."""

    key: str  # relative to the inbox prefix
    size: int
    modified: datetime
    etag: str


@dataclass(frozen=True)
class S3Candidate:
    """A candidate recording and, if listed, its sidecar object."""

    inbox: S3Inbox
    item: S3Item
    sidecar: S3Item | None

    @property
    def key(self) -> str:
        return self.item.key

    @property
    def source(self) -> str:
        return self.inbox.url_of(self.item.key)


@dataclass(frozen=True)
class Pinned:
    """Exactly which object a GET read: used to check it is unchanged and to remove it."""

    key: str
    etag: str
    version_id: str | None  # None: unversioned bucket
    size: int
    modified: datetime
    metadata: dict[str, str]


class S3Inbox(BucketPrefix):
    """Reads and removes recordings under ``s3://bucket/prefix/``."""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key_of(self, url: str) -> str | None:
        """The relative key of an ``s3://`` URL inside this inbox, else None."""
        return url[len(self.url):] if url.startswith(self.url) else None

    # -- listing ----------------------------------------------------------------------

    def scan(self) -> tuple[list[S3Candidate], dict[str, datetime]]:
        """(every candidate recording under the prefix with its sidecar object if listed,
        the keys of sidecars listed without their recording, sorted, with their
        LastModified), from one listing. Hidden names, partial-upload suffixes and folder
        placeholders are skipped, like in a drop folder."""
        items: dict[str, S3Item] = {}
        cut = len(self.prefix)
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for o in page.get("Contents", []):
                    key = str(o["Key"])[cut:]
                    if not key or key.endswith("/"):
                        continue
                    items[key] = S3Item(key=key, size=int(o["Size"]),
                                        modified=o["LastModified"].astimezone(UTC),
                                        etag=str(o.get("ETag", "")))
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, "") from e
        out = []
        for key, item in items.items():
            name = key.rpartition("/")[2]
            if is_candidate(name):
                out.append(S3Candidate(self, item, items.get(key + SIDECAR_SUFFIX)))
        have = {c.key for c in out}
        orphans = {k: items[k].modified for k in sorted(items) if k.endswith(SIDECAR_SUFFIX)
                   and k[: -len(SIDECAR_SUFFIX)] not in have}
        return sorted(out, key=lambda c: c.key), orphans

    # -- reading ----------------------------------------------------------------------

    @contextmanager
    def open(self, key: str) -> Iterator[tuple[BinaryIO, Pinned]]:
        """Stream the current version of ``key``; the ``Pinned`` says exactly which."""
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e
        pinned = self._pinned(key, resp)
        raw = StreamBody(resp["Body"], lambda e: self._error(e, key))
        with io.BufferedReader(raw, buffer_size=READ_BUFFER) as fh:
            yield cast(BinaryIO, fh), pinned

    def _pinned(self, key: str, resp: dict[str, Any]) -> Pinned:
        vid = resp.get("VersionId")
        return Pinned(key=key, etag=str(resp.get("ETag", "")),
                      version_id=str(vid) if vid and vid != NULL_VERSION else None,
                      size=int(resp.get("ContentLength", 0)),
                      modified=resp["LastModified"].astimezone(UTC),
                      metadata={str(k).lower(): str(v)
                                for k, v in resp.get("Metadata", {}).items()})

    def read_small(self, key: str, *, limit: int) -> tuple[bytes, Pinned] | None:
        """A whole small object (a sidecar), or None if absent. Raises InputError if it is
        larger than ``limit`` (without reading it)."""
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as e:
            err = self._error(e, key)
            if isinstance(err, ObjectNotFoundError):
                return None
            raise err from e
        pinned = self._pinned(key, resp)
        with resp["Body"] as body:
            if pinned.size > limit:
                raise InputError(f"sidecar is {pinned.size} bytes (limit {limit})")
            try:
                data = bytes(body.read(limit + 1))
            except (BotoCoreError, ClientError) as e:
                raise self._error(e, key) from e
        if len(data) > limit:
            raise InputError(f"sidecar is larger than {limit} bytes")
        return data, pinned

    def current(self, key: str) -> Pinned | None:
        """What is under ``key`` now (HEAD), or None."""
        try:
            resp = self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except (BotoCoreError, ClientError) as e:
            err = self._error(e, key)
            if isinstance(err, ObjectNotFoundError):
                return None
            raise err from e
        return self._pinned(key, resp)

    def _probe_if_match(self, full: str) -> bool:
        """The probe of ``remove``; True when the server honours If-Match."""
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full,
                                       IfMatch=self._PROBE_ETAG)
        except ClientError as e:
            if not _precondition_failed(e):
                raise
            self._if_match = True
            return True
        self._if_match = False
        logger.info("%s: the server ignores If-Match on DeleteObject; each removal is "
                    "checked by a HEAD first", self.url, extra={"event": "inbox.no_if_match"})
        return False

    def unchanged(self, pinned: Pinned) -> bool:
        now = self.current(pinned.key)
        return now is not None and now.etag == pinned.etag and \
            now.version_id == pinned.version_id

    # -- removing ---------------------------------------------------------------------

    # Does the server honour If-Match on DeleteObject (AWS since 2024, recent MinIO,
    # moto; not Ceph RGW 16)? Learnt at the first removal from an unversioned inbox.
    _if_match: bool | None = None
    _PROBE_ETAG = '"retentiond-probe-not-an-etag"'

    def remove(self, pinned: Pinned) -> bool:
        """Remove exactly the object that was read. Returns False if it was replaced
        meanwhile (the new one is left for its own ingest).

        Unversioned inbox: DeleteObject with If-Match (the ETag read) makes the check
        and the removal one atomic request on a server that honours it. On one that
        ignores the header, a HEAD first is the check (single writer: the daemon lock).
        Which kind of server this is, the first removal finds out without risk: after
        the HEAD, a DeleteObject with an ETag no object has is refused (412) by the
        first kind, then the real conditional one follows; the second kind deletes the
        object the HEAD has just shown unchanged, as it would have anyway."""
        full = self.prefix + pinned.key
        try:
            if pinned.version_id is not None:
                # this version, permanently: no delete marker hiding a plaintext version
                self._client.delete_object(Bucket=self.bucket, Key=full,
                                           VersionId=pinned.version_id)
                return True
            if self._if_match is not True:
                if not self.unchanged(pinned):
                    return False
                if self._if_match is None and not self._probe_if_match(full):
                    return True  # the probe removed it: the server ignores If-Match
            self._client.delete_object(Bucket=self.bucket, Key=full, IfMatch=pinned.etag)
            return True
        except ClientError as e:
            code, _ = answer_of(e)
            if _precondition_failed(e):
                return False
            if code in ("NoSuchKey", "NoSuchVersion", "404"):
                return True
            raise self._error(e, pinned.key) from e
        except BotoCoreError as e:
            raise self._error(e, pinned.key) from e

