"""Monte Carlo revenue forecasts over a pipeline of open deals.

The model is the one documented in ``protos/vectoros/v1/forecast.proto``. Per
simulation and deal:

1. Win. A one-factor Gaussian copula: a shared market factor Z ~ N(0, 1) per
   simulation and latent correlation rho between any two deals. Given Z = z a
   deal with win probability p wins with probability
   ``Phi((Phi^-1(p) - sqrt(rho) z) / sqrt(1 - rho))``; over Z it wins with
   probability exactly p.
2. Timing. The deal closes at its expected close plus a slip drawn from
   Normal(slip_mean_days, slip_std_days); only closes in [start, end) count.
   Undated deals close inside with ``undated_in_period_probability``;
   ``ignore_close_dates`` makes every deal close inside.
3. Amount. A won deal books ``value * m``, m uniform with mean
   ``amount_mean_multiplier`` and coefficient of variation ``amount_cv``.

How it is computed, and why it is fast. The figures below were measured on the
project's 2-core VMs (see MEASURED.md):

- The factor is stratified: Z is cut into ``_STRATA`` equiprobable strata and
  every stratum gets ``simulations // _STRATA`` simulations, the remainder going
  to strata picked at random from the seed. Simulations are processed grouped by
  stratum, so all simulations of a block share one row of conditional win
  probabilities: the average of the formula above over the stratum (Gauss-
  Legendre in probability space), rescaled so that the mean over strata is
  exactly p. Per deal and simulation nothing is left to sample but one uniform.
- Timing is independent of the win, so with q = P(close in period) the deal
  books iff ``U < thr`` with ``thr = p_stratum * q`` and U one float32 uniform.
- Given ``U < thr``, ``V = U / thr`` is again uniform and independent of the
  win, so the amount is read from the same U: ``m = a + b (1 - V)``. A block's
  totals are then two matrix-vector products,
  ``ceil(thr - U) @ (a v) + ((thr - U) * ceil(thr - U)) @ (b v / thr)``: per
  value a subtraction, a ceil (the cheapest float mask found; ``thr - U`` lies
  in (-1, 1], so ceil gives exactly 0 or 1) and a multiplication, on reused
  buffers. Drawing the uniforms stays the largest cost.
- Simulations are cut into chunks of about ``_CHUNK_VALUES`` values whose
  buffers are allocated once per worker thread and reused: memory touched for
  the first time is slow on these VMs, and NumPy's generators and ufuncs release
  the GIL, so ``_WORKER_THREADS`` threads give up to 2x on two cores. Chunk j
  always draws from ``SeedSequence(seed).spawn(...)[j]``, so the answer depends
  on the seed only, never on the thread count or on timing.
- Everything that can be computed exactly is: expected revenue per deal and per
  month, expected won deals, and the variance shares (from the model's exact
  covariance, over the same stratum table the simulation uses). Only the
  distribution of the total (mean, spread, percentiles, histogram, example
  simulations) comes from sampling.
"""

from __future__ import annotations

import itertools
import math
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from vectoros.core.errors import Cancelled, InvalidInput

MAX_DEALS = 50_000
MAX_SIMULATIONS = 1_000_000
MAX_DRAWS = 2_500_000_000
MAX_SCENARIOS = 20

# 64 strata keep 99.6-99.98% of the factor's share of the variance for
# correlation 0.1-0.99 (what is lost is the spread of the conditional win
# probability inside a stratum); 32 keep 99.1%, and every doubling doubles the
# cost of the stratum table and the number of blocks.
_STRATA = 64
# Gauss-Legendre points per stratum: 4 points are within 0.1% of the exact
# stratum averages (judged by the factor variance they carry) for
# correlation >= 0.1, and better for higher correlation.
_GAUSS_POINTS = 4
# About 1 MB of float32 per buffer: big enough that per-chunk Python overhead is
# noise, small enough to stay in cache and never touch fresh memory.
_CHUNK_VALUES = 262_144
_WORKER_THREADS = 2
# float32 uniforms are multiples of 2**-24, so any threshold in (0, 2**-24]
# already wins with probability 2**-24; raising such thresholds to 2**-24 changes
# no outcome and bounds b * value / threshold.
_MIN_THRESHOLD = 2.0**-24
# Phi(-9) ~ 1e-19: beyond nine standard deviations a slip CDF is 0 or 1.
_TAIL_SDS = 9.0
_PERCENTILES = (5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0)
_EXAMPLES = (("worst", 10.0), ("likely", 50.0), ("best", 90.0))
_SECONDS_PER_DAY = 86_400.0
_MAX_ID_BYTES = 128


# --- API types -----------------------------------------------------------------


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
    base: ForecastResult
    scenarios: tuple[ScenarioOutcome, ...]
    simulations: int
    seed: int


# --- entry points ----------------------------------------------------------------


def forecast(
    deals: Sequence[PipelineDeal],
    period: Period,
    settings: SimulationSettings,
    *,
    cancelled: Callable[[], bool] | None = None,
) -> ForecastOutcome:
    """Simulates the revenue ``deals`` book inside ``period``.

    Raises ``InvalidInput`` naming the offending field (proto paths:
    ``deals[3].value``, ``options.correlation``, ``period.end_time`` ...), and
    ``Cancelled`` when ``cancelled()`` turns true; it is polled between chunks,
    possibly from a worker thread. The same seed, deals and settings give the
    same outcome.
    """
    prepared = _prepare(deals, period, settings)
    pipeline, lane, layout = prepared.pipeline, prepared.lane, prepared.layout
    scaled_totals, _ = _simulate(layout, lane, [], cancelled)
    totals = scaled_totals.astype(np.float64)
    rows = _RowCache(layout)

    def won(simulation: int) -> tuple[str, ...]:
        row, stratum = rows.get(simulation)
        flags = row[: lane.width] < lane.thresholds[stratum]
        return tuple(pipeline.ids[i] for i in np.flatnonzero(flags))

    result = _result(pipeline, prepared.analysis, totals, prepared.scale, prepared.options, won)
    return ForecastOutcome(result, prepared.options.simulations, prepared.options.seed)


