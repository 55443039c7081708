import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from vectoros_client.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ForecastPeriod(_message.Message):
    __slots__ = ("start_time", "end_time")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SimulationOptions(_message.Message):
    __slots__ = ("simulations", "seed", "correlation", "slip_mean_days", "slip_std_days", "ignore_close_dates", "undated_in_period_probability", "amount_mean_multiplier", "amount_cv", "histogram_bins")
    SIMULATIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_FIELD_NUMBER: _ClassVar[int]
    SLIP_MEAN_DAYS_FIELD_NUMBER: _ClassVar[int]
    SLIP_STD_DAYS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_CLOSE_DATES_FIELD_NUMBER: _ClassVar[int]
    UNDATED_IN_PERIOD_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_MEAN_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_CV_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_BINS_FIELD_NUMBER: _ClassVar[int]
    simulations: int
    seed: int
    correlation: float
    slip_mean_days: float
    slip_std_days: float
    ignore_close_dates: bool
    undated_in_period_probability: float
    amount_mean_multiplier: float
    amount_cv: float
    histogram_bins: int
    def __init__(self, simulations: _Optional[int] = ..., seed: _Optional[int] = ..., correlation: _Optional[float] = ..., slip_mean_days: _Optional[float] = ..., slip_std_days: _Optional[float] = ..., ignore_close_dates: _Optional[bool] = ..., undated_in_period_probability: _Optional[float] = ..., amount_mean_multiplier: _Optional[float] = ..., amount_cv: _Optional[float] = ..., histogram_bins: _Optional[int] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("deals", "period", "options")
    DEALS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    deals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Deal]
    period: ForecastPeriod
    options: SimulationOptions
    def __init__(self, deals: _Optional[_Iterable[_Union[_common_pb2.Deal, _Mapping]]] = ..., period: _Optional[_Union[ForecastPeriod, _Mapping]] = ..., options: _Optional[_Union[SimulationOptions, _Mapping]] = ...) -> None: ...

class HistogramBin(_message.Message):
    __slots__ = ("lower", "upper", "count")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    lower: float
    upper: float
    count: int
    def __init__(self, lower: _Optional[float] = ..., upper: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class RevenueScenario(_message.Message):
    __slots__ = ("name", "percentile", "revenue", "won_deal_ids")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    REVENUE_FIELD_NUMBER: _ClassVar[int]
    WON_DEAL_IDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    percentile: float
    revenue: float
    won_deal_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., percentile: _Optional[float] = ..., revenue: _Optional[float] = ..., won_deal_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DealContribution(_message.Message):
    __slots__ = ("deal_id", "expected_revenue", "in_period_probability", "variance_share")
    DEAL_ID_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVENUE_FIELD_NUMBER: _ClassVar[int]
    IN_PERIOD_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_SHARE_FIELD_NUMBER: _ClassVar[int]
    deal_id: str
    expected_revenue: float
    in_period_probability: float
    variance_share: float
    def __init__(self, deal_id: _Optional[str] = ..., expected_revenue: _Optional[float] = ..., in_period_probability: _Optional[float] = ..., variance_share: _Optional[float] = ...) -> None: ...

class MonthlyRevenue(_message.Message):
    __slots__ = ("start_time", "expected_revenue", "expected_won_deals")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVENUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WON_DEALS_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    expected_revenue: float
    expected_won_deals: float
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expected_revenue: _Optional[float] = ..., expected_won_deals: _Optional[float] = ...) -> None: ...

