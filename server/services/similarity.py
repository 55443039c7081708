"""SimilarityService: protobuf in, engine call, protobuf out.

`add_similarity_service(server, registry, config, batcher)` builds the store the
configuration asks for (Qdrant Edge under ``<data_dir>/vectors``, or the Qdrant
server at `qdrant_url`), the engine and the servicer, and registers it. The
engine embeds through the process's `DynamicBatcher`, with the embedder version
that matches the collection it serves (`RegistryEmbedders`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import grpc

from server.engines.embedding import DynamicBatcher, EmbedderModel
from server.engines.similarity import (
    MAX_DELETE,
    MAX_UPSERT,
    EmbedderRef,
    Query,
    SimilarityEngine,
    Summary,
)
from server.stores import open_store
from server.stores.base import DealFilter
from server.stores.edge import optimize_elsewhere
from vectoros.core.deal_codec.proto import deal_from_proto, deal_to_proto, outcome_from_proto
from vectoros.core.deals import check_id
from vectoros.core.errors import InvalidInput, NotFound, Unavailable
from vectoros.v1 import common_pb2, similarity_pb2, similarity_pb2_grpc

log = logging.getLogger("vectoros.similarity")

MODEL = "embedder"


# --- embedders from the registry ----------------------------------------------------


class RegistryEmbedder:
    """One loaded embedder version, embedding through the shared batcher (or in a
    worker thread when there is none)."""

    def __init__(self, loaded, batcher: DynamicBatcher | None) -> None:
        model: EmbedderModel = loaded.model
        self.name = loaded.name
        self.version = loaded.version
        self.dimension = model.dimension
        self._model = model
        self._batcher = batcher

    async def embed(self, texts: Sequence[str]):
        if self._batcher is not None:
            return (await self._batcher.embed(self._model, list(texts))).vectors
        return (await asyncio.to_thread(self._model.embed, list(texts))).vectors


class RegistryEmbedders:
    """`current()`: the production embedder (never the canary: a collection holds
    vectors of one version only). `version(v)`: any loaded version, or None."""

    def __init__(self, registry, batcher: DynamicBatcher | None = None, model: str = MODEL) -> None:
        self._registry = registry
        self._batcher = batcher
        self._model = model

    def current(self) -> RegistryEmbedder:
        return RegistryEmbedder(self._registry.select(self._model), self._batcher)

    def version(self, version: int) -> RegistryEmbedder | None:
        try:
            return RegistryEmbedder(self._registry.get(self._model, version), self._batcher)
        except (NotFound, Unavailable):
            return None


# --- the servicer -------------------------------------------------------------------


class SimilarityServicer(similarity_pb2_grpc.SimilarityServiceServicer):
    def __init__(self, engine: SimilarityEngine) -> None:
        self._engine = engine

    async def UpsertDeals(self, request: similarity_pb2.UpsertDealsRequest, context: grpc.aio.ServicerContext):
        _workspace(request.workspace_id)
        if not 1 <= len(request.deals) <= MAX_UPSERT:
            raise InvalidInput("deals", f"must hold 1 to {MAX_UPSERT} deals, got {len(request.deals)}")
        now = datetime.now(UTC)
        records = [deal_from_proto(deal, f"deals[{i}]", now) for i, deal in enumerate(request.deals)]
        result = await self._engine.upsert(request.workspace_id, records)
        return similarity_pb2.UpsertDealsResponse(
            upserted=result.upserted, unchanged=result.unchanged, embedder=_ref(result.embedder)
        )

    async def DeleteDeals(self, request: similarity_pb2.DeleteDealsRequest, context: grpc.aio.ServicerContext):
        _workspace(request.workspace_id)
        if not 1 <= len(request.deal_ids) <= MAX_DELETE:
            raise InvalidInput("deal_ids", f"must hold 1 to {MAX_DELETE} ids, got {len(request.deal_ids)}")
        ids = [check_id(value, f"deal_ids[{i}]") for i, value in enumerate(request.deal_ids)]
        deleted = await self._engine.delete(request.workspace_id, ids)
        return similarity_pb2.DeleteDealsResponse(deleted=deleted)

    async def FindSimilarDeals(
        self, request: similarity_pb2.FindSimilarDealsRequest, context: grpc.aio.ServicerContext
    ):
        _workspace(request.workspace_id)
        kind = request.WhichOneof("query")
        if kind == "deal":
            query = Query(deal=deal_from_proto(request.deal, "deal", datetime.now(UTC)))
        elif kind == "deal_id":
            query = Query(deal_id=check_id(request.deal_id, "deal_id"))
        elif kind == "text":
            query = Query(text=request.text)
        else:
            raise InvalidInput("query", "one of deal, deal_id or text is required")
        min_score = request.min_score if request.HasField("min_score") else None
        result = await self._engine.find(
            request.workspace_id,
            query,
            deal_filter=_filter(request.filter),
            top_k=request.top_k,
            min_score=min_score,
        )
        return similarity_pb2.FindSimilarDealsResponse(
            matches=[similarity_pb2.SimilarDeal(score=m.score, deal=deal_to_proto(m.deal)) for m in result.matches],
            summary=_summary(result.summary),
            embedder=_ref(result.embedder),
        )

    async def GetStats(self, request: similarity_pb2.GetStatsRequest, context: grpc.aio.ServicerContext):
        _workspace(request.workspace_id)
        stats = await self._engine.stats(request.workspace_id)
        return similarity_pb2.GetStatsResponse(
            total_deals=stats.total,
            by_outcome=[
                similarity_pb2.OutcomeCount(outcome=_OUTCOME_TO_PROTO[outcome.value], count=count)
                for outcome, count in stats.by_outcome.items()
            ],
            embedder=_ref(stats.embedder),
        )


_OUTCOME_TO_PROTO = {
    "open": common_pb2.DEAL_OUTCOME_OPEN,
    "won": common_pb2.DEAL_OUTCOME_WON,
    "lost": common_pb2.DEAL_OUTCOME_LOST,
}


def _workspace(value: str) -> None:
    if not value:
        raise InvalidInput("workspace_id", "required")


def _filter(message: similarity_pb2.SimilarityFilter) -> DealFilter:
    bounds = {}
    for name in ("min_value", "max_value"):
        if message.HasField(name):
            value = getattr(message, name)
            if not math.isfinite(value):
                raise InvalidInput(f"filter.{name}", f"must be finite, got {value}")
            bounds[name] = value
    if "min_value" in bounds and "max_value" in bounds and bounds["min_value"] > bounds["max_value"]:
        raise InvalidInput("filter.max_value", "must be >= filter.min_value")
    outcomes = [outcome_from_proto(value, f"filter.outcomes[{i}]").value for i, value in enumerate(message.outcomes)]
    return DealFilter(
        industries=tuple(message.industries),
        stages=tuple(message.stages),
        outcomes=tuple(dict.fromkeys(outcomes)),
        **bounds,
    )


def _ref(ref: EmbedderRef) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=ref.name, version=ref.version)


def _summary(summary: Summary) -> similarity_pb2.SimilaritySummary:
    return similarity_pb2.SimilaritySummary(
        won_count=summary.won_count,
        lost_count=summary.lost_count,
        open_count=summary.open_count,
        weighted_win_rate=summary.weighted_win_rate,
        mean_score=summary.mean_score,
    )


# --- wiring -------------------------------------------------------------------------


class SimilarityService:
    """The engine with its life cycle, for `server.app`: `opened()` is True once the
    store is open (health SERVING needs that and a loaded embedder: `ready()`);
    `refresh()` opens it when the first embedder arrives; `close()` at shutdown."""

    def __init__(self, engine: SimilarityEngine, registry=None) -> None:
        self.engine = engine
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
        production = self._registry.status(MODEL).production
        newest = self.engine.collections()[:1]
        wanted = frozenset(
            c.embedder_version for c in newest if production is not None and c.embedder_version != production
        )
        if wanted != self._retained:
            self._retained = wanted
            self._registry.retain(MODEL, wanted)
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
                    work = self.engine.rebuild(optimize_elsewhere, embedder=current)
                elif self.engine.needs_rebuild(threshold):
                    work = self.engine.rebuild(optimize_elsewhere)
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


async def add_similarity_service(
    server: grpc.aio.Server, registry, config, batcher: DynamicBatcher | None = None
) -> SimilarityService:
    """Build the store and engine from `config` (`data_dir`, `qdrant_url`,
    `qdrant_api_key`, `search_hnsw_ef`), open it if an embedder is loaded, and
    register the servicer. Call `refresh()` (in a thread) when the embedder
    changes, and `close()` after the server stopped."""
    store = await asyncio.to_thread(open_store, config.data_dir, config.qdrant_url, config.qdrant_api_key)
    engine = SimilarityEngine(store, RegistryEmbedders(registry, batcher), hnsw_ef=config.search_hnsw_ef or None)
    service = SimilarityService(engine, registry)
    await asyncio.to_thread(service.refresh)
    similarity_pb2_grpc.add_SimilarityServiceServicer_to_server(SimilarityServicer(service.engine), server)
    return service
