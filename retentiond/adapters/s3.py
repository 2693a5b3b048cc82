"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW) as an ``ObjectStore``.

Thin translation to boto3: no retention logic here. Every botocore/boto3 exception leaves
as one of ours (``TransientStorageError``, ``PermanentStorageError``, ``ObjectLockedError``,
``ObjectNotFoundError``), with a one-line message naming bucket and key, never credentials.

Limits (S3's own, checked here so the operator gets our message rather than a bare 400):

- object key: at most 1,024 bytes of UTF-8, store prefix included;
- multipart parts: 5 MiB to 5 GiB, at most 10,000 per object, so the largest object is
  10,000 x ``part_size`` (78 GiB at the default 8 MiB);
- object tags: at most 10, key at most 128 and value at most 256 characters;
- user metadata (``x-amz-meta-*``): at most 2 KiB of keys and values, lowercase ASCII keys;
- ``DeleteObjects``: at most 1,000 keys per request.

Memory: a writer holds at most ``max_inflight_parts + 1`` part buffers (24 MiB with the
defaults: 2 parts uploading from worker threads while the caller fills a third), whatever
the object size; the buffers are reused across parts and across writes (up to that many
idle buffers are kept per store).

Integrity on the wire: every PutObject and UploadPart carries ``Content-MD5``. It is
understood by AWS, MinIO, Ceph RGW and moto alike (botocore's default CRC32
``aws-chunked`` trailers are not, by RGW 16.2), Object Lock buckets with a default
retention refuse uploads without it, and it makes the server reject a corrupted part.
The ciphertext is authenticated end to end anyway (AEAD); server-side encryption is never
relied upon.

Extra methods beyond the ``ObjectStore`` port: ``check``, ``metadata``, ``get_tags``,
``put_tags``, ``set_retention``, ``set_legal_hold``, ``lock_state``, ``version_locks``,
``bucket_versioning``.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import io
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Self, TypeVar, cast
from urllib.parse import parse_qsl, quote, urlencode

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from retentiond.concurrency import run_all
from retentiond.errors import (
    ConfigError,
    ObjectLockedError,
    ObjectNotFoundError,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
)
from retentiond.ports import BeforeDelete, DeleteResult, ObjectInfo, PutResult, not_written_down

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

logger = logging.getLogger(__name__)

# boto3 ships no type information: a client is ``Any`` here.
S3Client = Any
T = TypeVar("T")

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last is at least 5 MiB
MAX_PART_SIZE = 5 * 1024 * MiB  # S3: at most 5 GiB per part
MAX_PARTS = 10_000  # S3: at most 10,000 parts per multipart upload
DEFAULT_PART_SIZE = 8 * MiB
MAX_KEY_BYTES = 1024  # S3: object keys are at most 1,024 bytes of UTF-8
MAX_DELETE_BATCH = 1000  # S3: DeleteObjects takes at most 1,000 keys
MAX_TAGS = 10  # S3: at most 10 tags per object
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
MAX_METADATA_BYTES = 2048  # S3: user metadata at most 2 KiB (keys + values)
READ_BUFFER = 256 * 1024  # buffered reader in front of a GET body
MAX_LOCK_PROBES = 10  # HEADs made to explain a refused deletion
EVIDENCE_GONE = "list_object_versions: 0 versions, 0 delete markers"
# DeleteObjects + confirming listing rounds per key before a key still listed is reported
# failed (retried next pass): the known version, then what the listing found (versions
# or markers added behind our back), then once more (a write racing the deletion)
MAX_DELETE_ROUNDS = 3
# requests one deletion has in flight (DeleteObjects batches, per-key listings): well
# under the client's connection pool (16 by default)
REQUESTS_IN_FLIGHT = 4
NULL_VERSION = "null"  # the version id S3 gives objects of an unversioned bucket
_ALREADY_GONE = {"NoSuchVersion", "NoSuchKey"}  # DeleteObjects errors that mean "not there"
# what a DeleteObject of one version may answer about that version (as DeleteObjects
# would in its Errors), not about the request: a lock, a version gone meanwhile
# (MinIO refuses a version under Object Lock with InvalidRequest "Object is WORM
# protected", AWS and Ceph with AccessDenied)
_VERSION_REFUSALS = {"AccessDenied", "NoSuchVersion", "NoSuchKey", "InvalidArgument",
                     "MethodNotAllowed", "InvalidRequest"}

LockMode = Literal["GOVERNANCE", "COMPLIANCE"]

_NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchVersion"}
_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                "ExpiredToken", "TokenRefreshRequired", "InvalidSecurity"}
_TRANSIENT = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout",
              "Throttling", "ThrottlingException", "TooManyRequests", "RequestLimitExceeded",
              "OperationAborted", "500", "502", "503", "504"}
_METADATA_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_METADATA_VALUE = re.compile(r"^[\x20-\x7e]*$")
_TAG_TEXT = re.compile(r"^[\w .:/=+\-@]*$")
_SERVER_MESSAGE_CHARS = 200  # how much of a server's error message goes into ours


# -- client --------------------------------------------------------------------------------


