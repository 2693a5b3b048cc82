"""Bucket event notifications: wake the daemon when a recording lands in a bucket inbox.

Sources (SPEC section 2, "Events"):

- an HTTP webhook (``events.webhook_addr``) accepting S3-format event records, as MinIO
  (``notify_webhook``) and Ceph RGW (an SNS-style topic with an HTTP push endpoint) send
  them: ``POST /`` with ``{"Records": [...]}``;
- an SQS queue (``events.sqs_queue_url``) that AWS S3 notifications go to, directly or
  through SNS (the SNS envelope is unwrapped), long-polled;
- MinIO's ListenBucketNotification API (``events.minio_listen: true``) through the
  ``minio`` SDK: one streaming request per inbox bucket, nothing to configure on MinIO.

An event is only a hint: it wakes the daemon, whose pass lists the inbox and ingests
through the same idempotent path as the periodic listing. So a lost, duplicated, forged
or out-of-order event can neither lose a recording nor ingest one twice; the periodic
listing (at least every minute) catches whatever events miss.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from retentiond.adapters.s3_inbox import S3Inbox
from retentiond.errors import ConfigError, InputError
from retentiond.metrics import Metrics

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1024 * 1024
SQS_WAIT_SECONDS = 20  # long polling: one request per 20 s when idle


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str  # as sent: AWS URL-encodes it (spaces as +), Ceph RGW 16.2 does not
    name: str  # e.g. ObjectCreated:Put

    def under(self, bucket: str, prefix: str) -> bool:
        """Is the object in ``bucket`` under ``prefix``, however its key was encoded?"""
        return self.bucket == bucket and (self.key.startswith(prefix)
                                          or unquote_plus(self.key).startswith(prefix))


def parse_s3_events(body: bytes) -> list[ObjectEvent]:
    """The object events in an S3 notification body: ``{"Records": [...]}``, an SNS
    envelope around one, or S3's ``s3:TestEvent`` (no events). Raises InputError."""
    if len(body) > MAX_EVENT_BYTES:
        raise InputError(f"event body is {len(body)} bytes (limit {MAX_EVENT_BYTES})")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"event body is not JSON: {e}") from None
    if isinstance(doc, dict) and doc.get("Type") == "Notification" and \
            isinstance(doc.get("Message"), str):
        return parse_s3_events(doc["Message"].encode("utf-8"))  # SNS -> SQS envelope
    if isinstance(doc, dict) and doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise InputError("event body has no Records list")
    out = []
    for i, rec in enumerate(records):
        try:
            s3 = rec["s3"]
            out.append(ObjectEvent(bucket=str(s3["bucket"]["name"]),
                                   key=str(s3["object"]["key"]),
                                   name=str(rec.get("eventName", ""))))
        except (KeyError, TypeError):
            raise InputError(f"Records[{i}]: expected s3.bucket.name and s3.object.key") \
                from None
    return out


class EventRouter:
    """Matches events to the configured bucket inboxes and wakes the daemon."""

    def __init__(self, inboxes: Sequence[S3Inbox], *, wake: Callable[[], None],
                 metrics: Metrics) -> None:
        self._inboxes = tuple(inboxes)
        self._wake = wake
        self._metrics = metrics

    def handle(self, events: list[ObjectEvent], *, source: str) -> int:
        """Wake the daemon if any event is about an inbox; returns how many were."""
        matched = sum(1 for e in events
                      if any(e.under(i.bucket, i.prefix) for i in self._inboxes))
        for outcome, n in (("matched", matched), ("ignored", len(events) - matched)):
            if n:
                self._metrics.events.labels(source=source, outcome=outcome).inc(n)
        if matched:
            self._wake()
        return matched


def read_token(path: Path | None) -> str | None:
    """The webhook's shared secret, from a 0600 file (never from the config file)."""
    if path is None:
        return None
    from retentiond.service.wiring import read_secret_file  # noqa: PLC0415 (no cycle)

    token = read_secret_file(path)
    if not token:
        raise ConfigError(f"{path}: the webhook token file is empty")
    return token


