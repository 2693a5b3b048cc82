"""``Reused``: scrape-time figures that cost time in proportion to the catalog are
computed again only once older than REUSE_FACTOR times what they took, so scrapes take a
bounded share of a core; a failure is never kept."""

from __future__ import annotations

import threading

import pytest

from retentiond.metrics import REUSE_FACTOR, REUSE_MAX_SECONDS, Reused


class FakeClock:
    """Wall time; ``cpu`` advances with it while computing (a computation that only
    computes), unless a test says otherwise."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def cpu(self) -> float:
        return self.t


def test_a_costly_figure_is_reused_for_a_bounded_time():
    clock = FakeClock()
    calls = []

    def compute() -> int:
        calls.append(clock.t)
        clock.t += 2.0  # takes 2 s (a catalog of millions)
        return len(calls)

    figure = Reused(compute, monotonic=clock, cpu_time=clock.cpu)
    assert figure() == 1
    clock.t += REUSE_FACTOR * 2.0 - 0.5  # just younger than 20 x 2 s
    assert figure() == 1 and len(calls) == 1
    clock.t += 1.0
    assert figure() == 2  # old enough: computed again


def test_scrapes_every_second_spend_a_bounded_share_computing():
    clock = FakeClock()
    spent = 0.0

    def compute() -> None:
        nonlocal spent
        clock.t += 3.0
        spent += 3.0

    figure = Reused(compute, monotonic=clock, cpu_time=clock.cpu)
    start = clock.t
    while clock.t - start < 3600:  # an hour of scrapes, one a second
        figure()
        clock.t += 1.0
    assert spent / (clock.t - start) <= 1 / (REUSE_FACTOR + 1) + 0.01


def test_a_cheap_figure_is_always_fresh():
    clock = FakeClock()
    n = iter(range(100))

    def compute() -> int:
        clock.t += 0.001
        return next(n)

    figure = Reused(compute, monotonic=clock, cpu_time=clock.cpu)
    assert figure() == 0
    clock.t += 0.05  # a later scrape, 50 ms on: past 20 x 1 ms
    assert figure() == 1


def test_a_failure_is_not_kept():
    clock = FakeClock()
    outcomes = iter([RuntimeError("catalog locked"), 7])

    def compute() -> int:
        clock.t += 1.0
        out = next(outcomes)
        if isinstance(out, Exception):
            raise out
        return out

    figure = Reused(compute, monotonic=clock, cpu_time=clock.cpu)
    with pytest.raises(RuntimeError):
        figure()
    assert figure() == 7


def test_waiting_for_a_slow_store_does_not_make_figures_stale():
    """Reuse follows the CPU a computation spent, not the time it waited (a proof-log
    size from a stalled S3 server): a 5-minute wait buys no reuse."""
    clock = FakeClock()
    n = iter(range(10))

    def compute() -> int:
        clock.t += 300.0  # waiting: no CPU
        return next(n)

    figure = Reused(compute, monotonic=clock, cpu_time=lambda: 0.0)
    assert figure() == 0
    clock.t += 0.001
    assert figure() == 1


def test_reuse_is_capped():
    clock = FakeClock()
    n = iter(range(10))

    def compute() -> int:
        clock.t += 60.0  # a huge catalog: a minute of CPU
        return next(n)

    figure = Reused(compute, monotonic=clock, cpu_time=clock.cpu)
    assert figure() == 0
    clock.t += REUSE_MAX_SECONDS + 1  # not 20 minutes: figures stay usable for alerts
    assert figure() == 1


def test_a_result_with_an_error_marker_is_not_kept():
    clock = FakeClock()
    results = iter([-1, 42])

    def compute() -> int:
        clock.t += 1.0
        return next(results)

    figure = Reused(compute, monotonic=clock, cpu_time=clock.cpu, keep=lambda v: v >= 0)
    assert figure() == -1
    assert figure() == 42  # computed again at once


def test_concurrent_scrapes_share_one_computation():
    started, release = threading.Event(), threading.Event()
    calls, running, overlap = [], [0], []

    def compute() -> str:
        running[0] += 1
        overlap.append(running[0])
        calls.append(1)
        started.set()
        release.wait(5)
        running[0] -= 1
        return "figures"

    figure = Reused(compute)
    results: list[str] = []
    first = threading.Thread(target=lambda: results.append(figure()))
    first.start()
    assert started.wait(5)
    second = threading.Thread(target=lambda: results.append(figure()))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert results == ["figures", "figures"]
    assert calls == [1] and overlap == [1]  # the second waited and shared the result
