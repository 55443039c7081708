"""ForecastService over a real channel (port 0, the server's interceptor).

The servicer only translates: its answers must be the engine's for the same
deals, period, options and seed, field for field; bad input is INVALID_ARGUMENT
naming the field (message and google.rpc.BadRequest); closed deals are refused;
and a call whose caller goes away stops the simulation it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import threading
from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from server.engines import forecast as engine
from server.interceptors import ErrorAndLogInterceptor
from server.services.forecast import ForecastServicer
from vectoros.core.errors import Cancelled
from vectoros.v1 import common_pb2, forecast_pb2, forecast_pb2_grpc

START = datetime(2027, 1, 1, tzinfo=UTC)
END = datetime(2027, 4, 1, tzinfo=UTC)
PERIOD = engine.Period(START, END)


@contextlib.asynccontextmanager
async def forecasting():
    server = grpc.aio.server(interceptors=[ErrorAndLogInterceptor()])
    forecast_pb2_grpc.add_ForecastServiceServicer_to_server(ForecastServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield forecast_pb2_grpc.ForecastServiceStub(channel)
    finally:
        await server.stop(None)


def pipeline(count: int, seed: int = 1, prefix: str = "deal") -> list[engine.PipelineDeal]:
    """Deals closing around the period, every fifth undated; close times are
    whole seconds, which a Timestamp carries exactly."""
    rng = np.random.default_rng(seed)
    values = rng.lognormal(9, 1, count).round(2)
    probabilities = rng.uniform(0.05, 0.95, count)
    offsets = rng.integers(-30 * 86_400, 120 * 86_400, count)
    return [
        engine.PipelineDeal(
            f"{prefix}-{i}",
            float(values[i]),
            float(probabilities[i]),
            None if i % 5 == 0 else START + timedelta(seconds=int(offsets[i])),
            "USD",
        )
        for i in range(count)
    ]


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(value)
    return message


def deal_message(deal: engine.PipelineDeal) -> common_pb2.Deal:
    # Lower case on the wire: the servicer upper-cases currency codes.
    message = common_pb2.Deal(
        id=deal.deal_id, value=deal.value, probability=deal.win_probability, currency=deal.currency.lower()
    )
    if deal.expected_close is not None:
        message.expected_close_time.CopyFrom(timestamp(deal.expected_close))
    return message


def with_period(request, start: datetime = START, end: datetime = END):
    request.period.start_time.CopyFrom(timestamp(start))
    request.period.end_time.CopyFrom(timestamp(end))
    return request


def forecast_request(deals: list[engine.PipelineDeal], **options) -> forecast_pb2.ForecastRequest:
    request = forecast_pb2.ForecastRequest(deals=[deal_message(d) for d in deals])
    for name, value in options.items():
        setattr(request.options, name, value)
    return with_period(request)


def scenario_message(spec: engine.ScenarioSpec) -> forecast_pb2.Scenario:
    message = forecast_pb2.Scenario(
        name=spec.name,
        added_deals=[deal_message(d) for d in spec.added_deals],
        removed_deal_ids=spec.removed_deal_ids,
    )
    for change in spec.changes:
        item = message.changes.add(deal_id=change.deal_id)
        if change.win_probability is not None:
            item.probability = change.win_probability
        if change.value is not None:
            item.value = change.value
        if change.expected_close is not None:
            item.expected_close_time.CopyFrom(timestamp(change.expected_close))
    return message


def compare_request(
    base: list[engine.PipelineDeal], scenarios: list[engine.ScenarioSpec], **options
) -> forecast_pb2.CompareScenariosRequest:
    request = forecast_pb2.CompareScenariosRequest(
        base_deals=[deal_message(d) for d in base], scenarios=[scenario_message(s) for s in scenarios]
    )
    for name, value in options.items():
        setattr(request.options, name, value)
    return with_period(request)


def as_engine(message, like):
    """``message`` read back into the engine dataclass ``like`` is an instance
    of: every field of the dataclass, none skipped, so that an answer equals
    the engine's only if the servicer mapped everything."""
    values = {}
    for field in dataclasses.fields(like):
        expected = getattr(like, field.name)
        if field.name == "start":  # MonthlyRevenue.start is the proto's start_time
            values["start"] = message.start_time.ToDatetime(tzinfo=UTC)
            continue
        value = getattr(message, field.name)
        if dataclasses.is_dataclass(expected):
            value = as_engine(value, expected)
        elif isinstance(expected, tuple):
            if expected and dataclasses.is_dataclass(expected[0]):
                assert len(value) == len(expected), field.name
                value = tuple(as_engine(m, e) for m, e in zip(value, expected, strict=True))
            else:
                value = tuple(value)
        values[field.name] = value
    return type(like)(**values)


