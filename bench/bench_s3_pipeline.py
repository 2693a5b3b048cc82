"""The object-storage pipeline against plain boto3 on the same S3 server (not a test).

Run from the repository root:

    python -m bench.bench_s3_pipeline [--quick] [--ingest 64x1,8x64] [--rounds 3]
                                      [--delete-count 2000] [--delete-kib 16] [--rss-gib 2]
                                      [--rss-boto3] [--only ingest,delete,rss] [--profile]
                                      [--endpoint URL [--region R]] [--dir DIR]

Without ``--endpoint`` it starts its own ``moto_server`` on 127.0.0.1 (dummy credentials,
never a real account). With ``--endpoint`` (a Ceph RGW, a MinIO...) the credentials come
from the standard AWS chain of the environment; the script creates uniquely named buckets
(``rtbench-*``) and removes them at the end.

1. Ingest, inbox bucket -> vault bucket, for each COUNTxMiB group of ``--ingest``. The
   objects (incompressible, ``x-amz-meta-retentiond-purpose: training``) are uploaded once
   to a masters bucket; before each timed side they are copied server-side into the inbox
   bucket (``copy_object``, timed too: reported as "not comparable: cannot encrypt").
   Sides, in alternating order for ``--rounds`` rounds (medians reported):
     boto3       per object, one at a time: ``get_object`` then ``upload_fileobj`` of its
                 streaming body (boto3 defaults: 8 MiB parts, 10 threads) into a versioned
                 bucket, with the same client settings as retentiond's;
     retentiond  ``Ingestor(app).ingest_object(inbox, key, now=...)`` per object through
                 an App built from a ``retentiond init`` setup pointed at the buckets
                 (versioned vault, proofs bucket, SQLite catalog on disk): sidecar lookup,
                 classify, data key, catalog rows, AES-256-GCM + SHA-256 streamed into the
                 vault (8 MiB parts, 2 in flight, Content-MD5), server ETag check,
                 plaintext removal. Every plaintext must be gone from the inbox after it.
   Ratio = median boto3 time / median retentiond time (target >= 0.8).
2. Deletion: ``--delete-count`` recordings of ``--delete-kib`` KiB ingested beforehand
   into the S3 vault (purpose ``quality``, retention PT30S; untimed: 20 through the
   bucket inbox, the rest from a local folder, which needs 2 S3 requests a recording
   instead of 7 and gives the same vault objects and catalog rows), a ManualClock moved
   past the retention, then one timed ``Sweeper(app).sweep(now=...)`` (the public API:
   whatever the sweep does today is what is measured): recordings deleted with their
   proof appended, per second. Peer: the same number of objects of the same size in a
   versioned bucket deleted with plain ``delete_objects`` (1,000 ``{Key, VersionId}`` per
   call, i.e. permanently, like the sweep), timed before and after the sweep.
   Ratio = sweep rate / peer rate (target >= 0.5). The wall time of the sweep's main
   steps (plan, catalog transactions, store deletion, proof-log append) is printed too.
3. Peak RSS: fresh child processes. ``idle`` imports and builds the App only; ``ingest``
   builds it and ingests one ``--rss-gib`` GiB object (uploaded beforehand from a
   generator, never held in memory); with ``--rss-boto3``, ``boto3`` copies the same
   object with ``get_object`` + ``upload_fileobj``. Each child prints its own VmHWM; the
   parent samples the child's RSS every 10 ms (psutil) as a check. Target: ingest peak
   < 150 MiB.

Timing is in this process (no interpreter start-up). Every S3 operation either side sends
is counted and timed (botocore before-call/after-call events). The server shares the
machine's cores with the client: on moto the ratios say what retentiond costs next to
plain boto3, not how fast S3 is. ``--profile`` adds untimed cProfile runs (one ingest
round per group, one sweep of a further min(count, 1000) recordings) and prints where the
time goes. ``--quick``: a smoke run in about 30 s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import io
import json
import os
import platform
import pstats
import re
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # ``python bench/bench_s3_pipeline.py`` puts bench/ first
    sys.path.insert(0, str(REPO))

from retentiond.adapters.s3 import make_s3_client  # noqa: E402
from retentiond.clock import ManualClock  # noqa: E402
from retentiond.concurrency import in_order  # noqa: E402
from retentiond.core.classify import Overrides  # noqa: E402
from retentiond.service.ingest import Ingestor  # noqa: E402
from retentiond.service.setup import init_setup  # noqa: E402
from retentiond.service.sweep import Sweeper  # noqa: E402
from retentiond.service.wiring import App, build_app  # noqa: E402
from retentiond.settings import load_settings  # noqa: E402

MiB = 1024 * 1024
INGEST_TARGET = 0.8
DELETE_TARGET = 0.5
RSS_TARGET_MIB = 150.0
DELETE_BATCH = 1000  # S3: DeleteObjects takes at most 1,000 keys
PREP_THREADS = 8  # untimed preparation uploads only
INBOX_PREFIX = "incoming/"

# the tests' short policy (tests/conftest.py SHORT_POLICY), without banking
POLICY = """\
version: 1
name: bench-short
purposes:
  quality:
    legal_basis: legitimate-interests
    retention: PT30S
    media: [audio]
  training:
    legal_basis: legitimate-interests
    retention: P6M
    media: [audio, screen]
