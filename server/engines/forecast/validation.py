"""The forecast engine's input rules, and the checked forms the computation uses.

Every rule names the offending field by its proto path (``deals[3].value``,
``options.correlation``, ``scenarios[1].changes[0].deal_id`` ...) so that the
servicer can pass ``InvalidInput`` through unchanged. What passes becomes
``Options`` (settings with the seed drawn), a ``Timeline`` (the period in days
and calendar months), a ``Pipeline`` (deals as float64 columns) and, per
what-if scenario, a ``Variant`` (its pipeline and how it maps onto the base).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from server.engines.forecast.types import Period, PipelineDeal, ScenarioSpec, SimulationSettings
from vectoros.core.deals import check_id
from vectoros.core.errors import InvalidInput

MAX_DEALS = 50_000
MAX_SIMULATIONS = 1_000_000
MAX_DRAWS = 2_500_000_000
MAX_SCENARIOS = 20

_SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Options:
    """``SimulationSettings`` checked, with the seed drawn when none was given."""

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


def resolve_options(settings: SimulationSettings) -> Options:
    """Checks every setting (fields ``options.<name>``) and draws a seed if needed."""
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
    return Options(
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
class Timeline:
    """The period in days after its start, cut at calendar months (UTC)."""

    start: datetime  # UTC
    days: float  # length of the period in days
    month_starts: tuple[datetime, ...]
    month_bounds: np.ndarray  # days since start of each month start, then the end


def _utc(value: object, field: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInput(field, "must be a timezone-aware time")
    return value.astimezone(UTC)


def period_timeline(period: Period) -> Timeline:
    """Checks ``period`` (fields ``period.start_time``, ``period.end_time``)."""
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
    return Timeline(start, days, tuple(starts), np.array(bounds))


@dataclass
class Pipeline:
    """Validated deals as columns, in the caller's order."""

    ids: list[str]
    values: np.ndarray  # float64
    probabilities: np.ndarray  # float64
    close_days: np.ndarray  # days after the period start; NaN when undated
    currency: str


def _close_days(close: object, timeline: Timeline, field: str) -> float:
    if close is None:
        return math.nan
    return (_utc(close, field) - timeline.start).total_seconds() / _SECONDS_PER_DAY


def validate_deals(deals: Sequence[PipelineDeal], prefix: str, timeline: Timeline, currency: str) -> Pipeline:
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
            check_id(deal_id if isinstance(deal_id, str) else "", f"{prefix}[{i}].id")
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
    return Pipeline(ids, values, probabilities, close_days, currency)


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


def check_magnitude(pipeline: Pipeline, options: Options, field: str) -> None:
    # Totals must stay finite in float64 (the factor 2 covers the largest
    # multiplier, mean * (1 + sqrt(3) cv) < 2 mean).
    with np.errstate(over="ignore"):
        bound = float(pipeline.values.sum()) * options.amount_mean_multiplier * 2.0
    if not math.isfinite(bound):
        raise InvalidInput(field, "sum of values times options.amount_mean_multiplier is too large")


def check_draws(options: Options, columns: int, scenario_columns: int = 0, scenarios: int = 0) -> None:
    """Bounds the work of one call: simulations x (the deals drawn for, plus, for
    CompareScenarios, the deals each scenario removes or adds, plus one total per
    scenario). Counting only the drawn deals let 20 scenarios that each change
    every deal run 40 times past the bound."""
    work = columns + scenario_columns + scenarios
    if options.simulations * work > MAX_DRAWS:
        if scenarios:
            raise InvalidInput(
                "options.simulations",
                f"simulations x (deals + deals changed by each scenario + scenarios) must be at most "
                f"{MAX_DRAWS:.2g} (here {options.simulations} x ({columns} + {scenario_columns} + {scenarios}))",
            )
        raise InvalidInput(
            "options.simulations",
            f"simulations x deals must be at most {MAX_DRAWS:.2g} (here {options.simulations} x {columns})",
        )


@dataclass
class Variant:
    """A scenario's pipeline: the base deals it keeps (in base order, changes
    applied), then the deals it adds."""

    name: str
    pipeline: Pipeline
    kept: np.ndarray  # base indices kept, in base order
    changed: np.ndarray  # positions (in the variant's pipeline) of kept deals that differ from the base
    kept_count: int
    added_count: int
    union_columns: np.ndarray  # each deal's column in the union of all deal ids


def validate_scenarios(scenarios: Sequence[ScenarioSpec], base: Pipeline, timeline: Timeline) -> list[Variant]:
    """Checks the what-if scenarios against the validated ``base`` and returns
    each as a ``Variant``; added deals' union columns are left for the caller."""
    if len(scenarios) > MAX_SCENARIOS:
        raise InvalidInput("scenarios", f"must hold at most {MAX_SCENARIOS} scenarios")
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
        added = validate_deals(spec.added_deals, f"{prefix}.added_deals", timeline, base.currency)
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
        pipeline = Pipeline(
            ids=[base.ids[i] for i in kept] + added.ids,
            values=np.concatenate([values[kept], added.values]),
            probabilities=np.concatenate([probabilities[kept], added.probabilities]),
            close_days=np.concatenate([close_days[kept], added.close_days]),
            currency=added.currency,
        )
        columns = np.empty(len(pipeline.ids), dtype=np.intp)
        columns[: len(kept)] = kept  # base deals keep their base column; added ones are set later
        variants.append(
            Variant(spec.name, pipeline, kept, np.flatnonzero(differs), len(kept), len(added.ids), columns)
        )
    return variants
