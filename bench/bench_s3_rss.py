"""Peak RSS and throughput of a streamed S3 upload through ``S3ObjectStore.writer`` (not a
test), next to a plain boto3 ``upload_fileobj`` of the same bytes on the same server.

Run from the repository root:

    python -m bench.bench_s3_rss [--size-mib 2048] [--part-mib 8] [--inflight 2]
                                 [--chunk-kib 64] [--endpoint URL --bucket NAME]

Without --endpoint it starts its own ``moto_server`` on 127.0.0.1 (dummy credentials,
given to the child processes only). Each measurement runs in a fresh child process and
reports its peak RSS (``ru_maxrss``): ``idle`` imports boto3 and makes a client only,
``retentiond`` writes --size-mib MiB from one reused --chunk-kib buffer through the writer
(memory bound: part size x (inflight + 1)), ``boto3`` is ``upload_fileobj`` with its
defaults (8 MiB parts, 10 threads). Target (issue 4): peak RSS under 150 MiB for 2 GiB.
On moto the throughput says how retentiond compares with plain boto3, not how fast S3 is.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from retentiond.adapters.s3 import S3ObjectStore, make_s3_client
from tests.s3server import dummy_aws_env, start_moto, stop

MiB = 1024 * 1024
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
         "AWS_EC2_METADATA_DISABLED": "true"}


class Synthetic(io.RawIOBase):
    """``size`` bytes of a repeating 1 MiB random pattern, never held at once."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._pattern = memoryview(os.urandom(MiB))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), self._left, len(self._pattern))
        view[:n] = self._pattern[:n]
        self._left -= n
        return n


def child(args: argparse.Namespace) -> None:
    client = make_s3_client(endpoint_url=args.endpoint, region="us-east-1",
                            addressing_style="path", read_timeout=300)
    size = args.size_mib * MiB
    t0 = time.perf_counter()
    if args.child == "retentiond":
        store = S3ObjectStore(args.bucket, client=client, part_size=args.part_mib * MiB,
                              max_inflight_parts=args.inflight)
        src = Synthetic(size)
        buf = bytearray(args.chunk_kib * 1024)
        with store.writer("bench.sealed") as w:
            while n := src.readinto(buf):
                w.write(memoryview(buf)[:n])
        assert w.result.size == size
    elif args.child == "boto3":
        client.upload_fileobj(Synthetic(size), args.bucket, "bench.sealed")
    seconds = time.perf_counter() - t0
    if args.child != "idle":
        client.delete_object(Bucket=args.bucket, Key="bench.sealed")
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "rss_mib": rss_kib / 1024}))


def run_child(mode: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, "-m", "bench.bench_s3_rss", "--child", mode,
           "--endpoint", args.endpoint, "--bucket", args.bucket,
           "--size-mib", str(args.size_mib), "--part-mib", str(args.part_mib),
           "--inflight", str(args.inflight), "--chunk-kib", str(args.chunk_kib)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, **CREDS})
    return cast(dict[str, float], json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=2048)
    p.add_argument("--part-mib", type=int, default=8)
    p.add_argument("--inflight", type=int, default=2)
    p.add_argument("--chunk-kib", type=int, default=64)
    p.add_argument("--endpoint")
    p.add_argument("--bucket", default="bench-rss")
    p.add_argument("--child", choices=["idle", "retentiond", "boto3"])
    args = p.parse_args()
    if args.child:
        child(args)
        return

    server = None
    if args.endpoint is None:
        server = start_moto(Path(tempfile.mkdtemp()) / "moto_server.log")
        args.endpoint = server.endpoint
        with dummy_aws_env():
            server.client().create_bucket(Bucket=args.bucket)
    try:
        print(f"{args.size_mib} MiB object, {args.part_mib} MiB parts, {args.inflight} in "
              f"flight, {args.chunk_kib} KiB writes, endpoint {args.endpoint}")
        results = {m: run_child(m, args) for m in ("idle", "retentiond", "boto3")}
    finally:
        if server is not None:
            stop(server.process)
    bound = args.part_mib * (args.inflight + 1)
    print(f"{'mode':<12}{'MB/s':>10}{'peak RSS MiB':>15}")
    for mode, r in results.items():
        rate = "" if mode == "idle" else f"{args.size_mib * MiB / r['seconds'] / 1e6:10.0f}"
        print(f"{mode:<12}{rate:>10}{r['rss_mib']:15.0f}")
    ours, theirs = results["retentiond"], results["boto3"]
    print(f"throughput ratio retentiond/boto3: {theirs['seconds'] / ours['seconds']:.2f}")
    print(f"retentiond RSS above idle: {ours['rss_mib'] - results['idle']['rss_mib']:.0f} MiB "
          f"(part buffers bound: {bound} MiB); target: peak under 150 MiB")


if __name__ == "__main__":
    main()
