"""ForecastService: protobuf in, engine call, protobuf out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import grpc

from server.engines import forecast as engine
from vectoros.core.deal_codec.proto import outcome_from_proto, time_from_proto, time_to_proto
from vectoros.core.deals import Outcome
from vectoros.core.errors import InvalidInput
from vectoros.v1 import common_pb2, forecast_pb2, forecast_pb2_grpc

# Optional option fields copied as they are when the caller set them.
_OPTION_FIELDS = (
    "simulations",
    "seed",
    "correlation",
    "slip_mean_days",
    "slip_std_days",
    "undated_in_period_probability",
    "amount_mean_multiplier",
    "amount_cv",
    "histogram_bins",
)


class ForecastServicer(forecast_pb2_grpc.ForecastServiceServicer):
    async def Forecast(self, request: forecast_pb2.ForecastRequest, context: grpc.aio.ServicerContext):
        deals = _pipeline(request.deals, "deals")
        period = _period(request)
        settings = _settings(request.options)
        outcome = await _run(context, engine.forecast, deals, period, settings)
        return forecast_pb2.ForecastResponse(
            result=_result(outcome.result), simulations=outcome.simulations, seed=outcome.seed
        )

    async def CompareScenarios(self, request: forecast_pb2.CompareScenariosRequest, context: grpc.aio.ServicerContext):
        base = _pipeline(request.base_deals, "base_deals")
        scenarios = [_scenario(s, f"scenarios[{i}]") for i, s in enumerate(request.scenarios)]
        period = _period(request)
        settings = _settings(request.options)
        outcome = await _run(context, engine.compare_scenarios, base, scenarios, period, settings)
        return forecast_pb2.CompareScenariosResponse(
            base=_result(outcome.base),
            scenarios=[
                forecast_pb2.ScenarioResult(
                    name=s.name,
                    result=_result(s.result),
                    mean_difference=s.mean_difference,
                    mean_difference_ci_low=s.mean_difference_ci_low,
                    mean_difference_ci_high=s.mean_difference_ci_high,
                    difference_p5=s.difference_p5,
                    difference_p95=s.difference_p95,
                    probability_better=s.probability_better,
                )
                for s in outcome.scenarios
            ],
            simulations=outcome.simulations,
            seed=outcome.seed,
        )


async def _run(context: grpc.aio.ServicerContext, function, *args):
    """Run a simulation in a worker thread so the event loop keeps serving;
    stop it between chunks when the caller cancels or its deadline passes."""
    cancelled = threading.Event()
    context.add_done_callback(lambda _: cancelled.set())
    try:
        return await asyncio.to_thread(function, *args, cancelled=cancelled.is_set)
    finally:
        cancelled.set()


def _pipeline(deals: Sequence[common_pb2.Deal], field: str) -> list[engine.PipelineDeal]:
    if len(deals) > engine.MAX_DEALS:
        raise InvalidInput(field, f"at most {engine.MAX_DEALS} deals, got {len(deals)}")
    return [_pipeline_deal(deal, f"{field}[{i}]") for i, deal in enumerate(deals)]


def _pipeline_deal(deal: common_pb2.Deal, field: str) -> engine.PipelineDeal:
    # Only the fields the forecast reads are converted: a 10,000-deal request
    # must not pay for notes, history and attributes it never uses.
    if not deal.HasField("probability"):
        raise InvalidInput(f"{field}.probability", "required for a forecast")
    if outcome_from_proto(deal.outcome, f"{field}.outcome") is not Outcome.OPEN:
        raise InvalidInput(f"{field}.outcome", "must be open (or unset) for a forecast")
    return engine.PipelineDeal(
        deal_id=deal.id,
        value=deal.value,
        win_probability=deal.probability,
        expected_close=time_from_proto(
            deal.expected_close_time, deal.HasField("expected_close_time"), f"{field}.expected_close_time"
        ),
        currency=deal.currency.upper(),
    )


def _period(request) -> engine.Period:
    if not request.HasField("period"):
        raise InvalidInput("period", "required")
    period = request.period
    start = time_from_proto(period.start_time, period.HasField("start_time"), "period.start_time")
    end = time_from_proto(period.end_time, period.HasField("end_time"), "period.end_time")
    if start is None:
        raise InvalidInput("period.start_time", "required")
    if end is None:
        raise InvalidInput("period.end_time", "required")
    return engine.Period(start=start, end=end)


def _settings(options: forecast_pb2.SimulationOptions) -> engine.SimulationSettings:
    given = {name: getattr(options, name) for name in _OPTION_FIELDS if options.HasField(name)}
    return engine.SimulationSettings(ignore_close_dates=options.ignore_close_dates, **given)


def _scenario(scenario: forecast_pb2.Scenario, field: str) -> engine.ScenarioSpec:
    return engine.ScenarioSpec(
        name=scenario.name,
        added_deals=tuple(_pipeline(scenario.added_deals, f"{field}.added_deals")),
        removed_deal_ids=tuple(scenario.removed_deal_ids),
        changes=tuple(
            engine.DealChange(
                deal_id=change.deal_id,
                win_probability=change.probability if change.HasField("probability") else None,
                value=change.value if change.HasField("value") else None,
                expected_close=time_from_proto(
                    change.expected_close_time,
                    change.HasField("expected_close_time"),
                    f"{field}.changes[{j}].expected_close_time",
                ),
            )
            for j, change in enumerate(scenario.changes)
        ),
    )


def _result(result) -> forecast_pb2.ForecastResult:
    return forecast_pb2.ForecastResult(
        currency=result.currency,
        mean=result.mean,
        std_dev=result.std_dev,
        p5=result.p5,
        p10=result.p10,
        p25=result.p25,
        p50=result.p50,
        p75=result.p75,
        p90=result.p90,
        p95=result.p95,
        scenarios=[
            forecast_pb2.RevenueScenario(
                name=s.name, percentile=s.percentile, revenue=s.revenue, won_deal_ids=s.won_deal_ids
            )
            for s in result.scenarios
        ],
        histogram=[forecast_pb2.HistogramBin(lower=b.lower, upper=b.upper, count=b.count) for b in result.histogram],
        deal_contributions=[
            forecast_pb2.DealContribution(
                deal_id=c.deal_id,
                expected_revenue=c.expected_revenue,
                in_period_probability=c.in_period_probability,
                variance_share=c.variance_share,
            )
            for c in result.deal_contributions
        ],
        weighted_pipeline=result.weighted_pipeline,
        total_pipeline=result.total_pipeline,
        monthly=[
            forecast_pb2.MonthlyRevenue(
                start_time=time_to_proto(m.start),
                expected_revenue=m.expected_revenue,
                expected_won_deals=m.expected_won_deals,
            )
            for m in result.monthly
        ],
        expected_won_deals=result.expected_won_deals,
    )
