"""Bounded concurrency: several recordings at once (ingest), several requests at once
(a deletion's DeleteObjects batches and listings, a proof-log append's tile writes).

Ingest waits a lot: for the disk (fsync of the vault object, the catalog's commits) or for
an S3 server (GET, PUT, DELETE round trips). Overlapping those waits is what makes many
small recordings go fast; the catalog then commits the writes of concurrent ingests
together (group commit, ``SQLiteCatalog._tx``). ``ingest.workers`` bounds the recordings
in progress, hence the memory: each holds its own fixed-size buffers (a few MiB for a
folder vault, three 8 MiB part buffers for a bucket vault), whatever the recording's size.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def in_order(
    items: Iterable[T], work: Callable[[T], R], *, workers: int,
    keep_going: Callable[[], bool] = lambda: True,
) -> Generator[tuple[T, R], None, None]:
    """Run ``work`` on ``items``, at most ``workers`` at a time, and yield ``(item,
    result)`` in the order of ``items``. ``keep_going`` is asked before each item starts;
    once it says no, no further item starts and those under way finish and are yielded.
    An exception raised by ``items`` itself is raised after the items already started
    have been yielded; one raised by ``work`` comes out where its result would.
    With ``workers`` 1 everything runs in the calling thread."""
    if workers <= 1:
        for item in items:
            if not keep_going():
                return
            yield item, work(item)
        return
    source = iter(items)
    started: deque[tuple[T, Future[R]]] = deque()  # not yet yielded, in input order
    running: set[Future[R]] = set()
    failure: BaseException | None = None
    more = True
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retentiond-ingest") as pool:
        while True:
            while more and len(running) < workers:
                if not keep_going():
                    more = False
                    break
                try:
                    item = next(source)
                except StopIteration:
                    more = False
                    break
                except BaseException as e:  # noqa: BLE001 (raised once the rest is out)
                    failure, more = e, False
                    break
                future = pool.submit(work, item)
                started.append((item, future))
                running.add(future)
            while started and started[0][1].done():
                item, future = started.popleft()
                yield item, future.result()
            if not started and not more:
                break
            if running:
                _, pending = wait(running, return_when=FIRST_COMPLETED)
                running = set(pending)
    if failure is not None:
        raise failure


def run_all(calls: Sequence[Callable[[], R]], *, threads: int, name: str) -> list[R]:
    """Run ``calls`` on up to ``threads`` threads; their results in order. If any raises,
    the calls not yet started are cancelled, the running ones finish, and the first
    error (in order) is raised: nothing is left running behind the caller's back."""
    if len(calls) <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(threads, len(calls)),
                            thread_name_prefix=name) as pool:
        futures = [pool.submit(call) for call in calls]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


class Progress:
    """When the daemon's work last moved (``time.monotonic`` seconds): each turn of its
    loop, each recording it starts, each batch of deletions, every 8 MiB of a recording
    it reads. systemd's watchdog is fed only while this is recent (``cli.daemon_cmd``),
    so a daemon stuck anywhere (a hung mount, a deadlock) is restarted, while one busy
    with a long recording or a large sweep is not. One float written: no lock needed."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def idle_for(self) -> float:
        return time.monotonic() - self.last
