"""``in_order``: bounded concurrency with results in input order."""

import threading
import time

import pytest

from retentiond.concurrency import in_order


def test_results_come_in_input_order_whatever_finishes_first():
    delays = [0.05, 0.0, 0.03, 0.0, 0.01]

    def work(i: int) -> int:
        time.sleep(delays[i])
        return i * 10

    assert list(in_order(range(5), work, workers=3)) == [(i, i * 10) for i in range(5)]


def test_never_more_than_workers_at_once():
    lock = threading.Lock()
    now = peak = 0

    def work(i: int) -> int:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.01)
        with lock:
            now -= 1
        return i

    assert [r for _, r in in_order(range(20), work, workers=4)] == list(range(20))
    assert 2 <= peak <= 4


def test_keep_going_stops_new_items_and_finishes_started_ones():
    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        time.sleep(0.02)
        return i

    out = list(in_order(range(100), work, workers=3, keep_going=lambda: len(started) < 5))
    assert [i for i, _ in out] == sorted(started)  # all started ones, and only those
    assert 5 <= len(out) <= 7


def test_an_error_of_the_items_comes_after_the_started_ones():
    def items():
        yield 1
        yield 2
        raise ValueError("bad argument 3")

    got = []
    with pytest.raises(ValueError, match="bad argument 3"):
        for item, result in in_order(items(), lambda i: i + 100, workers=2):
            got.append((item, result))
    assert got == [(1, 101), (2, 102)]


def test_an_error_of_work_comes_out_at_its_place():
    def work(i: int) -> int:
        if i == 2:
            raise RuntimeError("boom")
        return i

    it = in_order(range(4), work, workers=2)
    assert next(it) == (0, 0) and next(it) == (1, 1)
    with pytest.raises(RuntimeError, match="boom"):
        next(it)


def test_one_worker_runs_in_the_calling_thread():
    me = threading.get_ident()
    assert list(in_order([1, 2], lambda i: threading.get_ident() == me, workers=1)) == \
        [(1, True), (2, True)]
