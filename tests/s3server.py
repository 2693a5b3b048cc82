"""A real S3 server for the tests: ``moto_server`` (PyPI ``moto[server]``) as a process.

``moto_s3`` is a session-scoped fixture: it starts ``python -m moto.server`` on a free
127.0.0.1 port, waits until it answers (at most 30 s), yields an ``S3Server`` and kills the
process at the end. A server that does not start fails the run; it is never skipped.

Credentials: clients are made by ``S3Server.client()`` through ``make_s3_client`` (the
standard AWS chain) with dummy credentials put in the environment only while the client
is created, and with the user's AWS config files hidden, so nothing leaks into other
tests and no real account is ever touched.

Use it from a conftest: ``from tests.s3server import moto_s3``.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from retentiond.adapters.s3 import make_s3_client

START_TIMEOUT = 30.0  # seconds for moto_server to answer (≈1-2 s on a 2-core machine)
REGION = "us-east-1"

# what the AWS chain would otherwise find in the environment of the machine running tests
_HIDDEN = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
           "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ROLE_ARN",
           "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_DEFAULT_REGION", "AWS_REGION")


@contextlib.contextmanager
def dummy_aws_env() -> Iterator[None]:
    """Dummy credentials in ``os.environ`` for the duration of the block, then restored."""
    saved = {k: os.environ.get(k) for k in (*_HIDDEN, "AWS_ACCESS_KEY_ID",
                                            "AWS_SECRET_ACCESS_KEY", "AWS_CONFIG_FILE",
                                            "AWS_SHARED_CREDENTIALS_FILE",
                                            "AWS_EC2_METADATA_DISABLED")}
    try:
        for k in _HIDDEN:
            os.environ.pop(k, None)
        os.environ.update({
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true"})
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/moto-api/", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class ServerClients:
    """Clients and buckets on any S3 server at ``self.endpoint`` (moto, Ceph RGW)."""

    endpoint: str

    def client(self, **options: Any) -> Any:
        """A client made by ``make_s3_client`` (path-style, 2 attempts, short timeouts)."""
        args: dict[str, Any] = {"endpoint_url": self.endpoint, "region": REGION,
                                "addressing_style": "path", "max_attempts": 2,
                                "connect_timeout": 2.0, "read_timeout": 30.0}
        args.update(options)
        with dummy_aws_env():
            return make_s3_client(**args)

    def bucket(self, *, versioned: bool = False, object_lock: bool = False,
               client: Any = None) -> str:
        """A new, uniquely named bucket."""
        c = client or self.client()
        name = f"rt-{secrets.token_hex(6)}"
        if object_lock:
            c.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            c.create_bucket(Bucket=name)
        if versioned:
            c.put_bucket_versioning(Bucket=name,
                                    VersioningConfiguration={"Status": "Enabled"})
        return name


@dataclass
class S3Server(ServerClients):
    """A running moto_server."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path


def start_moto(log: Path) -> S3Server:
    """Start moto_server on a free port; raise RuntimeError (with its log) if it fails."""
    try:
        import moto.server  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"moto[server] is not installed ({e}): "
                           "python -m pip install -e '.[dev]'") from e
    last = ""
    for _ in range(3):  # the free port may be taken between probe and bind: retry
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        fh = open(log, "ab")  # noqa: SIM115 (owned by the process, closed in stop())
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        fh.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if _answers(url):
                return S3Server(endpoint=url, process=proc, log=log)
            time.sleep(0.1)
        stop(proc)
        last = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"moto_server did not answer within {START_TIMEOUT:.0f} s; "
                       f"log {log}:\n{last}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate by PID, kill after 5 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A live moto_server for the whole session (fails the run if it cannot start)."""
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    try:
        server = start_moto(log)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        stop(server.process)


# -- a misbehaving front for the server: 5xx answers and slow answers ----------------------

_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
               "upgrade", "trailer"}


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that answers the next
    ``fail_next`` requests with ``status`` (an S3 ``SlowDown`` error document), every
    request whose path contains ``fail_match`` likewise, and delays every forwarded
    request by ``delay`` seconds. ``requests`` counts what it received."""

    def __init__(self, upstream: str) -> None:
        self.fail_next = 0
        self.fail_match: str | None = None
        self.status = 503
        self.delay = 0.0
        self.requests = 0
        up = urlsplit(upstream)
        up_host, up_port = up.hostname or "127.0.0.1", up.port or 80
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                proxy.requests += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.close_connection = True
                matched = proxy.fail_match is not None and proxy.fail_match in self.path
                if proxy.fail_next > 0 or matched:
                    proxy.fail_next -= 0 if matched else 1
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_SLOWDOWN)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(_SLOWDOWN)
                    return
                time.sleep(proxy.delay)
                conn = http.client.HTTPConnection(up_host, up_port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in _HOP_BY_HOP and k.lower() != "expect"}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                            self.send_header(k, v)
                    length = resp.getheader("Content-Length") if self.command == "HEAD" \
                        else str(len(data))
                    self.send_header("Content-Length", length or "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                except OSError:
                    return  # the client gave up (read timeout): nothing to answer
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
