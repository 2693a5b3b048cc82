"""The daemon's operations side in-process: error counting around the ports, readiness,
scrape-time collectors that fail without failing the scrape, reload bookkeeping, and the
sd_notify protocol over a real datagram socket."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest

from retentiond.cli.daemon_cmd import ServiceDaemon, instrument, readiness
from retentiond.errors import (
    KeyUnavailableError,
    ObjectLockedError,
    ObjectNotFoundError,
    PermanentStorageError,
    TransientStorageError,
)
from retentiond.metrics import InstrumentedKeyProvider, InstrumentedObjectStore, Metrics
from retentiond.ports import WrappedKey
from retentiond.service.sdnotify import Notifier
from tests.conftest import make_wav, write_sidecar


def sample(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels or None)


class FailingStore:
    """An object store whose every call fails with the error it is given (a fake port)."""

    url = "fake://vault"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.extra_capability_calls = 0

    def head(self, key: str) -> None:
        raise self.error

    def delete_all_versions(self, key: str) -> None:
        raise self.error

    def list(self, prefix: str = "") -> Iterator[object]:
        raise self.error
        yield  # pragma: no cover

    def stale_temporaries(self) -> list[Path]:
        self.extra_capability_calls += 1
        return []


@pytest.mark.parametrize(("error", "kind"), [
    pytest.param(TransientStorageError("timeout"), "transient", id="transient"),
    pytest.param(PermanentStorageError("access denied"), "permanent", id="permanent"),
    pytest.param(ObjectLockedError("object lock"), "locked", id="locked"),
])
def test_store_errors_are_counted_by_kind(error, kind):
    metrics = Metrics(CollectorRegistry())
    store = InstrumentedObjectStore(FailingStore(error), store="vault", metrics=metrics)
    for call in (lambda: store.head("k"), lambda: store.delete_all_versions("k"),
                 lambda: list(store.list())):
        with pytest.raises(type(error)):
            call()
    assert sample(metrics.registry, "retentiond_store_errors_total",
                  store="vault", kind=kind) == 3
    others = [k for k in ("transient", "permanent", "locked", "other") if k != kind]
    assert all(sample(metrics.registry, "retentiond_store_errors_total", store="vault",
                      kind=k) == 0 for k in others)


def test_not_found_is_an_answer_not_an_error():
    metrics = Metrics(CollectorRegistry())
    inner = FailingStore(ObjectNotFoundError("gone"))
    store = InstrumentedObjectStore(inner, store="vault", metrics=metrics)
    with pytest.raises(ObjectNotFoundError):
        store.head("k")
    assert sum(sample(metrics.registry, "retentiond_store_errors_total", store="vault",
                      kind=k) for k in ("transient", "permanent", "locked", "other")) == 0
    # optional capabilities of the wrapped adapter stay reachable
    assert store.stale_temporaries() == [] and inner.extra_capability_calls == 1


def test_batch_and_other_calls_are_counted_too():
    class BatchStore(FailingStore):
        def delete_many(self, keys, **kwargs):
            return {k: (self.error if k.startswith("bad") else object()) for k in keys}

        def mirror_legal_hold(self, key, *, version_id, on):
            raise self.error

    metrics = Metrics(CollectorRegistry())
    store = InstrumentedObjectStore(BatchStore(ObjectLockedError("retention until 2031")),
                                    store="vault", metrics=metrics)
    results = store.delete_many(["bad-1", "ok-1", "bad-2"])
    assert isinstance(results["bad-1"], ObjectLockedError) and len(results) == 3
    with pytest.raises(ObjectLockedError):
        store.mirror_legal_hold("k", version_id=None, on=True)  # not in the wrapper: passed through
    assert sample(metrics.registry, "retentiond_store_errors_total",
                  store="vault", kind="locked") == 3


def test_a_catalog_refusing_to_write_down_deletions_is_not_a_store_error():
    from retentiond.errors import NotWrittenDownError

    class BatchStore(FailingStore):
        def delete_many(self, keys, **kwargs):
            return dict.fromkeys(keys, self.error)

    metrics = Metrics(CollectorRegistry())
    store = InstrumentedObjectStore(BatchStore(NotWrittenDownError("catalog: locked")),
                                    store="vault", metrics=metrics)
    assert len(store.delete_many(["a", "b"])) == 2
    assert sum(sample(metrics.registry, "retentiond_store_errors_total", store="vault",
                      kind=k) for k in ("transient", "permanent", "locked", "other")) == 0


def test_store_label_is_bounded():
    with pytest.raises(ValueError, match="store label"):
        InstrumentedObjectStore(FailingStore(OSError()), store="s3://bucket/key",
                                metrics=Metrics(CollectorRegistry()))


def test_vault_writes_through_the_instrumented_store_count_failures(app):
    real = app.vault
    instrumented = InstrumentedObjectStore(real, store="vault", metrics=app.metrics)
    with instrumented.writer("v1/ab/ok.rtd") as w:
        w.write(b"ciphertext")
    assert w.result.size == len(b"ciphertext")
    assert instrumented.head("v1/ab/ok.rtd").size == len(b"ciphertext")
    with pytest.raises(PermanentStorageError), instrumented.writer("../escape"):
        pass  # refused key: counted as a permanent error
    assert sample(app.metrics.registry, "retentiond_store_errors_total",
                  store="vault", kind="permanent") == 1
    # an error of the caller's own (not the store's) inside the with-block is not counted
    with pytest.raises(RuntimeError), instrumented.writer("v1/ab/aborted.rtd") as w:
        raise RuntimeError("caller failed")
    assert sample(app.metrics.registry, "retentiond_store_errors_total",
                  store="vault", kind="permanent") == 1


class BrokenKeys:
    def current_kek_id(self) -> str:
        return "kek-x"

    def wrap(self, data_key: bytes, *, object_id: str) -> WrappedKey:
        raise KeyUnavailableError("kek-x: key file unreadable")

    def unwrap(self, wrapped: WrappedKey, *, object_id: str) -> bytes:
        raise KeyUnavailableError("kek-x: key file unreadable")

    def pseudonym(self, identifier: str) -> str:
        return "p"

    def sample_score(self, call_id: str) -> float:
        return 0.5


def test_key_provider_errors_are_counted_by_operation():
    metrics = Metrics(CollectorRegistry())
    keys = InstrumentedKeyProvider(BrokenKeys(), metrics=metrics)
    with pytest.raises(KeyUnavailableError):
        keys.wrap(bytes(32), object_id="x")
    with pytest.raises(KeyUnavailableError):
        keys.unwrap(WrappedKey("kek-x", b"blob"), object_id="x")
    assert keys.pseudonym("+33 1") == "p" and keys.current_kek_id() == "kek-x"
    assert sample(metrics.registry, "retentiond_key_provider_errors_total",
                  operation="wrap") == 1
    assert sample(metrics.registry, "retentiond_key_provider_errors_total",
                  operation="unwrap") == 1
    assert sample(metrics.registry, "retentiond_key_provider_errors_total",
                  operation="pseudonym") == 0


def test_readiness_names_what_is_not_reachable(app):
    assert readiness(app) is None
    real_vault, real_keys = app.vault, app.keys
    app.vault = FailingStore(TransientStorageError("connection refused"))
    assert readiness(app) == "vault: connection refused"
    app.vault = real_vault
    app.keys = BrokenKeys()
    assert readiness(app) == "keys: kek-x: key file unreadable"
    assert sample(app.metrics.registry, "retentiond_key_provider_errors_total",
                  operation="probe") == 1
    app.keys = real_keys
    app.catalog.close()
    assert (readiness(app) or "").startswith("catalog: ")


def test_a_failing_collector_does_not_fail_the_scrape(app):
    daemon = ServiceDaemon(app, notifier=Notifier({}))
    instrument(app, daemon)
    text = generate_latest(app.metrics.registry).decode()
    assert 'retentiond_scrape_collector_success{collector="backlog"} 1.0' in text
    app.catalog.close()  # the catalog goes away: both scrape-time parts fail
    text = generate_latest(app.metrics.registry).decode()
    assert 'retentiond_scrape_collector_success{collector="backlog"} 0.0' in text
    assert 'retentiond_scrape_collector_success{collector="status"} 0.0' in text
    assert "retentiond_objects_overdue" not in text  # no made-up figures
    assert "retentiond_errors_total" in text  # the counters are still served


def test_instrument_is_idempotent_and_counts_real_ingest(app, clock):
    daemon = ServiceDaemon(app, notifier=Notifier({}))
    instrument(app, daemon)
    vault = app.vault
    instrument(app, ServiceDaemon(app, notifier=Notifier({})))
    assert app.vault is vault  # not wrapped twice
    inbox = Path(app.settings.inbox[0])
    make_wav(inbox / "a.wav")
    write_sidecar(inbox / "a.wav", purpose="training")
    quarantined = make_wav(inbox / "b.wav", seed=2)  # no sidecar, no rule: quarantined
    registry = app.metrics.registry
    assert sample(registry, "retentiond_inbox_files") == 2
    assert sample(registry, "retentiond_quarantined_objects") == 0
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    outcomes, _, _ = daemon.ingest_ready(now=clock.now())
    assert sorted(o.outcome for o in outcomes) == ["quarantined", "stored"]
    assert sample(registry, "retentiond_ingested_total", purpose="training",
                  outcome="stored") == 1
    assert sample(registry, "retentiond_inbox_files") == 0
    assert sample(registry, "retentiond_quarantined_objects") == 1
    assert sample(registry, "retentiond_quarantined_bytes") == len(quarantined)
    assert sample(registry, "retentiond_ready") == 1
    assert sample(registry, "retentiond_store_errors_total", store="vault",
                  kind="permanent") == 0


@pytest.fixture
def keep_log_level() -> Iterator[None]:
    logger = logging.getLogger("retentiond")
    level = logger.level
    yield
    logger.setLevel(level)


def test_reload_bookkeeping(short_setup, app, keep_log_level):
    daemon = ServiceDaemon(app, notifier=Notifier({}))
    instrument(app, daemon)
    registry = app.metrics.registry
    policy = short_setup / "policies" / "test.yaml"
    good = policy.read_text()
    policy.write_text(good.replace("retention: P6M", "retention: P6Q"))
    daemon.reload()
    assert sample(registry, "retentiond_config_reloads_total", outcome="refused") == 1
    assert sample(registry, "retentiond_config_last_reload_successful") == 0
    policy.write_text(good.replace("name: test-short", "name: test-reloaded"))
    config = short_setup / "retentiond.yaml"
    config.write_text(config.read_text().replace("log_level: info", "log_level: debug"))
    daemon.reload()
    assert sample(registry, "retentiond_config_reloads_total", outcome="applied") == 1
    assert sample(registry, "retentiond_config_last_reload_successful") == 1
    assert app.policy.name == "test-reloaded"
    assert sample(registry, "retentiond_policy_info", name="test-reloaded",
                  sha256=app.policy.sha256) == 1
    assert isinstance(app.keys, InstrumentedKeyProvider)  # still counted after the swap
    assert logging.getLogger("retentiond").level == logging.DEBUG


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield s, path
    s.close()


def test_sd_notify_sends_the_protocol_lines(notify_socket):
    sock, path = notify_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("running: policy x")
    assert sock.recv(4096) == b"READY=1\nSTATUS=running: policy x\n"
    assert n.reloading()
    msg = sock.recv(4096).decode()
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=") and msg.endswith("\n")
    assert int(msg.split("MONOTONIC_USEC=")[1]) > 0
    assert n.stopping()
    assert sock.recv(4096).startswith(b"STOPPING=1\nSTATUS=")
    assert n.status("a\nmultiline " + "x" * 500)
    line = sock.recv(4096).decode()
    assert line.count("\n") == 1 and len(line) <= len("STATUS=\n") + 200


def test_sd_notify_abstract_namespace():
    name = f"retentiond-test-{id(object())}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert s.recv(100) == b"WATCHDOG=1\n"
    finally:
        s.close()


def test_sd_notify_outside_systemd_does_nothing(tmp_path):
    assert not Notifier({}).enabled
    assert Notifier({}).ready("x") is False
    assert Notifier({"NOTIFY_SOCKET": "vsock:2:1"}).ready("x") is False
    # the supervisor went away: logged, never raised
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ready("x") is False


class FlakyVault:
    """The real vault, except that writes and deletions fail while ``down`` is set."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.down = True

    def writer(self, key, **kwargs):
        if self.down:
            raise TransientStorageError("vault: connection reset")
        return self.inner.writer(key, **kwargs)

    def delete_all_versions(self, key):
        if self.down:
            raise TransientStorageError("vault: connection reset")
        return self.inner.delete_all_versions(key)

    def delete_many(self, keys, **kwargs):
        if self.down:  # per-key errors, as the port says
            return {k: TransientStorageError("vault: connection reset") for k in keys}
        return self.inner.delete_many(keys, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_failures_left_for_later_are_counted_as_retries(app, clock):
    flaky = FlakyVault(app.vault)
    app.vault = flaky
    daemon = ServiceDaemon(app, notifier=Notifier({}))
    instrument(app, daemon)
    registry = app.metrics.registry
    inbox = Path(app.settings.inbox[0])
    make_wav(inbox / "a.wav")
    write_sidecar(inbox / "a.wav", purpose="quality",
                  recorded_at=(clock.now() - timedelta(minutes=5)).isoformat())
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (outcome,), _, _ = daemon.ingest_ready(now=clock.now())
    assert outcome.outcome == "failed" and (inbox / "a.wav").exists()
    assert sample(registry, "retentiond_retries_total", operation="ingest") == 1
    # the write failed, then so did the clean-up of the partial object
    assert sample(registry, "retentiond_store_errors_total", store="vault",
                  kind="transient") == 2

    flaky.down = False
    clock.advance(timedelta(seconds=5))
    daemon.ingest_ready(now=clock.now())
    clock.advance(timedelta(seconds=5))
    (outcome,), _, _ = daemon.ingest_ready(now=clock.now())
    assert outcome.outcome == "stored"
    flaky.down = True
    report = daemon.sweeper.sweep(now=clock.now())  # the recording is due: delete fails
    assert [i.outcome for i in report.items] == ["failed"]
    assert sample(registry, "retentiond_retries_total", operation="delete") == 1
    assert sample(registry, "retentiond_store_errors_total", store="vault",
                  kind="transient") == 3
    assert sample(registry, "retentiond_objects_overdue") == 1
    flaky.down = False
    report = daemon.sweeper.sweep(now=clock.now())
    assert [i.outcome for i in report.items] == ["deleted"]
    assert sample(registry, "retentiond_retries_total", operation="delete") == 1
    assert sample(registry, "retentiond_objects_overdue") == 0
    assert sample(registry, "retentiond_retries_total", operation="pass") == 0


class UnreadableProofStore:
    """A proof store whose folder or bucket refuses every access (a fake port)."""

    location = "fake://proofs"

    def read(self, path: str) -> bytes | None:
        raise PermanentStorageError("proofs: permission denied")

    def list(self, prefix: str = "") -> list[str]:
        raise PermanentStorageError("proofs: permission denied")

    def write_once(self, path: str, data: bytes) -> None:
        raise PermanentStorageError("proofs: permission denied")

    def replace(self, path: str, data: bytes) -> None:
        raise PermanentStorageError("proofs: permission denied")


def test_proof_store_errors_are_counted_and_the_daemon_is_not_ready(app):
    app.proof_log.store = UnreadableProofStore()
    daemon = ServiceDaemon(app, notifier=Notifier({}))
    ready = instrument(app, daemon)
    why = ready() or ""
    assert why.startswith("proof log: ") and "permission denied" in why
    registry = app.metrics.registry
    count = registry.get_sample_value  # note: every call is a whole scrape
    assert count("retentiond_store_errors_total", {"store": "proofs", "kind": "permanent"}) == 1
    text = generate_latest(registry).decode()  # one scrape: two more failed reads
    assert "retentiond_proof_log_entries -1.0" in text  # the alert's signal
    assert "retentiond_ready 0.0" in text
    assert count("retentiond_store_errors_total", {"store": "proofs", "kind": "permanent"}) >= 3
