"""Every RPC of the API this client speaks, and whether a retry is safe.

`idempotent` decides the retry policy of the channel's service config: a
call that changes nothing, or that the server makes idempotent (upserts by
deal id, deletes, feedback by idempotency key or content, outcomes), is
retried on UNAVAILABLE and RESOURCE_EXHAUSTED; GenerateInsights stores a new
insight set on each call and is never retried. A streamed call is retried only
until its first message arrives (gRPC's rule), so a retry never repeats lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from vectoros_client.v1 import embedding_pb2, forecast_pb2, insight_pb2, scoring_pb2, similarity_pb2

PACKAGE = "vectoros.v1"


@dataclass(frozen=True)
class Rpc:
    service: str  # unqualified, for example "ScoringService"
    name: str  # for example "ScoreDeal"
    response: type[Message]
    idempotent: bool
    streaming: bool = False

    @property
    def full_service(self) -> str:
        return f"{PACKAGE}.{self.service}"

    @property
    def path(self) -> str:
        """The method as gRPC names it on the wire: ``/vectoros.v1.ScoringService/ScoreDeal``."""
        return f"/{self.full_service}/{self.name}"


EMBED = Rpc("EmbeddingService", "Embed", embedding_pb2.EmbedResponse, True)
EMBED_DEALS = Rpc("EmbeddingService", "EmbedDeals", embedding_pb2.EmbedDealsResponse, True)
EMBEDDER_INFO = Rpc("EmbeddingService", "GetModelInfo", embedding_pb2.EmbeddingServiceGetModelInfoResponse, True)

UPSERT_DEALS = Rpc("SimilarityService", "UpsertDeals", similarity_pb2.UpsertDealsResponse, True)
DELETE_DEALS = Rpc("SimilarityService", "DeleteDeals", similarity_pb2.DeleteDealsResponse, True)
FIND_SIMILAR_DEALS = Rpc("SimilarityService", "FindSimilarDeals", similarity_pb2.FindSimilarDealsResponse, True)
GET_STATS = Rpc("SimilarityService", "GetStats", similarity_pb2.GetStatsResponse, True)

SCORE_DEAL = Rpc("ScoringService", "ScoreDeal", scoring_pb2.ScoreDealResponse, True)
SCORE_DEALS = Rpc("ScoringService", "ScoreDeals", scoring_pb2.ScoreDealsResponse, True)
SCORER_INFO = Rpc("ScoringService", "GetModelInfo", scoring_pb2.ScoringServiceGetModelInfoResponse, True)

FORECAST = Rpc("ForecastService", "Forecast", forecast_pb2.ForecastResponse, True)
COMPARE_SCENARIOS = Rpc("ForecastService", "CompareScenarios", forecast_pb2.CompareScenariosResponse, True)

GENERATE_INSIGHTS = Rpc("InsightService", "GenerateInsights", insight_pb2.GenerateInsightsResponse, False)
RECORD_FEEDBACK = Rpc("InsightService", "RecordFeedback", insight_pb2.RecordFeedbackResponse, True)
RECORD_OUTCOME = Rpc("InsightService", "RecordOutcome", insight_pb2.RecordOutcomeResponse, True)
SCAN_PIPELINE = Rpc("InsightService", "ScanPipeline", insight_pb2.ScanPipelineResponse, True)
EXPORT_TRAINING_DATA = Rpc(
    "InsightService", "ExportTrainingData", insight_pb2.ExportTrainingDataResponse, True, streaming=True
)

ALL: tuple[Rpc, ...] = (
    EMBED, EMBED_DEALS, EMBEDDER_INFO,
    UPSERT_DEALS, DELETE_DEALS, FIND_SIMILAR_DEALS, GET_STATS,
    SCORE_DEAL, SCORE_DEALS, SCORER_INFO,
    FORECAST, COMPARE_SCENARIOS,
    GENERATE_INSIGHTS, RECORD_FEEDBACK, RECORD_OUTCOME, SCAN_PIPELINE, EXPORT_TRAINING_DATA,
)
