"""A straightforward loop-per-simulation forecast: the benchmark's reference.

The same model as ``server.engines.forecast`` (see forecast.proto), written the
way the model reads: per simulation draw the market factor, each deal's
conditional win probability, a Bernoulli win, a slip and an amount, and add up
what closed won inside the period. It is vectorized over deals inside the loop,
as an engineer would write it, but draws the factor from a continuous normal
(no strata) and uses several random numbers per deal. No validation: give it
what ``forecast`` accepts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr, ndtri

from server.engines.forecast import Period, PipelineDeal, SimulationSettings


def loop_forecast(deals: Sequence[PipelineDeal], period: Period, settings: SimulationSettings) -> np.ndarray:
    """Simulated revenue inside ``period``, one total per simulation."""
    rng = np.random.default_rng(settings.seed)
    count = len(deals)
    values = np.array([d.value for d in deals], dtype=np.float64)
    probabilities = np.array([d.win_probability for d in deals], dtype=np.float64)
    days = (period.end - period.start).total_seconds() / 86_400.0
    close_days = np.array(
        [
            math.nan if d.expected_close is None else (d.expected_close - period.start).total_seconds() / 86_400.0
            for d in deals
        ],
        dtype=np.float64,
    )
    dated = ~np.isnan(close_days)
    latent = ndtri(probabilities)  # -inf / +inf for probabilities 0 / 1: never / always
    rho = settings.correlation
    half_width = settings.amount_mean_multiplier * settings.amount_cv * math.sqrt(3.0)
    low, high = settings.amount_mean_multiplier - half_width, settings.amount_mean_multiplier + half_width

    totals = np.empty(settings.simulations)
    for s in range(settings.simulations):
        factor = rng.standard_normal()
        if rho > 0.0:
            win_probability = ndtr((latent - math.sqrt(rho) * factor) / math.sqrt(1.0 - rho))
        else:
            win_probability = probabilities
        won = rng.random(count) < win_probability

        if settings.ignore_close_dates:
            in_period = np.ones(count, dtype=bool)
        else:
            closes = close_days + rng.normal(settings.slip_mean_days, settings.slip_std_days, count)
            in_period = (closes >= 0.0) & (closes < days)
            undated_inside = rng.random(count) < settings.undated_in_period_probability
            in_period = np.where(dated, in_period, undated_inside)

        multiplier = rng.uniform(low, high, count)
        totals[s] = np.sum(values * multiplier * (won & in_period))
    return totals