def compare_scenarios(
    base: Sequence[PipelineDeal],
    scenarios: Sequence[ScenarioSpec],
    period: Period,
    settings: SimulationSettings,
    *,
    cancelled: Callable[[], bool] | None = None,
) -> ComparisonOutcome:
    """Forecasts ``base`` and each what-if scenario with common random numbers.

    Every pipeline sees the same uniform per deal id and simulation and the same
    factor strata, so a scenario's per-simulation difference to the base comes
    only from the deals it removes, adds or changes: an identical scenario
    differs by exactly zero in every simulation. Validation and cancellation as
    in ``forecast``; field paths ``base_deals[2].id``,
    ``scenarios[1].added_deals[0].id``, ``scenarios[0].changes[2].deal_id`` ...
    """
    options = _resolve_options(settings)
    timeline = _timeline(period)
    base_pipeline = _validate_deals(base, "base_deals", timeline, "")
    _check_magnitude(base_pipeline, options, "base_deals")
    if len(scenarios) > MAX_SCENARIOS:
        raise InvalidInput("scenarios", f"must hold at most {MAX_SCENARIOS} scenarios")
    variants = _validate_scenarios(scenarios, base_pipeline, timeline)
    union_ids = list(base_pipeline.ids)
    for variant in variants:
        variant.union_columns[variant.kept_count :] = np.arange(len(union_ids), len(union_ids) + variant.added_count)
        union_ids.extend(variant.pipeline.ids[variant.kept_count :])
    _check_draws(options, len(union_ids))
    for j, variant in enumerate(variants):
        _check_magnitude(variant.pipeline, options, f"scenarios[{j}]")

    base_table = _conditional_win_table(base_pipeline.probabilities, options.correlation)
    base_analysis = _analyze(base_pipeline, base_table, timeline, options)
    scale = _value_scale([base_pipeline] + [v.pipeline for v in variants], options)
    base_thresholds = _thresholds(base_table, base_analysis.in_period)
    base_lane = _lane(base_thresholds, base_pipeline.values, options, scale, None)

    analyses: list[_Analysis] = []
    diff_lanes: list[tuple[_Lane, _Lane]] = []
    for variant in variants:
        analysis, removed_lane, added_lane = _scenario_lanes(
            variant, base_pipeline, base_table, base_lane, timeline, options, scale
        )
        analyses.append(analysis)
        diff_lanes.append((removed_lane, added_lane))
    del base_table

    layout = _Layout(options, len(base_thresholds), len(union_ids))
    base_scaled, differences = _simulate(layout, base_lane, diff_lanes, cancelled)
    rows = _RowCache(layout)

    def base_won(simulation: int) -> tuple[str, ...]:
        row, stratum = rows.get(simulation)
        flags = row[: base_lane.width] < base_lane.thresholds[stratum]
        return tuple(base_pipeline.ids[i] for i in np.flatnonzero(flags))

    base_totals = base_scaled.astype(np.float64)
    base_result = _result(base_pipeline, base_analysis, base_totals, scale, options, base_won)
    del base_totals

    outcomes = []
    for j, variant in enumerate(variants):
        removed_lane, added_lane = diff_lanes[j]

        def variant_won(
            simulation: int,
            variant: _Variant = variant,
            removed_lane: _Lane = removed_lane,
            added_lane: _Lane = added_lane,
        ) -> tuple[str, ...]:
            row, stratum = rows.get(simulation)
            flags = np.zeros(len(union_ids), dtype=bool)
            flags[: base_lane.width] = row[: base_lane.width] < base_lane.thresholds[stratum]
            flags[added_lane.columns] = row[added_lane.columns] < added_lane.thresholds[stratum]
            won_columns = flags[variant.union_columns]
            return tuple(variant.pipeline.ids[i] for i in np.flatnonzero(won_columns))

        difference = differences[j].astype(np.float64)
        totals = base_scaled + difference
        result = _result(variant.pipeline, analyses[j], totals, scale, options, variant_won)
        del totals
        outcomes.append(_difference_outcome(variant.name, result, difference, scale))
    return ComparisonOutcome(base_result, tuple(outcomes), options.simulations, options.seed)


# --- validation ------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
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

    @property
    def amount_low(self) -> float:
        """a in m = a + b (1 - V): the lowest multiplier."""
        return self.amount_mean_multiplier - self._half_width

    @property
    def amount_span(self) -> float:
        """b in m = a + b (1 - V): the width of the multiplier's range."""
        return 2.0 * self._half_width

    @property
    def amount_second_moment(self) -> float:
        """E[m^2] = mean^2 (1 + cv^2)."""
        return self.amount_mean_multiplier**2 * (1.0 + self.amount_cv**2)

    @property
    def _half_width(self) -> float:
        return self.amount_mean_multiplier * self.amount_cv * math.sqrt(3.0)


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _finite(x: object) -> float | None:
    """``x`` as a finite float, or None."""
    try:
        value = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _resolve_options(settings: SimulationSettings) -> _Options:
    s = settings
    if not _is_int(s.simulations) or not 1 <= s.simulations <= MAX_SIMULATIONS:
        raise InvalidInput("options.simulations", f"must be in [1, {MAX_SIMULATIONS}]")
    if s.seed is None:
        seed = secrets.randbits(63)
    elif not _is_int(s.seed) or not 0 <= s.seed < 2**64:
        raise InvalidInput("options.seed", "must be an integer in [0, 2^64)")
    else:
        seed = int(s.seed)
    correlation = _finite(s.correlation)
    if correlation is None or not 0.0 <= correlation <= 0.99:
        raise InvalidInput("options.correlation", "must be in [0, 0.99]")
    slip_mean = _finite(s.slip_mean_days)
    if slip_mean is None:
        raise InvalidInput("options.slip_mean_days", "must be finite")
    slip_std = _finite(s.slip_std_days)
    if slip_std is None or slip_std < 0.0:
        raise InvalidInput("options.slip_std_days", "must be finite and >= 0")
    undated = _finite(s.undated_in_period_probability)
    if undated is None or not 0.0 <= undated <= 1.0:
        raise InvalidInput("options.undated_in_period_probability", "must be in [0, 1]")
    mean_multiplier = _finite(s.amount_mean_multiplier)
    if mean_multiplier is None or mean_multiplier <= 0.0:
        raise InvalidInput("options.amount_mean_multiplier", "must be finite and > 0")
    cv = _finite(s.amount_cv)
    if cv is None or not 0.0 <= cv <= 1.0 / math.sqrt(3.0):
        raise InvalidInput("options.amount_cv", "must be in [0, 1/sqrt(3) = 0.577]")
    if not _is_int(s.histogram_bins) or not 1 <= s.histogram_bins <= 1000:
        raise InvalidInput("options.histogram_bins", "must be in [1, 1000]")
    return _Options(
        simulations=int(s.simulations),
        seed=seed,
        correlation=correlation,
        slip_mean_days=slip_mean,
        slip_std_days=slip_std,
        ignore_close_dates=bool(s.ignore_close_dates),
        undated_in_period_probability=undated,
        amount_mean_multiplier=mean_multiplier,
        amount_cv=cv,
        histogram_bins=int(s.histogram_bins),
    )