quarantine:
  retention: P1D
"""

MOTO_CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
              "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
              "AWS_EC2_METADATA_DISABLED": "true"}


# -- helpers -------------------------------------------------------------------------------


class Synthetic(io.RawIOBase):
    """``size`` bytes of a repeating random 1 MiB pattern (one per object), never held at
    once: incompressible for anything that looks at less than 1 MiB."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._pattern = memoryview(os.urandom(min(size, MiB) or 1))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._left, len(self._pattern))
        view[:n] = self._pattern[:n]
        self._left -= n
        return n


def vmhwm_mib() -> float:
    """Peak resident set of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Ops:
    """S3 operations sent: how many of each, and the client wall time spent in them
    (request to parsed response, retries included; parts uploading in parallel overlap)."""

    counts: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)

    def __iadd__(self, other: Ops) -> Ops:
        self.counts += other.counts
        self.seconds += other.seconds
        return self

    def describe(self, n: float) -> str:
        """Per item (object or recording): requests, then each operation's count and ms."""
        total = sum(self.counts.values())
        parts = ", ".join(f"{op} {c / n:.2f} ({self.seconds[op] / n * 1e3:.1f} ms)"
                          for op, c in self.counts.most_common())
        return f"{total / n:.2f}: {parts}"


class Requests:
    """Counts and times the S3 operations a client sends (``before-call`` and
    ``after-call`` events, paired per thread), thread-safe."""

    def __init__(self) -> None:
        self.ops = Ops()
        self._lock = threading.Lock()
        self._local = threading.local()

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3", self._after)

    def _before(self, event_name: str, **_: Any) -> None:
        self._local.start = time.perf_counter()
        with self._lock:
            self.ops.counts[event_name.rsplit(".", 1)[1]] += 1

    def _after(self, event_name: str, **_: Any) -> None:
        start = getattr(self._local, "start", None)
        if start is not None:
            with self._lock:
                self.ops.seconds[event_name.rsplit(".", 1)[1]] += time.perf_counter() - start

    def take(self) -> Ops:
        with self._lock:
            out, self.ops = self.ops, Ops()
        return out


@dataclass
class Server:
    """The S3 endpoint under test and how to reach it."""

    endpoint: str
    region: str
    label: str
    pid: int | None  # moto_server's pid (its CPU time is reported), None for --endpoint

    def client(self) -> Any:
        """A client with retentiond's own client settings (path style, checksums
        when_required, standard retries): the baseline pays what retentiond pays."""
        return make_s3_client(endpoint_url=self.endpoint, region=self.region,
                              addressing_style="path", read_timeout=300)

    def server_cpu(self) -> float:
        if self.pid is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Buckets:
    """Uniquely named buckets, emptied and removed at the end."""

    def __init__(self, client: Any, region: str) -> None:
        self.client = client
        self.region = region
        self.tag = secrets.token_hex(3)
        self.made: list[str] = []

    def make(self, role: str, *, versioned: bool = False) -> str:
        name = f"rtbench-{self.tag}-{role}"
        args: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.client.create_bucket(**args)
        self.made.append(name)
        if versioned:
            self.client.put_bucket_versioning(Bucket=name,
                                              VersioningConfiguration={"Status": "Enabled"})
        return name

    def versions(self, bucket: str, prefix: str = "") -> list[dict[str, str]]:
        out = []
        for page in self.client.get_paginator("list_object_versions").paginate(
                Bucket=bucket, Prefix=prefix):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                out.append({"Key": v["Key"], "VersionId": v.get("VersionId") or "null"})
        return out

    def empty(self, bucket: str, prefix: str = "") -> None:
        listed = self.versions(bucket, prefix)
        objects = [o if o["VersionId"] != "null" else {"Key": o["Key"]} for o in listed]
        for i in range(0, len(objects), DELETE_BATCH):
            self.client.delete_objects(Bucket=bucket, Delete={
                "Objects": objects[i:i + DELETE_BATCH], "Quiet": True})

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def drop_all(self) -> None:
        for name in reversed(self.made):
            try:
                self.empty(name)
                for up in self.client.list_multipart_uploads(Bucket=name).get("Uploads", []):
                    self.client.abort_multipart_upload(Bucket=name, Key=up["Key"],
                                                       UploadId=up["UploadId"])
                self.client.delete_bucket(Bucket=name)
            except Exception as e:  # cleanup is best effort; say what is left
                print(f"warning: could not remove bucket {name}: {e}", file=sys.stderr)


def make_setup(folder: Path, server: Server, *, inbox: str, vault: str, proofs: str) -> Path:
    """A ``retentiond init`` setup pointed at buckets (the README's "Running against S3"),
    with the bench policy. Returns the configuration file."""
    init_setup(folder)
    for p in (folder / "policies").glob("*.yaml"):
        p.unlink()
    (folder / "policies" / "bench.yaml").write_text(POLICY, encoding="utf-8")
    cfg = folder / "retentiond.yaml"
    text = cfg.read_text(encoding="utf-8")
    text, n1 = re.subn(r"(?m)^inbox:.*\n  - inbox/\n",
                       f"inbox:\n  - s3://{inbox}/{INBOX_PREFIX}\n", text)
    text, n2 = re.subn(r"(?m)^vault: .*$", f"vault: s3://{vault}/v/", text)
    text, n3 = re.subn(r"(?m)^proofs: .*$", f"proofs: s3://{proofs}/log/", text)
    if (n1, n2, n3) != (1, 1, 1):
        raise SystemExit(f"{cfg}: unexpected layout of the configuration made by init")
    text = text.replace("metrics_addr: 127.0.0.1:9464", "metrics_addr: 'off'")
    text += (f"s3:\n  endpoint_url: {server.endpoint}\n  region: {server.region}\n"
             "  addressing_style: path\n")
    cfg.write_text(text, encoding="utf-8")
    return cfg


