"""Wiring: the one place that picks adapters from the configuration."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError
from prometheus_client import CollectorRegistry

from retentiond.adapters.localfs import LocalObjectStore
from retentiond.adapters.localfs_proofs import FileProofStore
from retentiond.adapters.s3 import (
    LockMode,
    S3Client,
    S3ObjectStore,
    make_s3_client,
    parse_s3_url,
)
from retentiond.adapters.s3_inbox import S3Inbox
from retentiond.adapters.s3_proofs import S3ProofStore
from retentiond.adapters.sqlite_catalog import SQLiteCatalog
from retentiond.clock import Clock, SystemClock
from retentiond.concurrency import Progress
from retentiond.core.policy import Policy, load_policy_dir
from retentiond.crypto.keys import FileKeyProvider
from retentiond.crypto.signing import NoteSigner, NoteVerifier
from retentiond.errors import BusyError, ConfigError, StorageError
from retentiond.metrics import Metrics
from retentiond.ports import KeyProvider, ObjectStore, ProofStore
from retentiond.service.audit import AuditLog
from retentiond.service.prooflog import ProofLog
from retentiond.settings import Settings, env_name

logger = logging.getLogger(__name__)

SIGNING_KEY_FILE = "proof-log.key"
VERIFIER_KEY_FILE = "proof-log.vkey"


def read_secret_file(path: Path) -> str:
    """Read a key file, refusing one that group or others can read (mode must be 0600)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: key file not found") from None
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{path}: key file is readable by group or others (mode {st.st_mode & 0o777:04o}); "
            "run chmod 600"
        )
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read key file: {e}") from None


def load_verifier(path: Path) -> NoteVerifier:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read verifier key: {e.strerror}") from None
    return NoteVerifier.from_text(text)


LOCK_POLL_SECONDS = 0.1  # how often a wait for another process's lock looks again


@dataclass
class App:
    """Everything a command or the daemon needs, built from one Settings."""

    settings: Settings
    clock: Clock
    catalog: SQLiteCatalog
    vault: ObjectStore
    keys: KeyProvider
    policy: Policy
    proof_log: ProofLog
    audit: AuditLog
    metrics: Metrics
    s3_inboxes: tuple[S3Inbox, ...] = ()
    proof_lock: threading.Lock = field(default_factory=threading.Lock)
    progress: Progress = field(default_factory=Progress)  # fed to systemd's watchdog

    @property
    def folder_inboxes(self) -> tuple[Path, ...]:
        return tuple(Path(u) for u in self.settings.inbox if not is_s3(u))

    def s3_inbox_of(self, source: str) -> S3Inbox | None:
        """The bucket inbox an ``s3://`` source URL belongs to."""
        return next((i for i in self.s3_inboxes if i.key_of(source)), None)

    def close(self) -> None:
        self.catalog.close()

    @contextmanager
    def exclusive(self, name: str, *, wait: bool = True, shared: bool = False) -> Iterator[None]:
        """A cross-process lock ``state/<name>.lock``: ``daemon`` (one daemon per setup),
        ``sweep``, ``proof-log``, ``ingest`` (shared by ingests, exclusive for recovery).
        The kernel releases it when the process dies, even by kill -9."""
        path = self.settings.state_dir / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        raise BusyError(f"{path}: another retentiond process holds this "
                                        "lock") from None
                # waiting for another process's work (a manual `sweep`): not stuck
                self.progress.beat()
                time.sleep(LOCK_POLL_SECONDS)
            yield
        finally:
            os.close(fd)


def load_policy(settings: Settings) -> Policy:
    return load_policy_dir(settings.policies)


def load_keys(settings: Settings) -> KeyProvider:
    """The configured key provider (validates every key file)."""
    if settings.keys_provider != "file":
        raise ConfigError(f"keys.provider: unknown provider {settings.keys_provider!r}")
    return FileKeyProvider(settings.keys_dir)