def violation(error: grpc.aio.AioRpcError) -> tuple[str, str]:
    status = rpc_status.from_call(error)
    assert status is not None and len(status.details) == 1
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    (only,) = bad_request.field_violations
    return only.field, only.description


# --- answers are the engine's ------------------------------------------------------


OPTION_SETS = [
    # Only a seed: every other option takes the engine's default.
    {"seed": 21},
    {
        "seed": 2**64 - 1,
        "simulations": 4_001,
        "correlation": 0.6,
        "slip_mean_days": -3.5,
        "slip_std_days": 12.0,
        "undated_in_period_probability": 0.3,
        "amount_mean_multiplier": 1.1,
        "amount_cv": 0.25,
        "histogram_bins": 17,
    },
    # Options set to zero are set, not defaults.
    {"seed": 0, "simulations": 2_000, "correlation": 0.0, "slip_std_days": 0.0, "amount_cv": 0.0},
    {"seed": 5, "simulations": 3_000, "ignore_close_dates": True},
]


@pytest.mark.parametrize("options", OPTION_SETS)
async def test_forecast_answers_what_the_engine_computes(options):
    deals = pipeline(60)
    async with forecasting() as stub:
        response = await stub.Forecast(forecast_request(deals, **options))
    expected = engine.forecast(deals, PERIOD, engine.SimulationSettings(**options))
    assert as_engine(response, expected) == expected
    assert response.simulations == options.get("simulations", 10_000)
    assert response.result.currency == "USD"


async def test_compare_scenarios_answers_what_the_engine_computes():
    base = pipeline(40)
    scenarios = [
        engine.ScenarioSpec("lose two", removed_deal_ids=("deal-3", "deal-7")),
        engine.ScenarioSpec("new business", added_deals=tuple(pipeline(3, seed=2, prefix="new"))),
        engine.ScenarioSpec(
            "pushed",
            changes=(
                engine.DealChange("deal-1", win_probability=0.95),
                # A value of 0 is a change, not an unset field.
                engine.DealChange("deal-2", value=0.0),
                engine.DealChange("deal-4", expected_close=END + timedelta(days=40)),
                engine.DealChange("deal-5", win_probability=0.0, value=123_456.0, expected_close=START),
            ),
        ),
        engine.ScenarioSpec(
            "mixed",
            removed_deal_ids=("deal-1",),
            added_deals=(engine.PipelineDeal("big", 250_000.0, 0.4, None, "USD"),),
            changes=(engine.DealChange("deal-9", win_probability=0.5, value=10.0),),
        ),
        engine.ScenarioSpec("same"),
    ]
    options = {"seed": 99, "simulations": 6_000, "correlation": 0.35}
    async with forecasting() as stub:
        response = await stub.CompareScenarios(compare_request(base, scenarios, **options))
    expected = engine.compare_scenarios(base, scenarios, PERIOD, engine.SimulationSettings(**options))
    assert as_engine(response, expected) == expected
    assert [s.name for s in response.scenarios] == [s.name for s in scenarios]
    # Each scenario's answer is its own, not a copy of another's.
    assert len({s.mean_difference for s in response.scenarios}) == len(scenarios)


async def test_an_empty_pipeline_and_no_scenarios_answer():
    async with forecasting() as stub:
        forecast = await stub.Forecast(forecast_request([], seed=3, simulations=100))
        compare = await stub.CompareScenarios(compare_request([], [], seed=3, simulations=100))
    expected = engine.forecast([], PERIOD, engine.SimulationSettings(seed=3, simulations=100))
    assert as_engine(forecast, expected) == expected
    assert forecast.result.mean == 0.0 and list(forecast.result.histogram) == [
        forecast_pb2.HistogramBin(lower=0.0, upper=0.0, count=100)
    ]
    assert compare.base == forecast.result and len(compare.scenarios) == 0


# --- the seed ----------------------------------------------------------------------------


