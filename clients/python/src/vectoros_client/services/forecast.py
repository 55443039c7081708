"""ForecastService: Monte Carlo revenue of a pipeline inside a period, and
what-if scenarios on the same random numbers.

The API has no revenue target yet: `ForecastResult.chance_of_reaching(target)`
reads the chance of booking at least a target from the histogram of simulated
totals (ask for more `histogram_bins`, up to 1000, for a finer answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime

from vectoros_client import rpcs
from vectoros_client.calls import Unary
from vectoros_client.v1 import forecast_pb2
from vectoros_client.values import DealLike, deal_messages, get_time, set_time


@dataclass(frozen=True)
class SimulationOptions:
    """Simulation parameters; None takes the server's documented default
    (protos/vectoros/v1/forecast.proto)."""

    simulations: int | None = None
    seed: int | None = None
    correlation: float | None = None
    slip_mean_days: float | None = None
    slip_std_days: float | None = None
    ignore_close_dates: bool = False
    undated_in_period_probability: float | None = None
    amount_mean_multiplier: float | None = None
    amount_cv: float | None = None
    histogram_bins: int | None = None

    def to_proto(self) -> forecast_pb2.SimulationOptions:
        message = forecast_pb2.SimulationOptions()
        for option in fields(self):
            value = getattr(self, option.name)
            if value is None:
                continue
            try:
                setattr(message, option.name, value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"options.{option.name}: {exc}") from None
        return message


@dataclass(frozen=True)
class DealChange:
    """A change to one deal of the base pipeline; None leaves a field as it is."""

    deal_id: str
    probability: float | None = None
    value: float | None = None
    expected_close_time: datetime | None = None


@dataclass(frozen=True)
class Scenario:
    """A what-if variant of the base pipeline."""

    name: str
    added_deals: Sequence[DealLike] = ()
    removed_deal_ids: Sequence[str] = ()
    changes: Sequence[DealChange] = ()

    def to_proto(self, where: str) -> forecast_pb2.Scenario:
        message = forecast_pb2.Scenario(
            name=self.name, added_deals=deal_messages(self.added_deals, f"{where}.added_deals"),
            removed_deal_ids=list(self.removed_deal_ids),
        )
        for index, change in enumerate(self.changes):
            entry = message.changes.add(deal_id=change.deal_id)
            if change.probability is not None:
                entry.probability = change.probability
            if change.value is not None:
                entry.value = change.value
            set_time(entry, "expected_close_time", change.expected_close_time,
                     f"{where}.changes[{index}].expected_close_time")
        return message


@dataclass(frozen=True)
class HistogramBin:
    lower: float
    upper: float  # exclusive, except for the last bin
    count: int


@dataclass(frozen=True)
class RevenueScenario:
    """"worst", "likely" or "best" (P10, P50, P90) and the deals won in a simulation there."""

    name: str
    percentile: float
    revenue: float
    won_deal_ids: tuple[str, ...]


@dataclass(frozen=True)
class DealContribution:
    deal_id: str
    expected_revenue: float
    in_period_probability: float
    variance_share: float


@dataclass(frozen=True)
class MonthlyRevenue:
    start_time: datetime | None
    expected_revenue: float
    expected_won_deals: float


@dataclass(frozen=True)
class ForecastResult:
    """The distribution of revenue booked inside the period, in currency units."""

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
    scenarios: tuple[RevenueScenario, ...]
    histogram: tuple[HistogramBin, ...]
    deal_contributions: tuple[DealContribution, ...]  # largest share of the spread first
    weighted_pipeline: float
    total_pipeline: float
    monthly: tuple[MonthlyRevenue, ...]
    expected_won_deals: float
    proto: forecast_pb2.ForecastResult = field(repr=False, compare=False)

    def chance_of_reaching(self, target: float) -> float:
        """The share of simulations that booked at least `target`, read from the
        histogram (linear inside the bin that holds the target)."""
        if not target == target:  # NaN
            raise ValueError("target: must be a number, got nan")
        total = sum(b.count for b in self.histogram)
        if total == 0:
            return 0.0
        above = 0.0
        for bin_ in self.histogram:
            if target <= bin_.lower:
                above += bin_.count
            elif target <= bin_.upper and bin_.upper > bin_.lower:
                above += bin_.count * (bin_.upper - target) / (bin_.upper - bin_.lower)
        return min(1.0, above / total)

    @classmethod
    def from_proto(cls, message: forecast_pb2.ForecastResult) -> ForecastResult:
        return cls(
            currency=message.currency, mean=message.mean, std_dev=message.std_dev,
            p5=message.p5, p10=message.p10, p25=message.p25, p50=message.p50, p75=message.p75, p90=message.p90,
            p95=message.p95,
            scenarios=tuple(RevenueScenario(s.name, s.percentile, s.revenue, tuple(s.won_deal_ids))
                            for s in message.scenarios),
            histogram=tuple(HistogramBin(b.lower, b.upper, b.count) for b in message.histogram),
            deal_contributions=tuple(
                DealContribution(c.deal_id, c.expected_revenue, c.in_period_probability, c.variance_share)
                for c in message.deal_contributions
            ),
            weighted_pipeline=message.weighted_pipeline, total_pipeline=message.total_pipeline,
            monthly=tuple(MonthlyRevenue(get_time(m, "start_time"), m.expected_revenue, m.expected_won_deals)
                          for m in message.monthly),
            expected_won_deals=message.expected_won_deals,
            proto=message,
        )


@dataclass(frozen=True)
class Forecast:
    result: ForecastResult
    simulations: int
    seed: int  # send it back in SimulationOptions to reproduce this answer
    proto: forecast_pb2.ForecastResponse = field(repr=False, compare=False)


@dataclass(frozen=True)
class ScenarioResult:
    """A scenario's forecast and its difference to the base (scenario - base)."""

    name: str
    result: ForecastResult
    mean_difference: float
    mean_difference_ci: tuple[float, float]  # 95% interval
    difference_p5: float
    difference_p95: float
    probability_better: float