INGEST_WORKERS: dict[str, str] = {}  # --workers: RETENTIOND_INGEST_WORKERS for the setups


def open_app(cfg: Path, clock: ManualClock | None = None) -> App:
    return build_app(load_settings(cfg, environ=INGEST_WORKERS), clock=clock)


def upload(client: Any, bucket: str, key: str, size: int, metadata: dict[str, str]) -> str:
    """Upload ``size`` generated bytes; returns the version id ("null" if unversioned)."""
    if size <= 8 * MiB:
        body = bytearray(size)
        Synthetic(size).readinto(body)
        resp = client.put_object(Bucket=bucket, Key=key, Body=bytes(body), Metadata=metadata)
        return str(resp.get("VersionId") or "null")
    client.upload_fileobj(Synthetic(size), bucket, key, ExtraArgs={"Metadata": metadata})
    return str(client.head_object(Bucket=bucket, Key=key).get("VersionId") or "null")


def upload_to(client: Any, bucket: str, key: str, *, size: int,
              metadata: dict[str, str]) -> str:
    return upload(client, bucket, key, size, metadata)


def parallel(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """Untimed preparation: ``fn`` over ``items`` on a few threads, results in order."""
    with ThreadPoolExecutor(max_workers=PREP_THREADS) as pool:
        return list(pool.map(fn, items))


@contextlib.contextmanager
def profiled(sink: list[str], title: str, *, top: int) -> Iterator[None]:
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        wall = time.perf_counter() - start
        sink.append(format_profile(prof, f"{title} (wall {wall:.2f} s under cProfile)",
                                   top=top))


def _short(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    for marker in ("site-packages/", "/lib/python3", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})"


# leaves worth seeing next to retentiond's own functions: S3 requests, catalog, crypto
_LEAVES = ("botocore/client.py:998(_make_api_call)", "sqlite3.Connection",
           "_hashlib.openssl_md5", "'update' of '_hashlib.HASH'", "AESGCM",
           "s3transfer/futures.py:106(result)", "boto3/s3/inject.py")


def format_profile(prof: cProfile.Profile, title: str, *, top: int) -> str:
    """retentiond's functions (and a few telling leaves) by cumulative time, then every
    function by self time."""
    stats = pstats.Stats(prof)
    raw: dict[Any, tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    rows = [(cum, tot, nc, _short(func)) for func, (_, nc, tot, cum, _) in raw.items()]
    out = [f"-- {title}", "   by cumulative time (s):    cum     self    calls  function"]
    mine = [r for r in sorted(rows, key=lambda r: -r[0])
            if r[3].startswith("retentiond/") or any(leaf in r[3] for leaf in _LEAVES)]
    for cum, tot, nc, name in mine[:top]:
        out.append(f"   {'':22}{cum:8.3f} {tot:8.3f} {nc:8d}  {name}")
    out.append("   by self time (s):         self      cum    calls  function")
    for cum, tot, nc, name in sorted(rows, key=lambda r: -r[1])[:10]:
        out.append(f"   {'':22}{tot:8.3f} {cum:8.3f} {nc:8d}  {name}")
    return "\n".join(out)


# -- 1. ingest throughput ------------------------------------------------------------------


@dataclass
class IngestGroup:
    count: int
    size: int
    server_copy: list[float] = field(default_factory=list)
    boto3: list[float] = field(default_factory=list)
    ingest: list[float] = field(default_factory=list)
    boto3_cpu: list[float] = field(default_factory=list)
    ingest_cpu: list[float] = field(default_factory=list)
    boto3_srv: list[float] = field(default_factory=list)
    ingest_srv: list[float] = field(default_factory=list)
    boto3_req: Ops = field(default_factory=Ops)
    ingest_req: Ops = field(default_factory=Ops)
    threads: list[float] = field(default_factory=list)  # boto3 copy, `workers` at a time
    workers: int = 1  # retentiond's ingest.workers

    @property
    def label(self) -> str:
        return f"{self.count} x {self.size / MiB:g} MiB"

    @property
    def nbytes(self) -> int:
        return self.count * self.size

    def ratio(self) -> float:
        return statistics.median(self.boto3) / statistics.median(self.ingest)

    def round_ratios(self) -> list[float]:
        return [b / i for b, i in zip(self.boto3, self.ingest, strict=True)]


def mbs(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def bench_ingest(server: Server, buckets: Buckets, work: Path, groups: list[IngestGroup], *,
                 rounds: int, profile: list[str] | None) -> None:
    client = buckets.client
    masters = buckets.make("masters")
    inbox = buckets.make("inbox")
    copies = buckets.make("copies", versioned=True)
    vault = buckets.make("vault", versioned=True)
    proofs = buckets.make("proofs")
    cfg = make_setup(work / "ingest-setup", server, inbox=inbox, vault=vault, proofs=proofs)
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    app = open_app(cfg, clock)
    (s3_inbox,) = app.s3_inboxes
    ingestor = Ingestor(app)
    workers = app.settings.ingest_workers
    ours, theirs = Requests(), Requests()
    ours.attach(app.s3_inboxes[0].client)  # the app's one client: inbox, vault, proofs
    peer = server.client()
    theirs.attach(peer)
    meta = {"retentiond-purpose": "training"}
    try:
        for g in groups:
            g.workers = workers
            names = [f"calls/g{g.size // 1024}k/call-{i:04d}.wav" for i in range(g.count)]
            parallel(functools.partial(upload_to, client, masters, size=g.size, metadata=meta),
                     names)

            def refill(g: IngestGroup = g, names: list[str] = names) -> None:
                start = time.perf_counter()
                for k in names:
                    client.copy_object(Bucket=inbox, Key=INBOX_PREFIX + k,
                                       CopySource={"Bucket": masters, "Key": k})
                g.server_copy.append(time.perf_counter() - start)

            def copy_side(names: list[str] = names) -> None:
                for k in names:
                    resp = peer.get_object(Bucket=inbox, Key=INBOX_PREFIX + k)
                    peer.upload_fileobj(resp["Body"], copies, k,
                                        ExtraArgs={"Metadata": resp["Metadata"]})

            def copy_side_threads(names: list[str] = names) -> None:
                def one(k: str) -> None:
                    resp = peer.get_object(Bucket=inbox, Key=INBOX_PREFIX + k)
                    peer.upload_fileobj(resp["Body"], copies, k,
                                        ExtraArgs={"Metadata": resp["Metadata"]})
                list(in_order(names, one, workers=workers))

            def ingest_side(names: list[str] = names) -> None:
                # what a daemon pass does: one listing of the inbox (it tells which
                # recordings have a KEY.json sidecar), then the listed recordings,
                # ``ingest.workers`` at a time
                listed, _ = s3_inbox.scan()
                if len(listed) != len(names):
                    raise SystemExit(f"inbox lists {len(listed)} recordings, not {len(names)}")
                for c, out in in_order(
                        listed, lambda c: ingestor.ingest_object(
                            s3_inbox, c.key, now=clock.now(),
                            sidecar_listed=c.sidecar is not None, listed_size=c.item.size),
                        workers=workers):
                    if out.outcome != "stored":
                        raise SystemExit(f"ingest of {c.key}: {out.outcome}: {out.message}")

            def timed(run: Callable[[], None], wall: list[float], cpu: list[float],
                      srv: list[float]) -> None:
                c0, s0, t0 = time.process_time(), server.server_cpu(), time.perf_counter()
                run()
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                srv.append(server.server_cpu() - s0)

            for r in range(rounds):
                order = ("boto3", "retentiond", "threads") if r % 2 == 0 else \
                    ("threads", "retentiond", "boto3")
                for side in order:
                    refill()
                    ours.take()
                    theirs.take()
                    if side == "boto3":
                        timed(copy_side, g.boto3, g.boto3_cpu, g.boto3_srv)
                        g.boto3_req += theirs.take()
                        buckets.empty(copies)
                    elif side == "threads":
                        timed(copy_side_threads, g.threads, [], [])
                        theirs.take()
                        buckets.empty(copies)
                    else:
                        timed(ingest_side, g.ingest, g.ingest_cpu, g.ingest_srv)
                        g.ingest_req += ours.take()
                        left = buckets.keys(inbox, INBOX_PREFIX)
                        if left:
                            raise SystemExit(f"ingest left plaintext behind: {left[0]}")
                        buckets.empty(vault, "v/")
                print(f"  ingest {g.label}: round {r + 1}/{rounds}: ratio "
                      f"{g.boto3[-1] / g.ingest[-1]:.2f}", flush=True)
            if profile is not None:
                refill()
                with profiled(profile, f"ingest {g.label}, one round", top=24):
                    ingest_side()
                buckets.empty(vault, "v/")
                refill()
                with profiled(profile, f"boto3 copy {g.label}, one round", top=6):
                    copy_side()
                buckets.empty(copies)
            buckets.empty(inbox)
            buckets.empty(masters)
    finally:
        app.close()


# -- 2. deletion throughput ----------------------------------------------------------------


@dataclass
class DeleteResult:
    count: int
    size: int
    prep_ingest: float = 0.0
    sweep: float = 0.0
    sweep_cpu: float = 0.0
    sweep_srv: float = 0.0
    deleted: int = 0
    proof_size: int = 0
    peer: list[float] = field(default_factory=list)
    peer_srv: list[float] = field(default_factory=list)
    sweep_req: Ops = field(default_factory=Ops)
    phases: dict[str, float] = field(default_factory=dict)  # sweep step -> seconds

    def sweep_rate(self) -> float:
        return self.deleted / self.sweep

    def peer_rate(self) -> float:
        return self.count / statistics.median(self.peer)

    def ratio(self) -> float:
        return self.sweep_rate() / self.peer_rate()


SWEEP_STEPS = {  # what the timed sweep's steps are called in the report
    "plan": "plan (walk: catalog pages, decisions)",
    "start_deletions": "catalog: start deletions",
    "delete_many": "store: delete + confirming listing",
    "destroy_keys": "catalog: destroy keys, keep records",
    "append": "proof log: append",
    "finish_deletions": "catalog: record proof indexes",
}


def time_steps(sweeper: Sweeper, app: App, sink: dict[str, float]) -> None:
    """Time the main steps of ``sweeper``'s passes (wall seconds added to ``sink``) by
    wrapping the methods on these objects only; the rest of a pass (deletion records,
    metrics, logging, queries) is what the report calls "other"."""
    owners = {"start_deletions": app.catalog,
              "delete_many": app.vault, "destroy_keys": app.catalog,
              "append": app.proof_log, "finish_deletions": app.catalog}
    walk = sweeper.iter_plan

    def timed_walk(*args: Any, **kwargs: Any) -> Any:
        """The walk is a generator the sweep interleaves with its deletions: its time is
        the time spent getting each next decision (catalog pages and decide())."""
        inner = walk(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                item = next(inner)
            except StopIteration:
                return
            finally:
                sink["plan"] = sink.get("plan", 0.0) + time.perf_counter() - start
            yield item

    sweeper.iter_plan = timed_walk  # type: ignore[method-assign]
    for name, owner in owners.items():
        method = getattr(owner, name)

        def timed(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                sink[_name] = sink.get(_name, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)


def bench_delete(server: Server, buckets: Buckets, work: Path, *, count: int, size: int,
                 profile: list[str] | None) -> DeleteResult:
    client = buckets.client
    inbox = buckets.make("del-inbox")
    vault = buckets.make("del-vault", versioned=True)
    proofs = buckets.make("del-proofs")
    peer_bucket = buckets.make("del-peer", versioned=True)
    cfg = make_setup(work / "delete-setup", server, inbox=inbox, vault=vault, proofs=proofs)
    t0 = datetime.now(UTC).replace(microsecond=0)
    clock = ManualClock(t0)
    app = open_app(cfg, clock)
    (s3_inbox,) = app.s3_inboxes
    ingestor = Ingestor(app)
    ours = Requests()
    ours.attach(s3_inbox.client)
    meta = {"retentiond-purpose": "quality", "retentiond-recorded-at": t0.isoformat()}
    overrides = Overrides(purpose="quality", recorded_at=t0)
    local = work / "delete-setup" / "local-inbox"
    res = DeleteResult(count=count, size=size)
    peer = server.client()

    def ingest_batch(tag: str, n: int) -> float:
        """Untimed preparation: ``n`` recordings into the S3 vault. A few go through the
        bucket inbox (``ingest_object``, checked to give the same kind of recording);
        the rest, for speed, from a local folder (``Ingestor.ingest``: 2 S3 requests a
        recording instead of 7) on PREP_THREADS threads (catalog, client and Ingestor
        are thread-safe). Same vault objects, tags, keys and catalog rows for the sweep.
        Returns the seconds the ingests took."""
        via_bucket = [f"calls/{tag}/b-{i:05d}.wav" for i in range(min(n, 20))]
        via_folder = [f"calls/{tag}/f-{i:05d}.wav" for i in range(n - len(via_bucket))]
        parallel(lambda k: upload(client, inbox, INBOX_PREFIX + k, size, meta), via_bucket)
        for name in via_folder:
            path = local / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
        start = time.perf_counter()
        outs = [ingestor.ingest_object(s3_inbox, k, now=clock.now()) for k in via_bucket]
        outs += parallel(lambda k: ingestor.ingest(local, k, overrides=overrides,
                                                   now=clock.now()), via_folder)
        seconds = time.perf_counter() - start
        for out in outs:
            if out.outcome != "stored" or out.purpose != "quality":
                raise SystemExit(f"ingest of {out.source}: {out.outcome}: {out.message}")
        return seconds

    def peer_round() -> None:
        keys = [f"calls/peer/call-{i:05d}.rtd" for i in range(count)]
        vids = parallel(lambda k: upload(client, peer_bucket, k, size, {}), keys)
        objects = [{"Key": k, "VersionId": v} for k, v in zip(keys, vids, strict=True)]
        s0, start = server.server_cpu(), time.perf_counter()
        for i in range(0, len(objects), DELETE_BATCH):
            resp = peer.delete_objects(Bucket=peer_bucket, Delete={
                "Objects": objects[i:i + DELETE_BATCH], "Quiet": True})
            if resp.get("Errors"):
                raise SystemExit(f"delete_objects: {resp['Errors'][0]}")
        res.peer.append(time.perf_counter() - start)
        res.peer_srv.append(server.server_cpu() - s0)
        if buckets.versions(peer_bucket):
            raise SystemExit("delete_objects left versions behind")

    try:
        peer_round()
        print(f"  delete_objects of {count} versions: {res.peer[-1]:.2f} s", flush=True)
        clock.advance(timedelta(seconds=1))
        res.prep_ingest = ingest_batch("a", count)
        ours.take()
        print(f"  ingested {count} recordings of {size // 1024} KiB in {res.prep_ingest:.1f} s "
              "(preparation)", flush=True)
        clock.advance(timedelta(seconds=60))  # quality: PT30S
        sweeper, steps = Sweeper(app), {}
        time_steps(sweeper, app, steps)
        c0, s0, start = time.process_time(), server.server_cpu(), time.perf_counter()
        report = sweeper.sweep(now=clock.now())
        res.sweep = time.perf_counter() - start
        res.phases = dict(steps)  # this sweep's only (the profiled one adds to ``steps``)
        res.sweep_cpu = time.process_time() - c0
        res.sweep_srv = server.server_cpu() - s0
        res.sweep_req = ours.take()
        res.deleted = sum(1 for i in report.items
                          if i.outcome == "deleted" and i.proof_index is not None)
        res.proof_size = app.proof_log.size()
        if res.deleted != count or res.proof_size != count:
            raise SystemExit(f"sweep: {res.deleted} of {count} deleted with a proof, log "
                             f"size {res.proof_size}: {report.items[:3]}")
        if buckets.versions(vault, "v/"):
            raise SystemExit("sweep left versions in the vault")
        print(f"  sweep of {count} recordings: {res.sweep:.2f} s", flush=True)
        peer_round()
        print(f"  delete_objects of {count} versions: {res.peer[-1]:.2f} s", flush=True)
        if profile is not None:
            n = min(count, 1000)
            ingest_batch("b", n)
            clock.advance(timedelta(seconds=60))
            with profiled(profile, f"sweep of {n} recordings", top=24):
                Sweeper(app).sweep(now=clock.now())
    finally:
        app.close()
    return res


# -- 3. peak RSS in fresh processes --------------------------------------------------------


def rss_child(mode: str, cfg: Path, key: str, dst_bucket: str) -> int:
    """Child: build the App (and ingest ``key``, or copy it with plain boto3); print JSON."""
    app = open_app(cfg)
    before = vmhwm_mib()
    start = time.perf_counter()
    outcome = "built"
    (inbox,) = app.s3_inboxes
    if mode == "ingest":
        out = Ingestor(app).ingest_object(inbox, key, now=app.clock.now())
        outcome = f"{out.outcome} {out.message}".strip()
    elif mode == "boto3":
        client = inbox.client
        resp = client.get_object(Bucket=inbox.bucket, Key=inbox.prefix + key)
        client.upload_fileobj(resp["Body"], dst_bucket, key,
                              ExtraArgs={"Metadata": resp["Metadata"]})
        outcome = "copied"
    seconds = time.perf_counter() - start
    app.close()
    print(json.dumps({"mode": mode, "outcome": outcome, "seconds": seconds,
                      "before_mib": before, "vmhwm_mib": vmhwm_mib()}))
    return 0 if outcome in ("built", "stored", "copied") else 1


def run_polled(cmd: list[str]) -> tuple[float, int, str, str]:
    """Run ``cmd``; sample its RSS every 10 ms from outside (psutil). Returns (largest
    sample in MiB, exit code, stdout, stderr). (``RUSAGE_CHILDREN`` cannot serve as the
    check here: a child started by vfork inherits this big process's high-water mark.)"""
    import psutil  # type: ignore[import-untyped]  # noqa: PLC0415 (dev dependency)

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=REPO)
        watched = psutil.Process(proc.pid)
        peak, execed = 0, False
        while proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                # before exec the vforked child still shows this process's memory
                execed = execed or watched.cmdline()[1:3] == cmd[1:3]
                if execed:
                    peak = max(peak, watched.memory_info().rss)
            time.sleep(0.01)
        out.seek(0)
        err.seek(0)
        return peak / MiB, proc.returncode, out.read(), err.read()


def bench_rss(server: Server, buckets: Buckets, work: Path, *, gib: float,
              with_boto3: bool) -> list[dict[str, Any]]:
    client = buckets.client
    inbox = buckets.make("rss-inbox")
    vault = buckets.make("rss-vault", versioned=True)
    proofs = buckets.make("rss-proofs")
    copies = buckets.make("rss-copies", versioned=True)
    cfg = make_setup(work / "rss-setup", server, inbox=inbox, vault=vault, proofs=proofs)
    size = int(gib * 1024**3)
    key = "calls/big-call.wav"
    start = time.perf_counter()
    client.upload_fileobj(Synthetic(size), inbox, INBOX_PREFIX + key,
                          ExtraArgs={"Metadata": {"retentiond-purpose": "training"}})
    print(f"  uploaded the {gib:g} GiB object in {time.perf_counter() - start:.1f} s",
          flush=True)
    modes = ["idle", "ingest"] + (["boto3"] if with_boto3 else [])
    if with_boto3:  # boto3 first: ingest removes the object from the inbox
        modes = ["idle", "boto3", "ingest"]
    out = []
    for mode in modes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", mode, str(cfg),
               key, copies]
        polled, rc, stdout, stderr = run_polled(cmd)
        if rc != 0:
            raise SystemExit(f"RSS child {mode} failed ({rc}):\n{stdout}{stderr}")
        report: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
        report["polled_mib"] = polled
        report["size"] = size
        out.append(report)
        print(f"  RSS child {mode}: VmHWM {report['vmhwm_mib']:.1f} MiB, "
              f"{report['seconds']:.1f} s", flush=True)
        if mode == "boto3":
            buckets.empty(copies)
    if buckets.keys(inbox, INBOX_PREFIX):
        raise SystemExit("the RSS ingest left its plaintext in the inbox")
    buckets.empty(vault)  # frees the server's memory
    return out


# -- report --------------------------------------------------------------------------------


def parse_groups(text: str) -> list[IngestGroup]:
    groups = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        count, _, mib = part.partition("x")
        groups.append(IngestGroup(count=int(count), size=int(float(mib) * MiB)))
    return groups


def machine_lines(server: Server, command: str) -> list[str]:
    import boto3  # noqa: PLC0415 (report only)
    import cryptography  # noqa: PLC0415

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"date       {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"command    {command}",
        f"machine    {cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"load {os.getloadavg()[0]:.2f}",
        f"software   Python {platform.python_version()}, boto3 {boto3.__version__}, "
        f"cryptography {cryptography.__version__}",
        f"server     {server.label} at {server.endpoint} (same machine: shares the 2 cores)"
        if server.pid is not None else f"server     {server.label} at {server.endpoint}",
    ]


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_report(groups: list[IngestGroup], dele: DeleteResult | None,
                 rss: list[dict[str, Any]] | None, *, rounds: int, command: str,
                 server: Server, profile: list[str] | None) -> None:
    print()
    print("=" * 100)
    for line in machine_lines(server, command):
        print(line)
    print("MB/s = 10^6 bytes/s; medians of interleaved rounds; ratio > 1: retentiond faster")
    print()
    print("RATIOS (targets from the issue)")
    head = f"{'measure':<58} {'ratio':>6} {'rounds':>13} {'target':>8}  verdict"
    print(head)
    print("-" * len(head))
    for g in groups:
        rr = g.round_ratios()
        print(f"{'ingest ' + g.label + ': retentiond / boto3 streaming copy':<58} "
              f"{g.ratio():6.2f} {min(rr):6.2f}..{max(rr):<5.2f} {'>= 0.8':>8}  "
              f"{verdict(g.ratio() >= INGEST_TARGET)}")
    if dele is not None:
        print(f"{f'deletion {dele.count} x {dele.size // 1024} KiB: sweep / delete_objects':<58} "
              f"{dele.ratio():6.3f} {'':>13} {'>= 0.5':>8}  "
              f"{verdict(dele.ratio() >= DELETE_TARGET)}")
    if rss is not None:
        ing = next(r for r in rss if r["mode"] == "ingest")
        gib = ing["size"] / 1024**3
        print(f"{f'peak RSS ingesting {gib:g} GiB (MiB, not a ratio)':<58} "
              f"{ing['vmhwm_mib']:6.1f} {'':>13} {'< 150':>8}  "
              f"{verdict(ing['vmhwm_mib'] < RSS_TARGET_MIB)}")

    if groups:
        print()
        print(f"INGEST, absolute (median of {rounds} rounds; order alternates each round)")
        head = (f"{'objects':<16} {'boto3 copy':>10} {'retentiond':>10} {'copy_object*':>12} | "
                f"{'client CPU s':>13} {'server CPU s':>13} |")
        print(head)
        print(f"{'':<16} {'MB/s':>10} {'MB/s':>10} {'MB/s':>12} | "
              f"{'boto3 / rtd':>13} {'boto3 / rtd':>13} |")
        print("-" * len(head))
        known = server.pid is not None  # the server's CPU time: only for our own moto
        for g in groups:
            md = statistics.median
            print(f"{g.label:<16} {mbs(g.nbytes, md(g.boto3)):10.0f} "
                  f"{mbs(g.nbytes, md(g.ingest)):10.0f} {mbs(g.nbytes, md(g.server_copy)):12.0f} | "
                  f"{md(g.boto3_cpu):6.2f}/{md(g.ingest_cpu):<6.2f} "
                  + (f"{md(g.boto3_srv):6.2f}/{md(g.ingest_srv):<6.2f} |" if known
                     else f"{'n/a':>13} |"))
            n = g.count * len(g.boto3)
            print(f"{'':<16} boto3:      {g.boto3_req.describe(n)}")
            print(f"{'':<16} retentiond: {g.ingest_req.describe(g.count * len(g.ingest))}")
            print(f"{'':<16} (information: the boto3 copy with {g.workers} objects at a time, "
                  f"like retentiond's ingest.workers: {mbs(g.nbytes, md(g.threads)):.0f} MB/s, "
                  f"retentiond / it {md(g.threads) / md(g.ingest):.2f})")
        print("  per object: requests, then each S3 operation: count (client wall ms in it)")
        print("* copy_object: server-side copy into the inbox; not comparable: cannot encrypt")

    if dele is not None:
        print()
        print("DELETION, absolute")
        peer = ", ".join(f"{dele.count / s:,.0f}" for s in dele.peer)
        print(f"  sweep (deleted with proofs)   {dele.sweep_rate():10,.1f} recordings/s "
              f"({dele.deleted} in {dele.sweep:.2f} s; client CPU {dele.sweep_cpu:.2f} s"
              + (f", server CPU {dele.sweep_srv:.2f} s)" if server.pid is not None else ")"))
        print(f"  delete_objects, 1,000 / call  {dele.peer_rate():10,.1f} objects/s "
              f"(median of {peer}"
              + (f"; server CPU {statistics.median(dele.peer_srv):.2f} s)"
                 if server.pid is not None else ")"))
        print(f"  sweep's S3 requests, all {dele.count} recordings: "
              f"{dele.sweep_req.describe(1)}; {sum(dele.sweep_req.seconds.values()):.2f} s "
              f"of the sweep's {dele.sweep:.2f} s")
        steps = ", ".join(f"{SWEEP_STEPS[k]} {v * 1000:.0f}" for k, v in dele.phases.items())
        other = dele.sweep - sum(dele.phases.values())
        print(f"  sweep's steps, wall ms: {steps}, other (deletion records, queries, "
              f"metrics) {other * 1000:.0f}")
        print(f"  (untimed preparation: {dele.count} x {dele.size // 1024} KiB ingested in "
              f"{dele.prep_ingest:.1f} s, mostly from a local folder on {PREP_THREADS} threads)")

    if rss is not None:
        print()
        print("PEAK RSS, fresh child processes (own VmHWM; RSS sampled every 10 ms from "
              "outside)")
        idle = next(r for r in rss if r["mode"] == "idle")
        for r in rss:
            what = {"idle": "imports + App build only", "ingest": "Ingestor.ingest_object",
                    "boto3": "get_object + upload_fileobj"}[r["mode"]]
            rate = "" if r["mode"] == "idle" else \
                f", {r['seconds']:.1f} s = {mbs(r['size'], r['seconds']):.0f} MB/s"
            print(f"  {r['mode']:<7} {what:<30} {r['vmhwm_mib']:7.1f} MiB "
                  f"(+{r['vmhwm_mib'] - idle['vmhwm_mib']:.1f} over idle; "
                  f"sampled {r['polled_mib']:.1f}){rate}")

    if profile:
        print()
        print("WHERE THE TIME GOES (cProfile, untimed extra runs)")
        for block in profile:
            print(block)
    print("=" * 100)


# -- main ----------------------------------------------------------------------------------


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """Terminate moto_server by its pid; kill it if it has not gone after 30 s (a server
    holding gigabytes can take more than the tests' 5 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 8x1,2x16, 2 rounds, 100 deletions, 0.125 GiB RSS")
    p.add_argument("--ingest", default=None, help="COUNTxMiB groups (64x1,8x64)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (3)")
    p.add_argument("--delete-count", type=int, default=None, help="recordings swept (2000)")
    p.add_argument("--delete-kib", type=int, default=16, help="their size in KiB (16)")
    p.add_argument("--rss-gib", type=float, default=None, help="RSS object size (2)")
    p.add_argument("--rss-boto3", action="store_true",
                   help="also measure a plain boto3 copy of the RSS object (adds ~1 min)")
    p.add_argument("--only", default="ingest,delete,rss", help="parts to run")
    p.add_argument("--workers", type=int, default=None,
                   help="retentiond's ingest.workers (default: the setup's, 8)")
    p.add_argument("--profile", action="store_true", help="add untimed cProfile runs")
    p.add_argument("--endpoint", default=None,
                   help="an S3 endpoint (credentials from the AWS chain) instead of moto")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--dir", type=Path, default=None,
                   help="parent folder for the setups (default: the repository's parent)")
    p.add_argument("--rss-child", nargs=4, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child is not None:
        mode, cfg, key, dst = args.rss_child
        return rss_child(mode, Path(cfg), key, dst)

    if args.workers is not None:
        INGEST_WORKERS["RETENTIOND_INGEST_WORKERS"] = str(args.workers)
    quick = args.quick
    groups = parse_groups(args.ingest or ("8x1,2x16" if quick else "64x1,8x64"))
    rounds = args.rounds or (2 if quick else 3)
    delete_count = args.delete_count or (100 if quick else 2000)
    rss_gib = args.rss_gib if args.rss_gib is not None else (0.125 if quick else 2.0)
    parts = {s.strip() for s in args.only.split(",")}
    command = "python -m bench.bench_s3_pipeline" + \
        (" " + shlex.join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")

    parent = args.dir if args.dir is not None else REPO.parent
    work = Path(tempfile.mkdtemp(prefix="retentiond-bench-s3-", dir=parent))
    moto = None
    saved_env = dict(os.environ)
    try:
        if args.endpoint is None:
            from tests.s3server import start_moto  # noqa: PLC0415 (pulls pytest in)

            for k in [k for k in os.environ if k.startswith("AWS_")]:
                del os.environ[k]
            os.environ.update(MOTO_CREDS)  # this process and its children only
            moto = start_moto(work / "moto_server.log")
            server = Server(moto.endpoint, "us-east-1", "moto_server (moto "
                            f"{__import__('moto').__version__})", moto.process.pid)
        else:
            server = Server(args.endpoint, args.region, "given endpoint", None)
        print(f"{command}\nserver {server.label} at {server.endpoint}; work folder {work}",
              flush=True)
        buckets = Buckets(server.client(), server.region)
        profile: list[str] | None = [] if args.profile else None
        dele = rss = None
        try:
            if "ingest" in parts:
                bench_ingest(server, buckets, work, groups, rounds=rounds, profile=profile)
            else:
                groups = []
            if "delete" in parts and delete_count > 0:
                dele = bench_delete(server, buckets, work, count=delete_count,
                                    size=args.delete_kib * 1024, profile=profile)
            if "rss" in parts and rss_gib > 0:
                rss = bench_rss(server, buckets, work, gib=rss_gib,
                                with_boto3=args.rss_boto3)
        finally:
            if moto is None:
                buckets.drop_all()
        print_report(groups, dele, rss, rounds=rounds, command=command, server=server,
                     profile=profile)
    finally:
        try:
            if moto is not None:
                stop_server(moto.process)
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