async def test_the_same_seed_gives_the_same_answer():
    deals = pipeline(80)
    scenarios = [engine.ScenarioSpec("lose", removed_deal_ids=("deal-1",))]
    async with forecasting() as stub:
        first = await stub.Forecast(forecast_request(deals, seed=7, simulations=3_000))
        again = await stub.Forecast(forecast_request(deals, seed=7, simulations=3_000))
        other = await stub.Forecast(forecast_request(deals, seed=8, simulations=3_000))
        assert first.seed == 7
        assert first.SerializeToString(deterministic=True) == again.SerializeToString(deterministic=True)
        assert other.seed == 8 and other.result.mean != first.result.mean

        # Without a seed the server draws one and returns it: replaying it
        # reproduces the answer.
        drawn = await stub.Forecast(forecast_request(deals, simulations=3_000))
        replayed = await stub.Forecast(forecast_request(deals, seed=drawn.seed, simulations=3_000))
        assert replayed == drawn

        compared = await stub.CompareScenarios(compare_request(deals, scenarios, simulations=3_000))
        replayed = await stub.CompareScenarios(compare_request(deals, scenarios, seed=compared.seed, simulations=3_000))
        assert replayed == compared


# --- closed deals ------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [common_pb2.DEAL_OUTCOME_WON, common_pb2.DEAL_OUTCOME_LOST], ids=["won", "lost"])
async def test_closed_deals_are_refused(outcome):
    deals = pipeline(4)
    forecast = forecast_request(deals, seed=1, simulations=100)
    forecast.deals[2].outcome = outcome
    compare_base = compare_request(deals, [], seed=1, simulations=100)
    compare_base.base_deals[0].outcome = outcome
    compare_added = compare_request(
        deals, [engine.ScenarioSpec("x"), engine.ScenarioSpec("y", added_deals=tuple(pipeline(2, prefix="n")))]
    )
    compare_added.scenarios[1].added_deals[1].outcome = outcome
    rule = "must be open (or unset) for a forecast"
    async with forecasting() as stub:
        for call, request, field in (
            (stub.Forecast, forecast, "deals[2].outcome"),
            (stub.CompareScenarios, compare_base, "base_deals[0].outcome"),
            (stub.CompareScenarios, compare_added, "scenarios[1].added_deals[1].outcome"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(request)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert raised.value.details() == f"{field}: {rule}"
            assert violation(raised.value) == (field, rule)


async def test_open_deals_may_say_so():
    deals = pipeline(30)
    unset = forecast_request(deals, seed=4, simulations=1_000)
    marked = forecast_request(deals, seed=4, simulations=1_000)
    for deal in marked.deals:
        deal.outcome = common_pb2.DEAL_OUTCOME_OPEN
    async with forecasting() as stub:
        assert await stub.Forecast(marked) == await stub.Forecast(unset)


# --- bad input ---------------------------------------------------------------------------

GOOD = pipeline(3)
SCENARIOS = [engine.ScenarioSpec("a"), engine.ScenarioSpec("b")]


def bad_forecast(change):
    def build():
        request = forecast_request(GOOD, seed=1, simulations=100)
        change(request)
        return request

    return "Forecast", build


def bad_compare(change):
    def build():
        request = compare_request(GOOD, SCENARIOS, seed=1, simulations=100)
        change(request)
        return request

    return "CompareScenarios", build


def _set(path: str, value):
    """A change that sets the dotted ``path`` (``deals.1.value``) to ``value``."""

    def change(request):
        *parents, name = path.split(".")
        target = request
        for part in parents:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        setattr(target, name, value)

    return change


def _many_deals(field: str, count: int):
    def change(request):
        deals = getattr(request, field)
        deals.extend(common_pb2.Deal(id=f"extra-{i}", value=1.0, probability=0.5) for i in range(count))

    return change


def _end_before_start(request):
    request.period.end_time.CopyFrom(timestamp(START - timedelta(seconds=1)))


def _empty_period(request):
    request.period.end_time.CopyFrom(timestamp(START))


def _added_deal(**fields):
    def change(request):
        deal = common_pb2.Deal(**({"id": "n", "value": 1.0, "probability": 0.5} | fields))
        request.scenarios[0].added_deals.append(deal)

    return change


def _changed_deal(scenario: int, **fields):
    def change(request):
        request.scenarios[scenario].changes.add(**fields)

    return change


BAD = [
    (bad_forecast(_set("deals.1.value", math.nan)), "deals[1].value", "must be finite and >= 0"),
    (bad_forecast(_set("deals.2.value", -1.0)), "deals[2].value", "must be finite and >= 0"),
    (bad_forecast(_set("deals.0.value", math.inf)), "deals[0].value", "must be finite and >= 0"),
    (bad_forecast(_set("deals.0.probability", 1.5)), "deals[0].probability", "must be in [0, 1]"),
    (bad_forecast(_set("deals.1.probability", -0.1)), "deals[1].probability", "must be in [0, 1]"),
    (bad_forecast(lambda r: r.deals[1].ClearField("probability")), "deals[1].probability", "required for a forecast"),
    (bad_forecast(_set("deals.2.id", "")), "deals[2].id", "required"),
    (bad_forecast(_set("deals.2.id", "deal-0")), "deals[2].id", "duplicates deals[0].id"),
    (
        bad_forecast(_set("deals.1.currency", "eur")),
        "deals[1].currency",
        "must match the other deals' currency 'USD'",
    ),
    (bad_forecast(_set("deals.0.outcome", 42)), "deals[0].outcome", "unknown outcome 42"),
    (
        bad_forecast(_set("deals.1.expected_close_time.seconds", 2**40)),
        "deals[1].expected_close_time",
        "timestamp out of range",
    ),
    (bad_forecast(lambda r: r.ClearField("period")), "period", "required"),
    (bad_forecast(lambda r: r.period.ClearField("start_time")), "period.start_time", "required"),
    (bad_forecast(lambda r: r.period.ClearField("end_time")), "period.end_time", "required"),
    (bad_forecast(_end_before_start), "period.end_time", "must be after period.start_time"),
    (bad_forecast(_empty_period), "period.end_time", "must be after period.start_time"),
    (bad_forecast(_set("options.simulations", 0)), "options.simulations", "must be in [1, 1000000]"),
    (bad_forecast(_set("options.simulations", 1_000_001)), "options.simulations", "must be in [1, 1000000]"),
    (
        # 2,501 deals x 1,000,000 simulations is more uniforms than one call may draw.
        bad_forecast(lambda r: (_many_deals("deals", 2_498)(r), _set("options.simulations", 1_000_000)(r))),
        "options.simulations",
        "simulations x deals must be at most 2.5e+09 (here 1000000 x 2501)",
    ),
    (bad_forecast(_many_deals("deals", 50_000 - 2)), "deals", "at most 50000 deals, got 50001"),
    (bad_forecast(_set("options.correlation", 1.0)), "options.correlation", "must be in [0, 0.99]"),
    (bad_forecast(_set("options.slip_std_days", -1.0)), "options.slip_std_days", "must be finite and >= 0"),
    (bad_forecast(_set("options.slip_mean_days", math.nan)), "options.slip_mean_days", "must be finite"),
    (
        bad_forecast(_set("options.undated_in_period_probability", 1.5)),
        "options.undated_in_period_probability",
        "must be in [0, 1]",
    ),
    (
        bad_forecast(_set("options.amount_mean_multiplier", 0.0)),
        "options.amount_mean_multiplier",
        "must be finite and > 0",
    ),
    (bad_forecast(_set("options.amount_cv", 0.6)), "options.amount_cv", "must be in [0, 1/sqrt(3) = 0.577]"),
    (bad_forecast(_set("options.histogram_bins", 1001)), "options.histogram_bins", "must be in [1, 1000]"),
    (bad_compare(_set("base_deals.1.value", math.nan)), "base_deals[1].value", "must be finite and >= 0"),
    (bad_compare(_set("base_deals.0.probability", 2.0)), "base_deals[0].probability", "must be in [0, 1]"),
    (bad_compare(_set("scenarios.0.name", "")), "scenarios[0].name", "must not be empty"),
    (bad_compare(_set("scenarios.1.name", "a")), "scenarios[1].name", "duplicates scenarios[0].name"),
    (
        bad_compare(lambda r: r.scenarios[1].removed_deal_ids.append("nobody")),
        "scenarios[1].removed_deal_ids[0]",
        "is not in base_deals",
    ),
    (
        bad_compare(lambda r: r.scenarios[0].removed_deal_ids.extend(["deal-1", "deal-1"])),
        "scenarios[0].removed_deal_ids[1]",
        "is removed twice",
    ),
    (bad_compare(_changed_deal(1, deal_id="nobody")), "scenarios[1].changes[0].deal_id", "is not in base_deals"),
    (
        bad_compare(_changed_deal(0, deal_id="deal-0", probability=1.01)),
        "scenarios[0].changes[0].probability",
        "must be in [0, 1]",
    ),
    (
        bad_compare(_changed_deal(0, deal_id="deal-0", value=math.nan)),
        "scenarios[0].changes[0].value",
        "must be finite and >= 0",
    ),
    (
        bad_compare(_changed_deal(0, deal_id="deal-0", expected_close_time=timestamp_pb2.Timestamp(seconds=-(2**40)))),
        "scenarios[0].changes[0].expected_close_time",
        "timestamp out of range",
    ),
    (bad_compare(_added_deal(id="deal-2")), "scenarios[0].added_deals[0].id", "is already in base_deals"),
    (bad_compare(_added_deal(value=-5.0)), "scenarios[0].added_deals[0].value", "must be finite and >= 0"),
    (
        bad_compare(_added_deal(currency="EUR")),
        "scenarios[0].added_deals[0].currency",
        "must match the other deals' currency 'USD'",
    ),
    (
        bad_compare(lambda r: r.scenarios.extend(forecast_pb2.Scenario(name=f"s{i}") for i in range(19))),
        "scenarios",
        "must hold at most 20 scenarios",
    ),
]


@pytest.mark.parametrize(("request_for", "field", "rule"), BAD, ids=[f"{case[0][0]}:{case[1]}" for case in BAD])
async def test_bad_input_is_invalid_argument_naming_the_field(request_for, field, rule):
    method, build = request_for
    async with forecasting() as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, method)(build())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == f"{field}: {rule}"
    assert violation(raised.value) == (field, rule)


# --- callers that go away ----------------------------------------------------------------


class Watched:
    """Wraps an engine entry point to see, from the test, when the servicer
    started it and how it ended."""

    def __init__(self, function) -> None:
        self.function = function
        self.started = threading.Event()
        self.ended = threading.Event()
        self.outcome: object = None

    def __call__(self, *args, **kwargs):
        self.started.set()
        try:
            self.outcome = self.function(*args, **kwargs)
            return self.outcome
        except BaseException as error:
            self.outcome = error
            raise
        finally:
            self.ended.set()


# A million simulations of 1,000 deals: seconds of work, far longer than the
# deadlines below, so that the caller leaves while the engine simulates.
HEAVY = pipeline(1_000, seed=3)
HEAVY_OPTIONS = {"seed": 1, "simulations": 1_000_000}


def heavy_request(method: str):
    if method == "Forecast":
        return forecast_request(HEAVY, **HEAVY_OPTIONS)
    return compare_request(HEAVY, [engine.ScenarioSpec("lose", removed_deal_ids=("deal-1",))], **HEAVY_OPTIONS)


ENTRY_POINTS = {"Forecast": "forecast", "CompareScenarios": "compare_scenarios"}


async def ended(watched: Watched) -> object:
    # The bound only keeps a broken build from hanging the suite; a simulation
    # that is not stopped ends with an outcome, not Cancelled.
    assert await asyncio.to_thread(watched.ended.wait, 120)
    return watched.outcome


async def assert_still_serving(stub) -> None:
    deals = pipeline(20)
    response = await stub.Forecast(forecast_request(deals, seed=2, simulations=500))
    expected = engine.forecast(deals, PERIOD, engine.SimulationSettings(seed=2, simulations=500))
    assert as_engine(response, expected) == expected


@pytest.mark.parametrize("method", ["Forecast", "CompareScenarios"])
async def test_a_passed_deadline_stops_the_simulation(monkeypatch, method):
    watched = Watched(getattr(engine, ENTRY_POINTS[method]))
    monkeypatch.setattr(engine, ENTRY_POINTS[method], watched)
    async with forecasting() as stub:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await getattr(stub, method)(heavy_request(method), timeout=1.0)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert watched.started.is_set()
        assert isinstance(await ended(watched), Cancelled)
        await assert_still_serving(stub)


async def test_a_cancelled_call_stops_the_simulation(monkeypatch):
    watched = Watched(engine.forecast)
    monkeypatch.setattr(engine, "forecast", watched)
    async with forecasting() as stub:
        call = stub.Forecast(heavy_request("Forecast"))
        assert await asyncio.to_thread(watched.started.wait, 60)
        call.cancel()
        assert await call.code() == grpc.StatusCode.CANCELLED
        assert isinstance(await ended(watched), Cancelled)
        await assert_still_serving(stub)
