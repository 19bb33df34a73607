"""Two single-thread executors around the model: one reads the next tiles while the model runs,
one blends and writes the previous results. At most ``depth`` items wait on each side, so
memory stays bounded.

Threads, hand-over of results and errors are ``concurrent.futures``'. The two small classes
here add what an executor lacks: a bound on the items in flight (its queue is unbounded), an
iterator created, advanced and closed in one thread (a rasterio dataset belongs to the thread
that opened it), and dropping writes queued after a failed one (a partial raster must not get
regions after a gap, or ``--resume`` would trust it). torch's ``DataLoader`` does not fit:
without worker processes it does not read ahead, and with them every tile batch is pickled
across processes and a reader's error is rebuilt from its text (``InferenceIOError`` becomes a
``RuntimeError``).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Generic, Iterator, Optional, TypeVar

Item = TypeVar("Item")

_DONE = object()


class Prefetcher(Generic[Item]):
    """Iterates ``make_iterator()`` in a background thread, at most ``depth`` items ahead of
    the consumer. The iterator is created, advanced and closed in that one thread, so resources
    it opens (a rasterio dataset) belong to it. Errors are re-raised to the consumer.

    Use as a context manager, so that leaving early stops the reading.
    """

    def __init__(self, make_iterator: Callable[[], Iterator[Item]], depth: int = 2) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rsfm-reader")
        self._iterator = self._executor.submit(make_iterator)
        self._ahead: Deque["Future[Any]"] = deque(self._executor.submit(self._next) for _ in range(depth))

    def _next(self) -> Any:
        # runs in the reader thread, after make_iterator (one thread, first in first out)
        return next(self._iterator.result(), _DONE)

    def _close_iterator(self) -> None:
        iterator = self._iterator.result() if self._iterator.exception() is None else None
        if hasattr(iterator, "close"):
            iterator.close()

    def __iter__(self) -> Iterator[Item]:
        while self._ahead:
            item = self._ahead.popleft().result()
            if item is _DONE:
                return
            self._ahead.append(self._executor.submit(self._next))
            yield item

    def close(self) -> None:
        for future in self._ahead:
            future.cancel()
        self._ahead.clear()
        self._executor.submit(self._close_iterator)
        self._executor.shutdown(wait=True)

    def __enter__(self) -> "Prefetcher[Item]":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class Worker(Generic[Item]):
    """Calls ``handle(item)`` in a background thread for every submitted item, in order, with
    at most ``depth`` items waiting. An error in ``handle`` is re-raised by a later
    :meth:`submit` or by :meth:`close`; items after it are dropped."""

    def __init__(self, handle: Callable[[Item], None], depth: int = 2, name: str = "rsfm-writer") -> None:
        self._handle = handle
        self._depth = depth
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Deque["Future[None]"] = deque()

    def _run(self, previous: Optional["Future[None]"], item: Item) -> None:
        if previous is not None:
            previous.result()  # finished already (one thread, in order); its error drops this item
        self._handle(item)

    def submit(self, item: Item) -> None:
        previous = self._pending[-1] if self._pending else None
        self._pending.append(self._executor.submit(self._run, previous, item))
        while len(self._pending) > self._depth:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait until every submitted item is handled; re-raise an error from ``handle``."""
        self._executor.shutdown(wait=True)
        while self._pending:
            self._pending.popleft().result()