class ForecastResult(_message.Message):
    __slots__ = ("currency", "mean", "std_dev", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "scenarios", "histogram", "deal_contributions", "weighted_pipeline", "total_pipeline", "monthly", "expected_won_deals")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_DEV_FIELD_NUMBER: _ClassVar[int]
    P5_FIELD_NUMBER: _ClassVar[int]
    P10_FIELD_NUMBER: _ClassVar[int]
    P25_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P75_FIELD_NUMBER: _ClassVar[int]
    P90_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    SCENARIOS_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    DEAL_CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_PIPELINE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PIPELINE_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_WON_DEALS_FIELD_NUMBER: _ClassVar[int]
    currency: str
    mean: float
    std_dev: float
    p5: float
    p10: float
    p25: float
    p50: float
    p75: float
    p90: float
    p95: float
    scenarios: _containers.RepeatedCompositeFieldContainer[RevenueScenario]
    histogram: _containers.RepeatedCompositeFieldContainer[HistogramBin]
    deal_contributions: _containers.RepeatedCompositeFieldContainer[DealContribution]
    weighted_pipeline: float
    total_pipeline: float
    monthly: _containers.RepeatedCompositeFieldContainer[MonthlyRevenue]
    expected_won_deals: float
    def __init__(self, currency: _Optional[str] = ..., mean: _Optional[float] = ..., std_dev: _Optional[float] = ..., p5: _Optional[float] = ..., p10: _Optional[float] = ..., p25: _Optional[float] = ..., p50: _Optional[float] = ..., p75: _Optional[float] = ..., p90: _Optional[float] = ..., p95: _Optional[float] = ..., scenarios: _Optional[_Iterable[_Union[RevenueScenario, _Mapping]]] = ..., histogram: _Optional[_Iterable[_Union[HistogramBin, _Mapping]]] = ..., deal_contributions: _Optional[_Iterable[_Union[DealContribution, _Mapping]]] = ..., weighted_pipeline: _Optional[float] = ..., total_pipeline: _Optional[float] = ..., monthly: _Optional[_Iterable[_Union[MonthlyRevenue, _Mapping]]] = ..., expected_won_deals: _Optional[float] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("result", "simulations", "seed")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SIMULATIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    result: ForecastResult
    simulations: int
    seed: int
    def __init__(self, result: _Optional[_Union[ForecastResult, _Mapping]] = ..., simulations: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class DealChange(_message.Message):
    __slots__ = ("deal_id", "probability", "value", "expected_close_time")
    DEAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CLOSE_TIME_FIELD_NUMBER: _ClassVar[int]
    deal_id: str
    probability: float
    value: float
    expected_close_time: _timestamp_pb2.Timestamp
    def __init__(self, deal_id: _Optional[str] = ..., probability: _Optional[float] = ..., value: _Optional[float] = ..., expected_close_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Scenario(_message.Message):
    __slots__ = ("name", "added_deals", "removed_deal_ids", "changes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDED_DEALS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_DEAL_IDS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    added_deals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Deal]
    removed_deal_ids: _containers.RepeatedScalarFieldContainer[str]
    changes: _containers.RepeatedCompositeFieldContainer[DealChange]
    def __init__(self, name: _Optional[str] = ..., added_deals: _Optional[_Iterable[_Union[_common_pb2.Deal, _Mapping]]] = ..., removed_deal_ids: _Optional[_Iterable[str]] = ..., changes: _Optional[_Iterable[_Union[DealChange, _Mapping]]] = ...) -> None: ...

class CompareScenariosRequest(_message.Message):
    __slots__ = ("base_deals", "scenarios", "period", "options")
    BASE_DEALS_FIELD_NUMBER: _ClassVar[int]
    SCENARIOS_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    base_deals: _containers.RepeatedCompositeFieldContainer[_common_pb2.Deal]
    scenarios: _containers.RepeatedCompositeFieldContainer[Scenario]
    period: ForecastPeriod
    options: SimulationOptions
    def __init__(self, base_deals: _Optional[_Iterable[_Union[_common_pb2.Deal, _Mapping]]] = ..., scenarios: _Optional[_Iterable[_Union[Scenario, _Mapping]]] = ..., period: _Optional[_Union[ForecastPeriod, _Mapping]] = ..., options: _Optional[_Union[SimulationOptions, _Mapping]] = ...) -> None: ...

class ScenarioResult(_message.Message):
    __slots__ = ("name", "result", "mean_difference", "mean_difference_ci_low", "mean_difference_ci_high", "difference_p5", "difference_p95", "probability_better")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MEAN_DIFFERENCE_FIELD_NUMBER: _ClassVar[int]
    MEAN_DIFFERENCE_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    MEAN_DIFFERENCE_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_P5_FIELD_NUMBER: _ClassVar[int]
    DIFFERENCE_P95_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_BETTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    result: ForecastResult
    mean_difference: float
    mean_difference_ci_low: float
    mean_difference_ci_high: float
    difference_p5: float
    difference_p95: float
    probability_better: float
    def __init__(self, name: _Optional[str] = ..., result: _Optional[_Union[ForecastResult, _Mapping]] = ..., mean_difference: _Optional[float] = ..., mean_difference_ci_low: _Optional[float] = ..., mean_difference_ci_high: _Optional[float] = ..., difference_p5: _Optional[float] = ..., difference_p95: _Optional[float] = ..., probability_better: _Optional[float] = ...) -> None: ...

class CompareScenariosResponse(_message.Message):
    __slots__ = ("base", "scenarios", "simulations", "seed")
    BASE_FIELD_NUMBER: _ClassVar[int]
    SCENARIOS_FIELD_NUMBER: _ClassVar[int]
    SIMULATIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    base: ForecastResult
    scenarios: _containers.RepeatedCompositeFieldContainer[ScenarioResult]
    simulations: int
    seed: int
    def __init__(self, base: _Optional[_Union[ForecastResult, _Mapping]] = ..., scenarios: _Optional[_Iterable[_Union[ScenarioResult, _Mapping]]] = ..., simulations: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...
