"""InsightService: protobuf in, engine call, protobuf out.

`add_insight_service(server, runtime)` registers the servicer over an
`InsightRuntime` (`server.engines.insight.runtime`), which builds the engine and
the monitor from the config and owns their life cycle.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import grpc

from server.engines.insight import (
    MAX_SCAN_DEALS,
    Alert,
    ExportFormat,
    InsightEngine,
    InsightResult,
    InsightRuntime,
    InsightType,
    PipelineMonitor,
    Priority,
    Rating,
)
from vectoros.core.deal_codec.proto import deal_from_proto, time_from_proto
from vectoros.core.deals import Outcome, check_id
from vectoros.core.errors import InvalidInput
from vectoros.v1 import common_pb2, insight_pb2, insight_pb2_grpc

_TYPES = {
    InsightType.RISK: insight_pb2.INSIGHT_TYPE_RISK,
    InsightType.OPPORTUNITY: insight_pb2.INSIGHT_TYPE_OPPORTUNITY,
    InsightType.NEXT_ACTION: insight_pb2.INSIGHT_TYPE_NEXT_ACTION,
    InsightType.PREDICTION: insight_pb2.INSIGHT_TYPE_PREDICTION,
}
_RATINGS = {
    insight_pb2.FEEDBACK_RATING_HELPFUL: Rating.HELPFUL,
    insight_pb2.FEEDBACK_RATING_NOT_HELPFUL: Rating.NOT_HELPFUL,
    insight_pb2.FEEDBACK_RATING_INCORRECT: Rating.INCORRECT,
}
_OUTCOMES = {common_pb2.DEAL_OUTCOME_WON: Outcome.WON, common_pb2.DEAL_OUTCOME_LOST: Outcome.LOST}
_PRIORITIES = {
    Priority.CRITICAL: insight_pb2.ALERT_PRIORITY_CRITICAL,
    Priority.HIGH: insight_pb2.ALERT_PRIORITY_HIGH,
    Priority.MEDIUM: insight_pb2.ALERT_PRIORITY_MEDIUM,
    Priority.LOW: insight_pb2.ALERT_PRIORITY_LOW,
}
_FORMATS = {
    insight_pb2.EXPORT_FORMAT_LABELLED_EXAMPLES: ExportFormat.LABELLED_EXAMPLES,
    insight_pb2.EXPORT_FORMAT_CHAT_FINETUNE: ExportFormat.CHAT_FINETUNE,
    insight_pb2.EXPORT_FORMAT_SCORER_ROWS: ExportFormat.SCORER_ROWS,
}
# Lines per ExportTrainingData message: each line is one record of a few KB, so a
# message stays far below the 16 MiB send limit.
EXPORT_CHUNK = 256


class InsightServicer(insight_pb2_grpc.InsightServiceServicer):
    def __init__(self, engine: InsightEngine, monitor: PipelineMonitor) -> None:
        self._engine = engine
        self._monitor = monitor

    async def GenerateInsights(self, request: insight_pb2.GenerateInsightsRequest, context: grpc.aio.ServicerContext):
        if not request.HasField("deal"):
            raise InvalidInput("deal", "required")
        record = deal_from_proto(request.deal, "deal", datetime.now(UTC))
        if not record.workspace_id:
            raise InvalidInput("deal.workspace_id", "required")
        if record.outcome is not Outcome.OPEN:
            raise InvalidInput("deal.outcome", "must be open: insights are for deals still in the pipeline")
        result = await self._engine.generate(record, bypass_cache=request.bypass_cache)
        return _response(result)

    async def RecordFeedback(self, request: insight_pb2.RecordFeedbackRequest, context: grpc.aio.ServicerContext):
        rating = _RATINGS.get(request.rating)
        if rating is None:
            raise InvalidInput("rating", "must be HELPFUL, NOT_HELPFUL or INCORRECT")
        result = await self._engine.record_feedback(
            request.workspace_id,
            request.insight_set_id,
            request.insight_id,
            rating,
            request.acted_on,
            request.comment,
            request.idempotency_key,
        )
        return insight_pb2.RecordFeedbackResponse(feedback_id=result.feedback_id, duplicate=result.duplicate)

    async def RecordOutcome(self, request: insight_pb2.RecordOutcomeRequest, context: grpc.aio.ServicerContext):
        outcome = _OUTCOMES.get(request.outcome)
        if outcome is None:
            raise InvalidInput("outcome", "must be WON or LOST")
        if not math.isfinite(request.final_value) or request.final_value < 0:
            raise InvalidInput("final_value", f"must be finite and >= 0, got {request.final_value}")
        if not request.workspace_id:
            raise InvalidInput("workspace_id", "required")
        duplicate = await self._engine.record_outcome(
            request.workspace_id,
            check_id(request.deal_id, "deal_id"),
            outcome,
            time_from_proto(request.closed_time, request.HasField("closed_time"), "closed_time"),
            request.final_value,
        )
        return insight_pb2.RecordOutcomeResponse(duplicate=duplicate)

    async def ScanPipeline(self, request: insight_pb2.ScanPipelineRequest, context: grpc.aio.ServicerContext):
        if not request.workspace_id:
            raise InvalidInput("workspace_id", "required")
        if len(request.deals) > MAX_SCAN_DEALS:
            raise InvalidInput("deals", f"at most {MAX_SCAN_DEALS} deals, got {len(request.deals)}")
        now = datetime.now(UTC)
        records = [deal_from_proto(deal, f"deals[{i}]", now) for i, deal in enumerate(request.deals)]
        result = await self._monitor.scan(request.workspace_id, records or None, now)
        return insight_pb2.ScanPipelineResponse(
            alerts=[_alert(a) for a in result.alerts], scanned_deals=result.scanned_deals
        )

    async def ExportTrainingData(
        self, request: insight_pb2.ExportTrainingDataRequest, context: grpc.aio.ServicerContext
    ):
        export_format = _FORMATS.get(request.format)
        if export_format is None:
            raise InvalidInput("format", "must be LABELLED_EXAMPLES, CHAT_FINETUNE or SCORER_ROWS")
        if not request.workspace_id:
            raise InvalidInput("workspace_id", "required")
        since = time_from_proto(request.since_time, request.HasField("since_time"), "since_time")
        async for lines in self._engine.export(request.workspace_id, export_format, since, EXPORT_CHUNK):
            yield insight_pb2.ExportTrainingDataResponse(lines=lines)


def _response(result: InsightResult) -> insight_pb2.GenerateInsightsResponse:
    generated = result.generated
    return insight_pb2.GenerateInsightsResponse(
        insight_set_id=result.insight_set_id,
        insights=[
            insight_pb2.Insight(
                id=i.id,
                type=_TYPES[i.type],
                title=i.title,
                description=i.description,
                confidence=i.confidence,
                actions=i.actions,
                evidence=insight_pb2.InsightEvidence(
                    factor_names=i.evidence.factor_names, similar_deal_ids=i.evidence.similar_deal_ids
                ),
            )
            for i in generated.insights
        ],
        win_probability=generated.win_probability,
        win_probability_reasoning=generated.win_probability_reasoning,
        generator=generated.generator,
        fallback_reason=generated.fallback_reason,
        scorer=common_pb2.ModelRef(name=result.scorer.name, version=result.scorer.version),
        embedder=common_pb2.ModelRef(name=result.embedder.name, version=result.embedder.version),
        cached=result.cached,
        usage=insight_pb2.GenerationUsage(
            input_tokens=generated.usage.input_tokens,
            output_tokens=generated.usage.output_tokens,
            latency_ms=generated.usage.latency_ms,
        ),
    )


def _alert(alert: Alert) -> insight_pb2.PipelineAlert:
    return insight_pb2.PipelineAlert(
        dedup_key=alert.dedup_key,
        deal_id=alert.deal_id,
        rule=alert.rule,
        priority=_PRIORITIES[alert.priority],
        title=alert.title,
        description=alert.description,
        evidence=alert.evidence,
    )


def add_insight_service(server: grpc.aio.Server, runtime: InsightRuntime) -> None:
    """Register the servicer over `runtime`'s engine and monitor on `server`."""
    insight_pb2_grpc.add_InsightServiceServicer_to_server(InsightServicer(runtime.engine, runtime.monitor), server)
