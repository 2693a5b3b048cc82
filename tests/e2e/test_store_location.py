"""The store's own answer (S3 GetBucketLocation) against the declared location, on live
servers. ``bucket_region`` on moto and Ceph RGW; the whole check (``run --once`` stops,
warns, the report shows it) on moto reached by AWS's host name: retentiond asks only AWS
and a few providers (a self-hosted server answers its configured name), so AWS's name
``s3.eu-west-3.amazonaws.com`` is resolved to moto's 127.0.0.1 in this process (moto
serves path-style requests for it). Only name resolution is redirected; every request
goes to the live server, nothing leaves the machine."""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from retentiond.adapters.s3 import bucket_region, make_s3_client
from retentiond.cli import main
from retentiond.core.residency import LocationStatus, country_of
from retentiond.errors import ConfigError, PermanentStorageError, StorageError
from retentiond.service.locations import check_locations, enforce_locations
from retentiond.service.wiring import build_app
from retentiond.settings import load_settings
from tests.cephrgw import ceph_rgw
from tests.conftest import logged
from tests.s3server import S3Server, dummy_aws_env, moto_s3

__all__ = ["ceph_rgw", "moto_s3"]

pytestmark = pytest.mark.slow
PUBLIC_HOST = "s3.eu-west-3.amazonaws.com"


def regional_bucket(server: S3Server, region: str | None) -> str:
    """A new bucket created in ``region`` (None: us-east-1, no LocationConstraint)."""
    client = server.client(region=region or "us-east-1")
    name = server.bucket(client=client) if region is None else _create(client, region)
    return name


def _create(client: Any, region: str) -> str:
    import secrets
    name = f"rt-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name,
                         CreateBucketConfiguration={"LocationConstraint": region})
    return name


def test_bucket_region_on_moto(moto_s3: S3Server) -> None:
    client = moto_s3.client()
    paris, default = regional_bucket(moto_s3, "eu-west-3"), regional_bucket(moto_s3, None)
    assert bucket_region(client, paris, aws=True) == "eu-west-3"
    assert bucket_region(client, default, aws=True) == "us-east-1"  # no LocationConstraint
    assert bucket_region(client, default, aws=False) == ""  # another provider: as given
    with pytest.raises(PermanentStorageError, match="does not exist"):
        bucket_region(client, "rt-no-such-bucket", aws=True)


def test_bucket_region_on_ceph_rgw(ceph_rgw) -> None:
    """A self-hosted server answers its own configuration (RGW: its zonegroup's name, or
    nothing), taken as is: which is why such servers are not asked at start-up."""
    client = ceph_rgw.client()
    answered = bucket_region(client, ceph_rgw.bucket(), aws=False)
    assert country_of(answered or "us-east-1") in (None, "US")  # a name, not a place


@contextmanager
def answering(status: int, body: bytes) -> Iterator[Any]:
    """A client on a local HTTP server that answers every GET with ``status`` and
    ``body`` (what a proxy, a broken server or an old AWS bucket says)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with dummy_aws_env():
            yield make_s3_client(endpoint_url=f"http://127.0.0.1:{server.server_port}",
                                 region="eu-west-1", addressing_style="path", max_attempts=1)
    finally:
        server.shutdown()
        server.server_close()


def test_an_answer_that_is_not_s3_xml_is_a_storage_error() -> None:
    """An empty body: a StorageError naming the bucket, never a parser's exception (it
    would stop `run` and `audit report`)."""
    for status in (503, 404, 200):
        with answering(status, b"") as client, \
                pytest.raises(StorageError, match="s3://calls: GetBucketLocation"):
            bucket_region(client, "calls", aws=True)


def test_eu_means_ireland_only_on_aws() -> None:
    """AWS answers "EU" for buckets made in eu-west-1 before it had that name; Google's
    "EU" is a multi-region: taken as given, so it is not placed in Ireland."""
    xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint '
           b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/">EU</LocationConstraint>')
    with answering(200, xml) as client:
        assert bucket_region(client, "old-eu", aws=True) == "eu-west-1"
        assert bucket_region(client, "old-eu", aws=False) == "EU"


@pytest.fixture
def public_moto(moto_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's endpoint under a public name (resolved to 127.0.0.1 in this process)."""
    port = urlparse(moto_s3.endpoint).port
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == PUBLIC_HOST else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with dummy_aws_env():
        yield f"http://{PUBLIC_HOST}:{port}"


