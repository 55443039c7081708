"""`Client` (client.py) and `AsyncClient` (aio.py), one typed method per RPC; types in `values` and
`services.*`, exceptions in `errors`, connection options in `channel`, generated stubs in `v1`.

    from vectoros_client import Client, Deal

    with Client("127.0.0.1:50051", token=token) as client:
        print(client.score_deal(Deal(id="d1", value=50_000, probability=0.4)).win_probability)
"""

from vectoros_client._version import __version__
from vectoros_client.aio import AsyncClient
from vectoros_client.channel import TLS, RetryPolicy
from vectoros_client.client import Client
from vectoros_client.errors import (
    ApiError,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from vectoros_client.services.embedding import EmbedderInfo, Embeddings
from vectoros_client.services.forecast import (
    DealChange,
    Forecast,
    ForecastResult,
    Scenario,
    ScenarioComparison,
    SimulationOptions,
)
from vectoros_client.services.insight import AlertPriority, ExportFormat, FeedbackRating, Insights, InsightType
from vectoros_client.services.scoring import DealScore, RiskLevel, ScorerInfo
from vectoros_client.services.similarity import SimilarDeals, SimilarityFilter, UpsertResult, WorkspaceStats
from vectoros_client.values import ActivityCounts, Deal, ModelInfo, ModelRef, Outcome, StageChange

__all__ = [
    "TLS", "ActivityCounts", "AlertPriority", "ApiError", "AsyncClient", "Cancelled", "Client", "Deal",
    "DealChange", "DealScore", "DeadlineExceeded", "EmbedderInfo", "Embeddings", "ExportFormat",
    "FailedPrecondition", "FeedbackRating", "FieldViolation", "Forecast", "ForecastResult", "InsightType",
    "Insights", "Internal", "InvalidArgument", "ModelInfo", "ModelRef", "NotFound", "Outcome", "PermissionDenied",
    "ResourceExhausted", "RetryPolicy", "RiskLevel", "Scenario", "ScenarioComparison", "ScorerInfo",
    "SimilarDeals", "SimilarityFilter", "SimulationOptions", "StageChange", "Unauthenticated", "Unavailable",
    "Unimplemented", "UpsertResult", "WorkspaceStats", "__version__",
]
