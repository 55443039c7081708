from vectoros_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpsertDealsRequest(_message.Message):
    __slots__ = ("workspace_id", "deals")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEALS_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    deals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Deal]
    def __init__(self, workspace_id: _Optional[str] = ..., deals: _Optional[_Iterable[_Union[_common_pb2.Deal, _Mapping]]] = ...) -> None: ...

class UpsertDealsResponse(_message.Message):
    __slots__ = ("upserted", "unchanged", "embedder")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    unchanged: int
    embedder: _common_pb2.ModelRef
    def __init__(self, upserted: _Optional[int] = ..., unchanged: _Optional[int] = ..., embedder: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class DeleteDealsRequest(_message.Message):
    __slots__ = ("workspace_id", "deal_ids")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEAL_IDS_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    deal_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workspace_id: _Optional[str] = ..., deal_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDealsResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class SimilarityFilter(_message.Message):
    __slots__ = ("industries", "stages", "outcomes", "min_value", "max_value")
    INDUSTRIES_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    MIN_VALUE_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_FIELD_NUMBER: _ClassVar[int]
    industries: _containers.RepeatedScalarFieldContainer[str]
    stages: _containers.RepeatedScalarFieldContainer[str]
    outcomes: _containers.RepeatedScalarFieldContainer[_common_pb2.DealOutcome]
    min_value: float
    max_value: float
    def __init__(self, industries: _Optional[_Iterable[str]] = ..., stages: _Optional[_Iterable[str]] = ..., outcomes: _Optional[_Iterable[_Union[_common_pb2.DealOutcome, str]]] = ..., min_value: _Optional[float] = ..., max_value: _Optional[float] = ...) -> None: ...

class FindSimilarDealsRequest(_message.Message):
    __slots__ = ("workspace_id", "deal", "deal_id", "text", "filter", "top_k", "min_score")
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    DEAL_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    deal: _common_pb2.Deal
    deal_id: str
    text: str
    filter: SimilarityFilter
    top_k: int
    min_score: float
    def __init__(self, workspace_id: _Optional[str] = ..., deal: _Optional[_Union[_common_pb2.Deal, _Mapping]] = ..., deal_id: _Optional[str] = ..., text: _Optional[str] = ..., filter: _Optional[_Union[SimilarityFilter, _Mapping]] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ...) -> None: ...

class SimilarDeal(_message.Message):
    __slots__ = ("score", "deal")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DEAL_FIELD_NUMBER: _ClassVar[int]
    score: float
    deal: _common_pb2.Deal
    def __init__(self, score: _Optional[float] = ..., deal: _Optional[_Union[_common_pb2.Deal, _Mapping]] = ...) -> None: ...

class SimilaritySummary(_message.Message):
    __slots__ = ("won_count", "lost_count", "open_count", "weighted_win_rate", "mean_score")
    WON_COUNT_FIELD_NUMBER: _ClassVar[int]
    LOST_COUNT_FIELD_NUMBER: _ClassVar[int]
    OPEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_WIN_RATE_FIELD_NUMBER: _ClassVar[int]
    MEAN_SCORE_FIELD_NUMBER: _ClassVar[int]
    won_count: int
    lost_count: int
    open_count: int
    weighted_win_rate: float
    mean_score: float
    def __init__(self, won_count: _Optional[int] = ..., lost_count: _Optional[int] = ..., open_count: _Optional[int] = ..., weighted_win_rate: _Optional[float] = ..., mean_score: _Optional[float] = ...) -> None: ...

class FindSimilarDealsResponse(_message.Message):
    __slots__ = ("matches", "summary", "embedder")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[SimilarDeal]
    summary: SimilaritySummary
    embedder: _common_pb2.ModelRef
    def __init__(self, matches: _Optional[_Iterable[_Union[SimilarDeal, _Mapping]]] = ..., summary: _Optional[_Union[SimilaritySummary, _Mapping]] = ..., embedder: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("workspace_id",)
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    workspace_id: str
    def __init__(self, workspace_id: _Optional[str] = ...) -> None: ...

class OutcomeCount(_message.Message):
    __slots__ = ("outcome", "count")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    outcome: _common_pb2.DealOutcome
    count: int
    def __init__(self, outcome: _Optional[_Union[_common_pb2.DealOutcome, str]] = ..., count: _Optional[int] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("total_deals", "by_outcome", "embedder")
    TOTAL_DEALS_FIELD_NUMBER: _ClassVar[int]
    BY_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    total_deals: int
    by_outcome: _containers.RepeatedCompositeFieldContainer[OutcomeCount]
    embedder: _common_pb2.ModelRef
    def __init__(self, total_deals: _Optional[int] = ..., by_outcome: _Optional[_Iterable[_Union[OutcomeCount, _Mapping]]] = ..., embedder: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...
