"""The forecast's summaries of simulated totals: a ``ForecastResult`` per
pipeline and, per what-if scenario, the statistics of its difference to the base."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from server.engines.forecast.moments import Analysis
from server.engines.forecast.types import (
    DealContribution,
    ForecastResult,
    HistogramBin,
    RevenueScenario,
    ScenarioOutcome,
)
from server.engines.forecast.validation import Options, Pipeline

_PERCENTILES = (5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0)
_EXAMPLES = (("worst", 10.0), ("likely", 50.0), ("best", 90.0))


def forecast_result(
    pipeline: Pipeline,
    analysis: Analysis,
    totals: np.ndarray,
    scale: float,
    options: Options,
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


def scenario_outcome(name: str, result: ForecastResult, difference: np.ndarray, scale: float) -> ScenarioOutcome:
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
