"""Forecast a quarter against a revenue target, and what would move the odds.

The API has no target field yet: the chance of reaching the target is read
from the histogram of simulated totals (`ForecastResult.chance_of_reaching`,
1000 bins here for a fine answer). A what-if scenario on the same random
numbers then shows how much pulling the largest deal into the quarter helps.

    VECTOROS_ADDRESS=127.0.0.1:50051 VECTOROS_TOKEN=vos_... python clients/python/examples/forecast_target.py
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from vectoros_client import Client, Deal, DealChange, Scenario, SimulationOptions

ADDRESS = os.environ.get("VECTOROS_ADDRESS", "127.0.0.1:50051")
TOKEN = os.environ.get("VECTOROS_TOKEN")  # None: a server without --tokens-file

START, END = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 4, 1, tzinfo=UTC)
TARGET = 200_000.0


def main() -> None:
    def deal(name: str, value: float, probability: float, month: int, day: int) -> Deal:
        return Deal(id=name, value=value, currency="USD", probability=probability,
                    expected_close_time=datetime(2027, month, day, tzinfo=UTC))

    deals = [
        deal("acme", 120_000, 0.6, 2, 10), deal("globex", 80_000, 0.3, 3, 25), deal("initech", 60_000, 0.5, 1, 20),
        deal("umbrella", 40_000, 0.7, 3, 5), deal("stark", 150_000, 0.4, 4, 20),
    ]
    options = SimulationOptions(seed=7, simulations=20_000, histogram_bins=1000)
    with Client(ADDRESS, token=TOKEN) as client:
        forecast = client.forecast(deals, start=START, end=END, options=options)
        result = forecast.result
        print(f"Q1 2027: mean {result.mean:,.0f} {result.currency} (P10 {result.p10:,.0f}, P50 {result.p50:,.0f}, "
              f"P90 {result.p90:,.0f}); weighted pipeline {result.weighted_pipeline:,.0f}")
        print(f"chance of reaching {TARGET:,.0f}: {result.chance_of_reaching(TARGET):.1%}")
        biggest = max(deals, key=lambda d: d.value)
        pull_in = Scenario(f"close {biggest.id} in March",
                           changes=[DealChange(biggest.id, expected_close_time=datetime(2027, 3, 15, tzinfo=UTC))])
        compared = client.compare_scenarios(deals, [pull_in], start=START, end=END, options=options)
        what_if = compared.scenarios[0]
        low, high = what_if.mean_difference_ci
        print(f"if we {what_if.name}: mean {what_if.mean_difference:+,.0f} (95% CI {low:+,.0f} to {high:+,.0f}), "
              f"chance of reaching {TARGET:,.0f}: {what_if.result.chance_of_reaching(TARGET):.1%}")


if __name__ == "__main__":
    main()
