"""Bucket event notifications: parsing (AWS, SNS envelope, Ceph RGW's real record), the
webhook receiver, SQS on a live moto server, and the daemon woken by an event."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from retentiond.adapters.s3_inbox import S3Inbox
from retentiond.errors import InputError
from retentiond.metrics import Metrics
from retentiond.service.events import (
    EventRouter,
    ObjectEvent,
    SqsListener,
    WebhookServer,
    parse_s3_events,
)
from tests.cephrgw import ceph_rgw
from tests.conftest import make_wav, run_cli
from tests.e2e.test_s3_pipeline import aws_env, s3_config
from tests.s3server import S3Server, free_port, moto_s3

__all__ = ["ceph_rgw", "moto_s3"]

DATA = Path(__file__).parent.parent / "data"


def aws_record(bucket: str, key: str) -> dict[str, Any]:
    return {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}}}


def test_parse_aws_sns_and_test_events() -> None:
    body = json.dumps({"Records": [aws_record("rec", "incoming/appel+client+%C3%A9.wav")]})
    (e,) = parse_s3_events(body.encode())
    assert (e.bucket, e.name) == ("rec", "ObjectCreated:Put")
    assert e.under("rec", "incoming/") and not e.under("other", "incoming/")
    envelope = {"Type": "Notification", "Message": body}
    assert parse_s3_events(json.dumps(envelope).encode()) == [e]
    assert parse_s3_events(b'{"Service":"Amazon S3","Event":"s3:TestEvent"}') == []


def test_parse_ceph_rgw_record() -> None:
    """A record captured from Ceph RGW 16.2 (tests/data/rgw-event.json): its key is not
    URL-encoded, unlike AWS's."""
    (e,) = parse_s3_events((DATA / "rgw-event.json").read_bytes())
    assert e.bucket == "recordings" and e.name == "ObjectCreated:Put"
    assert e.under("recordings", "incoming/2026/")


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", "not JSON"),
    (b"[1, 2]", "no Records list"),
    (b'{"Records": [{"s3": {"bucket": {}}}]}', "Records[0]: expected s3.bucket.name"),
    (b" " * (1024 * 1024 + 1), "limit"),
])
def test_parse_rejects_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        parse_s3_events(body)


@pytest.fixture
def router_parts() -> tuple[EventRouter, list[int], Metrics]:
    woken: list[int] = []
    metrics = Metrics(CollectorRegistry())
    inbox = S3Inbox("rec", "incoming", client=None)
    return EventRouter([inbox], wake=lambda: woken.append(1), metrics=metrics), woken, metrics


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_webhook_wakes_only_for_inbox_events_and_checks_the_token(
        router_parts: tuple[EventRouter, list[int], Metrics]) -> None:
    router, woken, metrics = router_parts
    server = WebhookServer(f"127.0.0.1:{free_port()}", router, token="s3cret")
    server.start()
    url = f"http://127.0.0.1:{server.port}/"
    try:
        good = json.dumps({"Records": [aws_record("rec", "incoming/a.wav"),
                                       aws_record("rec", "elsewhere/b.wav")]}).encode()
        assert _post(url, good)[0] == 401
        assert _post(url, good, {"Authorization": "Bearer wrong"})[0] == 401
        assert woken == []
        status, text = _post(url, good, {"Authorization": "Bearer s3cret"})
        assert (status, text.strip()) == (200, "1 of 2 events for an inbox")
        assert woken == [1]
        assert _post(url + "?token=s3cret", good)[0] == 200  # for senders without headers
        other = json.dumps({"Records": [aws_record("other", "incoming/a.wav")]}).encode()
        assert _post(url + "?token=s3cret", other)[0] == 200
        assert woken == [1, 1]
        status, text = _post(url + "?token=s3cret", b"{oops")
        assert status == 400 and "not JSON" in text
    finally:
        server.stop()
    value = metrics.registry.get_sample_value
    assert value("retentiond_events_total", {"source": "webhook", "outcome": "matched"}) == 2
    assert value("retentiond_events_total", {"source": "webhook", "outcome": "ignored"}) == 3
    assert value("retentiond_events_total", {"source": "webhook", "outcome": "refused"}) == 2
    assert value("retentiond_events_total", {"source": "webhook", "outcome": "invalid"}) == 1


