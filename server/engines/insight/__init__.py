"""Insights on deals: `types` (what a generator produces), `context` (what it reads), `history` and `history_index`
(workspace statistics), `prompt`, `rules`, `claude` (generators), `codecs`, `engine`, `export`, `monitor`, `runtime`."""

from server.engines.insight.claude import ClaudeGenerator
from server.engines.insight.codecs import context_key, insights_from_json, insights_to_json
from server.engines.insight.context import (
    MAX_ADJUSTMENT,
    SCORER,
    STAT_NAMES,
    InsightContext,
    InsightGenerator,
    ModelRef,
    ScoreFactor,
    ScoreView,
    SimilarDeal,
)
from server.engines.insight.engine import CLOSED, FeedbackResult, InsightEngine, InsightResult
from server.engines.insight.export import export_lines
from server.engines.insight.history import (
    MIN_SAMPLE,
    DurationStat,
    HistoryAggregate,
    RateStat,
    StoredDeal,
    WorkspaceHistory,
    stat_key,
    summarize_history,
)
from server.engines.insight.history_index import HistoryIndex
from server.engines.insight.monitor import (
    MAX_SCAN_DEALS,
    Alert,
    DealScan,
    PipelineMonitor,
    Priority,
    ScanResult,
    scan_deals,
)
from server.engines.insight.rules import RulesGenerator
from server.engines.insight.runtime import InsightRuntime, make_generator
from server.engines.insight.types import (
    Evidence,
    ExportFormat,
    GeneratedInsights,
    Insight,
    InsightType,
    Rating,
    Usage,
)

__all__ = [
    "CLOSED",
    "MAX_ADJUSTMENT",
    "MAX_SCAN_DEALS",
    "MIN_SAMPLE",
    "SCORER",
    "STAT_NAMES",
    "Alert",
    "ClaudeGenerator",
    "DealScan",
    "DurationStat",
    "Evidence",
    "ExportFormat",
    "FeedbackResult",
    "GeneratedInsights",
    "HistoryAggregate",
    "HistoryIndex",
    "Insight",
    "InsightContext",
    "InsightEngine",
    "InsightGenerator",
    "InsightResult",
    "InsightRuntime",
    "InsightType",
    "ModelRef",
    "PipelineMonitor",
    "Priority",
    "Rating",
    "RateStat",
    "RulesGenerator",
    "ScanResult",
    "ScoreFactor",
    "ScoreView",
    "SimilarDeal",
    "StoredDeal",
    "Usage",
    "WorkspaceHistory",
    "context_key",
    "export_lines",
    "insights_from_json",
    "insights_to_json",
    "make_generator",
    "scan_deals",
    "stat_key",
    "summarize_history",
]
