"""Prometheus metrics (SPEC section 7), defined once against an injected registry.

Labels are bounded: ``purpose`` takes the policy's purpose names plus ``quarantine`` and
``unknown``; ``state``, ``reason``, ``outcome`` and ``stage`` take fixed sets. Never an
object key or a subject. Backlog gauges are computed at scrape time by a collector.

Operations metrics (issue 6) sit beside SPEC section 7's: per-store errors, retries, key
provider errors, reloads, readiness, quarantine size and inbox backlog, with the same
bounded labels (``store``, ``kind``, ``operation`` and ``outcome`` take fixed sets). The
daemon counts store and key provider errors by wrapping its ports in
``InstrumentedObjectStore`` / ``InstrumentedKeyProvider``. A collector that fails at
scrape time does not fail the scrape: it reports ``retentiond_scrape_collector_success 0``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, Generic, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from retentiond import __version__
from retentiond.core.noteslint import CATEGORIES as NOTES_CATEGORIES
from retentiond.errors import (
    NotWrittenDownError,
    ObjectLockedError,
    ObjectNotFoundError,
    PermanentStorageError,
    RetentiondError,
    StorageError,
    TransientStorageError,
)
from retentiond.ports import (
    DeleteResult,
    KeyProvider,
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    ProofStore,
    PutResult,
    WrappedKey,
)

logger = logging.getLogger(__name__)

STAGES = ("ingest", "classify", "encrypt", "vault", "delete", "key", "proof", "catalog",
          "policy", "watch", "sweep", "events", "reconcile")
_SIZE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
STORES = ("inbox", "vault", "proofs", "catalog")
STORE_ERROR_KINDS = ("transient", "permanent", "locked", "other")
KEY_OPERATIONS = ("wrap", "unwrap", "pseudonym", "sample_score", "probe")
RETRY_OPERATIONS = ("ingest", "delete", "pass")
RELOAD_OUTCOMES = ("applied", "refused")


@dataclass(frozen=True)
class Backlog:
    """Scrape-time figures computed from the catalog and the proof log."""

    objects: dict[tuple[str, str], int]
    overdue: int
    held_overdue: int
    proof_log_entries: int
    next_due_timestamp: float | None


T = TypeVar("T")
# a scrape-time figure whose computation took c seconds of CPU is reused for REUSE_FACTOR
# * c seconds, at most REUSE_MAX_SECONDS: about 1 / (REUSE_FACTOR + 1) of a core however
# often Prometheus scrapes (a plan taking 5 ms of CPU is recomputed after 0.1 s, one
# taking 10 s after 200 s). CPU, not wall time: waiting for a slow store costs no CPU and
# must not make figures stale; the cap keeps alerts on them (15 min and more) meaningful.
REUSE_FACTOR = 20.0
REUSE_MAX_SECONDS = 300.0


class Reused(Generic[T]):
    """``compute()``'s last result, computed again once it is older than REUSE_FACTOR
    times the CPU computing it took (``cpu_time``, this thread's; at most the time that
    passed on ``monotonic``), and at most REUSE_MAX_SECONDS; one computation at a time (a
    scrape arriving meanwhile waits for it and shares it). A failure, or a result ``keep``
    refuses (one that holds an error marker), is not kept: the next call computes again."""

    def __init__(self, compute: Callable[[], T], *,
                 monotonic: Callable[[], float] = time.monotonic,
                 cpu_time: Callable[[], float] = time.thread_time,
                 keep: Callable[[T], bool] = lambda _: True) -> None:
        self._compute = compute
        self._monotonic = monotonic
        self._cpu_time = cpu_time
        self._keep = keep
        self._lock = threading.Lock()
        self._value: tuple[T] | None = None  # (the last result,), None before the first
        self._fresh_until = float("-inf")

    def __call__(self) -> T:
        with self._lock:
            if self._value is not None and self._monotonic() < self._fresh_until:
                return self._value[0]
            cpu, started = self._cpu_time(), self._monotonic()
            value = self._compute()
            done = self._monotonic()
            # CPU spent; never more than the time that passed (a test's clock that does
            # not move means no reuse at all)
            spent = min(self._cpu_time() - cpu, done - started)
            if self._keep(value):
                self._value = (value,)
                self._fresh_until = done + min(REUSE_FACTOR * spent, REUSE_MAX_SECONDS)
            else:
                self._value = None
            return value


class _ScrapeTimeCollector(Collector):
    """Figures computed when Prometheus scrapes (ARCHITECTURE convention 10). Each part
    is computed whole before anything is yielded; a part that fails is left out, logged,
    and reported as ``retentiond_scrape_collector_success{collector} 0``."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, Callable[[], list[Metric]]]] = []

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "retentiond_scrape_collector_success",
            "1 if the scrape-time figures were computed, 0 if that failed (see the log)",
            labels=["collector"],
        )
        for name, part in self.parts:
            try:
                metrics = part()
            except Exception as e:  # noqa: BLE001 (any failure: report it, serve the rest)
                logger.error("metrics: %s figures unavailable: %s", name, e,
                             extra={"event": "metrics.collect_failed", "collector": name})
                success.add_metric([name], 0)
                continue
            success.add_metric([name], 1)
            yield from metrics
        yield success

    def describe(self) -> Iterator[Metric]:
        return iter(())


