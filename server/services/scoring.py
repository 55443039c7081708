"""ScoringService: protobuf in, `ScoringEngine` call, protobuf out."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from server.engines.scoring import MODEL, DealScoreResult, ScoredDeal, ScoringEngine
from vectoros.core.deal_codec.proto import deal_from_proto, time_to_proto
from vectoros.core.errors import InvalidInput
from vectoros.v1 import common_pb2, scoring_pb2, scoring_pb2_grpc

MAX_DEALS = 1000
MAX_FACTORS = 50
DEFAULT_FACTORS = 5

_RISK = {
    "low": scoring_pb2.RISK_LEVEL_LOW,
    "medium": scoring_pb2.RISK_LEVEL_MEDIUM,
    "high": scoring_pb2.RISK_LEVEL_HIGH,
}


class ScoringServicer(scoring_pb2_grpc.ScoringServiceServicer):
    """Translates ScoringService calls for `engine` (a `ScoringEngine`)."""

    def __init__(self, engine: ScoringEngine) -> None:
        self._engine = engine

    async def ScoreDeal(self, request: scoring_pb2.ScoreDealRequest, context: grpc.aio.ServicerContext):
        top = _top_factors(request.top_factors)
        if not request.HasField("deal"):
            raise InvalidInput("deal", "required")
        record = deal_from_proto(request.deal, "deal", datetime.now(UTC))
        (scored,) = await self._engine.score([record], model_version=request.model_version, top_factors=top)
        response = scoring_pb2.ScoreDealResponse()
        _fill_score(response.score, scored)
        return response

    async def ScoreDeals(self, request: scoring_pb2.ScoreDealsRequest, context: grpc.aio.ServicerContext):
        top = _top_factors(request.top_factors)
        if not 1 <= len(request.deals) <= MAX_DEALS:
            raise InvalidInput("deals", f"must hold 1 to {MAX_DEALS} deals, got {len(request.deals)}")
        now = datetime.now(UTC)
        records = [deal_from_proto(deal, f"deals[{i}]", now) for i, deal in enumerate(request.deals)]
        scored = await self._engine.score(records, model_version=request.model_version, top_factors=top)
        response = scoring_pb2.ScoreDealsResponse()
        add = response.scores.add
        for one in scored:
            _fill_score(add(), one)
        return response

    async def GetModelInfo(
        self, request: scoring_pb2.ScoringServiceGetModelInfoRequest, context: grpc.aio.ServicerContext
    ):
        loaded = self._engine.registry.resolve(MODEL, request.model_version)
        manifest = loaded.manifest
        return scoring_pb2.ScoringServiceGetModelInfoResponse(
            info=common_pb2.ModelInfo(
                model=common_pb2.ModelRef(name=loaded.name, version=loaded.version),
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


def _fill_score(score: scoring_pb2.DealScore, scored: ScoredDeal) -> None:
    # Filled in place: half the cost of building a DealScore and its factors
    # from keyword arguments and copying them into the response.
    result: DealScoreResult = scored.result
    score.deal_id = result.deal_id
    score.win_probability = result.win_probability
    score.risk_level = _RISK[result.risk_level]
    add_factor = score.top_factors.add
    for factor in result.top_factors:
        add_factor(feature=factor.feature, value=factor.value_text, contribution=factor.contribution)
    score.margin = result.margin
    score.bias = result.bias
    score.model.name = scored.model_name
    score.model.version = scored.model_version
