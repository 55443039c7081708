"""SimilarityService: protobuf in, engine call, protobuf out.

`add_similarity_service(server, registry, config, batcher)` builds the engine with
its life cycle (`server.engines.similarity.runtime.open_runtime`), registers the
servicer over it and returns the `SimilarityRuntime` for `server.app`.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

import grpc

from server.engines.embedding import DynamicBatcher
from server.engines.similarity import (
    MAX_DELETE,
    MAX_UPSERT,
    EmbedderRef,
    Query,
    SimilarityEngine,
    Summary,
)
from server.engines.similarity.runtime import SimilarityRuntime, open_runtime
from server.stores.base import DealFilter
from vectoros.core.deal_codec.proto import deal_from_proto, deal_to_proto, outcome_from_proto
from vectoros.core.deals import check_id
from vectoros.core.errors import InvalidInput
from vectoros.v1 import common_pb2, similarity_pb2, similarity_pb2_grpc


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


async def add_similarity_service(
    server: grpc.aio.Server, registry, config, batcher: DynamicBatcher | None = None
) -> SimilarityRuntime:
    """Build the store and engine from `config` (`data_dir`, `qdrant_url`,
    `qdrant_api_key`, `search_hnsw_ef`), open it if an embedder is loaded, and
    register the servicer. Call `refresh()` (in a thread) when the embedder
    changes, and `close()` after the server stopped."""
    runtime = await asyncio.to_thread(open_runtime, config, registry, batcher)
    similarity_pb2_grpc.add_SimilarityServiceServicer_to_server(SimilarityServicer(runtime.engine), server)
    return runtime
