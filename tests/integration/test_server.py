"""The real server over a real channel: health, reflection, errors, logs, SIGTERM drain."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from tests.support.serverproc import start_server
from vectoros.v1 import (
    common_pb2,
    embedding_pb2,
    embedding_pb2_grpc,
    forecast_pb2,
    forecast_pb2_grpc,
    scoring_pb2,
    scoring_pb2_grpc,
)

SERVICES = {
    "vectoros.v1.EmbeddingService": {"Embed", "EmbedDeals", "GetModelInfo"},
    "vectoros.v1.SimilarityService": {"UpsertDeals", "DeleteDeals", "FindSimilarDeals", "GetStats"},
    "vectoros.v1.ScoringService": {"ScoreDeal", "ScoreDeals", "GetModelInfo"},
    "vectoros.v1.ForecastService": {"Forecast", "CompareScenarios"},
    "vectoros.v1.InsightService": {
        "GenerateInsights",
        "RecordFeedback",
        "RecordOutcome",
        "ScanPipeline",
        "ExportTrainingData",
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    proc = start_server("--data-dir", str(root / "data"), "--models", str(root / "models"))
    yield proc
    proc.terminate()


def _period(request) -> None:
    request.period.start_time.FromJsonString("2027-01-01T00:00:00Z")
    request.period.end_time.FromJsonString("2027-04-01T00:00:00Z")


def _deal(i: int, value: float = 10_000.0, probability: float = 0.5) -> common_pb2.Deal:
    deal = common_pb2.Deal(id=f"d{i}", value=value, probability=probability, currency="USD")
    deal.expected_close_time.FromJsonString("2027-02-15T00:00:00Z")
    return deal


def test_health_per_service(server):
    with server.channel() as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        assert stub.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
        forecast = stub.Check(health_pb2.HealthCheckRequest(service="vectoros.v1.ForecastService"))
        assert forecast.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as unknown:
            stub.Check(health_pb2.HealthCheckRequest(service="vectoros.v1.NoSuchService"))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_services_and_rpcs(server):
    with server.channel() as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        names = set(database.get_services())
        assert set(SERVICES) <= names
        assert "grpc.health.v1.Health" in names
        pool = descriptor_pool.DescriptorPool(database)
        for service, rpcs in SERVICES.items():
            descriptor = pool.FindServiceByName(service)
            assert {method.name for method in descriptor.methods} == rpcs


def test_forecast_round_trip(server):
    request = forecast_pb2.ForecastRequest(deals=[_deal(i) for i in range(20)])
    _period(request)
    request.options.seed = 7
    request.options.simulations = 5_000
    with server.channel() as channel:
        response = forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(request, timeout=30)
    result = response.result
    assert response.seed == 7 and response.simulations == 5_000
    assert result.currency == "USD"
    assert result.weighted_pipeline == pytest.approx(20 * 10_000 * 0.5)
    assert result.p5 <= result.p10 <= result.p25 <= result.p50 <= result.p75 <= result.p90 <= result.p95
    assert sum(b.count for b in result.histogram) == 5_000
    assert {c.deal_id for c in result.deal_contributions} == {f"d{i}" for i in range(20)}
    assert [s.name for s in result.scenarios] == ["worst", "likely", "best"]
    # Every deal expects to close mid-February, so the timing model keeps most
    # of the value inside the quarter, but not all of it.
    assert 0.5 * result.weighted_pipeline < result.mean < result.weighted_pipeline
    assert sum(m.expected_revenue for m in result.monthly) == pytest.approx(
        sum(c.expected_revenue for c in result.deal_contributions), rel=1e-6
    )


def test_empty_pipeline_is_zero(server):
    request = forecast_pb2.ForecastRequest()
    _period(request)
    with server.channel() as channel:
        response = forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(request, timeout=30)
    assert response.result.mean == 0 and response.result.p95 == 0


def _invalid(request_change) -> forecast_pb2.ForecastRequest:
    request = forecast_pb2.ForecastRequest(deals=[_deal(0), _deal(1)])
    _period(request)
    request_change(request)
    return request


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda r: setattr(r.deals[1], "value", float("nan")), "deals[1].value"),
        (lambda r: setattr(r.deals[0], "value", float("inf")), "deals[0].value"),
        (lambda r: setattr(r.deals[1], "value", -5.0), "deals[1].value"),
        (lambda r: setattr(r.deals[1], "probability", 1.5), "deals[1].probability"),
        (lambda r: setattr(r.deals[1], "id", "d0"), "deals[1].id"),
        (lambda r: setattr(r.options, "simulations", 5_000_000), "options.simulations"),
        (lambda r: r.period.end_time.FromJsonString("2026-12-01T00:00:00Z"), "period.end_time"),
        (lambda r: r.ClearField("period"), "period"),
        (lambda r: r.deals[0].ClearField("probability"), "deals[0].probability"),
        (lambda r: setattr(r.deals[0], "outcome", 42), "deals[0].outcome"),
    ],
)
def test_forecast_bad_input_names_the_field(server, change, field):
    with server.channel() as channel:
        with pytest.raises(grpc.RpcError) as error:
            forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(_invalid(change), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}:"), error.value.details()


@pytest.mark.parametrize(
    "method",
    [
        "/vectoros.v1.ForecastService/Forecast",
        "/vectoros.v1.ScoringService/ScoreDeal",
        "/vectoros.v1.SimilarityService/UpsertDeals",
        "/vectoros.v1.InsightService/GenerateInsights",
    ],
)
def test_a_request_that_does_not_parse_is_invalid_argument(server, method):
    from vectoros_client.errors import from_rpc_error

    deal = b"\x0a\x01d" + b"\x1a\x02\xff\xfe"  # a Deal: id "d", name: two bytes that are not UTF-8
    with server.channel() as channel:
        call = channel.unary_unary(method, request_serializer=lambda data: data, response_deserializer=bytes)
        with pytest.raises(grpc.RpcError) as error:
            # Field 1 of each request: a Deal, or (UpsertDeals) the workspace id; not UTF-8 either way.
            call(b"\x0a" + bytes([len(deal)]) + deal, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "valid UTF-8" in error.value.details()
    assert from_rpc_error(error.value).violations[0].field == "request"
    server.wait_for_log(msg="rpc", method=method, code="INVALID_ARGUMENT")


def test_truncated_bytes_are_invalid_argument_also_for_embed(server):
    # Embed parses its texts as bytes (to name a text that is not UTF-8); bytes
    # cut short still reach the interceptor's answer.
    with server.channel() as channel:
        call = channel.unary_unary(
            "/vectoros.v1.EmbeddingService/Embed", request_serializer=lambda data: data, response_deserializer=bytes
        )
        with pytest.raises(grpc.RpcError) as error:
            call(b"\x0a\x05ab", timeout=10)  # field 1 announces 5 bytes, 2 follow
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("request: could not be parsed")


def test_too_many_deals_is_invalid(server):
    request = forecast_pb2.ForecastRequest(deals=[_deal(i, 1.0) for i in range(50_001)])
    _period(request)
    with server.channel() as channel:
        with pytest.raises(grpc.RpcError) as error:
            forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(request, timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("deals:")


def test_model_backed_services_without_models_are_not_serving_and_unavailable(server):
    """The server starts with an empty model repository; what needs a model says so."""
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in (
            "vectoros.v1.ScoringService",
            "vectoros.v1.EmbeddingService",
            "vectoros.v1.SimilarityService",
            "vectoros.v1.InsightService",
        ):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING, service
        with pytest.raises(grpc.RpcError) as scoring:
            scoring_pb2_grpc.ScoringServiceStub(channel).ScoreDeal(
                scoring_pb2.ScoreDealRequest(deal=_deal(0)), timeout=10
            )
        assert scoring.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as embedding:
            embedding_pb2_grpc.EmbeddingServiceStub(channel).Embed(
                embedding_pb2.EmbedRequest(texts=["hello"]), timeout=10
            )
        assert embedding.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "embedder" in embedding.value.details()


def test_one_log_line_per_request(server):
    request = forecast_pb2.ForecastRequest()
    _period(request)
    with server.channel() as channel:
        forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(request, timeout=30)
    line = server.wait_for_log(msg="rpc", method="/vectoros.v1.ForecastService/Forecast", code="OK")
    assert line["latency_ms"] >= 0
    bad = forecast_pb2.ForecastRequest()
    with server.channel() as channel, pytest.raises(grpc.RpcError):
        forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(bad, timeout=30)
    server.wait_for_log(msg="rpc", method="/vectoros.v1.ForecastService/Forecast", code="INVALID_ARGUMENT")


def test_sigterm_drains_in_flight_calls_and_exits_zero(tmp_path):
    proc = start_server(
        "--data-dir", str(tmp_path / "data"), "--models", str(tmp_path / "models"), "--grace-seconds", "30"
    )
    # A forecast big enough to be in flight when SIGTERM arrives.
    request = forecast_pb2.ForecastRequest(deals=[_deal(i) for i in range(5_000)])
    _period(request)
    request.options.simulations = 200_000
    outcome: dict = {}

    def call() -> None:
        with proc.channel() as channel:
            try:
                outcome["response"] = forecast_pb2_grpc.ForecastServiceStub(channel).Forecast(request, timeout=120)
            except grpc.RpcError as error:  # recorded, asserted below
                outcome["error"] = error

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)
    assert "response" not in outcome, "forecast finished before SIGTERM; make it bigger"
    proc.process.send_signal(signal.SIGTERM)
    proc.wait_for_log(msg="shutting down", timeout=10)
    # While draining, the server takes no new work.
    with proc.channel() as channel:
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert proc.process.wait(timeout=120) == 0
    caller.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["response"].simulations == 200_000
    proc.wait_for_log(msg="stopped", timeout=5)
