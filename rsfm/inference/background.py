"""Two small threads around the model: one reads the next tiles while the model runs, one
blends and writes the previous results. Queues are bounded, so memory is too."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

Item = TypeVar("Item")

_DONE = object()
_POLL_S = 0.1


class Prefetcher(Generic[Item]):
    """Runs ``make_iterator()`` in a background thread and hands out its items, with at most
    ``depth`` of them waiting. The iterator is created inside the thread, so resources it
    opens (a rasterio dataset) belong to that thread. Errors are re-raised to the consumer.

    Use as a context manager, so that leaving early stops the thread.
    """

    def __init__(self, make_iterator: Callable[[], Iterator[Item]], depth: int = 2) -> None:
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, args=(make_iterator,), name="rsfm-reader", daemon=True)
        self._thread.start()

    def _run(self, make_iterator: Callable[[], Iterator[Item]]) -> None:
        iterator = None
        try:
            iterator = make_iterator()
            for item in iterator:
                if not self._put(item):
                    return
        except BaseException as error:  # handed to the consumer thread
            self._error = error
        finally:
            if iterator is not None and hasattr(iterator, "close"):
                iterator.close()
            self._put(_DONE)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Item]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetcher[Item]":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class Worker(Generic[Item]):
    """Calls ``handle(item)`` in a background thread for every submitted item, in order, with
    at most ``depth`` items waiting. An error in ``handle`` is re-raised by the next
    :meth:`submit` or by :meth:`close`; items after it are dropped."""

    def __init__(self, handle: Callable[[Item], None], depth: int = 2, name: str = "rsfm-writer") -> None:
        self._handle = handle
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._handle(item)
                except BaseException as error:  # handed to the submitting thread
                    self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, item: Item) -> None:
        while True:
            self._raise_error()
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait until every submitted item is handled; re-raise an error from ``handle``."""
        self._queue.put(_DONE)
        self._thread.join()
        self._raise_error()
