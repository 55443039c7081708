"""SimilarityService: store deals as vectors and find the most similar ones,
always inside one workspace."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from vectoros_client import rpcs
from vectoros_client.calls import Unary
from vectoros_client.v1 import similarity_pb2
from vectoros_client.values import (
    Deal,
    DealLike,
    ModelRef,
    Outcome,
    deal_message,
    deal_messages,
    outcome_member,
    outcome_number,
)


@dataclass(frozen=True)
class UpsertResult:
    """`upserted` deals written; `unchanged` of them kept their vector because
    their text had not changed."""

    upserted: int
    unchanged: int
    embedder: ModelRef


@dataclass(frozen=True)
class SimilarityFilter:
    """Which stored deals may match; empty and None do not restrict."""

    industries: Sequence[str] = ()
    stages: Sequence[str] = ()
    outcomes: Sequence[Outcome | str] = ()
    min_value: float | None = None
    max_value: float | None = None

    def to_proto(self) -> similarity_pb2.SimilarityFilter:
        message = similarity_pb2.SimilarityFilter(
            industries=list(self.industries), stages=list(self.stages),
            outcomes=[outcome_number(o, f"filter.outcomes[{i}]") for i, o in enumerate(self.outcomes)],
        )
        if self.min_value is not None:
            message.min_value = self.min_value
        if self.max_value is not None:
            message.max_value = self.max_value
        return message


@dataclass(frozen=True)
class SimilarDeal:
    score: float  # cosine similarity in [-1, 1]
    deal: Deal


@dataclass(frozen=True)
class SimilaritySummary:
    won_count: int
    lost_count: int
    open_count: int
    weighted_win_rate: float  # among closed matches, by similarity; 0 when none is closed
    mean_score: float


@dataclass(frozen=True)
class SimilarDeals:
    """Matches best first (never the query deal itself) and their outcomes."""

    matches: tuple[SimilarDeal, ...]
    summary: SimilaritySummary
    embedder: ModelRef
    proto: similarity_pb2.FindSimilarDealsResponse = field(repr=False, compare=False)


@dataclass(frozen=True)
class WorkspaceStats:
    total_deals: int
    by_outcome: Mapping[Outcome, int]
    embedder: ModelRef


def upsert_deals(workspace_id: str, deals: Sequence[DealLike]) -> Unary[UpsertResult]:
    request = similarity_pb2.UpsertDealsRequest(workspace_id=workspace_id, deals=deal_messages(deals))

    def parse(response: similarity_pb2.UpsertDealsResponse) -> UpsertResult:
        return UpsertResult(response.upserted, response.unchanged, ModelRef.from_proto(response.embedder))

    return Unary(rpcs.UPSERT_DEALS, request, parse)


def delete_deals(workspace_id: str, deal_ids: Sequence[str]) -> Unary[int]:
    if isinstance(deal_ids, str):
        raise TypeError("deal_ids: must be a sequence of ids, not one string (wrap it in a list)")
    request = similarity_pb2.DeleteDealsRequest(workspace_id=workspace_id, deal_ids=list(deal_ids))
    return Unary(rpcs.DELETE_DEALS, request, lambda response: response.deleted)


def find_similar_deals(
    workspace_id: str,
    *,
    deal: DealLike | None = None,
    deal_id: str | None = None,
    text: str | None = None,
    top_k: int = 0,
    min_score: float | None = None,
    filter: SimilarityFilter | None = None,  # noqa: A002 - the API's name
) -> Unary[SimilarDeals]:
    given = [name for name, value in (("deal", deal), ("deal_id", deal_id), ("text", text)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"query: give exactly one of deal, deal_id or text (got {', '.join(given) or 'none'})")
    request = similarity_pb2.FindSimilarDealsRequest(workspace_id=workspace_id, top_k=top_k)
    if deal is not None:
        request.deal.CopyFrom(deal_message(deal, "deal"))
    elif deal_id is not None:
        request.deal_id = deal_id
    else:
        request.text = text
    if min_score is not None:
        request.min_score = min_score
    if filter is not None:
        request.filter.CopyFrom(filter.to_proto())

    def parse(response: similarity_pb2.FindSimilarDealsResponse) -> SimilarDeals:
        summary = response.summary
        return SimilarDeals(
            matches=tuple(SimilarDeal(m.score, Deal.from_proto(m.deal)) for m in response.matches),
            summary=SimilaritySummary(summary.won_count, summary.lost_count, summary.open_count,
                                      summary.weighted_win_rate, summary.mean_score),
            embedder=ModelRef.from_proto(response.embedder),
            proto=response,
        )

    return Unary(rpcs.FIND_SIMILAR_DEALS, request, parse)


def get_stats(workspace_id: str) -> Unary[WorkspaceStats]:
    def parse(response: similarity_pb2.GetStatsResponse) -> WorkspaceStats:
        counts = MappingProxyType({outcome_member(c.outcome): c.count for c in response.by_outcome})
        return WorkspaceStats(response.total_deals, counts, ModelRef.from_proto(response.embedder))

    return Unary(rpcs.GET_STATS, similarity_pb2.GetStatsRequest(workspace_id=workspace_id), parse)
