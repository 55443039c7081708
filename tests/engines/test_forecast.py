"""The forecast engine: statistics of the simulated model, exact parts, limits.

Tolerances come from the sampling error of the quantity under test (about four
standard errors), with fixed seeds so that every run sees the same numbers.
"""

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from server.engines import forecast as engine
from server.engines.forecast import (
    DealChange,
    Period,
    PipelineDeal,
    ScenarioSpec,
    SimulationSettings,
    compare_scenarios,
    forecast,
    kernel,
    moments,
    validation,
    workers,
)
from server.engines.forecast.diagnostics import model_variance, simulated_totals
from vectoros.core.errors import Cancelled, InvalidInput

START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2027, 4, 1, tzinfo=UTC)  # 90 days: January, February, March
PERIOD = Period(START, END)
PLAIN = SimulationSettings(correlation=0.0, ignore_close_dates=True, amount_cv=0.0, seed=7)
Z = 4.0  # standard errors allowed


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def pipeline(count: int, seed: int = 1, dated: bool = True) -> list[PipelineDeal]:
    rng = np.random.default_rng(seed)
    values = rng.lognormal(9, 1, count).round(2)
    probabilities = rng.uniform(0.05, 0.95, count)
    offsets = rng.uniform(-30, 120, count)
    return [
        PipelineDeal(f"deal-{i}", float(values[i]), float(probabilities[i]), day(offsets[i]) if dated else None, "USD")
        for i in range(count)
    ]


