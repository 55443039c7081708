"""The forecast engine's entry points, ``forecast`` and ``compare_scenarios``.

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

How it is computed: the exact parts (expected revenue per deal and per month,
expected won deals, variance shares) in ``moments``; only the distribution of
the total (mean, spread, percentiles, histogram, example simulations) comes
from sampling, in ``kernel``, summarized in ``results``. Inputs are checked in
``validation``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from server.engines.forecast.kernel import (
    Lane,
    Layout,
    RowCache,
    booking_thresholds,
    build_lane,
    simulate,
    sub_lane,
)
from server.engines.forecast.moments import Analysis, analyze, conditional_win_table, value_scale
from server.engines.forecast.results import forecast_result, scenario_outcome
from server.engines.forecast.types import (
    ComparisonOutcome,
    ForecastOutcome,
    Period,
    PipelineDeal,
    ScenarioSpec,
    SimulationSettings,
)
from server.engines.forecast.validation import (
    Options,
    Pipeline,
    Timeline,
    Variant,
    check_draws,
    check_magnitude,
    period_timeline,
    resolve_options,
    validate_deals,
    validate_scenarios,
)


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
    prepared = prepare(deals, period, settings)
    pipeline, lane, layout = prepared.pipeline, prepared.lane, prepared.layout
    scaled_totals, _ = simulate(layout, lane, [], cancelled)
    totals = scaled_totals.astype(np.float64)
    rows = RowCache(layout)

    def won(simulation: int) -> tuple[str, ...]:
        row, stratum = rows.get(simulation)
        flags = row[: lane.width] < lane.thresholds[stratum]
        return tuple(pipeline.ids[i] for i in np.flatnonzero(flags))

    result = forecast_result(pipeline, prepared.analysis, totals, prepared.scale, prepared.options, won)
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
    options = resolve_options(settings)
    timeline = period_timeline(period)
    base_pipeline = validate_deals(base, "base_deals", timeline, "")
    check_magnitude(base_pipeline, options, "base_deals")
    variants = validate_scenarios(scenarios, base_pipeline, timeline)
    union_ids = list(base_pipeline.ids)
    for variant in variants:
        variant.union_columns[variant.kept_count :] = np.arange(len(union_ids), len(union_ids) + variant.added_count)
        union_ids.extend(variant.pipeline.ids[variant.kept_count :])
    check_draws(options, len(union_ids))
    for j, variant in enumerate(variants):
        check_magnitude(variant.pipeline, options, f"scenarios[{j}]")
    # The conditional win tables below are O(strata x deals) per scenario, cheap;
    # the simulation's work is counted once the scenarios' lanes are known.

    base_table = conditional_win_table(base_pipeline.probabilities, options.correlation)
    base_analysis = analyze(base_pipeline, base_table, timeline, options)
    scale = value_scale([base_pipeline] + [v.pipeline for v in variants], options)
    base_thresholds = booking_thresholds(base_table, base_analysis.in_period)
    base_lane = build_lane(base_thresholds, base_pipeline.values, options, scale, None)

    analyses: list[Analysis] = []
    diff_lanes: list[tuple[Lane, Lane]] = []
    for variant in variants:
        analysis, removed_lane, added_lane = _scenario_lanes(
            variant, base_pipeline, base_table, base_lane, timeline, options, scale
        )
        analyses.append(analysis)
        diff_lanes.append((removed_lane, added_lane))
    del base_table
    changed = sum(removed.width + added.width for removed, added in diff_lanes)
    check_draws(options, len(union_ids), changed, len(variants))

    layout = Layout(options, len(base_thresholds), len(union_ids))
    base_scaled, differences = simulate(layout, base_lane, diff_lanes, cancelled)
    rows = RowCache(layout)

    def base_won(simulation: int) -> tuple[str, ...]:
        row, stratum = rows.get(simulation)
        flags = row[: base_lane.width] < base_lane.thresholds[stratum]
        return tuple(base_pipeline.ids[i] for i in np.flatnonzero(flags))

    base_totals = base_scaled.astype(np.float64)
    base_result = forecast_result(base_pipeline, base_analysis, base_totals, scale, options, base_won)
    del base_totals

    outcomes = []
    for j, variant in enumerate(variants):
        removed_lane, added_lane = diff_lanes[j]

        def variant_won(
            simulation: int,
            variant: Variant = variant,
            removed_lane: Lane = removed_lane,
            added_lane: Lane = added_lane,
        ) -> tuple[str, ...]:
            row, stratum = rows.get(simulation)
            flags = np.zeros(len(union_ids), dtype=bool)
            flags[: base_lane.width] = row[: base_lane.width] < base_lane.thresholds[stratum]
            flags[added_lane.columns] = row[added_lane.columns] < added_lane.thresholds[stratum]
            won_columns = flags[variant.union_columns]
            return tuple(variant.pipeline.ids[i] for i in np.flatnonzero(won_columns))

        difference = differences[j].astype(np.float64)
        totals = base_scaled + difference
        result = forecast_result(variant.pipeline, analyses[j], totals, scale, options, variant_won)
        del totals
        outcomes.append(scenario_outcome(variant.name, result, difference, scale))
    return ComparisonOutcome(base_result, tuple(outcomes), options.simulations, options.seed)


def _scenario_lanes(
    variant: Variant,
    base: Pipeline,
    base_table: np.ndarray,
    base_lane: Lane,
    timeline: Timeline,
    options: Options,
    scale: float,
) -> tuple[Analysis, Lane, Lane]:
    """The scenario's exact analysis and the two lanes its difference to the
    base is simulated on: the base's removed and changed deals, and the
    scenario's changed and added deals."""
    pipeline = variant.pipeline
    kept_count = variant.kept_count
    table = np.empty((len(base_table), len(pipeline.ids)))
    table[:, :kept_count] = base_table[:, variant.kept]
    new = np.concatenate([variant.changed, np.arange(kept_count, len(pipeline.ids))])
    table[:, new] = conditional_win_table(pipeline.probabilities[new], options.correlation)
    analysis = analyze(pipeline, table, timeline, options)
    thresholds = booking_thresholds(table[:, new], analysis.in_period[new])
    del table
    own = build_lane(thresholds, pipeline.values[new], options, scale, None)
    added_lane = Lane(variant.union_columns[new], own.width, own.thresholds, own.fixed, own.slope)
    removed = np.setdiff1d(np.arange(len(base.ids)), variant.kept)
    taken_out = np.sort(np.concatenate([removed, variant.kept[variant.changed]]))
    removed_lane = sub_lane(base_lane, taken_out, taken_out)
    return analysis, removed_lane, added_lane


@dataclass
class PreparedForecast:
    """One pipeline validated and analysed, ready to simulate."""

    options: Options
    pipeline: Pipeline
    analysis: Analysis
    scale: float
    lane: Lane
    layout: Layout


def prepare(deals: Sequence[PipelineDeal], period: Period, settings: SimulationSettings) -> PreparedForecast:
    """Validates one pipeline and computes everything but the simulation."""
    options = resolve_options(settings)
    timeline = period_timeline(period)
    pipeline = validate_deals(deals, "deals", timeline, "")
    check_draws(options, len(pipeline.ids))
    check_magnitude(pipeline, options, "deals")
    table = conditional_win_table(pipeline.probabilities, options.correlation)
    analysis = analyze(pipeline, table, timeline, options)
    thresholds = booking_thresholds(table, analysis.in_period)
    del table
    scale = value_scale([pipeline], options)
    lane = build_lane(thresholds, pipeline.values, options, scale, None)
    layout = Layout(options, len(thresholds), len(pipeline.ids))
    return PreparedForecast(options, pipeline, analysis, scale, lane, layout)
