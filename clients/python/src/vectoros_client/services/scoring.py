"""ScoringService: a deal's calibrated chance to win, its risk level and the
features that moved it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from vectoros_client import rpcs
from vectoros_client.calls import Unary
from vectoros_client.v1 import scoring_pb2
from vectoros_client.values import DealLike, ModelInfo, ModelRef, deal_message, deal_messages, enum_member


class RiskLevel(StrEnum):
    UNSPECIFIED = "unspecified"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class ScoreFactor:
    """One feature's push on the score: `contribution` in log-odds, positive raises it."""

    feature: str
    value: str
    contribution: float


@dataclass(frozen=True)
class DealScore:
    deal_id: str
    win_probability: float
    risk_level: RiskLevel
    top_factors: tuple[ScoreFactor, ...]
    margin: float  # log-odds: bias plus every contribution
    bias: float
    model: ModelRef
    proto: scoring_pb2.DealScore = field(repr=False, compare=False)


@dataclass(frozen=True)
class ScorerInfo:
    """The scorer that serves requests and its risk thresholds (win probability)."""

    info: ModelInfo
    high_risk_below: float
    low_risk_from: float
    proto: scoring_pb2.ScoringServiceGetModelInfoResponse = field(repr=False, compare=False)


def _score(message: scoring_pb2.DealScore) -> DealScore:
    return DealScore(
        deal_id=message.deal_id,
        win_probability=message.win_probability,
        risk_level=enum_member(RiskLevel, message.risk_level, scoring_pb2.RiskLevel, "RISK_LEVEL_"),
        top_factors=tuple(ScoreFactor(f.feature, f.value, f.contribution) for f in message.top_factors),
        margin=message.margin,
        bias=message.bias,
        model=ModelRef.from_proto(message.model),
        proto=message,
    )


def score_deal(deal: DealLike, *, model_version: int = 0, top_factors: int = 0) -> Unary[DealScore]:
    request = scoring_pb2.ScoreDealRequest(
        deal=deal_message(deal, "deal"), model_version=model_version, top_factors=top_factors
    )
    return Unary(rpcs.SCORE_DEAL, request, lambda response: _score(response.score))


def score_deals(
    deals: Sequence[DealLike], *, model_version: int = 0, top_factors: int = 0
) -> Unary[list[DealScore]]:
    request = scoring_pb2.ScoreDealsRequest(
        deals=deal_messages(deals), model_version=model_version, top_factors=top_factors
    )
    return Unary(rpcs.SCORE_DEALS, request, lambda response: [_score(s) for s in response.scores])


def scorer_info(model_version: int = 0) -> Unary[ScorerInfo]:
    def parse(response: scoring_pb2.ScoringServiceGetModelInfoResponse) -> ScorerInfo:
        return ScorerInfo(ModelInfo.from_proto(response.info), response.high_risk_below, response.low_risk_from,
                          response)

    request = scoring_pb2.ScoringServiceGetModelInfoRequest(model_version=model_version)
    return Unary(rpcs.SCORER_INFO, request, parse)
