"""Ingest throughput as a ratio to a plain copy on the same disk, and peak RSS (not a test).

Run from the repository root:

    python bench/bench_ingest.py [--sizes 1,256] [--count N] [--repeat 5] [--cores 1,2]
                                 [--workers N] [--rss-gib 2] [--dir DIR] [--keep]

What it does, for each recording size (MiB) and each core count:

  * generates ``--count`` incompressible files (``os.urandom``) once, under ``--dir``
    (default: a fresh temporary folder in the repository's parent folder; ``$TMPDIR`` is
    NOT used because it is often a tmpfs, where fsync is free and a copy meaningless);
  * creates a real setup with ``init_setup`` in the same folder (same file system as the
    copies: the script checks ``st_dev`` and prints the file-system type);
  * runs, interleaved, ``--repeat`` rounds of
      copy     shutil.copyfile of every file (not durable; for information only)
      durable  shutil.copyfile + fsync(file) + fsync(folder) per file: the honest peer of
               the vault's durable write (temp file, fsync, rename, folder fsync)
      ingest   ``Ingestor(app).ingest(folder, name, ...)`` per file, ``--workers`` at a time
               (default ``ingest.workers``, 8), in this process (no interpreter
               start-up in the timing): classify, seal (AES-256-GCM + SHA-256 of plaintext
               and ciphertext), durable vault write, read-back check (every stored byte
               must authenticate: AES-GCM), SQLite catalog (3 commits, synchronous=FULL,
               shared by concurrent ingests: group commit), plaintext unlink + folder
               fsync; the run ends with ``Ingestor.drain()``, once the unlinked plaintexts
               (closed in a helper thread) are closed;
  * reports the median of each and ratio = durable copy time / ingest time (throughput of
    ingest as a fraction of the durable copy's), with the per-round range;
  * then, untimed: one instrumented ingest run (wall and CPU time per phase), and the
    computing floor: sealing and verifying the same size from memory, without disk.

Caches: dropping the page cache needs root, so both sides read sources that are warm in
the page cache (just written), and ``os.sync()`` runs before every timed run so neither
side pays for the other's dirty pages. "One core" pins this process (and so its threads)
with ``os.sched_setaffinity``; the kernel's writeback threads and the hypervisor's I/O
are not pinned, on either side.

Peak RSS (measured first): a fresh child process builds the app and ingests one
``--rss-gib`` GiB file; it reports its own VmHWM, and the parent cross-checks with
``getrusage(RUSAGE_CHILDREN)`` (which also counts the parent's own peak at the fork).
Targets (issue): ratio >= 0.5 on one core; peak RSS < 100 MiB whatever the size.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # ``python bench/bench_ingest.py`` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from retentiond.concurrency import in_order  # noqa: E402
from retentiond.core.classify import Overrides  # noqa: E402
from retentiond.crypto.envelope import new_data_key, seal_stream, verify_stream  # noqa: E402
from retentiond.service import ingest as ingest_module  # noqa: E402
from retentiond.service.ingest import Ingestor  # noqa: E402
from retentiond.service.setup import init_setup  # noqa: E402
from retentiond.service.wiring import App, build_app  # noqa: E402
from retentiond.settings import Settings, load_settings  # noqa: E402

MiB = 1024 * 1024
OVERRIDES = Overrides(purpose="training")  # as `retentiond ingest FILE --purpose training`
RATIO_TARGET = 0.5
RSS_TARGET_MIB = 100.0


# -- helpers -------------------------------------------------------------------------------


def fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_random(path: Path, size: int) -> None:
    """``size`` incompressible bytes, written 1 MiB at a time, fsynced."""
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, MiB)
            fh.write(os.urandom(n))
            left -= n
        fh.flush()
        os.fsync(fh.fileno())


def fs_type(path: Path) -> str:
    """File-system type of the mount holding ``path`` (longest mount-point prefix)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (resolved == mnt or resolved.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(
            best
        ):
            best, kind = mnt, f"{parts[2]} ({parts[0]} on {mnt})"
    return kind


def peak_rss_mib() -> float:
    """VmHWM of this process (peak resident set), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clear_folder(folder: Path) -> None:
    for p in folder.iterdir():
        p.unlink()


def clear_vault(vault: Path) -> None:
    """Remove stored objects between rounds (outside the timing); keep ``.tmp/``."""
    for dirpath, dirnames, filenames in os.walk(vault):
        if Path(dirpath) == vault:
            dirnames[:] = [d for d in dirnames if d != ".tmp"]
        for name in filenames:
            (Path(dirpath) / name).unlink()


def open_setup(folder: Path) -> App:
    init_setup(folder)
    return build_app(load_settings(folder / "retentiond.yaml", environ={}))


def fmt_mbs(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:7.0f}"


# -- one size, one core count --------------------------------------------------------------


@dataclass
class Result:
    size: int
    count: int
    cores: int
    copy: list[float] = field(default_factory=list)
    durable: list[float] = field(default_factory=list)
    ingest: list[float] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per file, one run
    floor: tuple[float, float] = (0.0, 0.0)  # seal, verify from memory: seconds per file

    @property
    def nbytes(self) -> int:
        return self.size * self.count

    def ratio(self) -> float:
        return statistics.median(self.durable) / statistics.median(self.ingest)

    def round_ratios(self) -> list[float]:
        return [d / i for d, i in zip(self.durable, self.ingest, strict=True)]


PHASES = (
    ("seal", "seal: read, AES-256-GCM, 2 x SHA-256, write to page cache"),
    ("commit", "vault commit: fsync file, rename, fsync folder"),
    ("verify", "read-back check: read + AES-GCM authentication of the stored object"),
    ("catalog", "catalog: 3 SQLite commits (WAL, synchronous=FULL)"),
    ("unlink", "plaintext + sidecar unlink, fsync inbox folder"),
    ("close", "after the ingest: hand the unlinked plaintext to the closer thread, locks"),
    ("drain", "waiting for the last plaintext closes in flight (Ingestor.drain, end of run)"),
    ("other", "other: classify, keys, stat, metrics, logging"),
)


@contextmanager
def instrumented(app: App, ingestor: Ingestor) -> Iterator[dict[str, float]]:
    """Time each phase of ``ingest`` by wrapping what it calls (for one extra, untimed run):
    wall seconds under the phase's key, process CPU seconds (every thread) under
    ``cpu:`` + key, and the closer thread's own wall time under ``closing``."""
    spent: dict[str, float] = defaultdict(float)

    def timer(phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - start
                spent["cpu:" + phase] += time.process_time() - cpu
        return run

    class TimedExit:
        def __init__(self, cm: Any) -> None:
            self.cm = cm

        def __enter__(self) -> Any:
            return self.cm.__enter__()

        def __exit__(self, *exc: object) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return self.cm.__exit__(*exc)
            finally:
                spent["commit"] += time.perf_counter() - start
                spent["cpu:commit"] += time.process_time() - cpu

    def closing(fh: Any) -> None:
        start = time.perf_counter()
        try:
            real_close(fh)
        finally:
            spent["closing"] += time.perf_counter() - start

    vault: Any = app.vault
    catalog: Any = app.catalog
    module: Any = ingest_module
    closer: Any = ingestor._closer
    real_writer = vault.writer
    real_close = closer._close
    saved = (module.seal_stream, module.unlink_if_same)
    patches: list[tuple[Any, str, Callable[..., Any]]] = [
        (module, "seal_stream", timer("seal", module.seal_stream)),
        (module, "unlink_if_same", timer("unlink", module.unlink_if_same)),
        (vault, "writer", lambda key, **kw: TimedExit(real_writer(key, **kw))),
        (closer, "_close", closing),
        (ingestor, "_verify_vault_copy", timer("verify", ingestor._verify_vault_copy)),
        (ingestor, "_ingest_open", timer("_ingest_open", ingestor._ingest_open)),
        (ingestor, "ingest", timer("_total", ingestor.ingest)),
        (ingestor, "drain", timer("drain", ingestor.drain)),
    ]
    patches += [(catalog, name, timer("catalog", getattr(catalog, name)))
                for name in ("insert_ingesting", "mark_stored", "clear_inbox_pending")]
    for obj, name, fn in patches:
        setattr(obj, name, fn)
    try:
        yield spent
    finally:
        module.seal_stream, module.unlink_if_same = saved
        for obj, name, _ in patches[2:]:
            delattr(obj, name)  # instance attributes: the class's method shows again
    for key in ("", "cpu:"):
        spent[key + "close"] = spent[key + "_total"] - spent[key + "_ingest_open"]
        spent[key + "total"] = spent[key + "_total"] + spent[key + "drain"]
        spent[key + "other"] = spent[key + "total"] - sum(
            spent[key + k] for k, _ in PHASES if k != "other")


class _Null:
    def write(self, data: memoryview, /) -> int:
        return len(data)


def crypto_floor(size: int) -> tuple[float, float]:
    """(seal, verify) seconds for one file of ``size`` bytes from memory, no disk, on the
    cores this process may use now: the computing that ingest cannot skip (AES-256-GCM and
    two SHA-256 to seal, AES-GCM to check the read-back). Best of 3, on at most 64 MiB
    scaled to ``size``."""
    n = min(size, 64 * MiB)
    data = os.urandom(n)
    key, oid = new_data_key(), "0" * 32
    out = io.BytesIO()
    seal_stream(io.BytesIO(data), out, data_key=key, object_id=oid, purpose="training")
    sealed = out.getvalue()
    best = [float("inf"), float("inf")]
    for _ in range(3):
        src = io.BytesIO(data)  # shares the bytes: no copy
        start = time.perf_counter()
        seal_stream(src, _Null(), data_key=key, object_id=oid, purpose="training")
        best[0] = min(best[0], time.perf_counter() - start)
        src = io.BytesIO(sealed)
        start = time.perf_counter()
        verify_stream(src, data_key=key, object_id=oid, purpose="training")
        best[1] = min(best[1], time.perf_counter() - start)
    return best[0] * size / n, best[1] * size / n


def timed(run: Callable[[], None]) -> float:
    os.sync()  # neither side pays for the other's (or the preparation's) dirty pages
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def bench_size(
    base: Path, masters: Sequence[Path], *, size: int, cores: int, repeat: int,
    workers: int,
) -> Result:
    work = base / f"run-{size // MiB}mib-{cores}core"
    work.mkdir()
    copy_dst = work / "copy"
    copy_dst.mkdir()
    app = open_setup(work / "setup")
    inbox = Path(app.settings.inbox[0])
    vault = Path(app.settings.vault)
    devs = {os.stat(p).st_dev for p in (masters[0].parent, copy_dst, inbox, vault)}
    if len(devs) != 1:
        raise SystemExit(f"{work}: sources, copies, inbox and vault are not on one file system")
    ingestor = Ingestor(app)
    result = Result(size=size, count=len(masters), cores=cores)

    def plain_copy() -> None:
        for src in masters:
            shutil.copyfile(src, copy_dst / src.name)

    def durable_copy() -> None:
        for src in masters:
            dst = copy_dst / src.name
            shutil.copyfile(src, dst)
            fsync_path(dst)
            fsync_path(copy_dst, directory=True)

    inbox_files = [inbox / m.name for m in masters]

    def ingest(workers: int = workers) -> None:
        # as the daemon ingests what is ready: up to ``workers`` recordings at a time
        for path, out in in_order(
                inbox_files, lambda p: ingestor.ingest(p.parent, p.name, overrides=OVERRIDES,
                                                       now=app.clock.now()),
                workers=workers):
            if out.outcome != "stored":
                raise SystemExit(f"ingest of {path}: {out.outcome}: {out.message}")
        ingestor.drain()  # the run ends when every plaintext is closed (its blocks freed)

    try:
        for _ in range(repeat):
            result.copy.append(timed(plain_copy))
            clear_folder(copy_dst)
            result.durable.append(timed(durable_copy))
            clear_folder(copy_dst)
            for src, dst in zip(masters, inbox_files, strict=True):
                shutil.copyfile(src, dst)  # the plaintext to ingest, warm in the page cache
            result.ingest.append(timed(ingest))
            left = [p for p in inbox_files if p.exists()]
            if left:
                raise SystemExit(f"ingest left plaintext behind: {left[0]}")
            clear_vault(vault)
        # One more, untimed, run that times each phase of ingest (wrappers cost ~1 us/call).
        for src, dst in zip(masters, inbox_files, strict=True):
            shutil.copyfile(src, dst)
        os.sync()
        with instrumented(app, ingestor) as spent:
            ingest(workers=1)  # phases of one recording at a time: they add up
        result.phases = {k: v / len(masters) for k, v in spent.items()}
        clear_vault(vault)
        result.floor = crypto_floor(size)
    finally:
        app.close()
        shutil.rmtree(work, ignore_errors=True)
    return result


# -- peak RSS in a fresh process -----------------------------------------------------------


def rss_child(config: Path, path: Path) -> int:
    """Child mode: build the app, ingest one file, print JSON with VmHWM before/after."""
    app = build_app(load_settings(config, environ={}))
    before = peak_rss_mib()
    start = time.perf_counter()
    ingestor = Ingestor(app)
    out = ingestor.ingest(path.parent, path.name, overrides=OVERRIDES, now=app.clock.now())
    ingestor.drain()
    seconds = time.perf_counter() - start
    app.close()
    print(json.dumps({"outcome": out.outcome, "message": out.message, "seconds": seconds,
                      "vmhwm_before_mib": before, "vmhwm_mib": peak_rss_mib()}))
    return 0 if out.outcome == "stored" else 1


def bench_rss(base: Path, gib: float) -> dict[str, float | str]:
    work = base / "rss"
    init_setup(work)
    settings = load_settings(work / "retentiond.yaml", environ={})
    size = int(gib * 1024**3)
    path = Path(settings.inbox[0]) / "big-call.wav"
    write_random(path, size)
    os.sync()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--rss-child",
         str(work / "retentiond.yaml"), str(path)],
        capture_output=True, text=True, check=False, cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"RSS child failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    report: dict[str, float | str] = json.loads(proc.stdout.strip().splitlines()[-1])
    report["ru_maxrss_children_mib"] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    report["size"] = size
    shutil.rmtree(work, ignore_errors=True)
    return report


# -- main ----------------------------------------------------------------------------------


def parse_list(text: str) -> list[int]:
    return [int(x) for x in text.replace(",", " ").split()]


def default_count(size: int) -> int:
    """About 256 MiB per timed run: 128 files of 1 MiB, 2 of 256 MiB."""
    return max(2, min(128, (256 * MiB) // size))


def describe_machine(base: Path) -> list[str]:
    import cryptography  # noqa: PLC0415 (only for the report)

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"date       {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"command    python {shlex.join(['bench/bench_ingest.py', *sys.argv[1:]])}",
        f"machine    {cpu}, {os.cpu_count()} CPUs visible, Linux {platform.release()}, "
        f"load {os.getloadavg()[0]:.2f}",
        f"software   Python {platform.python_version()}, cryptography "
        f"{cryptography.__version__}, {__import__('ssl').OPENSSL_VERSION}",
        f"folder     {base} on {fs_type(base)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,256", help="recording sizes in MiB (1,256)")
    parser.add_argument("--count", type=int, default=0,
                        help="files per timed run (default: ~256 MiB worth, 2..128)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--cores", default="1,2",
                        help="core counts to pin to, e.g. 1 or 1,2 (default 1,2)")
    parser.add_argument("--workers", type=int, default=None,
                        help="recordings ingested at a time (default: the setup's "
                        "ingest.workers, 8); 1 = one after the other")
    parser.add_argument("--rss-gib", type=float, default=2.0, help="0 skips the RSS run")
    parser.add_argument("--dir", type=Path, default=None,
                        help="parent folder for the work (default: the repository's parent)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--rss-child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.rss_child is not None:
        return rss_child(Path(args.rss_child[0]), Path(args.rss_child[1]))

    sizes = [s * MiB for s in parse_list(args.sizes)]
    available = sorted(os.sched_getaffinity(0))
    core_counts = [c for c in parse_list(args.cores) if c <= len(available)]
    parent = args.dir if args.dir is not None else REPO.parent
    base = Path(tempfile.mkdtemp(prefix="retentiond-bench-ingest-", dir=parent))
    for line in describe_machine(base):
        print(line)
    if fs_type(base).startswith("tmpfs"):
        print("WARNING: tmpfs: fsync costs nothing there; use --dir on a real disk")
    workers = args.workers or Settings.ingest_workers
    print(f"ingest     {workers} recording(s) at a time (ingest.workers; the durable copy: "
          "one file after the other)")
    print("timing     in-process (no interpreter start-up); sources warm in the page cache "
          "on both sides; os.sync() before every timed run; MB/s = 10^6 bytes/s")
    print(flush=True)

    results: list[Result] = []
    rss: dict[str, float | str] | None = None
    try:
        if args.rss_gib > 0:
            # first: a child's ru_maxrss starts from this process's peak (fork copies the
            # high-water mark), which the timed runs and the floor (2 x 64 MiB) raise
            rss = bench_rss(base, args.rss_gib)
        for size in sizes:
            count = args.count or default_count(size)
            src = base / f"src-{size // MiB}mib"
            src.mkdir()
            masters = [src / f"call-{i:04d}.wav" for i in range(count)]
            for m in masters:
                write_random(m, size)
            for cores in core_counts:
                os.sched_setaffinity(0, set(available[:cores]))
                try:
                    r = bench_size(base, masters, size=size, cores=cores, repeat=args.repeat,
                                   workers=workers)
                finally:
                    os.sched_setaffinity(0, set(available))
                results.append(r)
                print(f"  {size // MiB} MiB x {count}, {cores} core(s): ratio {r.ratio():.2f}",
                      flush=True)
            shutil.rmtree(src)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"medians of {args.repeat} interleaved rounds (copy, durable copy, ingest per round)")
    head = (f"{'size':>8} {'files':>5} {'cores':>5} | {'copy MB/s':>9} {'durable MB/s':>12} "
            f"{'ingest MB/s':>11} | {'ratio ingest/durable':>20} {'(rounds min..max)':>17}")
    print(head)
    print("-" * len(head))
    for r in results:
        rr = r.round_ratios()
        ok = "ok" if r.ratio() >= RATIO_TARGET else "MISS" if r.cores == 1 else ""
        print(
            f"{r.size // MiB:>4} MiB {r.count:>5} {r.cores:>5} | "
            f"{fmt_mbs(r.nbytes, statistics.median(r.copy)):>9} "
            f"{fmt_mbs(r.nbytes, statistics.median(r.durable)):>12} "
            f"{fmt_mbs(r.nbytes, statistics.median(r.ingest)):>11} | "
            f"{r.ratio():>15.2f} {ok:>4} {min(rr):>8.2f}..{max(rr):.2f}"
        )
    for r in results:
        ph = r.phases
        durable = statistics.median(r.durable) / r.count
        print()
        print(f"where the time goes: {r.size // MiB} MiB, {r.cores} core(s), one instrumented "
              f"run, ms per file (durable copy: {durable * 1e3:.1f} ms per file); wall, "
              "then CPU of the whole process (every thread)")
        for key, label in PHASES:
            print(f"  {ph[key] * 1e3:9.1f} ms {ph[key] / ph['total']:6.1%} "
                  f"{ph['cpu:' + key] * 1e3:9.1f} ms CPU  {label}")
        print(f"  {ph['total'] * 1e3:9.1f} ms        {ph['cpu:total'] * 1e3:9.1f} ms CPU  total")
        closing = ph.get("closing", 0.0)
        print(f"  {closing * 1e3:9.1f} ms         (closing the unlinked plaintexts in the "
              "helper thread, overlapped with the above)")
        seal, verify = r.floor
        print(f"  floor: sealing from memory {seal * 1e3:.1f} ms + verifying from memory "
              f"{verify * 1e3:.1f} ms = {(seal + verify) * 1e3:.1f} ms per file on "
              f"{r.cores} core(s), no disk: ratio at most {durable / (seal + verify):.2f}")
    if rss is not None:
        size = int(rss["size"])
        peak = float(rss["vmhwm_mib"])
        verdict = "ok" if peak < RSS_TARGET_MIB else "MISS"
        print()
        print(
            f"peak RSS ingesting {size / 1024**3:.1f} GiB in a fresh process "
            f"({len(available)} cores): VmHWM {peak:.1f} MiB [{verdict}, target < "
            f"{RSS_TARGET_MIB:.0f}] (after imports and setup, before ingest: "
            f"{float(rss['vmhwm_before_mib']):.1f} MiB; parent's RUSAGE_CHILDREN ru_maxrss "
            f"{float(rss['ru_maxrss_children_mib']):.1f} MiB); took "
            f"{float(rss['seconds']):.1f} s = {fmt_mbs(size, float(rss['seconds'])).strip()} MB/s"
        )
    print(f"targets: ratio >= {RATIO_TARGET} on one core; peak RSS < {RSS_TARGET_MIB:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