@dataclass(frozen=True)
class _Timeline:
    start: datetime  # UTC
    days: float  # length of the period in days
    month_starts: tuple[datetime, ...]
    month_bounds: np.ndarray  # days since start of each month start, then the end


def _utc(value: object, field: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInput(field, "must be a timezone-aware time")
    return value.astimezone(UTC)


def _timeline(period: Period) -> _Timeline:
    start = _utc(period.start, "period.start_time")
    end = _utc(period.end, "period.end_time")
    if end <= start:
        raise InvalidInput("period.end_time", "must be after period.start_time")
    starts = [start]
    year, month = start.year, start.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        if year > 9999:
            break
        month_start = datetime(year, month, 1, tzinfo=UTC)
        if month_start >= end:
            break
        starts.append(month_start)
    days = (end - start).total_seconds() / _SECONDS_PER_DAY
    bounds = [(s - start).total_seconds() / _SECONDS_PER_DAY for s in starts] + [days]
    return _Timeline(start, days, tuple(starts), np.array(bounds))


@dataclass
class _Pipeline:
    ids: list[str]
    values: np.ndarray  # float64
    probabilities: np.ndarray  # float64
    close_days: np.ndarray  # days after the period start; NaN when undated
    currency: str


def _close_days(close: object, timeline: _Timeline, field: str) -> float:
    if close is None:
        return math.nan
    return (_utc(close, field) - timeline.start).total_seconds() / _SECONDS_PER_DAY


def _validate_deals(deals: Sequence[PipelineDeal], prefix: str, timeline: _Timeline, currency: str) -> _Pipeline:
    """Checks ``deals`` (field paths ``<prefix>[i].<field>``) and returns them as
    arrays; ``currency`` is the code already in force, "" when none.

    The checks run on whole columns; a per-deal loop runs only to name the
    first offending deal.
    """
    count = len(deals)
    if count > MAX_DEALS:
        raise InvalidInput(prefix, f"must hold at most {MAX_DEALS} deals")
    ids = [deal.deal_id for deal in deals]
    # A string of at most 32 characters is at most 128 bytes in UTF-8.
    if len(set(ids)) != count or not all(type(i) is str and 0 < len(i) <= 32 for i in ids):
        seen: dict[str, int] = {}
        for i, deal_id in enumerate(ids):
            if not isinstance(deal_id, str) or not deal_id:
                raise InvalidInput(f"{prefix}[{i}].id", "must not be empty")
            if len(deal_id.encode("utf-8")) > _MAX_ID_BYTES:
                raise InvalidInput(f"{prefix}[{i}].id", f"must be at most {_MAX_ID_BYTES} bytes")
            if deal_id in seen:
                raise InvalidInput(f"{prefix}[{i}].id", f"duplicates {prefix}[{seen[deal_id]}].id")
            seen[deal_id] = i
    values = _column([deal.value for deal in deals], lambda x: x >= 0.0, prefix, "value", "must be finite and >= 0")
    probabilities = _column(
        [deal.win_probability for deal in deals],
        lambda x: (x >= 0.0) & (x <= 1.0),
        prefix,
        "probability",
        "must be in [0, 1]",
    )
    codes = {deal.currency for deal in deals if deal.currency}
    if currency:
        codes.add(currency)
    if len(codes) > 1:
        for i, deal in enumerate(deals):
            if deal.currency:
                if not currency:
                    currency = deal.currency
                elif deal.currency != currency:
                    raise InvalidInput(f"{prefix}[{i}].currency", f"must match the other deals' currency {currency!r}")
    currency = currency or next(iter(codes), "")
    start = timeline.start
    try:
        seconds = [
            math.nan if deal.expected_close is None else (deal.expected_close - start).total_seconds() for deal in deals
        ]
    except (TypeError, AttributeError):  # a naive datetime or not a datetime
        seconds = [
            _close_days(deal.expected_close, timeline, f"{prefix}[{i}].expected_close_time") * _SECONDS_PER_DAY
            for i, deal in enumerate(deals)
        ]
    close_days = np.array(seconds, dtype=np.float64).reshape(count) / _SECONDS_PER_DAY
    return _Pipeline(ids, values, probabilities, close_days, currency)


def _column(
    items: list[object], valid: Callable[[np.ndarray], np.ndarray], prefix: str, field: str, rule: str
) -> np.ndarray:
    """``items`` as a float64 array, checked to be finite and ``valid``."""
    try:
        column = np.array(items, dtype=np.float64).reshape(len(items))
    except (TypeError, ValueError):
        column = np.array([math.nan if _finite(x) is None else _finite(x) for x in items]).reshape(len(items))
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~(np.isfinite(column) & valid(column)))
    if len(bad):
        raise InvalidInput(f"{prefix}[{bad[0]}].{field}", rule)
    return column