@dataclass(frozen=True)
class ScenarioComparison:
    base: ForecastResult
    scenarios: tuple[ScenarioResult, ...]  # in request order
    simulations: int
    seed: int
    proto: forecast_pb2.CompareScenariosResponse = field(repr=False, compare=False)


def _period(message: forecast_pb2.ForecastPeriod, start: datetime, end: datetime) -> None:
    set_time(message, "start_time", start, "period.start_time")
    set_time(message, "end_time", end, "period.end_time")


def forecast(
    deals: Sequence[DealLike], *, start: datetime, end: datetime, options: SimulationOptions | None = None
) -> Unary[Forecast]:
    request = forecast_pb2.ForecastRequest(deals=deal_messages(deals))
    _period(request.period, start, end)
    if options is not None:
        request.options.CopyFrom(options.to_proto())

    def parse(response: forecast_pb2.ForecastResponse) -> Forecast:
        return Forecast(ForecastResult.from_proto(response.result), response.simulations, response.seed, response)

    return Unary(rpcs.FORECAST, request, parse)


def compare_scenarios(
    base_deals: Sequence[DealLike],
    scenarios: Sequence[Scenario],
    *,
    start: datetime,
    end: datetime,
    options: SimulationOptions | None = None,
) -> Unary[ScenarioComparison]:
    request = forecast_pb2.CompareScenariosRequest(
        base_deals=deal_messages(base_deals, "base_deals"),
        scenarios=[scenario.to_proto(f"scenarios[{i}]") for i, scenario in enumerate(scenarios)],
    )
    _period(request.period, start, end)
    if options is not None:
        request.options.CopyFrom(options.to_proto())

    def parse(response: forecast_pb2.CompareScenariosResponse) -> ScenarioComparison:
        return ScenarioComparison(
            base=ForecastResult.from_proto(response.base),
            scenarios=tuple(
                ScenarioResult(
                    s.name, ForecastResult.from_proto(s.result), s.mean_difference,
                    (s.mean_difference_ci_low, s.mean_difference_ci_high), s.difference_p5, s.difference_p95,
                    s.probability_better,
                )
                for s in response.scenarios
            ),
            simulations=response.simulations,
            seed=response.seed,
            proto=response,
        )

    return Unary(rpcs.COMPARE_SCENARIOS, request, parse)
