"""``keys rotate`` throughput as a ratio to a bare SQL rewrite of the same rows (not a test).

Run from the repository root:

    python bench/bench_keys_rotate.py [--count 100000] [--dir DIR]

What it does:

  * makes a real setup with ``init_setup`` (SQLite catalog in WAL mode, synchronous=FULL,
    secure_delete) and fills it with ``--count`` recordings and their data keys, wrapped
    under the current KEK (rows written directly: ingesting 10^5 files would take minutes
    and test nothing here);
  * baseline: a copy of that catalog, where the same number of ``data_keys`` rows and the
    recordings' ``kek_id`` get new values precomputed beforehand (no crypto), in one
    transaction with plain ``executemany``, in the order the rows were written (the
    order the rotation uses too): what a hand-written SQL script would do,
    without unwrapping, paging, compare-and-swap or crash safety;
  * retentiond: ``rotate_keys(app, retire=True)`` on the original: unwrap + wrap of every
    data key (AES-256-GCM), 1,000 keys per transaction, each row replaced only if unchanged,
    then the old KEK destroyed;
  * reports keys per second for both and ratio = baseline time / rotation time.

The machine is shared and noisy: compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shlex
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # ``python bench/...`` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from retentiond.adapters.sqlite_catalog import SQLiteCatalog  # noqa: E402
from retentiond.clock import SystemClock  # noqa: E402
from retentiond.crypto.keys import FileKeyProvider  # noqa: E402
from retentiond.service.keyrotation import rotate_keys  # noqa: E402
from retentiond.service.setup import init_setup  # noqa: E402
from retentiond.service.wiring import build_app  # noqa: E402
from retentiond.settings import load_settings  # noqa: E402

RECORDING = (
    "INSERT INTO recordings(id, state, purpose, legal_basis, media, recorded_at, ingested_at, "
    "policy_name, policy_sha256, location, source, call_id, size, ciphertext_size, "
    "plaintext_sha256, ciphertext_sha256, kek_id) VALUES(?, 'active', 'training', "
    "'legitimate-interests', 'audio', '2026-06-01T09:00:00+00:00', "
    "'2026-06-01T09:00:05+00:00', 'cnil-fr-contact-centre', ?, ?, ?, ?, 1048576, 1048864, "
    "?, ?, ?)"
)


def fill(setup: Path, count: int) -> None:
    """``count`` recordings shaped like real ones, with their wrapped data keys."""
    SQLiteCatalog(setup / "state" / "catalog.db").close()  # schema
    provider = FileKeyProvider(setup / "keys")
    with sqlite3.connect(setup / "state" / "catalog.db") as db:
        for start in range(0, count, 10_000):
            keys, recs = [], []
            for _ in range(min(10_000, count - start)):
                oid = secrets.token_hex(16)
                w = provider.wrap(secrets.token_bytes(32), object_id=oid)
                keys.append((oid, w.kek_id, w.blob))
                recs.append((oid, "0" * 64, f"v1/{oid[:2]}/{oid}.rtd",
                             f"file:///srv/inbox/{oid}.wav", f"call-{oid[:12]}",
                             secrets.token_hex(32), secrets.token_hex(32), w.kek_id))
            db.executemany("INSERT INTO data_keys(object_id, kek_id, wrapped) VALUES(?, ?, ?)",
                           keys)
            db.executemany(RECORDING, recs)
    with sqlite3.connect(setup / "state" / "catalog.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def baseline(db_path: Path) -> tuple[float, int]:
    """Bare SQL: the same rows rewritten with precomputed values, one transaction."""
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA secure_delete=ON")
    ids = [r[0] for r in db.execute("SELECT object_id FROM data_keys ORDER BY rowid")]
    new_kek = "kek-20990101-00000000"
    blobs = [(new_kek, os.urandom(61), oid) for oid in ids]
    start = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    n = db.executemany("UPDATE data_keys SET kek_id=?, wrapped=? WHERE object_id=?",
                       blobs).rowcount
    db.executemany("UPDATE recordings SET kek_id=? WHERE id=?", [(new_kek, i) for i in ids])
    db.execute("COMMIT")
    seconds = time.perf_counter() - start
    db.close()
    return seconds, n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=100_000, help="data keys (100000)")
    p.add_argument("--dir", type=Path, default=None,
                   help="work folder (default: a new one beside the repository)")
    args = p.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="retentiond-bench-keys-",
                                 dir=args.dir or REPO.parent))
    try:
        setup = base / "setup"
        init_setup(setup)
        t = time.perf_counter()
        fill(setup, args.count)
        prepared = time.perf_counter() - t
        copy = base / "baseline.db"
        shutil.copyfile(setup / "state" / "catalog.db", copy)
        base_s, base_n = baseline(copy)
        app = build_app(load_settings(setup / "retentiond.yaml", environ={}))
        try:
            start, cpu = time.perf_counter(), time.process_time()
            result = rotate_keys(app, actor="bench", reason="bench", retire=True,
                                 now=SystemClock().now())
            rot_s, rot_cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            app.close()
        if result.rewrapped != args.count or base_n != args.count or result.failed:
            raise SystemExit(f"rotation re-wrapped {result.rewrapped}, baseline {base_n}, "
                             f"expected {args.count}")
        print(f"command    python {shlex.join(sys.argv)}")
        print(f"machine    {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
              f"SQLite {sqlite3.sqlite_version}, load {os.getloadavg()[0]:.2f}")
        print(f"catalog    {args.count} recordings with data keys (prepared in "
              f"{prepared:.1f} s, untimed)")
        print(f"baseline   bare SQL rewrite, one transaction: {base_s:.2f} s, "
              f"{base_n / base_s:,.0f} keys/s")
        print(f"rotation   keys rotate --retire: {rot_s:.2f} s ({rot_cpu:.2f} s CPU), "
              f"{result.rewrapped / rot_s:,.0f} keys/s, retired {len(result.retired)} KEK")
        print(f"ratio      baseline / rotation = {base_s / rot_s:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
