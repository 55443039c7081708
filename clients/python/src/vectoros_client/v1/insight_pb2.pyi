import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vectoros_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InsightType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSIGHT_TYPE_UNSPECIFIED: _ClassVar[InsightType]
    INSIGHT_TYPE_RISK: _ClassVar[InsightType]
    INSIGHT_TYPE_OPPORTUNITY: _ClassVar[InsightType]
    INSIGHT_TYPE_NEXT_ACTION: _ClassVar[InsightType]
    INSIGHT_TYPE_PREDICTION: _ClassVar[InsightType]

class FeedbackRating(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_RATING_UNSPECIFIED: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_HELPFUL: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_NOT_HELPFUL: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_INCORRECT: _ClassVar[FeedbackRating]

class AlertPriority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALERT_PRIORITY_UNSPECIFIED: _ClassVar[AlertPriority]
    ALERT_PRIORITY_CRITICAL: _ClassVar[AlertPriority]
    ALERT_PRIORITY_HIGH: _ClassVar[AlertPriority]
    ALERT_PRIORITY_MEDIUM: _ClassVar[AlertPriority]
    ALERT_PRIORITY_LOW: _ClassVar[AlertPriority]

class ExportFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXPORT_FORMAT_UNSPECIFIED: _ClassVar[ExportFormat]
    EXPORT_FORMAT_LABELLED_EXAMPLES: _ClassVar[ExportFormat]
    EXPORT_FORMAT_CHAT_FINETUNE: _ClassVar[ExportFormat]
    EXPORT_FORMAT_SCORER_ROWS: _ClassVar[ExportFormat]
INSIGHT_TYPE_UNSPECIFIED: InsightType
INSIGHT_TYPE_RISK: InsightType
INSIGHT_TYPE_OPPORTUNITY: InsightType
INSIGHT_TYPE_NEXT_ACTION: InsightType
INSIGHT_TYPE_PREDICTION: InsightType
FEEDBACK_RATING_UNSPECIFIED: FeedbackRating
FEEDBACK_RATING_HELPFUL: FeedbackRating
FEEDBACK_RATING_NOT_HELPFUL: FeedbackRating
FEEDBACK_RATING_INCORRECT: FeedbackRating
ALERT_PRIORITY_UNSPECIFIED: AlertPriority
ALERT_PRIORITY_CRITICAL: AlertPriority
ALERT_PRIORITY_HIGH: AlertPriority
ALERT_PRIORITY_MEDIUM: AlertPriority
ALERT_PRIORITY_LOW: AlertPriority
EXPORT_FORMAT_UNSPECIFIED: ExportFormat
EXPORT_FORMAT_LABELLED_EXAMPLES: ExportFormat
EXPORT_FORMAT_CHAT_FINETUNE: ExportFormat
EXPORT_FORMAT_SCORER_ROWS: ExportFormat

class InsightEvidence(_message.Message):
    __slots__ = ("factor_names", "similar_deal_ids")
    FACTOR_NAMES_FIELD_NUMBER: _ClassVar[int]
    SIMILAR_DEAL_IDS_FIELD_NUMBER: _ClassVar[int]
    factor_names: _containers.RepeatedScalarFieldContainer[str]
    similar_deal_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, factor_names: _Optional[_Iterable[str]] = ..., similar_deal_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Insight(_message.Message):
    __slots__ = ("id", "type", "title", "description", "confidence", "actions", "evidence")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: InsightType
    title: str
    description: str
    confidence: float
    actions: _containers.RepeatedScalarFieldContainer[str]
    evidence: InsightEvidence
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[InsightType, str]] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., confidence: _Optional[float] = ..., actions: _Optional[_Iterable[str]] = ..., evidence: _Optional[_Union[InsightEvidence, _Mapping]] = ...) -> None: ...

class GenerateInsightsRequest(_message.Message):
    __slots__ = ("deal", "bypass_cache")
    DEAL_FIELD_NUMBER: _ClassVar[int]
    BYPASS_CACHE_FIELD_NUMBER: _ClassVar[int]
    deal: _common_pb2.Deal
    bypass_cache: bool
    def __init__(self, deal: _Optional[_Union[_common_pb2.Deal, _Mapping]] = ..., bypass_cache: _Optional[bool] = ...) -> None: ...

class GenerationUsage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "latency_ms")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    latency_ms: float
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ...) -> None: ...

