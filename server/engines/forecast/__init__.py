"""Monte Carlo revenue forecasts. api: forecast(), compare_scenarios(); types: their dataclasses; validation: the rules;
moments: the exact parts; kernel: the simulation (threads: workers); results: summaries; diagnostics: tests' hooks."""

from server.engines.forecast.api import compare_scenarios, forecast
from server.engines.forecast.types import (
    ComparisonOutcome,
    DealChange,
    DealContribution,
    ForecastOutcome,
    ForecastResult,
    HistogramBin,
    MonthlyRevenue,
    Period,
    PipelineDeal,
    RevenueScenario,
    ScenarioOutcome,
    ScenarioSpec,
    SimulationSettings,
)
from server.engines.forecast.validation import MAX_DEALS, MAX_DRAWS, MAX_SCENARIOS, MAX_SIMULATIONS

__all__ = [
    "MAX_DEALS",
    "MAX_DRAWS",
    "MAX_SCENARIOS",
    "MAX_SIMULATIONS",
    "ComparisonOutcome",
    "DealChange",
    "DealContribution",
    "ForecastOutcome",
    "ForecastResult",
    "HistogramBin",
    "MonthlyRevenue",
    "Period",
    "PipelineDeal",
    "RevenueScenario",
    "ScenarioOutcome",
    "ScenarioSpec",
    "SimulationSettings",
    "compare_scenarios",
    "forecast",
]
