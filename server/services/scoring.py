"""ScoringService: protobuf in, engine call, protobuf out.

A scorer trained with similarity features gets them from the similarity store
(`server.engines.neighbours.SimilarNeighbours`) when the servicer is given
one; without it, or for a deal not stored in its workspace, they are NaN.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc

from server.engines.neighbours import SimilarNeighbours
from server.engines.scoring import DealScoreResult
from vectoros.core.deal_codec.proto import deal_from_proto, time_to_proto
from vectoros.core.deals import DealRecord
from vectoros.core.errors import InvalidInput
from vectoros.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

MODEL = "scorer"
MAX_DEALS = 1000
MAX_FACTORS = 50
DEFAULT_FACTORS = 5
# Batches larger than this are scored in a worker thread: 1,000 deals take
# ~70 ms of CPU, which would stall every other call on the event loop. A single
# deal (~0.1 ms) is cheaper to score inline than to hand to a thread.
INLINE_DEALS = 32

_RISK = {
    "low": scoring_pb2.RISK_LEVEL_LOW,
    "medium": scoring_pb2.RISK_LEVEL_MEDIUM,
    "high": scoring_pb2.RISK_LEVEL_HIGH,
}


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    """`registry` resolves the scorer to serve: `resolve(name, model_version, routing_key)`
    (a `server.models.registry.ModelRegistry`). `similarity` (optional): the
    `SimilarityEngine`, or a `SimilarNeighbours`, that supplies the similarity
    features of scorers trained with them."""

    def __init__(self, registry, similarity=None) -> None:
        self._registry = registry
        if similarity is not None and not isinstance(similarity, SimilarNeighbours):
            similarity = SimilarNeighbours(similarity, registry)
        self._neighbours: SimilarNeighbours | None = similarity

    async def _similar(self, model, records: Sequence[DealRecord]):
        spec = model.similarity
        if spec is None or self._neighbours is None:
            return None
        return await self._neighbours.features(records, spec)

    async def ScoreDeal(self, request: scoring_pb2.ScoreDealRequest, context: grpc.aio.ServicerContext):
        top = _top_factors(request.top_factors)
        if not request.HasField("deal"):
            raise InvalidInput("deal", "required")
        record = deal_from_proto(request.deal, "deal", datetime.now(UTC))
        loaded = self._registry.resolve(MODEL, request.model_version, record.deal_id)
        similar = await self._similar(loaded.model, [record])
        (score,) = loaded.model.score([record], top, similar=similar)
        response = scoring_pb2.ScoreDealResponse()
        _fill_score(response.score, score, loaded)
        return response

    async def ScoreDeals(self, request: scoring_pb2.ScoreDealsRequest, context: grpc.aio.ServicerContext):
        top = _top_factors(request.top_factors)
        if not 1 <= len(request.deals) <= MAX_DEALS:
            raise InvalidInput("deals", f"must hold 1 to {MAX_DEALS} deals, got {len(request.deals)}")
        now = datetime.now(UTC)
        records = [deal_from_proto(deal, f"deals[{i}]", now) for i, deal in enumerate(request.deals)]
        # Each deal goes to the version it would get alone (canary routing is by
        # deal id), so a deal scores the same in a batch as in ScoreDeal.
        groups: dict[int, tuple[object, list[int]]] = {}
        for i, record in enumerate(records):
            loaded = self._registry.resolve(MODEL, request.model_version, record.deal_id)
            groups.setdefault(loaded.version, (loaded, []))[1].append(i)
        similar = {
            version: await self._similar(loaded.model, [records[i] for i in indexes])
            for version, (loaded, indexes) in groups.items()
        }
        response = scoring_pb2.ScoreDealsResponse()
        if len(records) <= INLINE_DEALS:
            _score_groups(response, groups, records, top, similar)
        else:
            await asyncio.to_thread(_score_groups, response, groups, records, top, similar)
        return response

    async def GetModelInfo(
        self, request: scoring_pb2.ScoringServiceGetModelInfoRequest, context: grpc.aio.ServicerContext
    ):
        loaded = self._registry.resolve(MODEL, request.model_version)
        manifest = loaded.manifest
        return scoring_pb2.ScoringServiceGetModelInfoResponse(
            info=common_pb2.ModelInfo(
                model=_ref(loaded),
                kind=manifest.kind,
                created_time=time_to_proto(manifest.created_time),
                metrics=manifest.metrics,
                features=loaded.model.spec.features,
                labels=[loaded.label] if loaded.label else [],
                package_version=manifest.package_version,
                training_data_sha256=manifest.training_data["sha256"],
            ),
            high_risk_below=loaded.model.risk.high_risk_below,
            low_risk_from=loaded.model.risk.low_risk_from,
        )


def _top_factors(value: int) -> int:
    if value > MAX_FACTORS:
        raise InvalidInput("top_factors", f"must be 0 to {MAX_FACTORS}, got {value}")
    return value or DEFAULT_FACTORS


def _ref(loaded) -> common_pb2.ModelRef:
    return common_pb2.ModelRef(name=loaded.name, version=loaded.version)


def _score_groups(
    response: scoring_pb2.ScoreDealsResponse, groups, records: Sequence[DealRecord], top: int, similar
) -> None:
    """Score each version's deals and fill `response.scores` in the request's order."""
    scores = [response.scores.add() for _ in records]
    for version, (loaded, indexes) in groups.items():
        results = loaded.model.score([records[i] for i in indexes], top, similar=similar[version])
        for i, result in zip(indexes, results, strict=True):
            _fill_score(scores[i], result, loaded)


def _fill_score(score: scoring_pb2.DealScore, result: DealScoreResult, loaded) -> None:
    # Filled in place: half the cost of building a DealScore and its factors
    # from keyword arguments and copying them into the response.
    score.deal_id = result.deal_id
    score.win_probability = result.win_probability
    score.risk_level = _RISK[result.risk_level]
    add_factor = score.top_factors.add
    for factor in result.top_factors:
        add_factor(feature=factor.feature, value=factor.value_text, contribution=factor.contribution)
    score.margin = result.margin
    score.bias = result.bias
    score.model.name = loaded.name
    score.model.version = loaded.version
