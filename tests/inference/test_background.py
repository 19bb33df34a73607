"""The reader and writer threads of tiled inference: order, bounded read-ahead, one thread per
iterator, errors handed over with their type, early exit and writes dropped after a failure."""

import threading
import time

import pytest

from rsfm.inference.background import Prefetcher, Worker
from rsfm.inference.errors import InferenceIOError


class _Source:
    """An iterator that records which thread opened, advanced and closed it."""

    def __init__(self, count: int, fail_at: int = -1) -> None:
        self.count, self.fail_at = count, fail_at
        self.threads, self.produced, self.closed = set(), 0, False

    def __call__(self):
        self.threads.add(threading.get_ident())
        try:
            for index in range(self.count):
                self.threads.add(threading.get_ident())
                if index == self.fail_at:
                    raise InferenceIOError("scene.tif", "cannot read block", "fetch the file again")
                self.produced += 1
                yield index
        finally:
            self.threads.add(threading.get_ident())
            self.closed = True


def test_prefetcher_yields_everything_in_order_from_one_other_thread():
    source = _Source(7)
    with Prefetcher(source, depth=2) as items:
        assert list(items) == list(range(7))
    assert len(source.threads) == 1 and threading.get_ident() not in source.threads
    assert source.closed


def test_prefetcher_reads_at_most_depth_ahead_and_stops_on_early_exit():
    source = _Source(100)
    with Prefetcher(source, depth=3) as items:
        for item in items:
            time.sleep(0.05)  # the reader has had time to run ahead
            assert source.produced <= item + 1 + 3
            if item == 4:
                break
    assert source.closed and source.produced <= 5 + 3


def test_prefetcher_reraises_the_readers_error_with_its_type():
    source = _Source(5, fail_at=2)
    received = []
    with pytest.raises(InferenceIOError, match=r"scene\.tif: cannot read block \(fetch the file again\)"):
        with Prefetcher(source) as items:
            received.extend(items)
    assert received == [0, 1] and source.closed


def test_worker_handles_in_order_and_close_waits_for_all():
    handled, threads = [], set()

    def handle(item):
        time.sleep(0.01)
        threads.add(threading.get_ident())
        handled.append(item)

    worker = Worker(handle, depth=2)
    for item in range(6):
        worker.submit(item)
    worker.close()
    assert handled == list(range(6)) and len(threads) == 1 and threading.get_ident() not in threads


def test_worker_drops_items_after_an_error_and_reraises_it():
    handled = []

    def handle(item):
        if item == 2:
            raise OSError(28, "No space left on device")
        handled.append(item)

    worker = Worker(handle, depth=2)
    with pytest.raises(OSError, match="No space left"):
        for item in range(10):
            worker.submit(item)
        worker.close()
    assert handled == [0, 1]