def _backlog_metrics(b: Backlog) -> Iterator[Metric]:
    objects = GaugeMetricFamily(
        "retentiond_objects", "Managed recordings by purpose and state",
        labels=["purpose", "state"],
    )
    for (purpose, state), n in sorted(b.objects.items()):
        objects.add_metric([purpose, state], n)
    yield objects
    yield GaugeMetricFamily(
        "retentiond_objects_overdue",
        "Recordings past their deletion date and still stored, not counting held ones",
        value=b.overdue,
    )
    yield GaugeMetricFamily(
        "retentiond_objects_held_overdue",
        "Recordings past their deletion date kept by a legal hold", value=b.held_overdue,
    )
    yield GaugeMetricFamily(
        "retentiond_proof_log_entries", "Entries in the deletion-proof log",
        value=b.proof_log_entries,
    )
    if b.next_due_timestamp is not None:
        yield GaugeMetricFamily(
            "retentiond_next_deletion_due_timestamp_seconds",
            "When the next recording becomes due", value=b.next_due_timestamp,
        )


@dataclass(frozen=True)
class ServiceStatus:
    """Scrape-time figures about the running daemon. ``inbox_files`` and
    ``inbox_oldest_age_seconds`` cover folder inboxes only (None when there is none, or
    no file for the age)."""

    ready: bool
    policy_name: str
    policy_sha256: str
    quarantined_objects: int
    quarantined_bytes: int
    inbox_files: int | None
    inbox_oldest_age_seconds: float | None


def _status_metrics(s: ServiceStatus) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "retentiond_ready",
        "1 when stores, catalog and keys answer and a policy is loaded (as /readyz)",
        value=1 if s.ready else 0,
    )
    info = GaugeMetricFamily(
        "retentiond_policy_info", "The policy in force: name and SHA-256 of its canonical form",
        labels=["name", "sha256"],
    )
    info.add_metric([s.policy_name, s.policy_sha256], 1)
    yield info
    yield GaugeMetricFamily(
        "retentiond_quarantined_objects", "Recordings in quarantine (awaiting review)",
        value=s.quarantined_objects,
    )
    yield GaugeMetricFamily(
        "retentiond_quarantined_bytes", "Plaintext bytes of the recordings in quarantine",
        value=s.quarantined_bytes,
    )
    if s.inbox_files is not None:
        yield GaugeMetricFamily(
            "retentiond_inbox_files", "Recordings waiting in the folder inboxes",
            value=s.inbox_files,
        )
    if s.inbox_oldest_age_seconds is not None:
        yield GaugeMetricFamily(
            "retentiond_inbox_oldest_file_age_seconds",
            "Age (from its modification time) of the oldest recording still in an inbox",
            value=s.inbox_oldest_age_seconds,
        )