def test_sqs_notifications_from_a_live_server(
        moto_s3: S3Server, router_parts: tuple[EventRouter, list[int], Metrics]) -> None:
    router, woken, _ = router_parts
    from tests.s3server import dummy_aws_env

    with dummy_aws_env():
        import boto3

        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=moto_s3.endpoint)
    queue = sqs.create_queue(QueueName="rec-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    s3 = moto_s3.client()
    s3.create_bucket(Bucket="rec")
    s3.put_bucket_notification_configuration(Bucket="rec", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    listener = SqsListener(queue, sqs, router)
    while listener.poll_once(wait_seconds=0):  # S3's s3:TestEvent comes first
        pass
    assert woken == []
    s3.put_object(Bucket="rec", Key="incoming/x.wav", Body=b"audio")
    deadline = time.monotonic() + 10
    while not woken and time.monotonic() < deadline:
        listener.poll_once(wait_seconds=1)
    assert woken == [1]
    assert listener.poll_once(wait_seconds=0) == 0  # handled messages are deleted


@contextlib.contextmanager
def webhook_daemon(server: Any, setup: Path, *, token: str | None = None
                   ) -> Iterator[tuple[Any, dict[str, str], str, dict[str, str]]]:
    """A real daemon on fresh inbox/vault/proof buckets of ``server``, with its webhook on
    a free port (and ``token`` required, given in the URL) and no periodic pass for a
    minute: only an event makes it list the inbox soon. Yields (client, bucket names,
    webhook URL, environment) once the start-up pass is done; on exit, SIGTERM must end
    it cleanly (exit 0, no traceback)."""
    client = server.client()
    names = {"inbox": server.bucket(client=client), "vault": server.bucket(client=client),
             "proofs": server.bucket(client=client)}
    s3_config(setup, server, **names)
    port = free_port()
    events = f"events:\n  webhook_addr: 127.0.0.1:{port}\n"
    url = f"http://127.0.0.1:{port}/"
    if token is not None:
        token_file = setup / "keys" / "webhook.token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        events += f"  webhook_token_file: {token_file}\n"
        url += f"?token={token}"
    cfg = setup / "retentiond.yaml"
    cfg.write_text(re.sub(r"interval_seconds: \S+", "interval_seconds: 600", cfg.read_text())
                   + events)
    env = aws_env(setup)
    proc = subprocess.Popen([sys.executable, "-m", "retentiond", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _post(url, b'{"Records": []}')
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        time.sleep(1.0)  # let the start-up pass finish its (empty) listing
        yield client, names, url, env
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err


def rows_within(env: dict[str, str], since: float, *, seconds: float) -> list[Any]:
    """``ls --json`` until it lists something or ``seconds`` passed since ``since``."""
    rows: list[Any] = []
    while time.monotonic() - since < seconds and not rows:
        time.sleep(0.3)
        rows = json.loads(run_cli("ls", "--json", env=env).stdout or "[]")
    return rows


@pytest.mark.slow
def test_daemon_ingests_at_once_when_a_webhook_event_arrives(
        moto_s3: S3Server, short_setup: Path, tmp_path: Path) -> None:
    """Without the event the next listing would come within a minute; with it, the
    recording is ingested in seconds."""
    with webhook_daemon(moto_s3, short_setup) as (client, names, url, env):
        client.put_object(Bucket=names["inbox"], Key="incoming/e.wav",
                          Body=make_wav(tmp_path / "e.wav"),
                          Metadata={"retentiond-purpose": "training"})
        sent = time.monotonic()
        record = {"Records": [aws_record(names["inbox"], "incoming/e.wav")]}
        assert _post(url, json.dumps(record).encode())[0] == 200
        rows = rows_within(env, sent, seconds=20)
        assert rows and rows[0]["purpose"] == "training", "not ingested after the event"
        assert time.monotonic() - sent < 20  # the next listing would be 60 s away


def test_object_event_under_matches_both_encodings() -> None:
    e = ObjectEvent("b", "in+box/a+b.wav", "ObjectCreated:Put")
    assert e.under("b", "in box/") and e.under("b", "in+box/")


class _ListenApi:
    """The wire protocol of MinIO's ListenBucketNotification (``GET /BUCKET?events=...``,
    a streamed response of one JSON event per line, blank keep-alive lines between). No
    MinIO server can be installed here (not in PyPI or Debian), so the real ``minio`` SDK
    is exercised against this protocol-level endpoint."""

    def __init__(self, lines: list[bytes]) -> None:
        import http.server
        import threading

        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in lines:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                outer.done.wait(10)  # keep the stream open, as MinIO does

            def log_message(self, format: str, *args: object) -> None:
                return

        self.done = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()
        self.server.server_close()


def test_minio_listen_api_wakes_for_inbox_events(
        router_parts: tuple[EventRouter, list[int], Metrics],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from retentiond.service.events import MinioListener

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # read when the stream opens
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    router, woken, metrics = router_parts
    event = json.dumps({"Records": [aws_record("rec", "incoming/m.wav")]}).encode() + b"\n"
    api = _ListenApi([b" \n", event])
    try:
        listener = MinioListener([S3Inbox("rec", "incoming", client=None)], router,
                                 endpoint_url=api.url, region="us-east-1")
        listener.start()
        deadline = time.monotonic() + 10
        while not woken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert woken == [1]
        path, auth = api.requests[0]
        assert path.startswith("/rec?") and "prefix=incoming%2F" in path
        assert "events=s3%3AObjectCreated%3A%2A" in path
        assert auth is not None and auth.startswith("AWS4-HMAC-SHA256 Credential=testing/")
        assert metrics.registry.get_sample_value(
            "retentiond_events_total", {"source": "minio", "outcome": "matched"}) == 1
        listener.stop()
    finally:
        api.close()


def test_minio_listen_needs_an_endpoint(short_setup: Path) -> None:
    cfg = short_setup / "retentiond.yaml"
    cfg.write_text(cfg.read_text() + "events:\n  minio_listen: true\n")
    r = run_cli("ls", setup=short_setup)
    assert r.returncode == 2 and "events.minio_listen: needs s3.endpoint_url" in r.stderr


@pytest.mark.slow
@pytest.mark.rgw
def test_rgw_notifications_reach_the_daemon_webhook(
        ceph_rgw: Any, short_setup: Path, tmp_path: Path) -> None:
    """A real Ceph RGW topic whose HTTP push endpoint is retentiond's webhook (with its
    token in the query string, as RGW cannot send headers): a recording PUT into the inbox
    bucket is ingested within seconds by a daemon that would otherwise list only once a
    minute."""
    from tests.cephrgw import create_topic, notify_bucket

    with webhook_daemon(ceph_rgw, short_setup, token="rgw-t0ken") as (
            client, names, url, env):
        topic = create_topic(ceph_rgw, f"rt-{names['inbox']}", url)
        notify_bucket(client, names["inbox"], topic)
        client.put_object(Bucket=names["inbox"], Key="incoming/appel 1.wav",
                          Body=make_wav(tmp_path / "r.wav"),
                          Metadata={"retentiond-purpose": "training"})
        rows = rows_within(env, time.monotonic(), seconds=20)
        assert rows and rows[0]["source"].endswith("/incoming/appel 1.wav"), \
            "not ingested after RGW's notification"