def arrays(deals: list[PipelineDeal]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([d.value for d in deals]), np.array([d.win_probability for d in deals])


# --- the model's statistics ------------------------------------------------------


def test_independent_deals_have_the_binomial_mean_and_variance():
    deals = pipeline(200)
    v, p = arrays(deals)
    simulations = 20_000
    result = forecast(deals, PERIOD, replace(PLAIN, simulations=simulations)).result
    mean, variance = float(v @ p), float(v**2 @ (p * (1 - p)))
    # Fourth cumulant of a sum of independent scaled Bernoullis, for the
    # standard error of the sample variance.
    kappa4 = float(v**4 @ (p * (1 - p) * (1 - 6 * p * (1 - p))))
    assert abs(result.mean - mean) < Z * math.sqrt(variance / simulations)
    assert abs(result.std_dev**2 - variance) < Z * math.sqrt((kappa4 + 2 * variance**2) / simulations)
    assert result.weighted_pipeline == pytest.approx(mean, rel=1e-12)
    assert result.total_pipeline == pytest.approx(v.sum(), rel=1e-12)
    assert result.expected_won_deals == pytest.approx(p.sum(), rel=1e-12)
    assert sum(c.expected_revenue for c in result.deal_contributions) == pytest.approx(mean, rel=1e-12)
    assert result.currency == "USD"


def test_marginal_win_rates_are_exact_under_correlation():
    # Powers of two as values: every simulated total spells out which deals won.
    probabilities = [0.0, 1.0, 0.02, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.98, 0.33]
    deals = [PipelineDeal(f"d{i}", float(2**i), p, None) for i, p in enumerate(probabilities)]
    settings = replace(PLAIN, correlation=0.5, simulations=30_000)
    totals = simulated_totals(deals, PERIOD, settings).astype(np.int64)
    won = (totals[:, None] >> np.arange(len(deals))) & 1
    rates = won.mean(axis=0)
    p = np.array(probabilities)
    assert rates[0] == 0.0 and rates[1] == 1.0
    assert np.all(np.abs(rates - p) <= Z * np.sqrt(p * (1 - p) / len(totals)))

    # The joint law is the Gaussian copula's: P(both win) = Phi2(a, b; rho).
    for i, j in ((4, 7), (3, 9), (6, 8)):
        joint = multivariate_normal(cov=[[1, 0.5], [0.5, 1]]).cdf([norm.ppf(p[i]), norm.ppf(p[j])])
        both = float(np.mean(won[:, i] & won[:, j]))
        independent = p[i] * p[j]
        assert abs(both - joint) < Z * math.sqrt(joint * (1 - joint) / len(totals)) + 0.002
        assert both > independent + 0.5 * (joint - independent)


def test_percentiles_histogram_and_reproducibility(monkeypatch):
    deals = pipeline(300)
    settings = SimulationSettings(simulations=5_000, seed=11)
    outcome = forecast(deals, PERIOD, settings)
    r = outcome.result
    assert outcome.simulations == 5_000 and outcome.seed == 11
    assert r.p5 <= r.p10 <= r.p25 <= r.p50 <= r.p75 <= r.p90 <= r.p95
    assert r.histogram[0].lower <= r.p5 and r.p95 <= r.histogram[-1].upper
    assert len(r.histogram) == 50 and sum(b.count for b in r.histogram) == 5_000
    assert [s.name for s in r.scenarios] == ["worst", "likely", "best"]
    assert [s.revenue for s in r.scenarios] == [r.p10, r.p50, r.p90]

    assert forecast(deals, PERIOD, settings) == outcome
    monkeypatch.setattr(workers, "WORKER_THREADS", 1)
    assert forecast(deals, PERIOD, settings) == outcome
    monkeypatch.setattr(workers, "WORKER_THREADS", 3)
    assert forecast(deals, PERIOD, settings) == outcome
    assert forecast(deals, PERIOD, replace(settings, seed=12)).result.mean != r.mean

    drawn = forecast(deals, PERIOD, replace(settings, seed=None))
    assert 0 <= drawn.seed < 2**63
    assert forecast(deals, PERIOD, replace(settings, seed=drawn.seed)) == drawn


def test_example_simulations_are_the_ones_nearest_to_their_percentile():
    deals = [PipelineDeal(f"d{i}", float(100 + i), 0.4, None) for i in range(60)]
    settings = replace(PLAIN, correlation=0.3, simulations=3_001)
    result = forecast(deals, PERIOD, settings).result
    totals = simulated_totals(deals, PERIOD, settings)
    values = {d.deal_id: d.value for d in deals}
    for example in result.scenarios:
        booked = sum(values[i] for i in example.won_deal_ids)
        assert booked == pytest.approx(totals[np.argmin(np.abs(totals - example.revenue))], abs=1e-6)


def test_correlation_widens_the_spread_but_keeps_the_mean():
    deals = pipeline(200)
    independent = forecast(deals, PERIOD, replace(PLAIN, simulations=20_000)).result
    correlated = forecast(deals, PERIOD, replace(PLAIN, correlation=0.5, simulations=20_000)).result
    assert correlated.p90 - correlated.p10 > 2 * (independent.p90 - independent.p10)
    assert abs(correlated.mean - independent.mean) < Z * correlated.std_dev / math.sqrt(20_000)


def test_timing_counts_only_deals_that_close_inside_the_period():
    v, p = 10_000.0, 0.6
    late = PipelineDeal("late", v, p, day(90 + 200))
    middle = PipelineDeal("middle", v, p, day(45))
    settings = SimulationSettings(correlation=0.0, amount_cv=0.0, simulations=40_000, seed=3)

    result = forecast([late], PERIOD, settings).result
    assert result.mean == 0.0 and result.deal_contributions[0].in_period_probability < 1e-9

    result = forecast([middle], PERIOD, settings).result
    # Slip ~ N(10, 20) days from day 45 of a 90-day period.
    q = norm.cdf((90 - 55) / 20) - norm.cdf((0 - 55) / 20)
    contribution = result.deal_contributions[0]
    assert contribution.in_period_probability == pytest.approx(q, rel=1e-12)
    assert contribution.expected_revenue == pytest.approx(v * p * q, rel=1e-12)
    assert q > 0.9
    assert abs(result.mean - v * p * q) < Z * v * math.sqrt(p * q * (1 - p * q) / 40_000)

    undated = forecast([replace(middle, expected_close=None)], PERIOD, settings).result
    assert undated.deal_contributions[0].in_period_probability == 0.5
    ignored = forecast([late], PERIOD, replace(settings, ignore_close_dates=True)).result
    assert ignored.deal_contributions[0].in_period_probability == 1.0
    exact = forecast([late, middle], PERIOD, replace(settings, slip_std_days=0.0, slip_mean_days=0.0)).result
    assert {c.deal_id: c.in_period_probability for c in exact.deal_contributions} == {"late": 0.0, "middle": 1.0}


def test_amount_noise_keeps_the_mean_and_widens_the_spread():
    deals = pipeline(150)
    v, p = arrays(deals)
    simulations = 20_000
    exact = forecast(deals, PERIOD, replace(PLAIN, simulations=simulations)).result
    noisy = forecast(deals, PERIOD, replace(PLAIN, amount_cv=0.5, simulations=simulations)).result
    # Var = sum v^2 p E[m^2] - (v p)^2 with E[m^2] = 1 + cv^2.
    variance = float(v**2 @ (p * (1.25 - p)))
    assert abs(noisy.mean - v @ p) < Z * math.sqrt(variance / simulations)
    assert noisy.std_dev > exact.std_dev
    assert noisy.std_dev**2 == pytest.approx(variance, rel=Z * math.sqrt(2 / simulations) * 1.5)

    scaled = forecast(deals, PERIOD, replace(PLAIN, amount_mean_multiplier=1.2, simulations=simulations)).result
    assert scaled.mean == pytest.approx(1.2 * exact.mean, rel=1e-6)  # same draws, same wins


def test_won_amount_is_uniform_and_independent_of_the_win():
    # One deal: its total is 0 or value * m, m uniform on mean * (1 +- sqrt(3) cv).
    value, p, cv = 1000.0, 0.4, 0.4
    settings = replace(PLAIN, correlation=0.3, amount_cv=cv, simulations=50_000)
    totals = simulated_totals([PipelineDeal("d", value, p, None)], PERIOD, settings)
    won = totals[totals > 0] / value
    half = math.sqrt(3) * cv
    assert abs(len(won) / len(totals) - p) < Z * math.sqrt(p * (1 - p) / len(totals))
    assert won.min() >= 1 - half - 1e-6 and won.max() <= 1 + half + 1e-6
    # Uniform: every decile of the range holds a tenth of the wins.
    counts, _ = np.histogram(won, bins=10, range=(1 - half, 1 + half))
    assert np.all(np.abs(counts / len(won) - 0.1) < Z * math.sqrt(0.09 / len(won)))


def test_variance_shares_and_exact_variance_match_the_simulation():
    deals = pipeline(150, seed=5)
    deals[3] = replace(deals[3], expected_close=None)
    settings = SimulationSettings(correlation=0.4, amount_cv=0.2, simulations=40_000, seed=5)
    result = forecast(deals, PERIOD, settings).result
    totals = simulated_totals(deals, PERIOD, settings)
    variance = model_variance(deals, PERIOD, settings)

    shares = [c.variance_share for c in result.deal_contributions]
    assert sum(shares) == pytest.approx(1.0, abs=1e-9)
    assert shares == sorted(shares, reverse=True) and min(shares) >= 0.0

    centered = totals - totals.mean()
    variance_error = math.sqrt(np.mean((centered**2 - variance) ** 2) / len(totals))
    assert abs(result.std_dev**2 - variance) < Z * variance_error
    expected = sum(c.expected_revenue for c in result.deal_contributions)
    assert abs(result.mean - expected) < Z * math.sqrt(variance / len(totals))

    assert [m.start for m in result.monthly] == [
        START,
        datetime(2027, 2, 1, tzinfo=UTC),
        datetime(2027, 3, 1, tzinfo=UTC),
    ]
    assert sum(m.expected_revenue for m in result.monthly) == pytest.approx(expected, rel=1e-9)
    assert sum(m.expected_won_deals for m in result.monthly) == pytest.approx(result.expected_won_deals, rel=1e-9)


def test_exact_variance_of_a_small_strongly_correlated_pipeline():
    # With few deals every term of the covariance matters, including each
    # deal's own share of the factor variance.
    deals = [PipelineDeal("a", 1000.0, 0.3, None), PipelineDeal("b", 3000.0, 0.6, None)]
    settings = replace(PLAIN, correlation=0.9, amount_cv=0.3, simulations=60_000)
    totals = simulated_totals(deals, PERIOD, settings)
    variance = model_variance(deals, PERIOD, settings)
    centered = totals - totals.mean()
    variance_error = math.sqrt(np.mean((centered**2 - variance) ** 2) / len(totals))
    assert abs(totals.var(ddof=1) - variance) < Z * variance_error


@pytest.mark.parametrize("correlation", [0.01, 0.25, 0.6, 0.99])
def test_stratum_table_keeps_every_marginal_exactly(correlation):
    p = np.array([1e-9, 1e-4, 0.01, 0.2, 0.5, 0.77, 0.99, 1 - 1e-7, 0.0, 1.0, 0.5])
    table = moments.conditional_win_table(p, correlation)
    assert table.shape == (moments.STRATA, len(p))
    assert np.all((table >= 0) & (table <= 1))
    np.testing.assert_allclose(table.mean(axis=0), p, rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(table, axis=0) <= 1e-15)  # a higher factor never raises a win probability
    assert np.all(table[:, 8] == 0.0) and np.all(table[:, 9] == 1.0)
    assert moments.conditional_win_table(p, 0.0).tolist() == [p.tolist()]


def test_monthly_breakdown_follows_close_dates():
    period = Period(datetime(2027, 1, 15, tzinfo=UTC), datetime(2027, 3, 15, tzinfo=UTC))
    deals = [
        PipelineDeal("feb", 1000.0, 0.5, datetime(2027, 2, 14, tzinfo=UTC)),
        PipelineDeal("undated", 580.0, 1.0, None),
    ]
    settings = SimulationSettings(slip_mean_days=0.0, slip_std_days=0.0, seed=1)
    monthly = forecast(deals, period, settings).result.monthly
    assert [m.start for m in monthly] == [
        period.start,
        datetime(2027, 2, 1, tzinfo=UTC),
        datetime(2027, 3, 1, tzinfo=UTC),
    ]
    # The undated deal (in-period 0.5) is spread by time: 17, 28 and 14 of 59 days.
    assert [m.expected_revenue for m in monthly] == pytest.approx([290 * 17 / 59, 500 + 290 * 28 / 59, 290 * 14 / 59])
    assert [m.expected_won_deals for m in monthly] == pytest.approx([0.5 * 17 / 59, 0.5 + 0.5 * 28 / 59, 0.5 * 14 / 59])


def test_empty_pipeline_forecasts_zero():
    outcome = forecast([], PERIOD, SimulationSettings(simulations=100, seed=1))
    r = outcome.result
    assert (r.mean, r.std_dev, r.p5, r.p95, r.weighted_pipeline, r.total_pipeline, r.expected_won_deals) == (0,) * 7
    assert r.histogram == (engine.HistogramBin(0.0, 0.0, 100),)
    assert r.deal_contributions == () and r.currency == ""
    assert [s.won_deal_ids for s in r.scenarios] == [(), (), ()]
    assert [m.expected_revenue for m in r.monthly] == [0.0, 0.0, 0.0]


def test_certain_pipeline_has_one_bin_and_no_variance():
    deals = [PipelineDeal("a", 100.0, 1.0, None), PipelineDeal("b", 50.0, 0.0, None)]
    r = forecast(deals, PERIOD, replace(PLAIN, correlation=0.5, simulations=10)).result
    assert r.histogram == (engine.HistogramBin(100.0, 100.0, 10),)
    assert r.std_dev == 0.0 and [c.variance_share for c in r.deal_contributions] == [0.0, 0.0]
    assert [s.won_deal_ids for s in r.scenarios] == [("a",)] * 3


def test_agrees_with_the_loop_reference():
    from bench.loop_forecast import loop_forecast

    deals = pipeline(40, seed=9)
    deals[0] = replace(deals[0], expected_close=None)
    settings = SimulationSettings(simulations=4_000, seed=9)
    loop = loop_forecast(deals, PERIOD, settings)
    result = forecast(deals, PERIOD, settings).result
    assert abs(result.mean - loop.mean()) < Z * loop.std(ddof=1) * math.sqrt(2 / 4_000)
    assert result.std_dev == pytest.approx(loop.std(ddof=1), rel=Z * math.sqrt(1 / 4_000) * 1.5)


def test_cancellation_stops_between_chunks():
    deals = pipeline(1_000)
    with pytest.raises(Cancelled):
        forecast(deals, PERIOD, SimulationSettings(seed=1), cancelled=lambda: True)
    calls = []

    def later() -> bool:
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(Cancelled):
        forecast(deals, PERIOD, SimulationSettings(seed=1), cancelled=later)
    layout = kernel.Layout(validation.resolve_options(SimulationSettings(seed=1)), moments.STRATA, 1_000)
    assert len(calls) < layout.chunks


# --- validation ----------------------------------------------------------------------

GOOD = [
    PipelineDeal("a", 100.0, 0.5, day(10), "USD"),
    PipelineDeal("b", 200.0, 0.5, None),
    PipelineDeal("c", 1.0, 0.1, None),
]


def _deal(i: int, **changes) -> list[PipelineDeal]:
    deals = list(GOOD)
    deals[i] = replace(deals[i], **changes)
    return deals


@pytest.mark.parametrize(
    ("deals", "settings", "period", "field"),
    [
        (_deal(1, value=math.nan), {}, PERIOD, "deals[1].value"),
        (_deal(1, value=math.inf), {}, PERIOD, "deals[1].value"),
        (_deal(2, value=-1.0), {}, PERIOD, "deals[2].value"),
        (_deal(0, win_probability=1.5), {}, PERIOD, "deals[0].probability"),
        (_deal(0, win_probability=-0.1), {}, PERIOD, "deals[0].probability"),
        (_deal(2, win_probability=math.nan), {}, PERIOD, "deals[2].probability"),
        (_deal(2, deal_id=""), {}, PERIOD, "deals[2].id"),
        (_deal(2, deal_id="a"), {}, PERIOD, "deals[2].id"),
        (_deal(1, deal_id="x" * 129), {}, PERIOD, "deals[1].id"),
        (_deal(2, currency="EUR"), {}, PERIOD, "deals[2].currency"),
        (_deal(1, expected_close=datetime(2027, 2, 1)), {}, PERIOD, "deals[1].expected_close_time"),
        (GOOD, {"simulations": 0}, PERIOD, "options.simulations"),
        (GOOD, {"simulations": engine.MAX_SIMULATIONS + 1}, PERIOD, "options.simulations"),
        (GOOD, {"seed": -1}, PERIOD, "options.seed"),
        (GOOD, {"correlation": -0.01}, PERIOD, "options.correlation"),
        (GOOD, {"correlation": 0.995}, PERIOD, "options.correlation"),
        (GOOD, {"correlation": math.nan}, PERIOD, "options.correlation"),
        (GOOD, {"slip_mean_days": math.inf}, PERIOD, "options.slip_mean_days"),
        (GOOD, {"slip_std_days": -1.0}, PERIOD, "options.slip_std_days"),
        (GOOD, {"slip_std_days": math.nan}, PERIOD, "options.slip_std_days"),
        (GOOD, {"undated_in_period_probability": 1.1}, PERIOD, "options.undated_in_period_probability"),
        (GOOD, {"amount_mean_multiplier": 0.0}, PERIOD, "options.amount_mean_multiplier"),
        (GOOD, {"amount_cv": 0.58}, PERIOD, "options.amount_cv"),
        (GOOD, {"amount_cv": -0.1}, PERIOD, "options.amount_cv"),
        (GOOD, {"histogram_bins": 0}, PERIOD, "options.histogram_bins"),
        (GOOD, {"histogram_bins": 1001}, PERIOD, "options.histogram_bins"),
        (GOOD, {}, Period(END, END), "period.end_time"),
        (GOOD, {}, Period(END, START), "period.end_time"),
        (GOOD, {}, Period(datetime(2027, 1, 1), END), "period.start_time"),
    ],
)
def test_bad_input_names_the_field(deals, settings, period, field):
    with pytest.raises(InvalidInput) as raised:
        forecast(deals, period, SimulationSettings(**({"seed": 1} | settings)))
    assert raised.value.field == field


def test_size_limits(monkeypatch):
    monkeypatch.setattr(validation, "MAX_DEALS", 2)
    with pytest.raises(InvalidInput) as raised:
        forecast(GOOD, PERIOD, SimulationSettings(seed=1))
    assert raised.value.field == "deals"
    monkeypatch.setattr(validation, "MAX_DEALS", 50_000)
    monkeypatch.setattr(validation, "MAX_DRAWS", 299)
    with pytest.raises(InvalidInput) as raised:
        forecast(GOOD, PERIOD, SimulationSettings(simulations=100, seed=1))
    assert raised.value.field == "options.simulations"
    assert forecast(GOOD, PERIOD, SimulationSettings(simulations=99, seed=1)).simulations == 99


def test_the_work_bound_counts_every_scenario(monkeypatch):
    """Scenarios that change every deal cost the simulation as much as new deals:
    before the bound counted them, 20 of them ran 40 times past it."""
    deals = pipeline(10)
    changes = tuple(DealChange(deal.deal_id, win_probability=0.9) for deal in deals)
    scenarios = [ScenarioSpec(f"s{j}", changes=changes) for j in range(3)]
    # 10 drawn deals + 3 scenarios x (10 removed + 10 added) + 3 totals = 73 per simulation.
    monkeypatch.setattr(validation, "MAX_DRAWS", 100 * 73)
    assert compare_scenarios(deals, scenarios, PERIOD, SimulationSettings(simulations=100, seed=1)).base.mean > 0
    with pytest.raises(InvalidInput) as raised:
        compare_scenarios(deals, scenarios, PERIOD, SimulationSettings(simulations=101, seed=1))
    assert raised.value.field == "options.simulations"
    assert "(here 101 x (10 + 60 + 3))" in raised.value.rule
    # The same scenarios without changes cost one total each.
    assert compare_scenarios(deals, [ScenarioSpec(f"s{j}") for j in range(3)], PERIOD,
                             SimulationSettings(simulations=101, seed=1)).base.mean > 0


# --- scenarios -----------------------------------------------------------------------


def test_identical_scenarios_differ_by_exactly_zero():
    deals = pipeline(120)
    same = ScenarioSpec("same")
    restated = ScenarioSpec(
        "restated", changes=(DealChange(deals[4].deal_id, win_probability=deals[4].win_probability),)
    )
    other = ScenarioSpec("other", added_deals=(PipelineDeal("new", 5_000.0, 0.5, day(30), "USD"),))
    outcome = compare_scenarios(deals, [same, restated, other], PERIOD, SimulationSettings(simulations=5_000, seed=2))
    for scenario in outcome.scenarios[:2]:
        assert (scenario.mean_difference, scenario.difference_p5, scenario.difference_p95) == (0.0, 0.0, 0.0)
        assert (scenario.mean_difference_ci_low, scenario.mean_difference_ci_high) == (0.0, 0.0)
        assert scenario.probability_better == 0.0
        assert scenario.result == outcome.base
    assert outcome.simulations == 5_000 and outcome.seed == 2


def test_removing_adding_and_changing_deals_moves_the_mean_by_their_expected_revenue():
    deals = pipeline(200)
    base_contribution = {
        c.deal_id: c for c in forecast(deals, PERIOD, SimulationSettings(seed=1)).result.deal_contributions
    }
    # The deal most likely to book: its difference is the least noisy, relative to its size.
    removed_id = max(
        deals, key=lambda d: d.win_probability * base_contribution[d.deal_id].in_period_probability
    ).deal_id
    added = PipelineDeal("new", 50_000.0, 0.7, day(40), "USD")
    scenarios = [
        ScenarioSpec("lose", removed_deal_ids=(removed_id,)),
        ScenarioSpec("win-new", added_deals=(added,)),
        ScenarioSpec("push", changes=(DealChange(deals[20].deal_id, win_probability=0.99, value=deals[20].value * 2),)),
    ]
    outcome = compare_scenarios(deals, scenarios, PERIOD, SimulationSettings(simulations=20_000, seed=4))
    lose, win_new, push = outcome.scenarios

    target = -base_contribution[removed_id].expected_revenue
    half = lose.mean_difference_ci_high - lose.mean_difference
    assert abs(lose.mean_difference - target) < Z / 1.96 * half
    # Common random numbers: the difference carries only the removed deal's noise.
    assert half < 0.02 * outcome.base.std_dev
    assert lose.result.mean == pytest.approx(outcome.base.mean + lose.mean_difference, rel=1e-9)
    assert removed_id not in {c.deal_id for c in lose.result.deal_contributions}
    assert all(removed_id not in s.won_deal_ids for s in lose.result.scenarios)
    assert lose.difference_p95 <= 0.0 and lose.probability_better == 0.0

    new = {c.deal_id: c for c in win_new.result.deal_contributions}["new"]
    half = win_new.mean_difference_ci_high - win_new.mean_difference
    assert abs(win_new.mean_difference - new.expected_revenue) < Z / 1.96 * half
    win_rate = 0.7 * new.in_period_probability
    assert abs(win_new.probability_better - win_rate) < Z * math.sqrt(win_rate * (1 - win_rate) / 20_000)

    # A higher probability and value win in every simulation the base won, and
    # book more: the difference is never negative.
    assert push.difference_p5 >= 0.0 and push.mean_difference > 0.0
    assert push.result.weighted_pipeline > outcome.base.weighted_pipeline


def test_scenario_examples_list_the_deals_won_in_that_scenario():
    deals = [PipelineDeal(f"d{i}", float(100 + 7 * i), 0.3 + 0.01 * i, None) for i in range(40)]
    scenarios = [
        ScenarioSpec(
            "mixed",
            removed_deal_ids=("d1", "d2"),
            added_deals=(PipelineDeal("n", 900.0, 0.5, None),),
            changes=(DealChange("d5", value=5000.0, win_probability=0.05), DealChange("d6", win_probability=0.95)),
        ),
        ScenarioSpec("grow", added_deals=(PipelineDeal("m", 400.0, 0.8, None),)),
    ]
    outcome = compare_scenarios(deals, scenarios, PERIOD, replace(PLAIN, correlation=0.3, simulations=5_001))
    for spec, scenario in zip(scenarios, outcome.scenarios, strict=True):
        values = {d.deal_id: d.value for d in deals} | {d.deal_id: d.value for d in spec.added_deals}
        values |= {c.deal_id: c.value for c in spec.changes if c.value is not None}
        for example in scenario.result.scenarios:
            assert not set(example.won_deal_ids) & set(spec.removed_deal_ids)
            booked = sum(values[i] for i in example.won_deal_ids)
            assert abs(booked - example.revenue) < 0.01 * scenario.result.std_dev


def test_scenarios_on_an_empty_base():
    added = (PipelineDeal("n1", 1000.0, 0.5, None), PipelineDeal("n2", 2000.0, 0.25, None))
    outcome = compare_scenarios(
        [], [ScenarioSpec("grow", added_deals=added)], PERIOD, replace(PLAIN, simulations=20_000)
    )
    assert outcome.base.mean == 0.0
    grow = outcome.scenarios[0]
    assert abs(grow.mean_difference - 1000.0) < Z / 1.96 * (grow.mean_difference_ci_high - grow.mean_difference)
    assert grow.result.mean == grow.mean_difference


SCENARIO_BASE = [PipelineDeal("a", 100.0, 0.5, None, "USD"), PipelineDeal("b", 200.0, 0.5, None)]


@pytest.mark.parametrize(
    ("scenarios", "field"),
    [
        ([ScenarioSpec("")], "scenarios[0].name"),
        ([ScenarioSpec("x"), ScenarioSpec("x")], "scenarios[1].name"),
        ([ScenarioSpec("x", added_deals=(PipelineDeal("a", 1.0, 0.5, None),))], "scenarios[0].added_deals[0].id"),
        (
            [ScenarioSpec("x", added_deals=(PipelineDeal("n", 1.0, 0.5, None), PipelineDeal("n", 1.0, 0.5, None)))],
            "scenarios[0].added_deals[1].id",
        ),
        ([ScenarioSpec("x", added_deals=(PipelineDeal("n", -1.0, 0.5, None),))], "scenarios[0].added_deals[0].value"),
        (
            [ScenarioSpec("x", added_deals=(PipelineDeal("n", 1.0, 0.5, None, "EUR"),))],
            "scenarios[0].added_deals[0].currency",
        ),
        ([ScenarioSpec("ok"), ScenarioSpec("x", removed_deal_ids=("zz",))], "scenarios[1].removed_deal_ids[0]"),
        ([ScenarioSpec("x", removed_deal_ids=("a", "a"))], "scenarios[0].removed_deal_ids[1]"),
        ([ScenarioSpec("x", changes=(DealChange("b"), DealChange("zz")))], "scenarios[0].changes[1].deal_id"),
        ([ScenarioSpec("x", removed_deal_ids=("a",), changes=(DealChange("a"),))], "scenarios[0].changes[0].deal_id"),
        ([ScenarioSpec("x", changes=(DealChange("a"), DealChange("a")))], "scenarios[0].changes[1].deal_id"),
        ([ScenarioSpec("x", changes=(DealChange("a", win_probability=2.0),))], "scenarios[0].changes[0].probability"),
        ([ScenarioSpec("x", changes=(DealChange("a", value=math.nan),))], "scenarios[0].changes[0].value"),
        (
            [ScenarioSpec("x", changes=(DealChange("a", expected_close=datetime(2027, 2, 1)),))],
            "scenarios[0].changes[0].expected_close_time",
        ),
        ([ScenarioSpec(f"s{i}") for i in range(engine.MAX_SCENARIOS + 1)], "scenarios"),
    ],
)
def test_bad_scenarios_name_the_field(scenarios, field):
    with pytest.raises(InvalidInput) as raised:
        compare_scenarios(SCENARIO_BASE, scenarios, PERIOD, SimulationSettings(simulations=10, seed=1))
    assert raised.value.field == field


def test_bad_base_deal_names_the_field():
    with pytest.raises(InvalidInput) as raised:
        compare_scenarios([SCENARIO_BASE[0], replace(SCENARIO_BASE[1], deal_id="")], [], PERIOD, SimulationSettings())
    assert raised.value.field == "base_deals[1].id"
