"""Prometheus metrics (SPEC section 7), defined once against an injected registry.

Labels are bounded: ``purpose`` takes the policy's purpose names plus ``quarantine`` and
``unknown``; ``state``, ``reason``, ``outcome`` and ``stage`` take fixed sets. Never an
object key or a subject. Backlog gauges are computed at scrape time by a collector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STAGES = ("ingest", "classify", "encrypt", "vault", "delete", "key", "proof", "catalog",
          "policy", "watch", "sweep")
_SIZE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)


@dataclass(frozen=True)
class Backlog:
    """Scrape-time figures computed from the catalog and the proof log."""

    objects: dict[tuple[str, str], int]
    overdue: int
    held_overdue: int
    proof_log_entries: int
    next_due_timestamp: float | None


class _BacklogCollector(Collector):
    def __init__(self, compute: Callable[[], Backlog]) -> None:
        self._compute = compute

    def collect(self) -> Iterator[Metric]:
        b = self._compute()
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

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """Every metric retentiond exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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

    def watch_backlog(self, compute: Callable[[], Backlog]) -> None:
        self.registry.register(_BacklogCollector(compute))