def build_app(
    settings: Settings, *, clock: Clock | None = None,
    registry: CollectorRegistry | None = None, need_signer: bool = True,
) -> App:
    """Open stores, keys, policy and logs. Raises ConfigError / StorageError."""
    for key, location in (("vault", settings.vault), ("proofs", settings.proofs)):
        if not is_s3(location) and not Path(location).is_dir():
            # a typo must not silently start an empty store (a missing bucket is reported
            # by name on first use, and by /readyz)
            raise ConfigError(f"{settings.config_file}: {key}: {location} is not a folder "
                              "(create it, or fix the path)")
    keys = load_keys(settings)
    verifier = load_verifier(settings.keys_dir / VERIFIER_KEY_FILE)
    signer = (
        NoteSigner.from_text(read_secret_file(settings.keys_dir / SIGNING_KEY_FILE))
        if need_signer else None
    )
    if settings.proof_origin is None:  # not configured: the log key names it
        settings = replace(settings, proof_origin=verifier.name)
    if verifier.name != settings.proof_origin:
        raise ConfigError(
            f"{settings.config_file}: proof_log.origin: {settings.proof_origin!r} differs from "
            f"the signing key's name {verifier.name!r}; they must be equal (the log's origin "
            "is fixed when its key is made)"
        )
    policy = load_policy(settings)
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"{settings.state_dir}: {e.strerror}") from None
    client = s3_client(settings) if any(
        is_s3(u) for u in (settings.vault, settings.proofs, *settings.inbox)) else None
    vault: ObjectStore
    proofs: ProofStore
    if is_s3(settings.vault):
        vault = S3ObjectStore.from_url(settings.vault, client=client,
                                       lock_mode=cast(LockMode, settings.s3_object_lock_mode),
                                       batch_delete=settings.s3_batch_delete)
    else:
        vault = LocalObjectStore(Path(settings.vault))
    proofs = open_proof_store(settings.proofs, settings, client=client)
    s3_inboxes = tuple(S3Inbox.from_url(u, client=client) for u in settings.inbox if is_s3(u))
    catalog = SQLiteCatalog(settings.catalog_path)
    proof_log = ProofLog(proofs, origin=settings.proof_origin, verifier=verifier, signer=signer)
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    if client is not None:
        roles = {**{i.bucket: "inbox" for i in s3_inboxes},
                 **{parse_s3_url(u)[0]: r for r, u in (("proofs", settings.proofs),
                                                       ("vault", settings.vault)) if is_s3(u)}}
        count_s3_retries(client, metrics, roles)
    return App(
        settings=settings, clock=clock or SystemClock(), catalog=catalog, vault=vault,
        keys=keys, policy=policy, proof_log=proof_log, audit=AuditLog(settings.audit_log),
        metrics=metrics, s3_inboxes=s3_inboxes,
    )


def count_s3_retries(client: S3Client, metrics: Metrics, roles: dict[str, str]) -> None:
    """Count the requests boto3 retries (attempt 2 and later) in
    ``retentiond_store_retries_total{store}``, the store told by the request's bucket."""

    def on_request(request: Any, **_: Any) -> None:
        if request.context.get("retries", {}).get("attempt", 1) > 1:
            role = roles.get(request.context.get("input_params", {}).get("Bucket", ""))
            if role is not None:
                metrics.store_retries.labels(store=role).inc()

    client.meta.events.register("request-created.s3", on_request)


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def open_proof_store(location: str, settings: Settings | None, *,
                     client: S3Client | None = None) -> ProofStore:
    """The proof log's store: a folder or an ``s3://bucket/prefix/`` (client settings from
    ``settings``, else the AWS chain alone, e.g. ``AWS_ENDPOINT_URL``)."""
    if is_s3(location):
        if client is None:
            client = s3_client(settings) if settings is not None else env_s3_client()
        return S3ProofStore.from_url(location, client=client)
    return FileProofStore(Path(location))


def sqs_client(settings: Settings) -> Any:
    """A boto3 SQS client on the same endpoint, region and profile as the S3 one (an
    explicit ``s3.endpoint_url`` is for S3 only: SQS then uses the AWS chain's)."""
    s3 = settings.s3
    try:
        session = boto3.session.Session(profile_name=s3.get("profile") or None)
        region = s3.get("region") or _region_of_queue(settings.sqs_queue_url or "")
        endpoint = s3.get("endpoint_url") if _same_host(
            s3.get("endpoint_url"), settings.sqs_queue_url) else None
        return session.client("sqs", region_name=region, endpoint_url=endpoint)
    except (BotoCoreError, ValueError) as e:
        raise ConfigError(f"events.sqs_queue_url: cannot create an SQS client: "
                          f"{type(e).__name__}") from e


def _region_of_queue(url: str) -> str | None:
    """``https://sqs.eu-west-3.amazonaws.com/123/q`` -> ``eu-west-3``."""
    host = urlsplit(url).hostname or ""
    parts = host.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "sqs" else None


def _same_host(a: str | None, b: str | None) -> bool:
    return bool(a and b) and urlsplit(a).netloc == urlsplit(b or "").netloc


def env_s3_client(environ: Mapping[str, str] | None = None) -> S3Client:
    """An S3 client without a configuration file (an auditor's ``proof verify --log``):
    ``RETENTIOND_S3_ENDPOINT_URL``, ``_REGION``, ``_ADDRESSING_STYLE``, ``_PROFILE`` if set,
    else the AWS chain alone (``AWS_ENDPOINT_URL``...)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(env_name(f"s3.{name}")) or None

    return make_s3_client(endpoint_url=get("endpoint_url"), region=get("region"),
                          addressing_style=get("addressing_style") or "auto",
                          profile=get("profile"))


def s3_client(settings: Settings) -> S3Client:
    """One boto3 client for every s3:// location (credentials from the AWS chain)."""
    s3 = settings.s3
    return make_s3_client(
        endpoint_url=s3.get("endpoint_url"), region=s3.get("region"),
        addressing_style=s3.get("addressing_style", "auto"), profile=s3.get("profile"),
        max_attempts=settings.s3_max_attempts,
        # every ingest worker, a big recording's parts in flight, the sweep's requests
        max_pool_connections=max(16, settings.ingest_workers + 8))
