import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DealOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEAL_OUTCOME_UNSPECIFIED: _ClassVar[DealOutcome]
    DEAL_OUTCOME_OPEN: _ClassVar[DealOutcome]
    DEAL_OUTCOME_WON: _ClassVar[DealOutcome]
    DEAL_OUTCOME_LOST: _ClassVar[DealOutcome]
DEAL_OUTCOME_UNSPECIFIED: DealOutcome
DEAL_OUTCOME_OPEN: DealOutcome
DEAL_OUTCOME_WON: DealOutcome
DEAL_OUTCOME_LOST: DealOutcome

class StageChange(_message.Message):
    __slots__ = ("stage", "entered_time")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ENTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    stage: str
    entered_time: _timestamp_pb2.Timestamp
    def __init__(self, stage: _Optional[str] = ..., entered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActivityCounts(_message.Message):
    __slots__ = ("emails", "calls", "meetings", "demos", "notes", "tasks")
    EMAILS_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    MEETINGS_FIELD_NUMBER: _ClassVar[int]
    DEMOS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    emails: int
    calls: int
    meetings: int
    demos: int
    notes: int
    tasks: int
    def __init__(self, emails: _Optional[int] = ..., calls: _Optional[int] = ..., meetings: _Optional[int] = ..., demos: _Optional[int] = ..., notes: _Optional[int] = ..., tasks: _Optional[int] = ...) -> None: ...

class Deal(_message.Message):
    __slots__ = ("id", "workspace_id", "name", "company", "industry", "region", "notes", "value", "currency", "stage", "probability", "created_time", "expected_close_time", "stage_entered_time", "stage_history", "activity_counts", "last_activity_time", "competitor_present", "outcome", "closed_time", "owner_id", "contact_count", "numeric_attributes", "categorical_attributes")
    class NumericAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CategoricalAttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    INDUSTRY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_ENTERED_TIME_FIELD_NUMBER: _ClassVar[int]
    STAGE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_COUNTS_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_TIME_FIELD_NUMBER: _ClassVar[int]
    COMPETITOR_PRESENT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CLOSED_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTACT_COUNT_FIELD_NUMBER: _ClassVar[int]
    NUMERIC_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CATEGORICAL_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    workspace_id: str
    name: str
    company: str
    industry: str
    region: str
    notes: str
    value: float
    currency: str
    stage: str
    probability: float
    created_time: _timestamp_pb2.Timestamp
    expected_close_time: _timestamp_pb2.Timestamp
    stage_entered_time: _timestamp_pb2.Timestamp
    stage_history: _containers.RepeatedCompositeFieldContainer[StageChange]
    activity_counts: ActivityCounts
    last_activity_time: _timestamp_pb2.Timestamp
    competitor_present: bool
    outcome: DealOutcome
    closed_time: _timestamp_pb2.Timestamp
    owner_id: str
    contact_count: int
    numeric_attributes: _containers.ScalarMap[str, float]
    categorical_attributes: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., workspace_id: _Optional[str] = ..., name: _Optional[str] = ..., company: _Optional[str] = ..., industry: _Optional[str] = ..., region: _Optional[str] = ..., notes: _Optional[str] = ..., value: _Optional[float] = ..., currency: _Optional[str] = ..., stage: _Optional[str] = ..., probability: _Optional[float] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expected_close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stage_entered_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stage_history: _Optional[_Iterable[_Union[StageChange, _Mapping]]] = ..., activity_counts: _Optional[_Union[ActivityCounts, _Mapping]] = ..., last_activity_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., competitor_present: _Optional[bool] = ..., outcome: _Optional[_Union[DealOutcome, str]] = ..., closed_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner_id: _Optional[str] = ..., contact_count: _Optional[int] = ..., numeric_attributes: _Optional[_Mapping[str, float]] = ..., categorical_attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "kind", "created_time", "metrics", "features", "labels", "package_version", "training_data_sha256")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CREATED_TIME_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRAINING_DATA_SHA256_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    kind: str
    created_time: _timestamp_pb2.Timestamp
    metrics: _containers.ScalarMap[str, float]
    features: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.RepeatedScalarFieldContainer[str]
    package_version: str
    training_data_sha256: str
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., kind: _Optional[str] = ..., created_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., features: _Optional[_Iterable[str]] = ..., labels: _Optional[_Iterable[str]] = ..., package_version: _Optional[str] = ..., training_data_sha256: _Optional[str] = ...) -> None: ...
