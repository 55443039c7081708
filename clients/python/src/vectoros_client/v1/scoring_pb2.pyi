from vectoros_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RiskLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_LEVEL_UNSPECIFIED: _ClassVar[RiskLevel]
    RISK_LEVEL_LOW: _ClassVar[RiskLevel]
    RISK_LEVEL_MEDIUM: _ClassVar[RiskLevel]
    RISK_LEVEL_HIGH: _ClassVar[RiskLevel]
RISK_LEVEL_UNSPECIFIED: RiskLevel
RISK_LEVEL_LOW: RiskLevel
RISK_LEVEL_MEDIUM: RiskLevel
RISK_LEVEL_HIGH: RiskLevel

class ScoreFactor(_message.Message):
    __slots__ = ("feature", "value", "contribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: str
    contribution: float
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[str] = ..., contribution: _Optional[float] = ...) -> None: ...

class DealScore(_message.Message):
    __slots__ = ("deal_id", "win_probability", "risk_level", "top_factors", "margin", "bias", "model")
    DEAL_ID_FIELD_NUMBER: _ClassVar[int]
    WIN_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    RISK_LEVEL_FIELD_NUMBER: _ClassVar[int]
    TOP_FACTORS_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    deal_id: str
    win_probability: float
    risk_level: RiskLevel
    top_factors: _containers.RepeatedCompositeFieldContainer[ScoreFactor]
    margin: float
    bias: float
    model: _common_pb2.ModelRef
    def __init__(self, deal_id: _Optional[str] = ..., win_probability: _Optional[float] = ..., risk_level: _Optional[_Union[RiskLevel, str]] = ..., top_factors: _Optional[_Iterable[_Union[ScoreFactor, _Mapping]]] = ..., margin: _Optional[float] = ..., bias: _Optional[float] = ..., model: _Optional[_Union[_common_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class ScoreDealRequest(_message.Message):
    __slots__ = ("deal", "model_version", "top_factors")
    DEAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOP_FACTORS_FIELD_NUMBER: _ClassVar[int]
    deal: _common_pb2.Deal
    model_version: int
    top_factors: int
    def __init__(self, deal: _Optional[_Union[_common_pb2.Deal, _Mapping]] = ..., model_version: _Optional[int] = ..., top_factors: _Optional[int] = ...) -> None: ...

class ScoreDealResponse(_message.Message):
    __slots__ = ("score",)
    SCORE_FIELD_NUMBER: _ClassVar[int]
    score: DealScore
    def __init__(self, score: _Optional[_Union[DealScore, _Mapping]] = ...) -> None: ...

class ScoreDealsRequest(_message.Message):
    __slots__ = ("deals", "model_version", "top_factors")
    DEALS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOP_FACTORS_FIELD_NUMBER: _ClassVar[int]
    deals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Deal]
    model_version: int
    top_factors: int
    def __init__(self, deals: _Optional[_Iterable[_Union[_common_pb2.Deal, _Mapping]]] = ..., model_version: _Optional[int] = ..., top_factors: _Optional[int] = ...) -> None: ...

class ScoreDealsResponse(_message.Message):
    __slots__ = ("scores",)
    SCORES_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedCompositeFieldContainer[DealScore]
    def __init__(self, scores: _Optional[_Iterable[_Union[DealScore, _Mapping]]] = ...) -> None: ...

class ScoringServiceGetModelInfoRequest(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: int
    def __init__(self, model_version: _Optional[int] = ...) -> None: ...

class ScoringServiceGetModelInfoResponse(_message.Message):
    __slots__ = ("info", "high_risk_below", "low_risk_from")
    INFO_FIELD_NUMBER: _ClassVar[int]
    HIGH_RISK_BELOW_FIELD_NUMBER: _ClassVar[int]
    LOW_RISK_FROM_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.ModelInfo
    high_risk_below: float
    low_risk_from: float
    def __init__(self, info: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., high_risk_below: _Optional[float] = ..., low_risk_from: _Optional[float] = ...) -> None: ...
