"""``/metrics``, ``/healthz`` and ``/readyz`` on ``--metrics-addr``.

``/healthz`` answers 200 while the process serves requests and ``alive()`` (the daemon's
work moved recently) says nothing against it, else 503 with the reason (liveness: a
Kubernetes kubelet restarts a daemon stuck anywhere); ``/readyz`` 200
when ``ready()`` says the daemon can work, else 503 with the reason (readiness);
``/metrics`` the Prometheus text exposition. A failing check or collector gives a
status code and a log line, never a traceback.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from retentiond.errors import ConfigError

logger = logging.getLogger(__name__)


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"metrics address {addr!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # a client that hangs up mid-answer is not worth a traceback on stderr
        exc = sys.exc_info()[1]
        logger.warning("http: request failed: %s", exc, extra={"event": "http.request_failed"})


class StatusServer:
    """A small threaded HTTP server; ``ready()`` returns None when ready, else why not."""

    def __init__(
        self, addr: str, *, registry: CollectorRegistry, ready: Callable[[], str | None],
        alive: Callable[[], str | None] = lambda: None,
    ) -> None:
        host, port = parse_addr(addr)
        registry_, ready_, alive_ = registry, ready, alive

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    try:
                        body = generate_latest(registry_)
                    except Exception as e:  # noqa: BLE001 (a scrape must not kill the thread)
                        logger.error("metrics exposition failed: %s", e,
                                     extra={"event": "http.metrics_failed"})
                        self._send(500, b"metrics unavailable (see the daemon's log)\n")
                        return
                    self._send(200, body, CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    why = alive_()
                    if why is None:
                        self._send(200, b"ok\n")
                    else:
                        self._send(503, f"stalled: {why}\n".encode())
                elif path == "/readyz":
                    try:
                        why = ready_()
                    except Exception as e:  # noqa: BLE001 (an unexpected failure is "not ready")
                        why = f"readiness check failed: {e}"
                    if why is None:
                        self._send(200, b"ready\n")
                    else:
                        self._send(503, f"not ready: {why}\n".encode())
                else:
                    self._send(404, b"not found\n")

            def log_message(self, format: str, *args: object) -> None:
                return

        try:
            self._server = _Server((host, port), Handler)
        except OSError as e:
            raise ConfigError(f"metrics address {addr}: cannot listen: {e.strerror}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="retentiond-http")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        logger.info("serving /metrics, /healthz, /readyz on port %d", self.port,
                    extra={"event": "http.started"})

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