class WebhookServer:
    """``POST /`` with S3 event records. With a token, the request must carry
    ``Authorization: Bearer TOKEN`` (MinIO's ``auth_token``) or ``?token=TOKEN`` (for
    senders that cannot set headers, e.g. an RGW push endpoint: use TLS or 127.0.0.1)."""

    def __init__(self, addr: str, router: EventRouter, *, token: str | None) -> None:
        host, _, port = addr.rpartition(":")
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, code: int, text: str) -> None:
                body = (text + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if not outer._authorized(self.headers.get("Authorization"), self.path):
                    router._metrics.events.labels(source="webhook", outcome="refused").inc()
                    self._reply(401, "missing or wrong token")
                    return
                try:
                    length = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_EVENT_BYTES:
                    self._reply(413 if length > 0 else 411, "Content-Length required, at "
                                f"most {MAX_EVENT_BYTES} bytes")
                    return
                try:
                    events = parse_s3_events(self.rfile.read(length))
                except InputError as e:
                    router._metrics.events.labels(source="webhook", outcome="invalid").inc()
                    logger.warning("webhook: invalid event: %s", e,
                                   extra={"event": "events.invalid"})
                    self._reply(400, str(e))
                    return
                matched = router.handle(events, source="webhook")
                self._reply(200, f"{matched} of {len(events)} events for an inbox")

            def log_message(self, format: str, *args: object) -> None:
                return  # request lines may hold object keys (caller numbers): not logged

        self._token = token
        self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def _authorized(self, header: str | None, path: str) -> bool:
        if self._token is None:
            return True
        given = ""
        if header and header.startswith("Bearer "):
            given = header[len("Bearer "):].strip()
        elif "token=" in path:
            given = unquote_plus(path.split("token=", 1)[1].split("&", 1)[0])
        return hmac.compare_digest(given.encode(), self._token.encode())

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="retentiond-webhook", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class MinioListener:
    """MinIO's listen API (``minio`` SDK), one thread per inbox: each event record about
    a new object wakes the daemon. Credentials from the same chain as boto3's (AWS
    environment variables, then the shared config profile, then MinIO's own variables)."""

    def __init__(self, inboxes: Sequence[S3Inbox], router: EventRouter, *,
                 endpoint_url: str, region: str | None = None,
                 profile: str | None = None) -> None:
        from minio import Minio  # noqa: PLC0415 (only MinIO setups need it)
        from minio.credentials.providers import (  # noqa: PLC0415
            AWSConfigProvider,
            ChainedProvider,
            EnvAWSProvider,
            EnvMinioProvider,
        )

        url = urlsplit(endpoint_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"s3.endpoint_url: {endpoint_url!r}: MinIO's listen API needs "
                              "an http(s)://HOST:PORT endpoint")
        providers = [EnvAWSProvider(), AWSConfigProvider(profile=profile), EnvMinioProvider()]
        self._client = Minio(url.netloc, secure=url.scheme == "https", region=region,
                             credentials=ChainedProvider(providers))
        self._inboxes = tuple(inboxes)
        self._router = router
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def listen(self, inbox: S3Inbox) -> None:
        """Stream ``inbox``'s events until stopped; reconnect with backoff on errors."""
        backoff = 1.0
        while not self._stop.is_set():
            try:
                with self._client.listen_bucket_notification(
                        inbox.bucket, prefix=inbox.prefix,
                        events=("s3:ObjectCreated:*",)) as stream:
                    for event in stream:
                        backoff = 1.0
                        self._router.handle(parse_s3_events(json.dumps(event).encode()),
                                            source="minio")
                        if self._stop.is_set():
                            return
            except InputError as e:
                self._router._metrics.events.labels(source="minio", outcome="invalid").inc()
                logger.warning("minio listen: invalid event: %s", e,
                               extra={"event": "events.invalid"})
            except Exception as e:  # noqa: BLE001 (any SDK/network error: reconnect)
                self._router._metrics.errors.labels(stage="events").inc()
                logger.warning("minio listen on %s: %s; reconnecting in %.0f s", inbox.url,
                               type(e).__name__, backoff,
                               extra={"event": "events.minio_error"})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)

    def start(self) -> None:
        for inbox in self._inboxes:
            t = threading.Thread(target=self.listen, args=(inbox,), daemon=True,
                                 name=f"retentiond-minio-{inbox.bucket}")
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop listening; a thread blocked on the stream ends with the process."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=1)


class SqsListener:
    """Long-polls an SQS queue of S3 notifications; each message wakes the daemon if it
    is about an inbox, and is deleted once handled (an event is only a hint)."""

    def __init__(self, queue_url: str, client: Any, router: EventRouter) -> None:
        self.queue_url = queue_url
        self._client = client
        self._router = router
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self, *, wait_seconds: int = SQS_WAIT_SECONDS) -> int:
        """One ReceiveMessage; returns how many messages were handled."""
        resp = self._client.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=wait_seconds)
        messages = resp.get("Messages", [])
        for m in messages:
            try:
                self._router.handle(parse_s3_events(str(m.get("Body", "")).encode()),
                                    source="sqs")
            except InputError as e:
                self._router._metrics.events.labels(source="sqs", outcome="invalid").inc()
                logger.warning("sqs: invalid message: %s", e, extra={"event": "events.invalid"})
            self._client.delete_message(QueueUrl=self.queue_url,
                                        ReceiptHandle=m["ReceiptHandle"])
        return len(messages)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self.poll_once()
                backoff = 1.0
            except (BotoCoreError, ClientError) as e:
                self._router._metrics.errors.labels(stage="events").inc()
                logger.warning("sqs %s: %s; retrying in %.0f s", self.queue_url,
                               type(e).__name__, backoff, extra={"event": "events.sqs_error"})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retentiond-sqs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=SQS_WAIT_SECONDS + 5)