class Metrics:
    """Every metric retentiond exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._scrape_collector: _ScrapeTimeCollector | None = None
        self.ingested = Counter(
            "retentiond_ingested", "Recordings taken from an inbox, by outcome",
            ["purpose", "outcome"], registry=registry,
        )
        self.ingest_bytes = Counter(
            "retentiond_ingest_bytes", "Plaintext bytes ingested", registry=registry
        )
        self.ingest_duration = Histogram(
            "retentiond_ingest_duration_seconds", "Time to ingest one recording",
            buckets=_SIZE_BUCKETS, registry=registry,
        )
        self.deletions = Counter(
            "retentiond_deletions", "Recordings deleted with a proof, by reason",
            ["purpose", "reason"], registry=registry,
        )
        self.sweep_duration = Histogram(
            "retentiond_sweep_duration_seconds", "Duration of an enforcement pass",
            buckets=_SIZE_BUCKETS, registry=registry,
        )
        self.last_sweep_success = Gauge(
            "retentiond_last_sweep_success_timestamp_seconds",
            "Unix time of the last sweep that finished without error", registry=registry,
        )
        self.errors = Counter(
            "retentiond_errors", "Errors by pipeline stage", ["stage"], registry=registry
        )
        for stage in STAGES:
            self.errors.labels(stage=stage)
        # -- operations (issue 6) ------------------------------------------------------
        self.store_errors = Counter(
            "retentiond_store_errors",
            "Errors answered by a store, by store and kind (a missing object is an answer)",
            ["store", "kind"], registry=registry,
        )
        for store in STORES:
            for kind in STORE_ERROR_KINDS:
                self.store_errors.labels(store=store, kind=kind)
        self.retries = Counter(
            "retentiond_retries",
            "Work left for a later attempt after a failure: a recording left in the inbox "
            "(ingest), a deletion retried next pass (delete), a whole pass (pass)",
            ["operation"], registry=registry,
        )
        for op in RETRY_OPERATIONS:
            self.retries.labels(operation=op)
        self.store_retries = Counter(
            "retentiond_store_retries",
            "Store requests retried by the store's client after a transient failure",
            ["store"], registry=registry,
        )
        for store in STORES:
            self.store_retries.labels(store=store)
        self.key_errors = Counter(
            "retentiond_key_provider_errors", "Key provider failures, by operation",
            ["operation"], registry=registry,
        )
        for op in KEY_OPERATIONS:
            self.key_errors.labels(operation=op)
        self.reloads = Counter(
            "retentiond_config_reloads", "Configuration and policy reloads (SIGHUP), by outcome",
            ["outcome"], registry=registry,
        )
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome=outcome)
        self.last_reload_successful = Gauge(
            "retentiond_config_last_reload_successful",
            "0 if the last reload was refused (the previous configuration still runs), else 1",
            registry=registry,
        )
        self.last_reload_successful.set(1)
        self.last_reload_success = Gauge(
            "retentiond_config_last_reload_success_timestamp_seconds",
            "Unix time the running configuration and policy were loaded", registry=registry,
        )
        self.build_info = Gauge(
            "retentiond_build_info", "retentiond's version", ["version"], registry=registry,
        )
        self.build_info.labels(version=__version__).set(1)
        # -- object storage (object-storage issue) -------------------------------------
        self.store_findings = Gauge(
            "retentiond_store_findings", "What the last reconciliation found in the vault "
            "(missing, changed, reappeared, orphan objects)", ["kind"], registry=registry,
        )
        for kind in ("missing", "changed", "reappeared", "orphan"):
            self.store_findings.labels(kind=kind)
        self.orphan_sidecars = Gauge(
            "retentiond_inbox_orphan_sidecars", "Sidecars in an inbox with no live recording "
            "(not there, not live in the catalog) for over an hour or 10 x the sidecar wait, "
            "counted from when they came into the inbox", registry=registry,
        )
        # -- compliance -----------------------------------------------------------------
        self.notes_findings = Counter(
            "retentiond_notes_findings", "Recordings whose notes the notes lint flagged at "
            "ingest, by category (one per recording and category)", ["category"],
            registry=registry,
        )
        for category in NOTES_CATEGORIES:
            self.notes_findings.labels(category=category)
        self.events = Counter(
            "retentiond_events", "Bucket event notifications received, by source (webhook, "
            "sqs) and outcome (matched an inbox, ignored, invalid, refused)",
            ["source", "outcome"], registry=registry,
        )

    def _scrape_time(self) -> _ScrapeTimeCollector:
        if self._scrape_collector is None:
            self._scrape_collector = _ScrapeTimeCollector()
            self.registry.register(self._scrape_collector)
        return self._scrape_collector

    def watch_backlog(self, compute: Callable[[], Backlog], *,
                      monotonic: Callable[[], float] = time.monotonic) -> None:
        """Export the backlog gauges (overdue, next due...), computed at scrape time from
        every live recording: reused while younger than ``REUSE_FACTOR`` times the CPU the
        last computation took (``Reused``; never a result whose proof-log size failed),
        so scrapes cost at most a bounded share of a core however large the catalog."""
        reused = Reused(compute, monotonic=monotonic,
                        keep=lambda b: b.proof_log_entries >= 0)
        self._scrape_time().parts.append(("backlog", lambda: list(_backlog_metrics(reused()))))

    def watch_status(self, compute: Callable[[], ServiceStatus]) -> None:
        """Export readiness, policy, quarantine and inbox figures computed at scrape time."""
        self._scrape_time().parts.append(("status", lambda: list(_status_metrics(compute()))))

    def watch_process(self) -> None:
        """Export ``process_*`` (start time, CPU, memory, open files) for this process."""
        ProcessCollector(registry=self.registry)

    def count_store_error(self, store: str, error: BaseException) -> None:
        """Count one error answered by ``store`` (one of STORES); not-found is not one."""
        if isinstance(error, ObjectNotFoundError):
            return
        if isinstance(error, ObjectLockedError):
            kind = "locked"
        elif isinstance(error, TransientStorageError):
            kind = "transient"
        elif isinstance(error, PermanentStorageError):
            kind = "permanent"
        else:
            kind = "other"
        self.store_errors.labels(store=store, kind=kind).inc()


# -- instrumented ports: count errors without touching the adapters ------------------------


class _CountingWriter:
    def __init__(self, inner: ObjectWriter, count: Callable[[BaseException], None]) -> None:
        self._inner = inner
        self._count = count

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        try:
            return self._inner.write(data)
        except StorageError as e:
            self._count(e)
            raise

    @property
    def result(self) -> PutResult:
        return self._inner.result


class _CountingContext(AbstractContextManager[Any]):
    """Counts StorageErrors raised while entering or leaving ``inner`` (not the body's)."""

    def __init__(
        self, inner: AbstractContextManager[Any], count: Callable[[BaseException], None],
        *, wrap: Callable[[Any], Any] = lambda v: v,
    ) -> None:
        self._inner = inner
        self._count = count
        self._wrap = wrap

    def __enter__(self) -> Any:
        try:
            return self._wrap(self._inner.__enter__())
        except StorageError as e:
            self._count(e)
            raise

    def __exit__(
        self, typ: type[BaseException] | None, value: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            return self._inner.__exit__(typ, value, tb)
        except StorageError as e:
            if e is not value:
                self._count(e)
            raise


class InstrumentedObjectStore:
    """An ``ObjectStore`` decorator counting the wrapped store's errors in
    ``retentiond_store_errors_total{store}``. Arguments are passed through untouched and
    any other attribute is the wrapped store's, so it follows the port as it grows."""

    def __init__(self, inner: ObjectStore, *, store: str, metrics: Metrics) -> None:
        if store not in STORES:
            raise ValueError(f"store label {store!r} is not one of {STORES}")
        self.inner = inner
        self._store = store
        self._metrics = metrics

    def _count(self, error: BaseException) -> None:
        self._metrics.count_store_error(self._store, error)

    @property
    def url(self) -> str:
        return self.inner.url

    def writer(self, *args: Any, **kwargs: Any) -> AbstractContextManager[ObjectWriter]:
        try:
            cm = self.inner.writer(*args, **kwargs)
        except StorageError as e:
            self._count(e)
            raise
        return _CountingContext(cm, self._count, wrap=lambda w: _CountingWriter(w, self._count))

    def open_read(self, *args: Any, **kwargs: Any) -> AbstractContextManager[BinaryIO]:
        try:
            cm = self.inner.open_read(*args, **kwargs)
        except StorageError as e:
            self._count(e)
            raise
        return _CountingContext(cm, self._count)

    def head(self, *args: Any, **kwargs: Any) -> ObjectInfo:
        try:
            return self.inner.head(*args, **kwargs)
        except StorageError as e:
            self._count(e)
            raise

    def list(self, *args: Any, **kwargs: Any) -> Iterator[ObjectInfo]:
        try:
            yield from self.inner.list(*args, **kwargs)
        except StorageError as e:
            self._count(e)
            raise

    def delete_all_versions(self, *args: Any, **kwargs: Any) -> DeleteResult:
        try:
            return self.inner.delete_all_versions(*args, **kwargs)
        except StorageError as e:
            self._count(e)
            raise

    def delete_many(self, *args: Any, **kwargs: Any) -> dict[str, DeleteResult | StorageError]:
        """Per-key errors come back as values, not raised: each one is counted."""
        try:
            results: dict[str, DeleteResult | StorageError] = self.inner.delete_many(
                *args, **kwargs)
        except StorageError as e:
            self._count(e)
            raise
        for result in results.values():  # the caller's refusal is not the store's error
            if isinstance(result, StorageError) and not isinstance(result, NotWrittenDownError):
                self._count(result)
        return results

    def __getattr__(self, name: str) -> Any:
        # the rest of the port and the adapter's optional capabilities: calls pass through,
        # a StorageError they raise is counted all the same
        value = getattr(self.inner, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except StorageError as e:
                self._count(e)
                raise

        return counted

    @staticmethod
    def around(inner: ObjectStore, *, store: str, metrics: Metrics) -> ObjectStore:
        """``inner`` instrumented, typed as the port it stands in for."""
        return cast(ObjectStore, InstrumentedObjectStore(inner, store=store, metrics=metrics))


class InstrumentedStore:
    """Any store (e.g. the proof log's ``ProofStore``) whose calls raising a StorageError
    are counted in ``retentiond_store_errors_total{store}``; attributes pass through."""

    def __init__(self, inner: Any, *, store: str, metrics: Metrics) -> None:
        if store not in STORES:
            raise ValueError(f"store label {store!r} is not one of {STORES}")
        self.inner = inner
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except StorageError as e:
                self._metrics.count_store_error(self._store, e)
                raise

        return counted

    @staticmethod
    def around(inner: ProofStore, *, store: str, metrics: Metrics) -> ProofStore:
        """``inner`` instrumented, typed as the port it stands in for."""
        return cast(ProofStore, InstrumentedStore(inner, store=store, metrics=metrics))


class InstrumentedKeyProvider:
    """A ``KeyProvider`` decorator counting failures in
    ``retentiond_key_provider_errors_total{operation}``; like ``InstrumentedObjectStore``
    it passes arguments and other attributes through."""

    def __init__(self, inner: KeyProvider, *, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    def _call(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.inner, operation)(*args, **kwargs)
        except RetentiondError:
            self._metrics.key_errors.labels(operation=operation).inc()
            raise

    def current_kek_id(self) -> str:
        return self.inner.current_kek_id()

    def wrap(self, *args: Any, **kwargs: Any) -> WrappedKey:
        return cast(WrappedKey, self._call("wrap", *args, **kwargs))

    def unwrap(self, *args: Any, **kwargs: Any) -> bytes:
        return cast(bytes, self._call("unwrap", *args, **kwargs))

    def pseudonym(self, *args: Any, **kwargs: Any) -> str:
        return cast(str, self._call("pseudonym", *args, **kwargs))

    def sample_score(self, *args: Any, **kwargs: Any) -> float:
        return cast(float, self._call("sample_score", *args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @staticmethod
    def around(inner: KeyProvider, *, metrics: Metrics) -> KeyProvider:
        """``inner`` instrumented, typed as the port it stands in for."""
        return cast(KeyProvider, InstrumentedKeyProvider(inner, metrics=metrics))