def _check_magnitude(pipeline: _Pipeline, options: _Options, field: str) -> None:
    # Totals must stay finite in float64 (the factor 2 covers the largest
    # multiplier, mean * (1 + sqrt(3) cv) < 2 mean).
    with np.errstate(over="ignore"):
        bound = float(pipeline.values.sum()) * options.amount_mean_multiplier * 2.0
    if not math.isfinite(bound):
        raise InvalidInput(field, "sum of values times options.amount_mean_multiplier is too large")


def _check_draws(options: _Options, columns: int) -> None:
    if options.simulations * columns > MAX_DRAWS:
        raise InvalidInput(
            "options.simulations",
            f"simulations x deals must be at most {MAX_DRAWS:.2g} (here {options.simulations} x {columns})",
        )


@dataclass
class _Variant:
    name: str
    pipeline: _Pipeline
    kept: np.ndarray  # base indices kept, in base order
    changed: np.ndarray  # positions (in the variant's pipeline) of kept deals that differ from the base
    kept_count: int
    added_count: int
    union_columns: np.ndarray  # each deal's column in the union of all deal ids


def _validate_scenarios(scenarios: Sequence[ScenarioSpec], base: _Pipeline, timeline: _Timeline) -> list[_Variant]:
    base_index = {deal_id: i for i, deal_id in enumerate(base.ids)}
    names: dict[str, int] = {}
    variants = []
    for j, spec in enumerate(scenarios):
        prefix = f"scenarios[{j}]"
        if not isinstance(spec.name, str) or not spec.name:
            raise InvalidInput(f"{prefix}.name", "must not be empty")
        if spec.name in names:
            raise InvalidInput(f"{prefix}.name", f"duplicates scenarios[{names[spec.name]}].name")
        names[spec.name] = j
        added = _validate_deals(spec.added_deals, f"{prefix}.added_deals", timeline, base.currency)
        for k, deal_id in enumerate(added.ids):
            if deal_id in base_index:
                raise InvalidInput(f"{prefix}.added_deals[{k}].id", "is already in base_deals")
        removed: set[int] = set()
        for k, deal_id in enumerate(spec.removed_deal_ids):
            field = f"{prefix}.removed_deal_ids[{k}]"
            if deal_id not in base_index:
                raise InvalidInput(field, "is not in base_deals")
            if base_index[deal_id] in removed:
                raise InvalidInput(field, "is removed twice")
            removed.add(base_index[deal_id])
        values = base.values.copy()
        probabilities = base.probabilities.copy()
        close_days = base.close_days.copy()
        touched: set[int] = set()
        for k, change in enumerate(spec.changes):
            field = f"{prefix}.changes[{k}]"
            index = base_index.get(change.deal_id)
            if index is None:
                raise InvalidInput(f"{field}.deal_id", "is not in base_deals")
            if index in removed:
                raise InvalidInput(f"{field}.deal_id", "is removed by this scenario")
            if index in touched:
                raise InvalidInput(f"{field}.deal_id", "is changed twice")
            touched.add(index)
            if change.win_probability is not None:
                probability = _finite(change.win_probability)
                if probability is None or not 0.0 <= probability <= 1.0:
                    raise InvalidInput(f"{field}.probability", "must be in [0, 1]")
                probabilities[index] = probability
            if change.value is not None:
                value = _finite(change.value)
                if value is None or value < 0.0:
                    raise InvalidInput(f"{field}.value", "must be finite and >= 0")
                values[index] = value
            if change.expected_close is not None:
                close_days[index] = _close_days(change.expected_close, timeline, f"{field}.expected_close_time")
        kept = np.array([i for i in range(len(base.ids)) if i not in removed], dtype=np.intp)
        if len(kept) + len(added.ids) > MAX_DEALS:
            raise InvalidInput(f"{prefix}.added_deals", f"the scenario must hold at most {MAX_DEALS} deals")
        differs = (
            (values[kept] != base.values[kept])
            | (probabilities[kept] != base.probabilities[kept])
            | ~(
                (close_days[kept] == base.close_days[kept])
                | (np.isnan(close_days[kept]) & np.isnan(base.close_days[kept]))
            )
        )
        pipeline = _Pipeline(
            ids=[base.ids[i] for i in kept] + added.ids,
            values=np.concatenate([values[kept], added.values]),
            probabilities=np.concatenate([probabilities[kept], added.probabilities]),
            close_days=np.concatenate([close_days[kept], added.close_days]),
            currency=added.currency,
        )
        columns = np.empty(len(pipeline.ids), dtype=np.intp)
        columns[: len(kept)] = kept  # base deals keep their base column; added ones are set later
        variants.append(
            _Variant(spec.name, pipeline, kept, np.flatnonzero(differs), len(kept), len(added.ids), columns)
        )
    return variants


# --- the exact parts ---------------------------------------------------------------


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(_GAUSS_POINTS)
# Factor values at the Gauss-Legendre points of each equiprobable stratum,
# (strata, points); stratum 0 holds the lowest factor values.
_STRATUM_FACTORS = ndtri((np.arange(_STRATA)[:, None] + (_NODES[None, :] + 1.0) / 2.0) / _STRATA)


