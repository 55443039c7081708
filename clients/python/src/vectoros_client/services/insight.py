"""InsightService: advice on a deal, the feedback and outcomes that teach the
ledger, pipeline alerts and the export of labelled training data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType

from vectoros_client import rpcs
from vectoros_client.calls import Streamed, Unary
from vectoros_client.v1 import insight_pb2
from vectoros_client.values import (
    DealLike,
    ModelRef,
    Outcome,
    deal_message,
    deal_messages,
    enum_member,
    enum_number,
    outcome_number,
    set_time,
)


class InsightType(StrEnum):
    UNSPECIFIED = "unspecified"
    RISK = "risk"
    OPPORTUNITY = "opportunity"
    NEXT_ACTION = "next_action"
    PREDICTION = "prediction"


class FeedbackRating(StrEnum):
    UNSPECIFIED = "unspecified"
    HELPFUL = "helpful"
    NOT_HELPFUL = "not_helpful"
    INCORRECT = "incorrect"


class AlertPriority(StrEnum):
    UNSPECIFIED = "unspecified"
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ExportFormat(StrEnum):
    UNSPECIFIED = "unspecified"
    LABELLED_EXAMPLES = "labelled_examples"
    CHAT_FINETUNE = "chat_finetune"
    SCORER_ROWS = "scorer_rows"


@dataclass(frozen=True)
class Insight:
    id: str
    type: InsightType
    title: str
    description: str
    confidence: float
    actions: tuple[str, ...]
    factor_names: tuple[str, ...]  # the evidence: score factors or statistics used
    similar_deal_ids: tuple[str, ...]  # the evidence: similar past deals used


@dataclass(frozen=True)
class GenerationUsage:
    input_tokens: int
    output_tokens: int
    latency_ms: float


@dataclass(frozen=True)
class Insights:
    """Insights on one deal, stored under `insight_set_id` for feedback."""

    insight_set_id: str
    insights: tuple[Insight, ...]
    win_probability: float
    win_probability_reasoning: str
    generator: str  # "rules" or "claude:<model id>"
    fallback_reason: str
    scorer: ModelRef
    embedder: ModelRef
    cached: bool
    usage: GenerationUsage
    proto: insight_pb2.GenerateInsightsResponse = field(repr=False, compare=False)


@dataclass(frozen=True)
class FeedbackRecorded:
    feedback_id: str
    duplicate: bool  # this idempotency key (or this very feedback) was recorded before


@dataclass(frozen=True)
class PipelineAlert:
    dedup_key: str  # the same condition gives the same key
    deal_id: str
    rule: str
    priority: AlertPriority
    title: str
    description: str
    evidence: Mapping[str, float]


@dataclass(frozen=True)
class PipelineScan:
    alerts: tuple[PipelineAlert, ...]  # highest priority first
    scanned_deals: int
    proto: insight_pb2.ScanPipelineResponse = field(repr=False, compare=False)


def _insight(message: insight_pb2.Insight) -> Insight:
    return Insight(
        id=message.id,
        type=enum_member(InsightType, message.type, insight_pb2.InsightType, "INSIGHT_TYPE_"),
        title=message.title,
        description=message.description,
        confidence=message.confidence,
        actions=tuple(message.actions),
        factor_names=tuple(message.evidence.factor_names),
        similar_deal_ids=tuple(message.evidence.similar_deal_ids),
    )


def generate_insights(deal: DealLike, *, bypass_cache: bool = False) -> Unary[Insights]:
    request = insight_pb2.GenerateInsightsRequest(deal=deal_message(deal, "deal"), bypass_cache=bypass_cache)

    def parse(response: insight_pb2.GenerateInsightsResponse) -> Insights:
        usage = response.usage
        return Insights(
            insight_set_id=response.insight_set_id,
            insights=tuple(_insight(i) for i in response.insights),
            win_probability=response.win_probability,
            win_probability_reasoning=response.win_probability_reasoning,
            generator=response.generator,
            fallback_reason=response.fallback_reason,
            scorer=ModelRef.from_proto(response.scorer),
            embedder=ModelRef.from_proto(response.embedder),
            cached=response.cached,
            usage=GenerationUsage(usage.input_tokens, usage.output_tokens, usage.latency_ms),
            proto=response,
        )

    return Unary(rpcs.GENERATE_INSIGHTS, request, parse)


def record_feedback(
    workspace_id: str,
    insight_set_id: str,
    rating: FeedbackRating | str | int,
    *,
    insight_id: str = "",
    acted_on: bool = False,
    comment: str = "",
    idempotency_key: str = "",
) -> Unary[FeedbackRecorded]:
    request = insight_pb2.RecordFeedbackRequest(
        workspace_id=workspace_id, insight_set_id=insight_set_id, insight_id=insight_id,
        rating=enum_number(FeedbackRating, rating, insight_pb2.FeedbackRating, "FEEDBACK_RATING_", "rating"),
        acted_on=acted_on, comment=comment, idempotency_key=idempotency_key,
    )
    return Unary(rpcs.RECORD_FEEDBACK, request, lambda r: FeedbackRecorded(r.feedback_id, r.duplicate))


def record_outcome(
    workspace_id: str,
    deal_id: str,
    outcome: Outcome | str | int,
    *,
    closed_time: datetime | None = None,
    final_value: float = 0.0,
) -> Unary[bool]:
    request = insight_pb2.RecordOutcomeRequest(
        workspace_id=workspace_id, deal_id=deal_id, outcome=outcome_number(outcome, "outcome"),
        final_value=final_value,
    )
    set_time(request, "closed_time", closed_time, "closed_time")
    return Unary(rpcs.RECORD_OUTCOME, request, lambda response: response.duplicate)


def scan_pipeline(workspace_id: str, deals: Sequence[DealLike] = ()) -> Unary[PipelineScan]:
    request = insight_pb2.ScanPipelineRequest(workspace_id=workspace_id, deals=deal_messages(deals))

    def parse(response: insight_pb2.ScanPipelineResponse) -> PipelineScan:
        alerts = tuple(
            PipelineAlert(
                a.dedup_key, a.deal_id, a.rule,
                enum_member(AlertPriority, a.priority, insight_pb2.AlertPriority, "ALERT_PRIORITY_"),
                a.title, a.description, MappingProxyType(dict(a.evidence)),
            )
            for a in response.alerts
        )
        return PipelineScan(alerts, response.scanned_deals, response)

    return Unary(rpcs.SCAN_PIPELINE, request, parse)


def export_training_data(
    workspace_id: str, export_format: ExportFormat | str | int, *, since: datetime | None = None
) -> Streamed[str]:
    request = insight_pb2.ExportTrainingDataRequest(
        workspace_id=workspace_id,
        format=enum_number(ExportFormat, export_format, insight_pb2.ExportFormat, "EXPORT_FORMAT_", "format"),
    )
    set_time(request, "since_time", since, "since")

    def parse(response: insight_pb2.ExportTrainingDataResponse) -> Iterable[str]:
        return list(response.lines)

    return Streamed(rpcs.EXPORT_TRAINING_DATA, request, parse)
