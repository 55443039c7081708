"""The dynamic batcher (asyncio): collects texts from concurrent requests into one
model call of at most `max_batch_size` texts, waiting at most `max_wait_ms` for a
batch to fill; a bounded queue answers `Overloaded` at once when full; an LRU
cache keyed by (model fingerprint, SHA-256 of the text) skips texts embedded
before. The model itself is `vectoros.core.embedder.EmbedderModel`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections import OrderedDict, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from vectoros.core.embedder.model import EmbedBatchResult, EmbedderModel
from vectoros.core.errors import Overloaded, Unavailable


@dataclass(frozen=True)
class BatcherConfig:
    """`max_batch_size`: texts per model call. `max_wait_ms`: how long the first
    text of a batch waits for others (not at all for a model that runs texts
    one by one, such as int8: see `EmbedderSettings`). `max_queue`: texts waiting before new
    requests are refused (a request of up to 256 texts is always let into an
    empty queue). `cache_entries`: vectors kept (~1.6 KB each); 0 turns the
    cache off. `workers`: model calls running at once (each in its own thread);
    one per core, so that with `EmbedderSettings.overlap_session` a lone call
    gets every core and concurrent calls get one each (measured on 2 cores,
    32 callers, int8: 2 workers ~1.5x the texts/s of 1 worker with 2 threads)."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queue: int = 1024
    cache_entries: int = 20_000
    workers: int = max(1, os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.max_queue < 1 or self.workers < 1 or self.cache_entries < 0:
            raise ValueError(f"invalid batcher config {self}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


@dataclass
class BatcherStats:
    """Counters since start: requests and texts asked for, texts answered from the
    cache, model calls (`batches`) and the texts they held, requests refused."""

    requests: int = 0
    texts: int = 0
    cache_hits: int = 0
    batches: int = 0
    batched_texts: int = 0
    rejected: int = 0


class _Request:
    __slots__ = ("future", "vectors", "token_counts", "truncated", "remaining")

    def __init__(self, future: asyncio.Future, count: int, dimension: int) -> None:
        self.future = future
        self.vectors = np.empty((count, dimension), dtype=np.float32)
        self.token_counts = np.empty(count, dtype=np.int32)
        self.truncated = np.empty(count, dtype=bool)
        self.remaining = 0

    def result(self) -> EmbedBatchResult:
        return EmbedBatchResult(self.vectors, self.token_counts, self.truncated)


@dataclass(frozen=True)
class _Item:
    request: _Request
    position: int
    text: str
    key: tuple[str, bytes]
    model: EmbedderModel
    enqueued: float  # event-loop time


@dataclass(frozen=True)
class _Cached:
    vector: np.ndarray
    token_count: int
    truncated: bool


class DynamicBatcher:
    """Batches texts from concurrent `embed` calls into few model calls.

    Each request names the model it was routed to, so a version swap never
    moves a request in flight to another model: a batch holds texts of one
    model only, and a model stays alive while a batch of it is queued. Use one
    batcher per process (the queue bound is then the process's bound).
    """

    def __init__(self, config: BatcherConfig | None = None) -> None:
        self.config = config or BatcherConfig()
        self.stats = BatcherStats()
        self._pending: deque[_Item] = deque()
        self._cache: OrderedDict[tuple[str, bytes], _Cached] = OrderedDict()
        self._executor: ThreadPoolExecutor | None = None
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        # Requests not yet answered, so that close() can answer them all.
        self._outstanding: set[_Request] = set()
        self._calls = 0  # model calls running
        self._closed = False

    @property
    def queued(self) -> int:
        """Texts waiting for a model call."""
        return len(self._pending)

    def _start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(self.config.workers, thread_name_prefix="embedder")
        self._workers = [
            asyncio.get_running_loop().create_task(self._work(), name=f"embed-batcher-{i}")
            for i in range(self.config.workers)
        ]

    async def embed(self, model: EmbedderModel, texts: Sequence[str]) -> EmbedBatchResult:
        """Embed validated texts with `model`, sharing model calls with concurrent
        callers. Raises `Overloaded` at once when the queue is full."""
        if self._closed:
            raise Unavailable("the embedder is shutting down")
        if not self._workers:
            self._start()
        loop = asyncio.get_running_loop()
        request = _Request(loop.create_future(), len(texts), model.dimension)
        self.stats.requests += 1
        self.stats.texts += len(texts)
        misses: list[tuple[int, tuple[str, bytes]]] = []
        for position, text in enumerate(texts):
            key = (model.fingerprint, hashlib.sha256(text.encode("utf-8")).digest())
            cached = self._cache.get(key)
            if cached is None:
                misses.append((position, key))
                continue
            self._cache.move_to_end(key)
            request.vectors[position] = cached.vector
            request.token_counts[position] = cached.token_count
            request.truncated[position] = cached.truncated
        self.stats.cache_hits += len(texts) - len(misses)
        if not misses:
            return request.result()
        if self._pending and len(self._pending) + len(misses) > self.config.max_queue:
            self.stats.rejected += 1
            raise Overloaded(
                f"texts: the embedding queue is full ({len(self._pending)} texts waiting, "
                f"limit {self.config.max_queue}); retry with backoff"
            )
        request.remaining = len(misses)
        now = loop.time()
        for position, key in misses:
            self._pending.append(_Item(request, position, texts[position], key, model, now))
        assert self._wakeup is not None
        self._wakeup.set()
        self._outstanding.add(request)
        try:
            # A cancelled caller cancels the future; its queued texts are then skipped.
            await request.future
        finally:
            self._outstanding.discard(request)
        return request.result()

    def _take(self) -> list[_Item]:
        limit = self.config.max_batch_size
        if self.config.workers > 1 and self._pending:
            # Leave work for the other workers, but never less than what the
            # model runs in one session call.
            share = -(-len(self._pending) // self.config.workers)
            limit = min(limit, max(self._pending[0].model.sub_batch_size, share))
        batch: list[_Item] = []
        model = None
        while self._pending and len(batch) < limit:
            item = self._pending[0]
            if item.request.future.done():  # caller went away
                self._pending.popleft()
                continue
            if model is not None and item.model is not model:
                break  # one model per call; the next batch takes the other model
            model = item.model
            batch.append(self._pending.popleft())
        return batch

    async def _wait_for_batch(self) -> None:
        assert self._wakeup is not None
        while not self._pending:
            self._wakeup.clear()
            await self._wakeup.wait()
        if len(self._pending) >= self.config.max_batch_size or self.config.max_wait_ms <= 0:
            return
        if self._pending[0].model.sub_batch_size == 1:
            return  # the model runs texts one by one: waiting for company gains nothing
        loop = asyncio.get_running_loop()
        # The wait counts from when the oldest text arrived: texts left over by
        # another worker's batch have waited already.
        deadline = self._pending[0].enqueued + self.config.max_wait_ms / 1000
        while len(self._pending) < self.config.max_batch_size:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wait_for_batch()
            batch = self._take()
            if not batch:
                continue
            model = batch[0].model
            # Texts still queued, or another call running: this call gets one core.
            busy = bool(self._pending) or self._calls > 0
            self._calls += 1
            try:
                result = await loop.run_in_executor(
                    self._executor, functools.partial(model.embed, [item.text for item in batch], busy=busy)
                )
            except Exception as exc:  # the callers get it; the interceptor logs it
                for item in batch:
                    if not item.request.future.done():
                        item.request.future.set_exception(exc)
                continue
            finally:
                self._calls -= 1
            self.stats.batches += 1
            self.stats.batched_texts += len(batch)
            for row, item in enumerate(batch):
                self._remember(item.key, result, row)
                request = item.request
                if request.future.done():
                    continue
                request.vectors[item.position] = result.vectors[row]
                request.token_counts[item.position] = result.token_counts[row]
                request.truncated[item.position] = result.truncated[row]
                request.remaining -= 1
                if request.remaining == 0:
                    request.future.set_result(None)

    def _remember(self, key: tuple[str, bytes], result: EmbedBatchResult, row: int) -> None:
        if self.config.cache_entries == 0:
            return
        self._cache[key] = _Cached(
            result.vectors[row].copy(), int(result.token_counts[row]), bool(result.truncated[row])
        )
        self._cache.move_to_end(key)
        while len(self._cache) > self.config.cache_entries:
            self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    async def close(self) -> None:
        """Stop the workers; requests still queued fail with `Unavailable`."""
        self._closed = True
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._pending.clear()
        for request in list(self._outstanding):  # queued, or in a call that was abandoned
            if not request.future.done():
                request.future.set_exception(Unavailable("the embedder is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