class GenerateInsightsResponse(_message.Message):
    __slots__ = ("insight_set_id", "insights", "win_probability", "win_probability_reasoning", "generator", "fallback_reason", "scorer", "embedder", "cached", "usage")
    INSIGHT_SET_ID_FIELD_NUMBER: _ClassVar[int]
    INSIGHTS_FIELD_NUMBER: _ClassVar[int]
    WIN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    WIN_PROBABILITY_REASONING_FIELD_NUMBER: _ClassVar[int]
    GENERATOR_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    insight_set_id: str
    insights: _containers.RepeatedCompositeFieldContainer[Insight]
    win_probability: float
    win_probability_reasoning: str
    generator: str
    fallback_reason: str
    scorer: _common_pb2.ModelRef
    embedder: _common_pb2.ModelRef
    cached: bool
    usage: GenerationUsage
    def __init__(self, insight_set_id: _Optional[str] = ..., insights: _Optional[_Iterable[_Union[Insight, _Mapping]]] = ..., win_probability: _Optional[float] = ..., win_probability_reasoning: _Optional[str] = ..., generator: _Optional[str] = ..., fallback_reason: _Optional[str] = ..., scorer: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., embedder: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ..., cached: _Optional[bool] = ..., usage: _Optional[_Union[GenerationUsage, _Mapping]] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("workspace_id", "insight_set_id", "insight_id", "rating", "acted_on", "comment", "idempotency_key")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    INSIGHT_SET_ID_FIELD_NUMBER: _ClassVar[int]
    INSIGHT_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    ACTED_ON_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    insight_set_id: str
    insight_id: str
    rating: FeedbackRating
    acted_on: bool
    comment: str
    idempotency_key: str
    def __init__(self, workspace_id: _Optional[str] = ..., insight_set_id: _Optional[str] = ..., insight_id: _Optional[str] = ..., rating: _Optional[_Union[FeedbackRating, str]] = ..., acted_on: _Optional[bool] = ..., comment: _Optional[str] = ..., idempotency_key: _Optional[str] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("feedback_id", "duplicate")
    FEEDBACK_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    feedback_id: str
    duplicate: bool
    def __init__(self, feedback_id: _Optional[str] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("workspace_id", "deal_id", "outcome", "closed_time", "final_value")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEAL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CLOSED_TIME_FIELD_NUMBER: _ClassVar[int]
    FINAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    deal_id: str
    outcome: _common_pb2.DealOutcome
    closed_time: _timestamp_pb2.Timestamp
    final_value: float
    def __init__(self, workspace_id: _Optional[str] = ..., deal_id: _Optional[str] = ..., outcome: _Optional[_Union[_common_pb2.DealOutcome, str]] = ..., closed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., final_value: _Optional[float] = ...) -> None: ...

class RecordOutcomeResponse(_message.Message):
    __slots__ = ("duplicate",)
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    def __init__(self, duplicate: _Optional[bool] = ...) -> None: ...

class PipelineAlert(_message.Message):
    __slots__ = ("dedup_key", "deal_id", "rule", "priority", "title", "description", "evidence")
    class EvidenceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DEDUP_KEY_FIELD_NUMBER: _ClassVar[int]
    DEAL_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    dedup_key: str
    deal_id: str
    rule: str
    priority: AlertPriority
    title: str
    description: str
    evidence: _containers.ScalarMap[str, float]
    def __init__(self, dedup_key: _Optional[str] = ..., deal_id: _Optional[str] = ..., rule: _Optional[str] = ..., priority: _Optional[_Union[AlertPriority, str]] = ..., title: _Optional[str] = ..., description: _Optional[str] = ..., evidence: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ScanPipelineRequest(_message.Message):
    __slots__ = ("workspace_id", "deals")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEALS_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    deals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Deal]
    def __init__(self, workspace_id: _Optional[str] = ..., deals: _Optional[_Iterable[_Union[_common_pb2.Deal, _Mapping]]] = ...) -> None: ...

class ScanPipelineResponse(_message.Message):
    __slots__ = ("alerts", "scanned_deals")
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    SCANNED_DEALS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[PipelineAlert]
    scanned_deals: int
    def __init__(self, alerts: _Optional[_Iterable[_Union[PipelineAlert, _Mapping]]] = ..., scanned_deals: _Optional[int] = ...) -> None: ...

class ExportTrainingDataRequest(_message.Message):
    __slots__ = ("workspace_id", "format", "since_time")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SINCE_TIME_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    format: ExportFormat
    since_time: _timestamp_pb2.Timestamp
    def __init__(self, workspace_id: _Optional[str] = ..., format: _Optional[_Union[ExportFormat, str]] = ..., since_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportTrainingDataResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...
