"""Prometheus metrics of the real server: requests by method and code, latency
histograms, embedding counters; on their own port, off by default."""

from __future__ import annotations

import socket
import time
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.serverproc import start_server
from vectoros.v1 import common_pb2, forecast_pb2, forecast_pb2_grpc

FORECAST = "/vectoros.v1.ForecastService/Forecast"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    port = free_port()
    proc = start_server("--data-dir", str(root / "data"), "--models", str(root / "models"),
                        "--metrics-port", str(port))
    yield proc, port
    proc.terminate()


def test_requests_and_latency_are_counted_by_method_and_code(server):
    proc, port = server
    request = forecast_pb2.ForecastRequest(options=forecast_pb2.SimulationOptions(simulations=1000, seed=3))
    request.period.start_time.FromJsonString("2027-01-01T00:00:00Z")
    request.period.end_time.FromJsonString("2027-04-01T00:00:00Z")
    request.deals.append(common_pb2.Deal(id="a", value=100.0, probability=0.5))
    bad = forecast_pb2.ForecastRequest()
    bad.CopyFrom(request)
    bad.deals[0].value = -1
    with proc.channel() as channel:
        stub = forecast_pb2_grpc.ForecastServiceStub(channel)
        for _ in range(3):
            stub.Forecast(request, timeout=30)
        with pytest.raises(grpc.RpcError):
            stub.Forecast(bad, timeout=30)
    # An aborted call's status reaches the client before the server's bookkeeping
    # for it has run: read until it is counted (bounded).
    invalid = ("vectoros_rpc_requests_total", (("code", "INVALID_ARGUMENT"), ("method", FORECAST)))
    deadline = time.monotonic() + 10
    while invalid not in (samples := scrape(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert samples[("vectoros_rpc_requests_total", (("code", "OK"), ("method", FORECAST)))] == 3
    assert samples[("vectoros_rpc_requests_total", (("code", "INVALID_ARGUMENT"), ("method", FORECAST)))] == 1
    assert samples[("vectoros_rpc_latency_seconds_count", (("method", FORECAST),))] == 4
    inf = samples[("vectoros_rpc_latency_seconds_bucket", (("le", "+Inf"), ("method", FORECAST)))]
    fast = samples[("vectoros_rpc_latency_seconds_bucket", (("le", "0.0005"), ("method", FORECAST)))]
    assert inf == 4 and fast <= inf
    assert samples[("vectoros_embedding_queue_depth", ())] == 0
    assert samples[("vectoros_embedding_texts_total", (("outcome", "requested"),))] == 0
    # No model is published: no version gauge, rather than a made-up one.
    assert not any(name == "vectoros_model_version" for name, _ in samples)


def test_metrics_are_off_unless_asked(tmp_path):
    proc = start_server("--data-dir", str(tmp_path / "data"), "--models", str(tmp_path / "models"))
    try:
        assert not proc.logs(msg="metrics")
    finally:
        assert proc.terminate() == 0
    assert proc.logs(msg="listening")
