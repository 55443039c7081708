"""The exact parts of the forecast: everything the model gives in closed form.

The market factor Z is cut into ``STRATA`` equiprobable strata. The
conditional win table holds, per stratum and deal, the deal's win probability
averaged over the stratum (Gauss-Legendre in probability space), rescaled so
that the mean over strata is exactly the deal's probability; the simulation
(``kernel``) uses the same table. From it and the slip distribution come, with
no sampling: each deal's in-period probability, expected revenue and share of
the variance of the total (from the model's exact covariance), the expected
won deals, and the expected revenue and won deals per calendar month.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from server.engines.forecast.types import MonthlyRevenue
from server.engines.forecast.validation import Options, Pipeline, Timeline
from server.engines.forecast.workers import in_threads

# 64 strata keep 99.6-99.98% of the factor's share of the variance for
# correlation 0.1-0.99 (what is lost is the spread of the conditional win
# probability inside a stratum); 32 keep 99.1%, and every doubling doubles the
# cost of the stratum table and the number of blocks.
STRATA = 64
# Gauss-Legendre points per stratum: 4 points are within 0.1% of the exact
# stratum averages (judged by the factor variance they carry) for
# correlation >= 0.1, and better for higher correlation.
_GAUSS_POINTS = 4
# Phi(-9) ~ 1e-19: beyond nine standard deviations a slip CDF is 0 or 1.
_TAIL_SDS = 9.0

_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(_GAUSS_POINTS)
# Factor values at the Gauss-Legendre points of each equiprobable stratum,
# (strata, points); stratum 0 holds the lowest factor values.
_STRATUM_FACTORS = ndtri((np.arange(STRATA)[:, None] + (_NODES[None, :] + 1.0) / 2.0) / STRATA)


def conditional_win_table(probabilities: np.ndarray, correlation: float) -> np.ndarray:
    """Each deal's win probability averaged over each factor stratum,
    (strata, deals); a single row when the correlation is 0.

    The mean over strata is exactly the deal's probability: the quadrature's
    small error is removed by scaling the row (or, when the row must go up, its
    complement), which keeps every entry in [0, 1].
    """
    if correlation == 0.0:
        return probabilities[None, :].copy()
    table = np.empty((STRATA, len(probabilities)))
    inner = (probabilities > 0.0) & (probabilities < 1.0)
    table[:, ~inner] = probabilities[~inner]
    # Reps enter round probabilities, so a pipeline often holds few distinct ones.
    distinct, inverse = np.unique(probabilities[inner], return_inverse=True)
    rows = np.empty((STRATA, len(distinct)))
    shift = math.sqrt(correlation) * _STRATUM_FACTORS.reshape(-1, 1)
    spread = math.sqrt(1.0 - correlation)
    block = 512

    def run(task: int, scratch: np.ndarray) -> None:
        p = distinct[task * block : (task + 1) * block]
        conditional = scratch[:, : len(p)]
        np.subtract(ndtri(p), shift, out=conditional)
        conditional /= spread
        ndtr(conditional, out=conditional)
        averaged = (_WEIGHTS / 2.0) @ conditional.reshape(STRATA, _GAUSS_POINTS, len(p))
        mean = averaged.mean(axis=0)
        up = mean < p
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(up, (1.0 - p) / (1.0 - mean), p / mean)
        # Scale the row down, or its complement down: 1 - (1 - x) f = x f + (1 - f).
        rows[:, task * block : (task + 1) * block] = averaged * factor + np.where(up, 1.0 - factor, 0.0)

    # ndtr costs 10-20 ns a value, the largest cost outside the simulation, so
    # blocks of deals are spread over the worker threads, each with one reused
    # 1 MB scratch (fresh memory costs more than ndtr on these VMs).
    in_threads(
        -(-len(distinct) // block),
        run,
        lambda: np.empty((STRATA * _GAUSS_POINTS, min(block, len(distinct)))),
    )
    np.clip(rows, 0.0, 1.0, out=rows)
    table[:, inner] = rows[:, inverse]
    return table


def _in_period_probability(close_days: np.ndarray, timeline: Timeline, options: Options) -> np.ndarray:
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


def value_scale(pipelines: list[Pipeline], options: Options) -> float:
    """The unit of money the moments and the simulation compute in: a power of
    two that brings every value times the multiplier below 2, so float32
    neither overflows nor loses relative precision; exact to undo."""
    largest = max((float(p.values.max()) for p in pipelines if len(p.values)), default=0.0)
    exponent = math.frexp(largest)[1] + math.frexp(options.amount_mean_multiplier)[1] - 1
    return math.ldexp(1.0, exponent)


@dataclass
class Analysis:
    """A pipeline's exact moments, per deal in pipeline order."""

    in_period: np.ndarray
    expected_revenue: np.ndarray
    variance_share: np.ndarray
    variance: float  # exact variance of the total under the stratified model
    expected_won_deals: float
    monthly: tuple[MonthlyRevenue, ...]


def analyze(pipeline: Pipeline, table: np.ndarray, timeline: Timeline, options: Options) -> Analysis:
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
    unit = value_scale([pipeline], options)
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
    return Analysis(
        in_period=q,
        expected_revenue=expected,
        variance_share=shares,
        variance=max(variance, 0.0) * unit * unit,  # inf for absurd values; only tests read it
        expected_won_deals=float((p * q).sum()),
        monthly=_monthly(pipeline, q, timeline, options),
    )


def _monthly(pipeline: Pipeline, q: np.ndarray, timeline: Timeline, options: Options) -> tuple[MonthlyRevenue, ...]:
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
