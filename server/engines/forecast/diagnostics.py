"""What tests and benchmarks read beneath a forecast: the simulated totals
themselves and the model's exact variance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from server.engines.forecast.api import prepare
from server.engines.forecast.kernel import simulate
from server.engines.forecast.types import Period, PipelineDeal, SimulationSettings


def simulated_totals(deals: Sequence[PipelineDeal], period: Period, settings: SimulationSettings) -> np.ndarray:
    """The per-simulation totals ``forecast`` summarizes, in simulation order
    (grouped by factor stratum)."""
    prepared = prepare(deals, period, settings)
    scaled, _ = simulate(prepared.layout, prepared.lane, [], None)
    return scaled.astype(np.float64) * prepared.scale


def model_variance(deals: Sequence[PipelineDeal], period: Period, settings: SimulationSettings) -> float:
    """The exact variance of one simulation's total under the engine's
    (stratified) model."""
    return prepare(deals, period, settings).analysis.variance