def make_s3_client(
    *, endpoint_url: str | None = None, region: str | None = None,
    addressing_style: str = "auto", profile: str | None = None,
    retry_mode: str = "standard", max_attempts: int = 5,
    connect_timeout: float = 5.0, read_timeout: float = 60.0,
    max_pool_connections: int = 16,
    checksums: Literal["when_required", "when_supported"] = "when_required",
) -> S3Client:
    """A boto3 S3 client with bounded retries and timeouts.

    Credentials come only from the standard AWS chain (environment, shared config and
    credentials files with ``profile``, container/instance roles), never from our config.
    ``retry_mode`` is ``standard`` or ``adaptive`` (client-side rate limiting on
    throttling); ``max_attempts`` counts the first try (1-20). ``checksums`` defaults to
    ``when_required`` because RGW 16.2 and older MinIO reject botocore's default CRC32
    trailers; our own Content-MD5 covers uploads either way.
    """
    if addressing_style not in ("auto", "path", "virtual"):
        raise ConfigError(f"s3.addressing_style: {addressing_style!r}: expected auto, path "
                          "or virtual")
    if retry_mode not in ("standard", "adaptive"):
        raise ConfigError(f"s3 retry mode: {retry_mode!r}: expected standard or adaptive")
    if not 1 <= max_attempts <= 20:
        raise ConfigError(f"s3 max attempts: {max_attempts}: expected 1-20")
    if connect_timeout <= 0 or read_timeout <= 0:
        raise ConfigError("s3 timeouts: must be positive seconds")
    config = Config(
        region_name=region,
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=max_pool_connections,
        s3={"addressing_style": addressing_style},
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    try:
        session = boto3.session.Session(profile_name=profile or None)
        return session.client("s3", endpoint_url=endpoint_url or None, config=config)
    except ProfileNotFound as e:
        raise ConfigError(f"s3.profile: {profile!r}: no such profile in the AWS config "
                          "files") from e
    except (BotoCoreError, ValueError) as e:
        raise ConfigError(f"s3: cannot create a client for endpoint {endpoint_url!r}: "
                          f"{type(e).__name__}") from e


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix/")``."""
    if not url.startswith("s3://"):
        raise ConfigError(f"{url!r}: not an s3:// URL")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not bucket:
        raise ConfigError(f"{url!r}: no bucket name")
    return bucket, prefix


# -- errors --------------------------------------------------------------------------------


def answer_of(e: ClientError) -> tuple[str, int]:
    """(error code, HTTP status) of a server's answer; "" and 0 where it gave none (a
    proxy's bare 412, a HEAD's 404 without a body)."""
    code = str(e.response.get("Error", {}).get("Code", "") or "")
    status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def translate_error(e: Exception, *, where: str, bucket: str,
                    endpoint: str | None = None) -> StorageError:
    """Turn a botocore/boto3 exception into our error tree (message without secrets)."""
    on = f" on {endpoint}" if endpoint else ""
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code, status = answer_of(e)
        text = " ".join(str(err.get("Message", "") or "").split())[:_SERVER_MESSAGE_CHARS]
        if code == "NoSuchBucket":
            return PermanentStorageError(f"s3://{bucket}: bucket does not exist{on} "
                                         "(NoSuchBucket)")
        if code in _NOT_FOUND:
            return ObjectNotFoundError(f"{where}: not found")
        if code in _CREDENTIALS:
            return PermanentStorageError(
                f"{where}: credentials rejected ({code}, HTTP {status}): check the AWS "
                "credential chain (environment, profile, instance role)")
        if code in ("AccessDenied", "AllAccessDisabled", "403"):
            return PermanentStorageError(
                f"{where}: access denied ({code}, HTTP {status}): check the bucket policy "
                "and the permissions of the credentials in use")
        if code in _TRANSIENT or status >= 500 or status == 429:
            return TransientStorageError(f"{where}: {code or 'error'} (HTTP {status}){on}"
                                         + (f": {text}" if text else ""))
        return PermanentStorageError(f"{where}: {code or 'error'} (HTTP {status})"
                                     + (f": {text}" if text else ""))
    if isinstance(e, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return PermanentStorageError(f"{where}: no usable AWS credentials in the standard "
                                     f"chain ({type(e).__name__})")
    if isinstance(e, SSLError):
        return PermanentStorageError(f"{where}: TLS failure talking to the S3 endpoint{on} "
                                     "(SSLError): check the CA bundle and endpoint_url")
    if isinstance(e, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError
                  | BotoConnectionError):
        return TransientStorageError(f"{where}: cannot reach the S3 endpoint{on} "
                                     f"({type(e).__name__})")
    if isinstance(e, ReadTimeoutError | ResponseStreamingError | IncompleteReadError
                  | HTTPClientError):
        return TransientStorageError(f"{where}: connection to the S3 endpoint failed{on} "
                                     f"({type(e).__name__})")
    text = " ".join(str(e).split())[:_SERVER_MESSAGE_CHARS]
    return PermanentStorageError(f"{where}: {type(e).__name__}: {text}")


def require_bucket(client: S3Client, bucket: str,
                   on_error: Callable[[Exception], StorageError]) -> None:
    """HeadBucket; a missing bucket is a PermanentStorageError naming it (a HEAD 404 has
    no body, so a missing key and a missing bucket look alike without this); any other
    failure goes through ``on_error``."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as e:
        code, status = answer_of(e)
        if status == 404 or code == "NoSuchBucket":
            raise PermanentStorageError(
                f"s3://{bucket}: bucket does not exist on {client.meta.endpoint_url} "
                "(NoSuchBucket)") from e
        raise on_error(e) from e
    except BotoCoreError as e:
        raise on_error(e) from e


# GetBucketLocation answers in S3's historical naming: no LocationConstraint for
# us-east-1, "EU" for buckets made in eu-west-1 before it had its name
_LOCATION_ALIASES = {"": "us-east-1", "EU": "eu-west-1"}


def bucket_region(client: S3Client, bucket: str, *, aws: bool) -> str:
    """The region the S3 server says ``bucket`` is in (GetBucketLocation): with ``aws``
    in today's AWS names (an empty answer is us-east-1, "EU" eu-west-1), else as the
    server gave it (Google's "EU" is a multi-region, not Ireland). Raises a StorageError
    naming the bucket for any failure (access denied, not implemented, a body that is
    not S3's XML...)."""
    where = f"s3://{bucket}: GetBucketLocation"
    try:
        answer = client.get_bucket_location(Bucket=bucket)
    except (ClientError, BotoCoreError) as e:
        raise translate_error(e, where=where, bucket=bucket,
                              endpoint=client.meta.endpoint_url) from None
    except Exception as e:  # noqa: BLE001 (botocore parses error bodies itself: ParseError...)
        raise PermanentStorageError(f"{where}: unexpected answer from "
                                    f"{client.meta.endpoint_url} ({type(e).__name__})") from None
    region = str(answer.get("LocationConstraint") or "")
    return _LOCATION_ALIASES.get(region, region) if aws else region


# -- a bucket prefix -----------------------------------------------------------------------


class BucketPrefix:
    """``s3://bucket/prefix/`` with its client: the common part of the inbox and proof-log
    adapters (``prefix`` is kept with a trailing ``/``, or empty)."""

    def __init__(self, bucket: str, prefix: str = "", *, client: S3Client) -> None:
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self._client = client

    @classmethod
    def from_url(cls, url: str, *, client: S3Client) -> Self:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, client=client)

    @property
    def client(self) -> S3Client:
        return self._client

    def url_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _error(self, e: Exception, key: str) -> StorageError:
        return translate_error(e, where=self.url_of(key), bucket=self.bucket,
                               endpoint=getattr(self._client.meta, "endpoint_url", None))

    def check(self) -> None:
        """Raise StorageError unless the bucket exists and answers (readiness)."""
        require_bucket(self._client, self.bucket, lambda e: self._error(e, ""))


# -- value types ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LockState:
    """Object Lock state of one object version, as the store reports it."""

    mode: str | None
    retain_until: datetime | None
    legal_hold: bool

    @property
    def is_set(self) -> bool:
        """A retention (possibly expired: no clock here) or a legal hold is set."""
        return self.mode is not None or self.legal_hold

    def describe(self) -> str:
        parts = []
        if self.mode is not None:
            until = self.retain_until.isoformat() if self.retain_until else "?"
            parts.append(f"{self.mode} until {until}")
        if self.legal_hold:
            parts.append("legal hold")
        return ", ".join(parts) or "no lock"


# -- byte plumbing -------------------------------------------------------------------------


class _View(io.RawIOBase):
    """A seekable read-only file over a memoryview: a request body without a copy."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        out = memoryview(buffer).cast("B")
        n = min(len(out), len(self._view) - self._pos)
        out[:n] = self._view[self._pos:self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


class StreamBody(io.RawIOBase):
    """A GET body (botocore StreamingBody) whose failures are ours (``on_error``)."""

    def __init__(self, body: Any, on_error: Callable[[Exception], StorageError]) -> None:
        super().__init__()
        self._body = body
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        try:
            return int(self._body.readinto(buffer))
        except (BotoCoreError, ClientError) as e:
            raise self._on_error(e) from e

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class _BufferPool:
    """Idle part buffers kept for the next write (at most ``keep`` of them)."""

    def __init__(self, size: int, keep: int) -> None:
        self.size = size
        self._keep = keep
        self._idle: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return bytearray(self.size)

    def give(self, buf: bytearray) -> None:
        with self._lock:
            if len(self._idle) < self._keep and len(buf) == self.size:  # not a small one
                self._idle.append(buf)


def _version(vid: object) -> str | None:
    """A version id as the port reports it: None for the "null" version (an unversioned
    bucket, or versioning suspended), like a store without versions."""
    return str(vid) if vid and vid != NULL_VERSION else None


def _concurrently(calls: Sequence[Callable[[], T]]) -> builtins.list[T]:
    """Run ``calls`` (requests of one deletion: DeleteObjects batches, per-key listings)
    with up to REQUESTS_IN_FLIGHT at a time (``concurrency.run_all``)."""
    return run_all(calls, threads=REQUESTS_IN_FLIGHT, name="s3-delete")


def _named(vid: str | None) -> str:
    """A version id as listings and proofs name it: "null" for the null version."""
    return vid or NULL_VERSION


def _unique(ids: builtins.list[str]) -> tuple[str, ...]:
    """``ids`` in order, each once (a version retried in a later round, "null" known and
    listed)."""
    return tuple(dict.fromkeys(ids))


def _md5(view: memoryview) -> bytes:
    return hashlib.md5(view, usedforsecurity=False).digest()


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


# -- writer --------------------------------------------------------------------------------


class S3Writer:
    """A streamed write: one PutObject up to ``part_size`` bytes, multipart beyond.

    Nothing is visible under the key until the context manager exits cleanly; on any
    exception the multipart upload is aborted (after its in-flight parts have finished).
    """

    def __init__(self, store: S3ObjectStore, key: str, extra: dict[str, Any], *,
                 size_hint: int | None = None) -> None:
        self._store = store
        self._key = key
        self._full = store._full_key(key)
        self._extra = extra
        self._part_size = store.part_size
        # a small object (the size is known ahead, below a part): a buffer of its size
        # rather than a whole part buffer, whose zero-filling alone cost more than the
        # object's encryption (8 MiB for 1 MiB); grown to a part if more comes
        self._hint = size_hint if size_hint is not None and 0 < size_hint < store.part_size \
            else None
        self._buf: bytearray | None = None
        self._fill = 0
        self._size = 0
        self._upload_id: str | None = None
        self._next_part = 1
        self._parts: list[dict[str, Any]] = []
        self._digests: list[bytes | None] = []
        self._inflight: deque[tuple[Future[tuple[str, bytes | None]], bytearray, int]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._failed = False  # a request failed: the object can only be aborted now
        self._done = False
        self._result: PutResult | None = None

    # ObjectWriter -------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        """Copy ``data`` into the current part buffer (uploading full parts as it goes)."""
        self._usable()
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        total = len(view)
        off = 0
        while off < total:
            if self._buf is not None and self._fill == len(self._buf) < self._part_size:
                self._grow()  # more than the size hint said
            if self._fill == self._part_size:
                self._send_part()  # a full part waits for one more byte: == part -> PutObject
            if self._buf is None:
                self._buf = bytearray(self._hint) if self._hint is not None \
                    and self._next_part == 1 else self._store._buffers.take()
            n = min(len(self._buf) - self._fill, total - off)
            self._buf[self._fill:self._fill + n] = view[off:off + n]
            self._fill += n
            off += n
        self._size += total
        return total

    def _grow(self) -> None:
        small = cast(bytearray, self._buf)
        self._buf = self._store._buffers.take()
        self._buf[:self._fill] = small[:self._fill]

    @property
    def result(self) -> PutResult:
        """Available after a clean exit of the context manager."""
        if self._result is None:
            raise StorageError(f"{self._store._where(self._key)}: write not completed")
        return self._result

    # context manager ----------------------------------------------------------------------

    def __enter__(self) -> S3Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc is None:
                try:
                    self._finish()
                except BaseException:
                    self._abort()
                    raise
            else:
                self._abort()
        finally:
            self._done = True
            self._release()

    # internals ----------------------------------------------------------------------------

    def _usable(self) -> None:
        where = self._store._where(self._key)
        if self._done:
            raise StorageError(f"{where}: write after close")
        if self._failed:
            raise StorageError(f"{where}: an earlier request of this write failed")

    def _finish(self) -> None:
        self._usable()
        store = self._store
        if self._upload_id is None:
            view = memoryview(self._buf)[:self._fill] if self._buf is not None \
                else memoryview(b"")
            args: dict[str, Any] = {"Bucket": store.bucket, "Key": self._full,
                                    "Body": _View(view), "ContentLength": self._fill,
                                    **self._extra}
            expected = None
            if store.content_md5:
                digest = _md5(view)
                args["ContentMD5"] = _b64(digest)
                expected = f'"{digest.hex()}"'
            try:
                resp = store._client.put_object(**args)
            except (BotoCoreError, ClientError) as e:
                raise store._error(e, self._key) from e
        else:
            if self._fill:
                self._send_part()
            while self._inflight:
                self._collect_oldest()
            try:
                resp = store._client.complete_multipart_upload(
                    Bucket=store.bucket, Key=self._full, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts})
            except (BotoCoreError, ClientError) as e:
                raise store._error(e, self._key) from e
            self._upload_id = None  # completed: nothing left to abort
            store._reapply_after_multipart(self._key, self._full, self._extra,
                                           resp.get("VersionId"))
            # S3's multipart ETag: MD5 of the parts' MD5s, "-" number of parts
            digests = [d for d in self._digests if d is not None]
            expected = f'"{hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()}' \
                f'-{len(digests)}"' if len(digests) == len(self._parts) else None
        stored = resp.get("ETag")
        self._result = PutResult(key=self._key, size=self._size,
                                 version_id=_version(resp.get("VersionId")), etag=expected,
                                 stored_etag=str(stored) if stored else None)

    def _send_part(self) -> None:
        try:
            self._submit_part()
        except BaseException:
            self._failed = True
            raise

    def _submit_part(self) -> None:
        store = self._store
        if self._upload_id is None:
            try:
                resp = store._client.create_multipart_upload(
                    Bucket=store.bucket, Key=self._full, **self._extra)
            except (BotoCoreError, ClientError) as e:
                raise store._error(e, self._key) from e
            self._upload_id = str(resp["UploadId"])
        if self._next_part > MAX_PARTS:
            raise PermanentStorageError(
                f"{store._where(self._key)}: larger than {MAX_PARTS} parts of "
                f"{self._part_size} bytes; raise the part size")
        while len(self._inflight) >= store.max_inflight_parts:
            self._collect_oldest()  # frees a buffer: at most max_inflight_parts + 1 exist
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=store.max_inflight_parts,
                                            thread_name_prefix="s3-part")
        buf, n = cast(bytearray, self._buf), self._fill
        self._buf, self._fill = None, 0
        fut = self._pool.submit(store._upload_part, self._key, self._full,
                                self._upload_id, self._next_part, memoryview(buf)[:n])
        self._inflight.append((fut, buf, self._next_part))
        self._next_part += 1

    def _collect_oldest(self) -> None:
        fut, buf, number = self._inflight.popleft()
        try:
            etag, digest = fut.result()
        except BaseException:
            self._failed = True
            raise
        finally:
            self._store._buffers.give(buf)
        self._parts.append({"PartNumber": number, "ETag": etag})
        self._digests.append(digest)

    def _abort(self) -> None:
        self._failed = True
        for fut, _, _ in self._inflight:
            fut.cancel()
        wait_futures([f for f, _, _ in self._inflight])  # parts still reading our buffers
        for _, buf, _ in self._inflight:
            self._store._buffers.give(buf)
        self._inflight.clear()
        if self._upload_id is None:
            return
        store = self._store
        try:
            store._client.abort_multipart_upload(Bucket=store.bucket, Key=self._full,
                                                 UploadId=self._upload_id)
        except (BotoCoreError, ClientError) as e:
            logger.warning("%s: cannot abort multipart upload: %s (a bucket lifecycle rule "
                           "AbortIncompleteMultipartUpload removes it later)",
                           store._where(self._key), store._error(e, self._key),
                           extra={"event": "s3.abort_failed"})
        self._upload_id = None

    def _release(self) -> None:
        if self._buf is not None:
            self._store._buffers.give(self._buf)
            self._buf = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


# -- store ---------------------------------------------------------------------------------


class S3ObjectStore:
    """An ``ObjectStore`` on a bucket prefix of an S3-compatible server.

    ``prefix`` is a folder inside the bucket (``"vault"`` and ``"vault/"`` are the same);
    keys are relative to it. ``client`` comes from ``make_s3_client``. ``part_size``
    (5 MiB-5 GiB) and ``max_inflight_parts`` (1-16) bound a writer's memory at
    ``part_size * (max_inflight_parts + 1)``; ``delete_batch`` (1-1,000) is the number
    of versions per DeleteObjects request. ``batch_delete=False`` sends one DeleteObject
    per version instead (config ``s3.batch_delete``): Ceph RGW 16.2 aborts on
    DeleteObjects in a bucket with ``s3:ObjectRemoved`` notifications, not on DeleteObject.
    """

    def __init__(
        self, bucket: str, prefix: str = "", *, client: S3Client,
        part_size: int = DEFAULT_PART_SIZE, max_inflight_parts: int = 2,
        delete_batch: int = MAX_DELETE_BATCH, content_md5: bool = True,
        lock_mode: LockMode = "GOVERNANCE", batch_delete: bool = True,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigError(f"{bucket!r}: not a bucket name")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigError(f"s3 part size {part_size}: expected {MIN_PART_SIZE}-"
                              f"{MAX_PART_SIZE} bytes")
        if not 1 <= max_inflight_parts <= 16:
            raise ConfigError(f"s3 in-flight parts {max_inflight_parts}: expected 1-16")
        if not 1 <= delete_batch <= MAX_DELETE_BATCH:
            raise ConfigError(f"s3 delete batch {delete_batch}: expected 1-{MAX_DELETE_BATCH}")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.part_size = part_size
        self.max_inflight_parts = max_inflight_parts
        self.delete_batch = delete_batch
        self.batch_delete = batch_delete
        self.content_md5 = content_md5
        if lock_mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise ConfigError(f"s3 object lock mode {lock_mode!r}: GOVERNANCE or COMPLIANCE")
        self.lock_mode: LockMode = lock_mode
        self._object_lock: bool | None = None
        self._client = client
        self._buffers = _BufferPool(part_size, keep=max_inflight_parts + 1)

    @classmethod
    def from_url(cls, url: str, *, client: S3Client, **options: Any) -> S3ObjectStore:
        """``S3ObjectStore`` for ``s3://bucket/prefix``."""
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, client=client, **options)

    @property
    def client(self) -> S3Client:
        return self._client

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.rstrip('/')}" if self.prefix \
            else f"s3://{self.bucket}"

    # helpers ------------------------------------------------------------------------------

    def _where(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _error(self, e: Exception, key: str) -> StorageError:
        return translate_error(e, where=self._where(key), bucket=self.bucket,
                               endpoint=getattr(self._client.meta, "endpoint_url", None))

    def _full_key(self, key: str) -> str:
        parts = key.split("/")
        if (not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts)
                or any(ord(c) < 0x20 or c == "\x7f" for c in key)):
            raise PermanentStorageError(f"{key!r}: not a valid object key")
        full = self.prefix + key
        if len(full.encode("utf-8")) > MAX_KEY_BYTES:
            raise PermanentStorageError(
                f"{self._where(key)}: key longer than {MAX_KEY_BYTES} bytes")
        return full

    def _require_bucket(self, key: str) -> None:
        require_bucket(self._client, self.bucket, lambda e: self._error(e, key))

    def _head(self, key: str, version_id: str | None = None) -> dict[str, Any]:
        full = self._full_key(key)
        args = {"Bucket": self.bucket, "Key": full}
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            return cast(dict[str, Any], self._client.head_object(**args))
        except (BotoCoreError, ClientError) as e:
            err = self._error(e, key)
            if isinstance(err, ObjectNotFoundError):
                self._require_bucket(key)
            raise err from e

    def _current_version(self, key: str, version_id: str | None) -> str | None:
        """The given version, else the latest one's id (None on an unversioned bucket)."""
        if version_id is not None:
            return version_id
        return _version(self._head(key).get("VersionId"))

    def _reapply_after_multipart(self, key: str, full: str, extra: Mapping[str, Any],
                                 vid: object) -> None:
        """Set the tags and Object Lock retention sent with CreateMultipartUpload again on
        the completed version: Ceph RGW 16.2 accepts both there but drops them, moto 5.2.1
        drops the retention (AWS keeps both; setting them again is harmless). If that
        fails, the new version is deleted (it must not stay visible without its tags or
        lock) and the error raised."""
        if "Tagging" not in extra and "ObjectLockMode" not in extra:
            return
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if vid:
            args["VersionId"] = str(vid)
        try:
            if "Tagging" in extra:
                self._client.put_object_tagging(**args, Tagging={"TagSet": [
                    {"Key": k, "Value": v}
                    for k, v in parse_qsl(extra["Tagging"], keep_blank_values=True)]})
            if "ObjectLockMode" in extra:
                self._client.put_object_retention(**args, Retention={
                    "Mode": extra["ObjectLockMode"],
                    "RetainUntilDate": extra["ObjectLockRetainUntilDate"]})
        except (BotoCoreError, ClientError) as e:
            err = self._error(e, key)
            try:
                self._client.delete_object(**args)
            except (BotoCoreError, ClientError) as e2:
                logger.warning("%s: cannot delete the version left without its tags or lock: "
                               "%s", self._where(key), self._error(e2, key),
                               extra={"event": "s3.undo_failed"})
            raise err from e

    def _upload_part(self, key: str, full: str, upload_id: str, number: int,
                     view: memoryview) -> tuple[str, bytes | None]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id,
                                "PartNumber": number, "Body": _View(view),
                                "ContentLength": len(view)}
        digest = None
        if self.content_md5:
            digest = _md5(view)
            args["ContentMD5"] = _b64(digest)
        try:
            return str(self._client.upload_part(**args)["ETag"]), digest
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e

    def _versions(self, key: str, full: str) -> tuple[builtins.list[str], builtins.list[str]]:
        """(version ids, delete-marker ids) of exactly ``full``, over every page."""
        versions: builtins.list[str] = []
        markers: builtins.list[str] = []
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=full)
            for page in pages:  # Prefix=key also lists key2, key/x...: keep exact matches
                versions += [str(v.get("VersionId") or NULL_VERSION)
                             for v in page.get("Versions", []) if v["Key"] == full]
                markers += [str(m.get("VersionId") or NULL_VERSION)
                            for m in page.get("DeleteMarkers", []) if m["Key"] == full]
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e
        return versions, markers

    # ObjectStore --------------------------------------------------------------------------

    def writer(
        self, key: str, *, metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None, retain_until: datetime | None = None,
        size_hint: int | None = None,
    ) -> AbstractContextManager[S3Writer]:
        """Atomic streamed write; ``metadata`` as ``x-amz-meta-*``, ``tags`` as object tags.
        ``retain_until`` (future, aware): an Object Lock retention in ``lock_mode`` when
        the bucket has Object Lock enabled (ignored otherwise). ``size_hint`` below
        ``part_size``: the single PutObject's buffer is that size, not a whole part."""
        extra: dict[str, Any] = {"ContentType": "application/octet-stream"}
        if metadata:
            extra["Metadata"] = self._check_metadata(key, metadata)
        if tags:
            extra["Tagging"] = urlencode(self._check_tags(key, tags), quote_via=quote,
                                         safe="")
        if retain_until is not None and self.object_lock_enabled():
            if retain_until.tzinfo is None:
                raise ValueError("retain_until: naive datetime; use an aware UTC datetime")
            extra["ObjectLockMode"] = self.lock_mode
            extra["ObjectLockRetainUntilDate"] = retain_until.astimezone(UTC)
        return S3Writer(self, key, extra, size_hint=size_hint)

    def written_intact(self, put: PutResult) -> bool | None:
        """The server's ETag for the written version must equal the MD5-based one of what
        was sent (every part also carried Content-MD5, checked by the server on receipt).
        The ETag the PutObject/CompleteMultipartUpload answered is used when there is one
        (a successful answer means durably stored), else the version is HEADed. None
        (read it back) when the ETag cannot be predicted: no Content-MD5, or a server whose
        ETags are not MD5-based (e.g. AWS SSE-KMS)."""
        if put.etag is None:
            return None
        md5_like = r'"[0-9a-f]{32}(-\d+)?"'
        if put.stored_etag is not None:
            if put.stored_etag == put.etag:
                return True
            if re.fullmatch(md5_like, put.stored_etag):
                return False
        h = self._head(put.key, put.version_id)
        etag = str(h.get("ETag", ""))
        if int(h["ContentLength"]) != put.size:
            return False
        if etag == put.etag:
            return True
        return None if not re.fullmatch(md5_like, etag) else False

    def mirror_legal_hold(self, key: str, *, version_id: str | None, on: bool) -> bool:
        """S3 legal hold ON/OFF on the version, where the bucket has Object Lock."""
        if not self.object_lock_enabled():
            return False
        self.set_legal_hold(key, version_id=version_id, on=on)
        return True

    def discard_incomplete_writes(self) -> int:
        """Abort every multipart upload under the prefix (left by a killed writer)."""
        aborted = 0
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for up in page.get("Uploads", []):
                    self._client.abort_multipart_upload(
                        Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                    aborted += 1
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, "") from e
        return aborted

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (asked once, then remembered)."""
        if self._object_lock is None:
            try:
                conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
                self._object_lock = conf.get("ObjectLockConfiguration", {}).get(
                    "ObjectLockEnabled") == "Enabled"
            except ClientError as e:
                code, _ = answer_of(e)
                if code not in ("ObjectLockConfigurationNotFoundError", "NotImplemented",
                                "MethodNotAllowed", "InvalidRequest"):
                    raise self._error(e, "") from e
                self._object_lock = False
            except BotoCoreError as e:
                raise self._error(e, "") from e
        return self._object_lock

    def open_read(self, key: str) -> AbstractContextManager[BinaryIO]:
        """Stream the latest version (a buffered, ``readinto``-capable file)."""
        return self._open(key)

    @contextmanager
    def _open(self, key: str) -> Iterator[BinaryIO]:
        full = self._full_key(key)
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=full)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e
        reader = io.BufferedReader(StreamBody(resp["Body"], lambda e: self._error(e, key)),
                                    buffer_size=READ_BUFFER)
        with reader:
            yield cast(BinaryIO, reader)

    def head(self, key: str) -> ObjectInfo:
        """Size, time and version id of the latest version. A 404 costs a second request
        (HeadBucket), to tell a missing key from a missing bucket."""
        h = self._head(key)
        return ObjectInfo(key=key, size=int(h["ContentLength"]),
                          modified=h["LastModified"].astimezone(UTC),
                          version_id=_version(h.get("VersionId")))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every key under ``prefix`` in key order (UTF-8 byte order = code point order),
        1,000 per ListObjectsV2 page. ``version_id`` is None (the listing does not say).
        "Folder" placeholder objects (keys ending in ``/``) are skipped."""
        cut = len(self.prefix)
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix)
            for page in pages:
                for o in page.get("Contents", []):
                    if o["Key"].endswith("/"):
                        continue
                    yield ObjectInfo(key=o["Key"][cut:], size=int(o["Size"]),
                                     modified=o["LastModified"].astimezone(UTC))
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, prefix) from e

    def delete_all_versions(self, key: str) -> DeleteResult:
        """Delete every version and delete marker of ``key`` (batched DeleteObjects), then
        list again to confirm none remains. Never bypasses Object Lock governance mode."""
        result = self.delete_many([key])[key]
        if isinstance(result, StorageError):
            raise result
        return result

    def delete_many(self, keys: Sequence[str], *, population: int | None = None,
                    known: Mapping[str, str | None] | None = None,
                    before_delete: BeforeDelete | None = None,
                    ) -> dict[str, DeleteResult | StorageError]:
        """``delete_all_versions`` of many keys with few requests, in rounds:

        1. DeleteObjects (up to ``delete_batch`` versions of any keys per request) of the
           version each key of ``known`` is known to have (None: the bucket gave none, the
           "null" version); a key not in ``known`` is listed first to find its versions;
        2. one confirming listing of all the keys (one ListObjectVersions per key, or one
           listing of the whole prefix when ``population``, about how many objects are
           under it, makes that cheaper);
        3. whatever the listing still shows (a version or delete marker made behind our
           back, a retried PUT's version) is deleted and listed again, at most
           ``MAX_DELETE_ROUNDS`` rounds in all.

        A key is gone only when a listing shows nothing left, never on DeleteObjects' word
        alone. Each key gets its DeleteResult (``version_ids``: every version and marker
        deleted, in the order deleted), or the error that stopped it: a refused version
        stops its key at once (ObjectLockedError for a lock), a failed request or listing
        fails the keys it covered; nothing is raised. ``before_delete`` hears of each
        round's versions before its DeleteObjects (ports.ObjectStore)."""
        out: dict[str, DeleteResult | StorageError] = {}
        fulls: dict[str, str] = {}
        for key in keys:
            try:
                fulls[self._full_key(key)] = key
            except StorageError as e:
                out[key] = e
        if not fulls:
            return out
        known = known or {}
        targets: dict[str, builtins.list[str | None]] = {
            full: [known[key]] for full, key in fulls.items() if key in known}
        unknown = {full: key for full, key in fulls.items() if key not in known}
        if unknown:
            try:
                listed = self._versions_of(unknown, population)
            except StorageError as e:
                out |= dict.fromkeys(unknown.values(), e)
                listed = {}
            for full in listed:
                versions, markers = listed[full]
                if versions or markers:
                    targets[full] = [*versions, *markers]
                else:  # nothing there: that listing is the confirmation
                    out[fulls[full]] = DeleteResult(key=fulls[full], version_ids=(),
                                                    evidence=EVIDENCE_GONE)
        removed: dict[str, builtins.list[str]] = {full: [] for full in targets}
        for round_ in range(1, MAX_DELETE_ROUNDS + 1):
            if not targets:
                break
            if before_delete is not None:
                try:
                    before_delete({fulls[full]: tuple(map(_named, vids))
                                   for full, vids in targets.items()})
                except Exception as e:  # noqa: BLE001 - not written down: not deleted either
                    out |= dict.fromkeys((fulls[full] for full in targets), not_written_down(e))
                    break
            errors, failed = self._delete_versions(targets, fulls)
            for full, err in failed.items():
                out[fulls[full]] = err
            confirm = {full: fulls[full] for full in targets if full not in failed}
            if not confirm:
                break
            try:
                left = self._versions_of(confirm, population)
            except StorageError as e:
                out |= dict.fromkeys(confirm.values(), e)
                break
            next_targets: dict[str, builtins.list[str | None]] = {}
            for full, key in confirm.items():
                left_versions, left_markers = left[full]
                still = {*left_versions, *left_markers}  # deleted: what the listing lost
                removed[full] += [v for v in map(_named, targets[full]) if v not in still]
                if not left_versions and not left_markers:
                    out[key] = DeleteResult(key=key, version_ids=_unique(removed[full]),
                                            evidence=EVIDENCE_GONE)
                elif full in errors or round_ == MAX_DELETE_ROUNDS:
                    out[key] = self._delete_refused(
                        key, total=len({*removed[full], *left_versions, *left_markers}),
                        left=left_versions, left_markers=left_markers,
                        errors=errors.get(full, []), rounds=round_)
                else:
                    next_targets[full] = [*left_versions, *left_markers]
            targets = next_targets
        return out

    def _delete_versions(
        self, targets: Mapping[str, builtins.list[str | None]], fulls: Mapping[str, str],
    ) -> tuple[dict[str, builtins.list[dict[str, Any]]], dict[str, StorageError]]:
        """DeleteObjects of every (full key, version id) in ``targets`` (None: the "null"
        version), ``delete_batch`` per request, or one DeleteObject each when
        ``batch_delete`` is off. Returns the per-version errors the server
        answered, by full key, and the keys whose request failed as a whole."""
        pairs = [(full, vid) for full, vids in targets.items() for vid in vids]
        errors: dict[str, builtins.list[dict[str, Any]]] = {}
        failed: dict[str, StorageError] = {}

        def send(batch: builtins.list[tuple[str, str | None]]) -> Any:
            try:  # no version id known: the "null" version (an unversioned bucket's
                # object), never a plain by-key delete, which in a bucket versioned since
                # would only add a delete marker
                return self._client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": full, "VersionId": vid or NULL_VERSION}
                                for full, vid in batch],
                    "Quiet": True})
            except (BotoCoreError, ClientError) as e:
                return e

        def send_one(batch: builtins.list[tuple[str, str | None]]) -> Any:
            """``send`` as one DeleteObject, answered in DeleteObjects' shape: a refusal
            of this very version is a per-version error, anything else fails the request
            (as a failed DeleteObjects would)."""
            ((full, vid),) = batch
            version = vid or NULL_VERSION
            try:
                self._client.delete_object(Bucket=self.bucket, Key=full, VersionId=version)
            except ClientError as e:
                error = e.response.get("Error", {})
                if str(error.get("Code", "")) in _VERSION_REFUSALS:
                    return {"Errors": [{"Key": full, "VersionId": version,
                                        "Code": error.get("Code"),
                                        "Message": error.get("Message", "")}]}
                return e
            except BotoCoreError as e:
                return e
            return {}

        size = self.delete_batch if self.batch_delete else 1
        batches = [pairs[i:i + size] for i in range(0, len(pairs), size)]
        request = send if self.batch_delete else send_one
        for batch, resp in zip(batches, _concurrently([partial(request, b) for b in batches]),
                               strict=True):
            if isinstance(resp, Exception):
                for full, _ in batch:
                    failed.setdefault(full, self._error(resp, fulls[full]))
                continue
            for err in resp.get("Errors", []):
                if err.get("Code") in _ALREADY_GONE:  # some servers answer so for a
                    continue  # version deleted meanwhile: the listing confirms it
                errors.setdefault(str(err.get("Key", "")), []).append(err)
        return errors, failed

    def _versions_of(self, fulls: Mapping[str, str], population: int | None
                     ) -> dict[str, tuple[builtins.list[str], builtins.list[str]]]:
        """(version ids, delete-marker ids) of each full key, by the cheaper listing."""
        pages_for_all = (population or 0) // 1000 + 1
        if population is None or len(fulls) <= pages_for_all:
            listed = _concurrently([partial(self._versions, key, full)
                                    for full, key in fulls.items()])
            return dict(zip(fulls, listed, strict=True))
        found: dict[str, tuple[builtins.list[str], builtins.list[str]]] = {
            full: ([], []) for full in fulls}
        try:
            pages = self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for v in page.get("Versions", []):
                    if v["Key"] in found:
                        found[v["Key"]][0].append(str(v.get("VersionId") or NULL_VERSION))
                for m in page.get("DeleteMarkers", []):
                    if m["Key"] in found:
                        found[m["Key"]][1].append(str(m.get("VersionId") or NULL_VERSION))
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, "") from e
        return found

    def _delete_refused(self, key: str, *, total: int, left: builtins.list[str],
                        left_markers: builtins.list[str], errors: builtins.list[dict[str, Any]],
                        rounds: int = 1) -> StorageError:
        where = self._where(key)
        remaining = left + left_markers
        n = len(remaining)
        head = ", ".join(remaining[:5]) + (f" (+{n - 5} more)" if n > 5 else "")
        codes = {str(e.get("Code", "")) for e in errors}
        op = "DeleteObjects" if self.batch_delete else "DeleteObject"
        denied = [e for e in errors if e.get("Code") == "AccessDenied"
                  or (e.get("Code") == "InvalidRequest"
                      and "worm" in str(e.get("Message", "")).lower())]
        if denied:
            locks = self._locks_of(key, left[:MAX_LOCK_PROBES])
            states = [f"{vid}: {st.describe()}" for vid, st in locks.items() if st.is_set]
            says_lock = any(w in str(e.get("Message", "")).lower()
                            for e in denied for w in ("lock", "worm"))
            if states or says_lock:
                detail = "; ".join(states) if states else head
                return ObjectLockedError(
                    f"{where}: deletion blocked by Object Lock, {n} of {total} versions "
                    f"remain ({detail})")
            return PermanentStorageError(
                f"{where}: access denied deleting {n} of {total} versions ({head})")
        if codes & _TRANSIENT:
            return TransientStorageError(
                f"{where}: {op} failed for {n} of {total} versions "
                f"({', '.join(sorted(codes))}): {head}")
        if errors:
            return PermanentStorageError(
                f"{where}: {op} refused {n} of {total} versions "
                f"({', '.join(sorted(codes))}): {head}")
        return PermanentStorageError(
            f"{where}: {n} versions still listed after {op} reported success"
            + (f" ({rounds} rounds)" if rounds > 1 else "") + f": {head}")

    # extras beyond the port ---------------------------------------------------------------

    def check(self) -> None:
        """Raise PermanentStorageError unless the bucket exists and answers (startup check)."""
        self._require_bucket("")

    def metadata(self, key: str) -> dict[str, str]:
        """User metadata (``x-amz-meta-*``, keys lowercase) of the latest version."""
        return {str(k): str(v) for k, v in self._head(key).get("Metadata", {}).items()}

    def get_tags(self, key: str, *, version_id: str | None = None) -> dict[str, str]:
        """Object tags of ``version_id`` (default: the latest version)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key)}
        if version_id is not None:
            args["VersionId"] = version_id
        try:
            resp = self._client.get_object_tagging(**args)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e
        return {str(t["Key"]): str(t["Value"]) for t in resp.get("TagSet", [])}

    def put_tags(self, key: str, tags: Mapping[str, str], *,
                 version_id: str | None = None) -> None:
        """Replace the tag set of one version (an empty ``tags`` deletes them all, with
        DeleteObjectTagging). Without ``version_id`` the latest version's id is looked up
        first and passed: Ceph RGW 16.2 ignores a tag deletion without VersionId on a
        versioned bucket (204, tags unchanged)."""
        checked = self._check_tags(key, tags)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key)}
        vid = self._current_version(key, version_id)
        if vid is not None:
            args["VersionId"] = vid
        try:
            if checked:
                self._client.put_object_tagging(**args, Tagging={
                    "TagSet": [{"Key": k, "Value": v} for k, v in checked.items()]})
            else:
                self._client.delete_object_tagging(**args)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e

    def set_retention(self, key: str, *, version_id: str | None, until: datetime,
                      mode: LockMode) -> None:
        """Object Lock retention on one version (bucket created with Object Lock). A
        COMPLIANCE retention can be extended, never shortened or removed, by anyone."""
        if until.tzinfo is None:
            raise ValueError("until: naive datetime; use an aware UTC datetime")
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise ValueError(f"mode: {mode!r}: expected GOVERNANCE or COMPLIANCE")
        args: dict[str, Any] = {
            "Bucket": self.bucket, "Key": self._full_key(key),
            "Retention": {"Mode": mode, "RetainUntilDate": until.astimezone(UTC)}}
        vid = self._current_version(key, version_id)
        if vid is not None:
            args["VersionId"] = vid
        try:
            self._client.put_object_retention(**args)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e

    def set_legal_hold(self, key: str, *, version_id: str | None, on: bool) -> None:
        """Set or release the S3 legal hold of one version (bucket with Object Lock)."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full_key(key),
                                "LegalHold": {"Status": "ON" if on else "OFF"}}
        vid = self._current_version(key, version_id)
        if vid is not None:
            args["VersionId"] = vid
        try:
            self._client.put_object_legal_hold(**args)
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, key) from e

    def lock_state(self, key: str, *, version_id: str | None = None) -> LockState:
        """Object Lock retention and legal hold of one version (from HEAD)."""
        h = self._head(key, version_id)
        until = h.get("ObjectLockRetainUntilDate")
        return LockState(mode=h.get("ObjectLockMode"),
                         retain_until=until.astimezone(UTC) if until else None,
                         legal_hold=h.get("ObjectLockLegalHoldStatus") == "ON")

    def version_locks(self, key: str) -> dict[str, LockState]:
        """Object Lock state of every remaining version of ``key`` (one HEAD each; delete
        markers cannot be locked and are left out). After an ObjectLockedError, this says
        until when each version is retained and which are under legal hold."""
        versions, _ = self._versions(key, self._full_key(key))
        return self._locks_of(key, versions)

    def _locks_of(self, key: str, version_ids: builtins.list[str]) -> dict[str, LockState]:
        out: dict[str, LockState] = {}
        for vid in version_ids:
            try:
                out[vid] = self.lock_state(key, version_id=vid)
            except StorageError:  # no s3:GetObjectRetention permission, or just deleted
                continue
        return out

    def bucket_versioning(self) -> Literal["Enabled", "Suspended", "Unversioned"]:
        """The bucket's versioning status."""
        try:
            status = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except (BotoCoreError, ClientError) as e:
            raise self._error(e, "") from e
        if status == "Enabled":
            return "Enabled"
        if status == "Suspended":
            return "Suspended"
        return "Unversioned"

    # validation ---------------------------------------------------------------------------

    def _check_metadata(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        where = self._where(key)
        size = 0
        for k, v in metadata.items():
            if not _METADATA_KEY.match(k):
                raise PermanentStorageError(f"{where}: metadata key {k!r}: expected "
                                            "lowercase ASCII letters, digits, - and _")
            if not _METADATA_VALUE.match(v):
                raise PermanentStorageError(f"{where}: metadata {k}: value must be "
                                            "printable ASCII")
            size += len(k) + len(v)
        if size > MAX_METADATA_BYTES:
            raise PermanentStorageError(f"{where}: metadata is {size} bytes, S3 allows "
                                        f"{MAX_METADATA_BYTES}")
        return dict(metadata)

    def _check_tags(self, key: str, tags: Mapping[str, str]) -> dict[str, str]:
        where = self._where(key)
        if len(tags) > MAX_TAGS:
            raise PermanentStorageError(f"{where}: {len(tags)} tags, S3 allows {MAX_TAGS}")
        for k, v in tags.items():
            if not 1 <= len(k) <= MAX_TAG_KEY or len(v) > MAX_TAG_VALUE:
                raise PermanentStorageError(f"{where}: tag {k[:MAX_TAG_KEY]!r}: key 1-"
                                            f"{MAX_TAG_KEY} and value 0-{MAX_TAG_VALUE} "
                                            "characters")
            if not (_TAG_TEXT.match(k) and _TAG_TEXT.match(v)):
                raise PermanentStorageError(f"{where}: tag {k!r}: only letters, digits, "
                                            "spaces and + - = . _ : / @ are allowed")
        return dict(tags)
