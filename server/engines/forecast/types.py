"""The forecast engine's public types: what callers pass in and get back.

Plain frozen dataclasses, no protobuf; the servicer maps them to and from the
messages of ``protos/vectoros/v1/forecast.proto``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PipelineDeal:
    """An open deal.

    ``value`` in currency units, finite and >= 0; ``win_probability`` in [0, 1];
    ``expected_close`` timezone-aware, or None for an undated deal.
    """

    deal_id: str
    value: float
    win_probability: float
    expected_close: datetime | None
    currency: str = ""


@dataclass(frozen=True)
class Period:
    """The period to forecast, [start, end); timezone-aware datetimes."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class SimulationSettings:
    """Simulation parameters; defaults and limits as in ``SimulationOptions``.

    ``seed`` None draws a random seed, returned in the outcome.
    """

    simulations: int = 10_000
    seed: int | None = None
    correlation: float = 0.25
    slip_mean_days: float = 10.0
    slip_std_days: float = 20.0
    ignore_close_dates: bool = False
    undated_in_period_probability: float = 0.5
    amount_mean_multiplier: float = 1.0
    amount_cv: float = 0.15
    histogram_bins: int = 50


@dataclass(frozen=True)
class DealChange:
    """A change to one base deal; None leaves a field as it is."""

    deal_id: str
    win_probability: float | None = None
    value: float | None = None
    expected_close: datetime | None = None


@dataclass(frozen=True)
class ScenarioSpec:
    """A what-if variant of the base pipeline."""

    name: str
    added_deals: tuple[PipelineDeal, ...] = ()
    removed_deal_ids: tuple[str, ...] = ()
    changes: tuple[DealChange, ...] = ()


@dataclass(frozen=True)
class RevenueScenario:
    """A percentile of the total, with the won deals of the simulation nearest
    to it. ``revenue`` is the percentile itself."""

    name: str
    percentile: float
    revenue: float
    won_deal_ids: tuple[str, ...]


@dataclass(frozen=True)
class HistogramBin:
    """[lower, upper) of simulated totals; the last bin includes ``upper``."""

    lower: float
    upper: float
    count: int


@dataclass(frozen=True)
class DealContribution:
    """A deal's exact expected revenue, in-period probability and share of the
    variance of the total (Cov(deal, total) / Var(total))."""

    deal_id: str
    expected_revenue: float
    in_period_probability: float
    variance_share: float


@dataclass(frozen=True)
class MonthlyRevenue:
    """Exact expected revenue and won deals of one calendar month (UTC) inside
    the period; ``start`` (proto ``start_time``) is the month's first instant or
    the period start."""

    start: datetime
    expected_revenue: float
    expected_won_deals: float


@dataclass(frozen=True)
class ForecastResult:
    """The distribution of revenue booked inside the period (proto ForecastResult)."""

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
    deal_contributions: tuple[DealContribution, ...]
    weighted_pipeline: float
    total_pipeline: float
    monthly: tuple[MonthlyRevenue, ...]
    expected_won_deals: float


@dataclass(frozen=True)
class ForecastOutcome:
    """A forecast, with the number of simulations and the seed behind it (the
    drawn seed when the settings gave none)."""

    result: ForecastResult
    simulations: int
    seed: int


@dataclass(frozen=True)
class ScenarioOutcome:
    """A scenario's forecast and its per-simulation difference to the base."""

    name: str
    result: ForecastResult
    mean_difference: float
    mean_difference_ci_low: float
    mean_difference_ci_high: float
    difference_p5: float
    difference_p95: float
    probability_better: float


@dataclass(frozen=True)
class ComparisonOutcome:
    """The base pipeline's forecast and each scenario's, all from the same
    simulations and seed."""

    base: ForecastResult
    scenarios: tuple[ScenarioOutcome, ...]
    simulations: int
    seed: int
