"""Adaptive micro-batching: many small concurrent requests, one model run.

Requests for one model wait in a queue. A dispatcher takes the oldest, adds
the queued requests with the same input signature (names, dtypes and every
dimension but the first), and closes the batch when it holds
``max_batch_size`` rows, or when ``max_latency_ms`` has passed since the oldest
arrived. It waits for companions only while requests are arriving faster than
that window, and stops waiting once the next arrival is not expected before
the deadline (both judged from a moving average of the gaps between
arrivals): under light load a request runs at once and pays no delay; under
heavy load batches fill while the previous run is busy. Nor does it wait when every
client that sent requests of late is already waiting for an answer (the number of
requests in flight at once, its recent peak): a client that sends its next request
only after the last answer, alone, would otherwise wait out the window each time,
since its requests do come faster than the window.

The merged inputs are concatenated along the first axis, run once, and every
output is split back by the row count of each request. If a merged run fails,
each request of the batch is run on its own, so a bad request gets its own
error and the others their answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["MicroBatcher"]

log = logging.getLogger("modelpack.serve")

Feeds = dict[str, np.ndarray]
Runner = Callable[[Feeds], Awaitable[dict[str, Any]]]

_SMOOTHING = 0.2  # weight of the newest gap in the moving average of arrival gaps
_PEAK_DECAY = 1 / 16  # share the recent peak of requests in flight loses at each arrival below it


@dataclass
class _Item:
    feeds: Feeds
    rows: int
    signature: tuple[Any, ...]
    future: asyncio.Future[dict[str, Any]]
    arrived: float


@dataclass
class BatchStats:
    """Counters for monitoring and benchmarks."""

    requests: int = 0
    batches: int = 0
    rows: int = 0
    fallbacks: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # requests per batch -> how many batches


class MicroBatcher:
    """Merge concurrent requests of one model into fewer, larger runs.

    Parameters
    ----------
    run:
        Coroutine function running the model on feeds (on a worker thread).
    max_batch_size:
        Most rows in one merged run; a larger request runs alone.
    max_latency_ms:
        Longest a request waits for companions.
    max_concurrent:
        Merged runs in flight at once.
    on_batch:
        Called with the requests and rows of every run (for metrics).

    Example
    -------
    >>> batcher = MicroBatcher(run, max_batch_size=64, max_latency_ms=2)   # doctest: +SKIP
    >>> outputs = await batcher.submit({"X": x})                             # doctest: +SKIP
    """

    def __init__(self, run: Runner, *, max_batch_size: int, max_latency_ms: float,
                 max_concurrent: int = 1, on_batch: Callable[[int, int], None] | None = None) -> None:
        self._run = run
        self._on_batch = on_batch
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self._max_concurrent = max_concurrent
        self._queue: deque[_Item] = deque()
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._gap = float("inf")
        self._last_arrival: float | None = None
        self._in_flight = 0  # requests submitted and not yet answered
        self._peak = 0.0  # their recent peak: how many companions a request may expect
        self.stats = BatchStats()

    async def submit(self, feeds: Feeds) -> dict[str, Any]:
        """Run ``feeds`` (in a batch when possible) and return this request's outputs."""
        rows = _rows(feeds)
        if rows is None or rows > self.max_batch_size:
            return await self._run(feeds)
        loop = asyncio.get_running_loop()
        self._start(loop)
        now = loop.time()
        if self._last_arrival is not None:
            gap = now - self._last_arrival
            self._gap = gap if self._gap == float("inf") else self._gap * (1 - _SMOOTHING) + gap * _SMOOTHING
        self._last_arrival = now
        self._in_flight += 1
        self._peak = max(float(self._in_flight), self._peak * (1 - _PEAK_DECAY))
        item = _Item(feeds, rows, _signature(feeds), loop.create_future(), now)
        self._queue.append(item)
        self._wake.set()  # type: ignore[union-attr]
        try:
            return await item.future
        finally:
            self._in_flight -= 1

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._wake = asyncio.Event()
            self._slots = asyncio.Semaphore(self._max_concurrent)
            self._dispatcher = loop.create_task(self._dispatch())

    async def close(self) -> None:
        """Stop dispatching; requests still queued get an error."""
        tasks = [*self._running, *([self._dispatcher] if self._dispatcher is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _fail(self._queue)
        self._queue.clear()

    # -- dispatching ---------------------------------------------------------------------
    async def _dispatch(self) -> None:
        wake, slots = self._wake, self._slots
        assert wake is not None and slots is not None  # noqa: S101 (set together in _start)
        while True:
            await slots.acquire()
            while not self._queue:
                wake.clear()
                await wake.wait()
            if self._gap < self.max_latency:
                await self._gather(wake)
            batch = self._take()
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _gather(self, wake: asyncio.Event) -> None:
        """Wait until the oldest request's batch is full, its deadline passes, or no other client is expected."""
        loop = asyncio.get_running_loop()
        deadline = self._queue[0].arrived + self.max_latency
        while self._rows_like(self._queue[0]) < self.max_batch_size and self._others_expected():
            remaining = deadline - loop.time()
            if remaining <= 0 or self._gap > remaining:  # the next arrival is not expected in time
                return
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _others_expected(self) -> bool:
        # Fewer requests in flight than of late: the clients not waiting may send one soon.
        return self._in_flight < self._peak

    def _rows_like(self, first: _Item) -> int:
        return sum(i.rows for i in self._queue if i.signature == first.signature)

    def _take(self) -> list[_Item]:
        first = self._queue.popleft()
        batch, rows, kept = [first], first.rows, deque[_Item]()
        while self._queue:
            item = self._queue.popleft()
            if item.signature == first.signature and rows + item.rows <= self.max_batch_size:
                batch.append(item)
                rows += item.rows
            else:
                kept.append(item)
        self._queue = kept
        return batch

    async def _execute(self, batch: list[_Item]) -> None:
        try:
            await self._execute_batch(batch)
        except asyncio.CancelledError:
            _fail(batch)
            raise
        finally:
            self._slots.release()  # type: ignore[union-attr]

    async def _execute_batch(self, batch: list[_Item]) -> None:
        self._count(batch)
        if len(batch) == 1:
            await self._resolve(batch[0], self._run(batch[0].feeds))
            return
        merged = {name: np.concatenate([i.feeds[name] for i in batch]) for name in batch[0].feeds}
        try:
            parts = _split(await self._run(merged), [i.rows for i in batch])
        except Exception as exc:  # noqa: BLE001 (each request is retried alone to find its own error)
            log.debug("merged run of %d requests failed (%s); running them one by one", len(batch), exc)
            self.stats.fallbacks += 1
            for item in batch:
                await self._resolve(item, self._run(item.feeds))
            return
        for item, outputs in zip(batch, parts, strict=True):
            if not item.future.done():
                item.future.set_result(outputs)

    async def _resolve(self, item: _Item, outputs: Awaitable[dict[str, Any]]) -> None:
        try:
            result = await outputs
        except Exception as exc:  # noqa: BLE001 (handed to the waiting request)
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(result)

    def _count(self, batch: list[_Item]) -> None:
        s = self.stats
        s.batches += 1
        s.requests += len(batch)
        s.rows += sum(i.rows for i in batch)
        s.sizes[len(batch)] = s.sizes.get(len(batch), 0) + 1
        if self._on_batch is not None:
            self._on_batch(len(batch), sum(i.rows for i in batch))


def _fail(items: Iterable[_Item]) -> None:
    for item in items:
        if not item.future.done():
            item.future.set_exception(RuntimeError("the server is shutting down"))


def _rows(feeds: Feeds) -> int | None:
    """The common first dimension of every input, or None when they differ."""
    counts = {a.shape[0] if a.ndim else None for a in feeds.values()}
    if len(counts) != 1:
        return None
    return counts.pop()


def _signature(feeds: Feeds) -> tuple[Any, ...]:
    return tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in feeds.items()))


class _UnevenOutput(ValueError):
    pass


def _split(outputs: dict[str, Any], rows: list[int]) -> list[dict[str, Any]]:
    """Cut every output of a merged run back into one piece per request."""
    total = sum(rows)
    bounds = np.cumsum([0, *rows])
    parts: list[dict[str, Any]] = [{} for _ in rows]
    for name, value in outputs.items():
        if len(value) != total:  # an output that is not per row cannot be split
            raise _UnevenOutput(f"output {name!r} has {len(value)} rows for {total} input rows")
        for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            parts[k][name] = value[lo:hi]
    return parts