def _conditional_win_table(probabilities: np.ndarray, correlation: float) -> np.ndarray:
    """Each deal's win probability averaged over each factor stratum,
    (strata, deals); a single row when the correlation is 0.

    The mean over strata is exactly the deal's probability: the quadrature's
    small error is removed by scaling the row (or, when the row must go up, its
    complement), which keeps every entry in [0, 1].
    """
    if correlation == 0.0:
        return probabilities[None, :].copy()
    table = np.empty((_STRATA, len(probabilities)))
    inner = (probabilities > 0.0) & (probabilities < 1.0)
    table[:, ~inner] = probabilities[~inner]
    # Reps enter round probabilities, so a pipeline often holds few distinct ones.
    distinct, inverse = np.unique(probabilities[inner], return_inverse=True)
    rows = np.empty((_STRATA, len(distinct)))
    shift = math.sqrt(correlation) * _STRATUM_FACTORS.reshape(-1, 1)
    spread = math.sqrt(1.0 - correlation)
    block = 512

    def run(task: int, scratch: np.ndarray) -> None:
        p = distinct[task * block : (task + 1) * block]
        conditional = scratch[:, : len(p)]
        np.subtract(ndtri(p), shift, out=conditional)
        conditional /= spread
        ndtr(conditional, out=conditional)
        averaged = (_WEIGHTS / 2.0) @ conditional.reshape(_STRATA, _GAUSS_POINTS, len(p))
        mean = averaged.mean(axis=0)
        up = mean < p
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(up, (1.0 - p) / (1.0 - mean), p / mean)
        # Scale the row down, or its complement down: 1 - (1 - x) f = x f + (1 - f).
        rows[:, task * block : (task + 1) * block] = averaged * factor + np.where(up, 1.0 - factor, 0.0)

    # ndtr costs 10-20 ns a value, the largest cost outside the simulation, so
    # blocks of deals are spread over the worker threads, each with one reused
    # 1 MB scratch (fresh memory costs more than ndtr on these VMs).
    _in_threads(
        -(-len(distinct) // block),
        run,
        lambda: np.empty((_STRATA * _GAUSS_POINTS, min(block, len(distinct)))),
    )
    np.clip(rows, 0.0, 1.0, out=rows)
    table[:, inner] = rows[:, inverse]
    return table


def _in_period_probability(close_days: np.ndarray, timeline: _Timeline, options: _Options) -> np.ndarray:
    if options.ignore_close_dates:
        return np.ones(len(close_days))
    q = np.full(len(close_days), options.undated_in_period_probability)
    dated = ~np.isnan(close_days)
    closes = close_days[dated] + options.slip_mean_days
    sd = options.slip_std_days
    if sd == 0.0:
        q[dated] = (closes >= 0.0) & (closes < timeline.days)
    else:
        lower = (0.0 - closes) / sd
        upper = (timeline.days - closes) / sd
        # Differences of CDFs near 1 lose digits; use the upper tails there.
        early = lower > 0.0
        q[dated] = np.where(early, ndtr(-lower) - ndtr(-upper), ndtr(upper) - ndtr(lower))
    return np.clip(q, 0.0, 1.0)


def _thresholds(table: np.ndarray, in_period: np.ndarray) -> np.ndarray:
    """P(win and close in period) per stratum and deal, as the float32 the
    simulation compares its uniforms with."""
    threshold = table * in_period[None, :]
    np.minimum(threshold, 1.0, out=threshold)
    tiny = (threshold > 0.0) & (threshold < _MIN_THRESHOLD)
    threshold[tiny] = _MIN_THRESHOLD
    return threshold.astype(np.float32)


@dataclass
class _Analysis:
    in_period: np.ndarray
    expected_revenue: np.ndarray
    variance_share: np.ndarray
    variance: float  # exact variance of the total under the stratified model
    expected_won_deals: float
    monthly: tuple[MonthlyRevenue, ...]


def _analyze(pipeline: _Pipeline, table: np.ndarray, timeline: _Timeline, options: _Options) -> _Analysis:
    """The exact moments of the model: per deal expected revenue and covariance
    with the total, per month expected revenue, in O(deals x strata)."""
    v, p = pipeline.values, pipeline.probabilities
    q = _in_period_probability(pipeline.close_days, timeline, options)
    mean_multiplier = options.amount_mean_multiplier
    expected = v * p * q * mean_multiplier
    # Deal i books X_i. Given the stratum k deals are independent and
    # E[X_i | k] = e_i pc_ik with e_i = v q E[m], so
    # Cov(X_i, T) = Var(X_i) + Cov_k(E[X_i|k], E[T|k]) - Var_k(E[X_i|k]).
    # Var(X_i) = v^2 q p E[m^2] - (v q p E[m])^2, written so that it is exactly
    # 0 for a certain deal without amount noise.
    # In units of `unit` (a power of two near the largest value times the
    # multiplier) so that squares of large values cannot overflow.
    unit = _value_scale([pipeline], options)
    scaled = v * (mean_multiplier / unit)
    own = scaled**2 * (q * p) * (1.0 + options.amount_cv**2 - q * p)
    covariance = own
    if len(table) > 1 and len(v):
        e = scaled * q
        deviation = table - p[None, :]  # exactly 0 for probabilities 0 and 1
        total_deviation = deviation @ e
        covariance = own + e * (total_deviation @ deviation) / len(table)
        covariance -= e**2 * np.einsum("kd,kd->d", deviation, deviation) / len(table)
        del deviation
    variance = float(covariance.sum())
    shares = covariance / variance if variance > 0.0 else np.zeros(len(v))
    return _Analysis(
        in_period=q,
        expected_revenue=expected,
        variance_share=shares,
        variance=max(variance, 0.0) * unit * unit,  # inf for absurd values; only tests read it
        expected_won_deals=float((p * q).sum()),
        monthly=_monthly(pipeline, q, timeline, options),
    )


def _monthly(pipeline: _Pipeline, q: np.ndarray, timeline: _Timeline, options: _Options) -> tuple[MonthlyRevenue, ...]:
    """Expected revenue and won deals per calendar month. Dated deals follow
    the slip distribution; undated deals, and every deal when close dates are
    ignored, are spread evenly over the period's time."""
    bounds = timeline.month_bounds
    weights = np.stack(
        [pipeline.values * pipeline.probabilities * options.amount_mean_multiplier, pipeline.probabilities], axis=1
    )
    time_share = np.diff(bounds)[:, None] / timeline.days
    if options.ignore_close_dates:
        monthly = time_share * weights.sum(axis=0)
    else:
        undated = np.isnan(pipeline.close_days)
        monthly = time_share * (weights[undated] * q[undated, None]).sum(axis=0)
        closes = pipeline.close_days[~undated] + options.slip_mean_days
        cumulative = _slip_cdf_sums(closes, weights[~undated], bounds, options.slip_std_days)
        monthly += np.maximum(np.diff(cumulative, axis=0), 0.0)
    return tuple(
        MonthlyRevenue(start, float(revenue), float(won))
        for start, (revenue, won) in zip(timeline.month_starts, monthly, strict=True)
    )


def _slip_cdf_sums(closes: np.ndarray, weights: np.ndarray, bounds: np.ndarray, sd: float) -> np.ndarray:
    """For each bound b, sum_i weights_i * P(closes_i + slip < b), slip ~ N(0, sd).

    Deals more than nine sd from b count fully or not at all, so only pairs of
    bounds and deals within that window are evaluated: O(deals x months in the
    window) rather than deals x months.
    """
    order = np.argsort(closes, kind="stable")
    closes, weights = closes[order], weights[order]
    cumulative = np.vstack([np.zeros((1, weights.shape[1])), np.cumsum(weights, axis=0)])
    if sd == 0.0:
        return cumulative[np.searchsorted(closes, bounds, side="left")]
    first = np.searchsorted(closes, bounds - _TAIL_SDS * sd, side="left")
    last = np.searchsorted(closes, bounds + _TAIL_SDS * sd, side="right")
    sums = cumulative[first].copy()
    counts = last - first
    ends = np.cumsum(counts)
    lo = 0
    while lo < len(bounds):
        # A batch of bounds with at most ~1M pairs, at least one bound.
        hi = max(lo + 1, int(np.searchsorted(ends, ends[lo] - counts[lo] + (1 << 20), side="right")))
        batch = counts[lo:hi]
        pairs = int(batch.sum())
        if pairs:
            bound_index = np.repeat(np.arange(lo, hi), batch)
            offsets = np.repeat(np.cumsum(batch) - batch, batch)
            deal_index = first[bound_index] + np.arange(pairs) - offsets
            cdf = ndtr((bounds[bound_index] - closes[deal_index]) / sd)
            for column in range(weights.shape[1]):
                sums[lo:hi, column] += np.bincount(
                    bound_index - lo, weights=cdf * weights[deal_index, column], minlength=hi - lo
                )
        lo = hi
    return sums


# --- the simulation --------------------------------------------------------------


@dataclass(frozen=True)
class _Lane:
    """A pipeline, or part of one, laid over columns of the uniforms."""

    columns: np.ndarray | None  # union columns; None: the first `width` columns
    width: int
    thresholds: np.ndarray  # (strata, width) float32
    fixed: np.ndarray  # (width,) float32: a * value / scale
    slope: np.ndarray | None  # (strata, width) float32: b * value / (scale * threshold); None when b = 0


def _value_scale(pipelines: list[_Pipeline], options: _Options) -> float:
    """A power of two that brings every value times the multiplier below 2, so
    float32 neither overflows nor loses relative precision; exact to undo."""
    largest = max((float(p.values.max()) for p in pipelines if len(p.values)), default=0.0)
    exponent = math.frexp(largest)[1] + math.frexp(options.amount_mean_multiplier)[1] - 1
    return math.ldexp(1.0, exponent)


def _lane(
    thresholds: np.ndarray, values: np.ndarray, options: _Options, scale: float, columns: np.ndarray | None
) -> _Lane:
    fixed = (options.amount_low * values / scale).astype(np.float32)
    slope = None
    if options.amount_span > 0.0:
        spans = (options.amount_span * values / scale).astype(np.float32)
        slope = np.zeros(thresholds.shape, dtype=np.float32)
        np.divide(spans, thresholds, out=slope, where=thresholds > 0)
    return _Lane(columns, len(values), np.ascontiguousarray(thresholds), fixed, slope)


def _sub_lane(lane: _Lane, positions: np.ndarray, columns: np.ndarray) -> _Lane:
    return _Lane(
        columns=columns,
        width=len(positions),
        thresholds=np.ascontiguousarray(lane.thresholds[:, positions]),
        fixed=lane.fixed[positions],
        slope=None if lane.slope is None else np.ascontiguousarray(lane.slope[:, positions]),
    )


def _scenario_lanes(
    variant: _Variant,
    base: _Pipeline,
    base_table: np.ndarray,
    base_lane: _Lane,
    timeline: _Timeline,
    options: _Options,
    scale: float,
) -> tuple[_Analysis, _Lane, _Lane]:
    """The scenario's exact analysis and the two lanes its difference to the
    base is simulated on: the base's removed and changed deals, and the
    scenario's changed and added deals."""
    pipeline = variant.pipeline
    kept_count = variant.kept_count
    table = np.empty((len(base_table), len(pipeline.ids)))
    table[:, :kept_count] = base_table[:, variant.kept]
    new = np.concatenate([variant.changed, np.arange(kept_count, len(pipeline.ids))])
    table[:, new] = _conditional_win_table(pipeline.probabilities[new], options.correlation)
    analysis = _analyze(pipeline, table, timeline, options)
    thresholds = _thresholds(table[:, new], analysis.in_period[new])
    del table
    own = _lane(thresholds, pipeline.values[new], options, scale, None)
    added_lane = _Lane(variant.union_columns[new], own.width, own.thresholds, own.fixed, own.slope)
    removed = np.setdiff1d(np.arange(len(base.ids)), variant.kept)
    taken_out = np.sort(np.concatenate([removed, variant.kept[variant.changed]]))
    removed_lane = _sub_lane(base_lane, taken_out, taken_out)
    return analysis, removed_lane, added_lane


class _Layout:
    """How simulations map to factor strata, chunks and random streams.

    Simulations are numbered stratum by stratum; chunk j holds simulations
    [j * sims_per_chunk, (j + 1) * sims_per_chunk) and draws its uniforms,
    (rows, columns) float32, from ``SeedSequence(seed).spawn(...)[j]``.
    """

    def __init__(self, options: _Options, strata: int, columns: int) -> None:
        simulations = options.simulations
        counts = np.full(strata, simulations // strata, dtype=np.int64)
        remainder = simulations % strata
        if remainder:
            # The root sequence is not one of its spawned children, so this
            # stream is independent of every chunk's.
            extra = np.random.default_rng(np.random.SeedSequence(options.seed)).choice(strata, remainder, replace=False)
            counts[extra] += 1
        self.seed = options.seed
        self.simulations = simulations
        self.columns = columns
        self.bounds = np.concatenate([[0], np.cumsum(counts)])
        self.sims_per_chunk = max(1, _CHUNK_VALUES // max(columns, 1))
        self.chunks = -(-simulations // self.sims_per_chunk)

    def rows(self, chunk: int) -> tuple[int, int]:
        first = chunk * self.sims_per_chunk
        return first, min(self.simulations, first + self.sims_per_chunk)

    def blocks(self, chunk: int) -> list[tuple[int, int, int]]:
        """(stratum, first row, end row) of each stratum's rows in the chunk."""
        first, end = self.rows(chunk)
        stratum = int(np.searchsorted(self.bounds, first, side="right")) - 1
        blocks = []
        while stratum < len(self.bounds) - 1 and self.bounds[stratum] < end:
            lo, hi = max(int(self.bounds[stratum]), first), min(int(self.bounds[stratum + 1]), end)
            if hi > lo:
                blocks.append((stratum, lo - first, hi - first))
            stratum += 1
        return blocks

    def stratum(self, simulation: int) -> int:
        return int(np.searchsorted(self.bounds, simulation, side="right")) - 1

    def generator(self, chunk: int) -> np.random.Generator:
        # Same as SeedSequence(seed).spawn(chunk + 1)[chunk], without building
        # the children before it.
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=(chunk,))))


class _Buffers:
    """One worker's scratch, allocated once and reused for every chunk."""

    def __init__(self, layout: _Layout, width: int, gathered: int) -> None:
        rows = layout.sims_per_chunk
        self.uniforms = np.empty(rows * layout.columns, dtype=np.float32)
        self.margin = np.empty(rows * width, dtype=np.float32)  # thr - U, then its positive part
        self.mask = np.empty(rows * width, dtype=np.float32)
        self.gathered = np.empty(rows * gathered, dtype=np.float32)
        self.sums = np.empty((3, rows), dtype=np.float32)


def _lane_totals(
    uniforms: np.ndarray,
    lane: _Lane,
    blocks: list[tuple[int, int, int]],
    buffers: _Buffers,
    out: np.ndarray,
    scratch: np.ndarray,
) -> None:
    """Scaled revenue of ``lane`` in each row of ``uniforms`` (rows, lane.width)."""
    rows, width = uniforms.shape
    if width == 0:
        out.fill(0.0)
        return
    margin = buffers.margin[: rows * width].reshape(rows, width)
    mask = buffers.mask[: rows * width].reshape(rows, width)
    for stratum, lo, hi in blocks:
        np.subtract(lane.thresholds[stratum], uniforms[lo:hi], out=margin[lo:hi])
    np.ceil(margin, out=mask)  # margin in (-1, 1]: 1 where won, else 0 (or -0)
    np.matmul(mask, lane.fixed, out=out)
    if lane.slope is not None:
        np.multiply(margin, mask, out=margin)
        for stratum, lo, hi in blocks:
            np.matmul(margin[lo:hi], lane.slope[stratum], out=scratch[lo:hi])
        out += scratch


def _simulate(
    layout: _Layout,
    base: _Lane,
    differences: list[tuple[_Lane, _Lane]],
    cancelled: Callable[[], bool] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs every chunk; returns the base's scaled totals (simulations,) and,
    per (taken out, put in) pair of lanes, the scaled per-simulation difference
    (pairs, simulations), both float32."""
    totals = np.empty(layout.simulations, dtype=np.float32)
    diffs = np.empty((len(differences), layout.simulations), dtype=np.float32)
    if layout.columns == 0:
        totals.fill(0.0)
        diffs.fill(0.0)
        return totals, diffs
    width = max([base.width] + [lane.width for pair in differences for lane in pair])
    gathered = max([0] + [lane.width for pair in differences for lane in pair])

    def run(chunk: int, buffers: _Buffers) -> None:
        _run_chunk(chunk, layout, base, differences, buffers, totals, diffs)

    _in_threads(layout.chunks, run, lambda: _Buffers(layout, width, gathered), cancelled)
    return totals, diffs


def _in_threads(
    tasks: int,
    run: Callable[[int, Any], None],
    scratch: Callable[[], Any],
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Runs ``run(task, scratch)`` for every task on up to ``_WORKER_THREADS``
    threads, the caller's included; each thread makes its scratch once.

    NumPy's generators and ufuncs and scipy.special release the GIL, so on
    two cores two threads run nearly twice as fast. Tasks must not depend on
    which thread runs them or in which order. ``cancelled`` is polled before
    each task.
    """
    next_task = itertools.count()  # next() on a count is atomic under the GIL
    stop = threading.Event()
    failures: list[BaseException] = []

    def work() -> None:
        try:
            own = scratch()
            while not stop.is_set():
                task = next(next_task)
                if task >= tasks:
                    return
                if cancelled is not None and cancelled():
                    raise Cancelled("the forecast was cancelled")
                run(task, own)
        except BaseException as error:  # handed to the calling thread
            failures.append(error)
            stop.set()

    helpers = [threading.Thread(target=work, daemon=True) for _ in range(min(_WORKER_THREADS, tasks) - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    if failures:
        raise failures[0]


def _run_chunk(
    chunk: int,
    layout: _Layout,
    base: _Lane,
    differences: list[tuple[_Lane, _Lane]],
    buffers: _Buffers,
    totals: np.ndarray,
    diffs: np.ndarray,
) -> None:
    first, end = layout.rows(chunk)
    rows = end - first
    uniforms = buffers.uniforms[: rows * layout.columns].reshape(rows, layout.columns)
    layout.generator(chunk).random(out=uniforms, dtype=np.float32)
    blocks = layout.blocks(chunk)
    out, other, scratch = buffers.sums[0, :rows], buffers.sums[1, :rows], buffers.sums[2, :rows]
    view = uniforms if base.width == layout.columns else uniforms[:, : base.width]
    _lane_totals(view, base, blocks, buffers, out, scratch)
    totals[first:end] = out
    for pair, (taken_out, put_in) in enumerate(differences):
        for lane, target in ((taken_out, out), (put_in, other)):
            gathered = buffers.gathered[: rows * lane.width].reshape(rows, lane.width)
            np.take(uniforms, lane.columns, axis=1, out=gathered, mode="clip")
            _lane_totals(gathered, lane, blocks, buffers, target, scratch)
        np.subtract(other, out, out=diffs[pair, first:end])


class _RowCache:
    """Regenerates single simulations' uniforms from their chunk's stream, for
    the example simulations behind the worst, likely and best scenarios."""

    def __init__(self, layout: _Layout) -> None:
        self._layout = layout
        self._rows: dict[int, tuple[np.ndarray, int]] = {}

    def get(self, simulation: int) -> tuple[np.ndarray, int]:
        if simulation not in self._rows:
            layout = self._layout
            chunk, row = divmod(simulation, layout.sims_per_chunk)
            # Uniforms fill row by row, so the first row + 1 rows are a prefix
            # of the chunk's draw.
            uniforms = layout.generator(chunk).random((row + 1, layout.columns), dtype=np.float32)
            self._rows[simulation] = (uniforms[row].copy(), layout.stratum(simulation))
        return self._rows[simulation]


# --- results ------------------------------------------------------------------------


def _result(
    pipeline: _Pipeline,
    analysis: _Analysis,
    totals: np.ndarray,
    scale: float,
    options: _Options,
    won: Callable[[int], tuple[str, ...]],
) -> ForecastResult:
    """Summarizes simulated totals given in units of ``scale`` (a power of two,
    so scaling back is exact and squares cannot overflow)."""
    simulations = len(totals)
    percentiles = np.percentile(totals, _PERCENTILES)
    examples = []
    for name, percentile in _EXAMPLES:
        point = percentiles[_PERCENTILES.index(percentile)]
        nearest = int(np.argmin(np.abs(totals - point)))
        examples.append(RevenueScenario(name, percentile, float(point) * scale, won(nearest)))
    lowest, highest = float(totals.min()), float(totals.max())
    if highest > lowest:
        counts, edges = np.histogram(totals, bins=options.histogram_bins, range=(lowest, highest))
        edges = edges * scale
        histogram = tuple(
            HistogramBin(float(edges[i]), float(edges[i + 1]), int(counts[i])) for i in range(len(counts))
        )
    else:
        histogram = (HistogramBin(lowest * scale, highest * scale, simulations),)
    order = np.argsort(-analysis.variance_share, kind="stable")
    contributions = tuple(
        DealContribution(pipeline.ids[i], revenue, in_period, share)
        for i, revenue, in_period, share in zip(
            order.tolist(),
            analysis.expected_revenue[order].tolist(),
            analysis.in_period[order].tolist(),
            analysis.variance_share[order].tolist(),
            strict=True,
        )
    )
    return ForecastResult(
        currency=pipeline.currency,
        mean=float(totals.mean()) * scale,
        std_dev=float(totals.std(ddof=1)) * scale if simulations > 1 else 0.0,
        p5=float(percentiles[0]) * scale,
        p10=float(percentiles[1]) * scale,
        p25=float(percentiles[2]) * scale,
        p50=float(percentiles[3]) * scale,
        p75=float(percentiles[4]) * scale,
        p90=float(percentiles[5]) * scale,
        p95=float(percentiles[6]) * scale,
        scenarios=tuple(examples),
        histogram=histogram,
        deal_contributions=contributions,
        weighted_pipeline=float((pipeline.values * pipeline.probabilities).sum()),
        total_pipeline=float(pipeline.values.sum()),
        monthly=analysis.monthly,
        expected_won_deals=analysis.expected_won_deals,
    )


def _difference_outcome(name: str, result: ForecastResult, difference: np.ndarray, scale: float) -> ScenarioOutcome:
    """Summarizes per-simulation differences given in units of ``scale``."""
    simulations = len(difference)
    mean = float(difference.mean()) * scale
    # The plain standard error; stratifying the factor only makes it smaller,
    # so the interval is conservative.
    sd = float(difference.std(ddof=1)) * scale if simulations > 1 else 0.0
    half_width = 1.96 * sd / math.sqrt(simulations)
    low, high = np.percentile(difference, [5.0, 95.0]) * scale
    return ScenarioOutcome(
        name=name,
        result=result,
        mean_difference=mean,
        mean_difference_ci_low=mean - half_width,
        mean_difference_ci_high=mean + half_width,
        difference_p5=float(low),
        difference_p95=float(high),
        probability_better=float(np.count_nonzero(difference > 0.0)) / simulations,
    )


# --- for tests and benchmarks ------------------------------------------------------


@dataclass
class _Prepared:
    options: _Options
    pipeline: _Pipeline
    analysis: _Analysis
    scale: float
    lane: _Lane
    layout: _Layout


def _prepare(deals: Sequence[PipelineDeal], period: Period, settings: SimulationSettings) -> _Prepared:
    """Validates one pipeline and computes everything but the simulation."""
    options = _resolve_options(settings)
    timeline = _timeline(period)
    pipeline = _validate_deals(deals, "deals", timeline, "")
    _check_draws(options, len(pipeline.ids))
    _check_magnitude(pipeline, options, "deals")
    table = _conditional_win_table(pipeline.probabilities, options.correlation)
    analysis = _analyze(pipeline, table, timeline, options)
    thresholds = _thresholds(table, analysis.in_period)
    del table
    scale = _value_scale([pipeline], options)
    lane = _lane(thresholds, pipeline.values, options, scale, None)
    layout = _Layout(options, len(thresholds), len(pipeline.ids))
    return _Prepared(options, pipeline, analysis, scale, lane, layout)


def _simulated_totals(deals: Sequence[PipelineDeal], period: Period, settings: SimulationSettings) -> np.ndarray:
    """The per-simulation totals ``forecast`` summarizes, in simulation order
    (grouped by factor stratum). For tests and benchmarks."""
    prepared = _prepare(deals, period, settings)
    scaled, _ = _simulate(prepared.layout, prepared.lane, [], None)
    return scaled.astype(np.float64) * prepared.scale


def _model_variance(deals: Sequence[PipelineDeal], period: Period, settings: SimulationSettings) -> float:
    """The exact variance of one simulation's total under the engine's
    (stratified) model. For tests."""
    return _prepare(deals, period, settings).analysis.variance
