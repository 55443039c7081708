"""The similarity engine's life in a server, without grpc: `open_runtime(config,
registry, batcher)` builds the store the configuration asks for (Qdrant Edge under
``<data_dir>/vectors``, or the Qdrant server at `qdrant_url`), the engine (which
embeds through the process's `DynamicBatcher`, with the embedder version that
matches the collection it serves: `RegistryEmbedders`) and the `SimilarityRuntime`
that opens, maintains and closes it. The servicer (`server.services.similarity`)
is registered over `runtime.engine`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from server.engines.embedding import DynamicBatcher
from server.engines.similarity.embedders import EMBEDDER, RegistryEmbedders
from server.engines.similarity.engine import SimilarityEngine
from server.stores import open_store
from server.stores.base import Collection
from server.stores.edge import optimize_elsewhere
from vectoros.core.errors import Unavailable

log = logging.getLogger("vectoros.similarity")


class SimilarityRuntime:
    """The engine with its life cycle in a server: `opened()` is True once the
    store is open (health SERVING needs that and a loaded embedder: `ready()`);
    `refresh()` opens it when the first embedder arrives; `maintain()` runs the
    background work; `close()` at shutdown. `optimize` indexes a rebuilt
    collection without holding this process's GIL (see `SimilarityEngine.rebuild`)."""

    def __init__(
        self,
        engine: SimilarityEngine,
        registry=None,
        *,
        optimize: Callable[[Collection], Awaitable[None]] = optimize_elsewhere,
    ) -> None:
        self.engine = engine
        self._optimize = optimize
        # The model registry, to keep the embedder of the served collection loaded
        # (`refresh`); None for an engine over a fixed set of embedders.
        self._registry = registry
        self._retained: frozenset[int] = frozenset()
        self._opened = False
        self._listeners: list[Callable[[], None]] = []

    def opened(self) -> bool:
        return self._opened

    def ready(self) -> bool:
        if not self._opened:
            return False
        try:
            self.engine.serving()
        except Exception:  # any reason (no embedder, wrong dimension) means not ready
            return False
        return True

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (on the event loop) after the served collection changed:
        the store opened, a rebuild or a reindex switched collections. Health uses it."""
        self._listeners.append(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:
                log.exception("similarity listener failed")

    def refresh(self) -> None:
        """Open the store if it is not open yet and an embedder is loaded. Blocking;
        errors are logged (the service stays NOT_SERVING) and retried next time."""
        try:
            self.engine.open()
        except Unavailable as exc:
            log.info("similarity store not opened yet: %s", exc.message)
            return
        except Exception:
            log.exception("similarity store cannot be opened")
            return
        self._opened = True
        self._retain_collection_embedder()

    def _retain_collection_embedder(self) -> None:
        """Until the production embedder's collection is complete, searches and
        writes use the newest complete collection, with the embedder version it was
        built with: keep that version loaded, also after a restart (when the
        registry would load production alone). Released once the reindex is done."""
        if self._registry is None:
            return
        production = self._registry.status(EMBEDDER).production
        newest = self.engine.collections()[:1]
        wanted = frozenset(
            c.embedder_version for c in newest if production is not None and c.embedder_version != production
        )
        if wanted != self._retained:
            self._retained = wanted
            self._registry.retain(EMBEDDER, wanted)
            self._registry.refresh(notify=False)
            if wanted:
                log.info("keeping the embedder of the served collection loaded until a reindex completes",
                         extra={"embedder_version": min(wanted), "production": production})

    async def maintain(
        self, stop: asyncio.Event, *, interval: float = 60.0, threshold: int = 20_000, reindex: bool = False
    ) -> None:
        """Until `stop` is set, now and then every `interval` seconds:

        - open the store, or open collections completed elsewhere;
        - with `reindex`, when the production embedder is newer than the stored
          collections, re-embed the stored deals into its collection while serving
          from the old one (the in-server `vectoros reindex`; at start too);
        - when the served embedded collection has `threshold` or more points outside
          the HNSW index (exact search slows down with them: ~5 ms at 10,000 per
          workspace), rebuild it with the index built in a child process. Each
          rebuild copies the whole collection, so the threshold keeps them rare.
        Failures are logged and retried at the next turn; the old collection serves.
        """
        while not stop.is_set():
            # Also picks up a collection completed elsewhere (`vectoros reindex`
            # against a Qdrant server while this one runs).
            before = self._opened, [c.name for c in self.engine.collections()], self._retained
            await asyncio.to_thread(self.refresh)
            if (self._opened, [c.name for c in self.engine.collections()], self._retained) != before:
                self._changed()
            if self._opened:
                work = None
                if reindex and self.engine.needs_reindex():
                    current = self.engine.embedders.current()
                    log.info("re-embedding stored deals", extra={"embedder_version": current.version})
                    work = self.engine.rebuild(self._optimize, embedder=current)
                elif self.engine.needs_rebuild(threshold):
                    work = self.engine.rebuild(self._optimize)
                if work is not None and await _until_stopped(work, stop):
                    self._changed()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    def close(self) -> None:
        self.engine.close()
        self.engine.store.close()


async def _until_stopped(work: Awaitable[str | None], stop: asyncio.Event) -> bool:
    """Run a rebuild until it ends or `stop` is set (then cancel it: its child
    process is killed and what it built is dropped or kept for resuming).
    Returns whether it switched collections; failures are logged."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    try:
        return task.result() is not None
    except Exception:  # keep serving from the old collection; try again later
        log.exception("similarity rebuild failed")
        return False


def open_runtime(
    config,
    registry,
    batcher: DynamicBatcher | None = None,
    *,
    optimize: Callable[[Collection], Awaitable[None]] = optimize_elsewhere,
) -> SimilarityRuntime:
    """Build the store and engine from `config` (`data_dir`, `qdrant_url`,
    `qdrant_api_key`, `search_hnsw_ef`) and open the store if an embedder is
    loaded. Blocking. Call `refresh()` (in a thread) when the embedder changes,
    and `close()` after the server stopped."""
    store = open_store(config.data_dir, config.qdrant_url, config.qdrant_api_key)
    engine = SimilarityEngine(store, RegistryEmbedders(registry, batcher), hnsw_ef=config.search_hnsw_ef or None)
    runtime = SimilarityRuntime(engine, registry, optimize=optimize)
    runtime.refresh()
    return runtime