def bucket_setup(short_setup: Path, endpoint: str, *, vault: str, other: str) -> Path:
    """The ``init`` setup with its vault and proof log in buckets, declared in eu-west-3."""
    cfg = short_setup / "retentiond.yaml"
    text = cfg.read_text(encoding="utf-8")
    text = text.replace("vault: vault/", f"vault: s3://{vault}/v/", 1)
    text = text.replace("proofs: proofs/", f"proofs: s3://{other}/log/", 1)
    assert f"s3://{vault}/v/" in text and f"s3://{other}/log/" in text
    text = text.replace("  local_country: FR", "  local_country: FR\n  stores:\n"
                        "    vault: {region: eu-west-3}\n    proofs: {region: eu-west-3}")
    text += (f"s3:\n  endpoint_url: {endpoint}\n  region: eu-west-3\n"
             "  addressing_style: path\n  max_attempts: 2\n")
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _main(*argv: str) -> int:
    # main() sets up the command's logging (no propagation): undone after, so caplog
    # still sees retentiond's records in later tests
    logger = logging.getLogger("retentiond")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    try:
        return main(list(argv))
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])


def test_vault_bucket_in_the_us_stops_the_daemon(moto_s3, public_moto, short_setup, capsys):
    """Declared in eu-west-3, created in us-east-1 (a console's default): ``run --once``
    stops before storing anything (exit 2, what the store said and what to fix)."""
    cfg = bucket_setup(short_setup, public_moto, vault=regional_bucket(moto_s3, None),
                       other=regional_bucket(moto_s3, "eu-west-3"))
    app = build_app(load_settings(cfg, environ={}))
    try:
        with pytest.raises(ConfigError, match=r"answers us-east-1 \(US, third country\)"):
            enforce_locations(app)
    finally:
        app.close()
    (short_setup / "inbox" / "a.wav").write_bytes(b"RIFF....WAVE")
    assert _main("--config", str(cfg), "run", "--once") == 2
    err = capsys.readouterr().err
    assert "residency: vault s3://" in err and "move the bucket" in err
    assert "Traceback" not in err
    assert (short_setup / "inbox" / "a.wav").exists()  # nothing ingested


def test_bucket_in_another_eu_country_is_a_warning_and_in_the_report(
        moto_s3, public_moto, short_setup, caplog, capsys):
    vault = regional_bucket(moto_s3, "eu-central-1")
    cfg = bucket_setup(short_setup, public_moto, vault=vault,
                       other=regional_bucket(moto_s3, "eu-west-3"))
    app = build_app(load_settings(cfg, environ={}))
    try:
        checks = {c.role: c for c in check_locations(app)}
        assert checks["vault"].status is LocationStatus.DIFFERS
        assert checks["proofs"].status is LocationStatus.CONFIRMED
        assert checks["inbox"].status is LocationStatus.NOT_CHECKED  # a local folder
        with caplog.at_level(logging.WARNING, logger="retentiond"):
            enforce_locations(app)
        assert any("eu-central-1 (DE, eea)" in m
                   for m in logged(caplog, "residency.location_differs"))
    finally:
        app.close()
    assert _main("--config", str(cfg), "run", "--once") == 0  # starts the proof log
    assert "eu-central-1 (DE, eea)" in capsys.readouterr().err  # the warning, not a stop
    assert _main("--config", str(cfg), "audit", "report", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    stores = {r["role"]: r for r in report["residency"] if r["kind"] == "store"}
    assert stores["vault"]["location_check"].startswith("differs: the store answers "
                                                        "eu-central-1 (DE, eea)")
    assert stores["proofs"]["location_check"].startswith("confirmed:")
    assert [w["count"] for w in report["warnings"]
            if w["code"] == "residency-contradicted"] == [1]
