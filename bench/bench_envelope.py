"""Micro-benchmark of the sealed-object format (not a test).

Run from the repository root, pinned to one core by default:

    python -m bench.bench_envelope [--size-mib 256] [--source memory|tmpfs] [--repeat 3]

Measures, on one source of --size-mib bytes, the best of --repeat runs of:
  copy      readinto a reused buffer + write to a null sink (no crypto, no hash)
  sha256    readinto + hashlib.sha256 alone
  seal      seal_stream: read, SHA-256 of plaintext, AES-256-GCM, SHA-256 of ciphertext, write
  open      open_stream: read, AES-256-GCM verify+decrypt, SHA-256 of plaintext, write
for segment sizes 64 KiB, 256 KiB and 1 MiB, and prints GB/s and ratios. Then it seals
--rss-gib GiB (default 2) from a synthetic source in a child process and reports its peak
RSS. Target: seal >= 0.6 GB/s on one core; peak RSS well under 100 MiB for 2 GiB.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

from retentiond.crypto.envelope import new_data_key, open_stream, seal_stream

SEGMENT_SIZES = (64 * 1024, 256 * 1024, 1024 * 1024)
KEY = new_data_key()


class NullSink:
    def write(self, data: memoryview) -> int:
        return len(data)


class Synthetic(io.RawIOBase):
    """``size`` bytes of a repeating 1 MiB pattern, never held in memory at once."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._pattern = memoryview(os.urandom(1024 * 1024))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: object) -> int:
        view = memoryview(cast(bytearray, buffer))
        n = min(len(view), self._left, len(self._pattern))
        view[:n] = self._pattern[:n]
        self._left -= n
        return n


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def copy_only(src: io.BufferedIOBase, segment_size: int) -> None:
    buf = memoryview(bytearray(segment_size))
    sink = NullSink()
    while n := src.readinto(buf):
        sink.write(buf[:n])


def sha_only(src: io.BufferedIOBase, segment_size: int) -> None:
    buf = memoryview(bytearray(segment_size))
    h = hashlib.sha256()
    while n := src.readinto(buf):
        h.update(buf[:n])


def peak_rss_mib() -> float:
    """VmHWM: this process image's peak RSS (ru_maxrss would include the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(gib: float) -> None:
    size = int(gib * 1024**3)
    before = peak_rss_mib()
    start = time.perf_counter()
    result = seal_stream(cast(BinaryIO, Synthetic(size)), NullSink(), data_key=KEY,
                         object_id="bench", purpose="bench")
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    print(f"sealed {result.plaintext_size / 1024**3:.1f} GiB in {seconds:.1f} s "
          f"({result.plaintext_size / seconds / 1e9:.2f} GB/s): peak RSS {peak:.1f} MiB "
          f"(interpreter + imports before sealing: {before:.1f} MiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--source", choices=("memory", "tmpfs"), default="memory")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rss-gib", type=float, default=2.0, help="0 to skip")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: first)")
    parser.add_argument("--rss-child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    if args.rss_child is not None:
        rss_child(args.rss_child)
        return 0

    size: int = args.size_mib * 1024 * 1024
    data = os.urandom(size)
    shm_path = Path("/dev/shm") / f"retentiond-bench-{os.getpid()}"
    if args.source == "tmpfs":
        shm_path.write_bytes(data)

    def source() -> io.BufferedIOBase:
        if args.source == "tmpfs":
            return shm_path.open("rb")
        return io.BytesIO(data)  # BytesIO over immutable bytes shares them: no copy

    def seal(segment_size: int) -> None:
        with source() as src:
            seal_stream(cast(BinaryIO, src), NullSink(), data_key=KEY, object_id="bench",
                        purpose="bench", segment_size=segment_size)

    def unseal(ciphertext: bytes) -> None:
        open_stream(io.BytesIO(ciphertext), NullSink(), data_key=KEY, object_id="bench",
                    purpose="bench")

    def run(fn: Callable[[io.BufferedIOBase, int], None]) -> Callable[[], None]:
        def go() -> None:
            with source() as src:
                fn(src, 256 * 1024)
        return go

    def rate(seconds: float) -> float:
        return size / seconds / 1e9

    print(f"{args.size_mib} MiB from {args.source}, best of {args.repeat}, pinned to CPU {cpu}, "
          f"Python {sys.version.split()[0]}")
    try:
        copy_s = best_seconds(run(copy_only), args.repeat)
        sha_s = best_seconds(run(sha_only), args.repeat)
        print(f"{'copy (no crypto)':>24}: {rate(copy_s):6.2f} GB/s")
        print(f"{'sha256 alone':>24}: {rate(sha_s):6.2f} GB/s")
        results: dict[int, float] = {}
        for segment_size in SEGMENT_SIZES:
            sealed = io.BytesIO()
            seal_stream(io.BytesIO(data), sealed, data_key=KEY, object_id="bench",
                        purpose="bench", segment_size=segment_size)
            ciphertext = sealed.getvalue()
            seal_s = best_seconds(functools.partial(seal, segment_size), args.repeat)
            open_s = best_seconds(functools.partial(unseal, ciphertext), args.repeat)
            results[segment_size] = rate(seal_s)
            print(
                f"{'seal ' + str(segment_size // 1024) + ' KiB':>24}: {rate(seal_s):6.2f} GB/s"
                f"  = {copy_s / seal_s:.3f} x copy, {sha_s / seal_s:.2f} x sha256 alone"
                f"   | open {rate(open_s):5.2f} GB/s = {sha_s / open_s:.2f} x sha256"
            )
            del ciphertext, sealed
        best = max(results, key=lambda k: results[k])
        verdict = "meets" if results[best] >= 0.6 else "MISSES"
        print(f"best segment size: {best // 1024} KiB at {results[best]:.2f} GB/s "
              f"({verdict} the 0.6 GB/s target)")
    finally:
        shm_path.unlink(missing_ok=True)

    if args.rss_gib > 0:
        subprocess.run(
            [sys.executable, "-m", "bench.bench_envelope", "--cpu", str(cpu),
             "--rss-child", str(args.rss_gib)],
            check=True, cwd=Path(__file__).resolve().parents[1],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
